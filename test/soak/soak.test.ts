import { describe, expect, it } from "vitest";
import { runSoak } from "./soak.js";

/* The fault soak of `npm run soak`, small enough for every test run (about 10 s). */
describe("fault soak", () => {
  it("when 500 messages are sent by retrying clients through random Graph faults, then every request gets one answer, every 202 is one message and no key sends twice", async () => {
    const report = await runSoak({ messages: 500, concurrency: 48 });

    expect(report.violations, `seed ${report.seed}`).toEqual([]);
    expect(report.answers).toBe(report.requests);
    expect(report.duplicates).toBe(0);
    expect(report.graphConcurrency429).toBe(0);
    // The run was a soak, not a stroll: faults were met, retries were replayed, most messages went out.
    expect(report.faultsHit).toBeGreaterThan(20);
    expect(report.replays).toBeGreaterThan(0);
    expect(report.requests).toBeGreaterThan(report.messages);
    expect(report.finals["202"]).toBeGreaterThan(report.messages * 0.8);
  }, 60_000);
});
