import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ConfigInput } from "../../src/config/schema.js";
import type { ScenarioInput } from "../../src/emulator/scenario.js";
import { CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness, type HttpResult } from "../support/harness.js";

/*
 * Per-mailbox limits over HTTP. The emulator enforces Graph's own rule here (a fifth concurrent
 * sendMail per app and mailbox gets 429 ApplicationThrottled), so "no 429 from Graph" proves the
 * relay kept to four. Each test has its own sender mailbox in Contoso, so a throttle or a daily
 * count from one test never reaches another.
 */

/** Contoso tenants of the tests below: tenant key → sender local part and limits. */
const MAILBOXES: Record<string, { local: string; limits?: Record<string, number> }> = {
  flood: { local: "flood" },
  hot: { local: "hot" },
  narrow: { local: "narrow", limits: { maxConcurrency: 1, maxQueue: 2 } },
  held: { local: "held" },
  refused: { local: "refused" },
  quota: { local: "quota", limits: { recipientsPerDay: 5 } },
};

function scenarioWithMailboxes(): ScenarioInput {
  const scenario = standardScenario();
  for (const { local } of Object.values(MAILBOXES)) scenario.tenants![0]!.mailboxes!.push({ address: `${local}@contoso.com` });
  // Graph's concurrency rule on, its 10,000-per-10-minutes budget off (not what these tests are about).
  scenario.throttling = { mailboxConcurrency: 4, requestsPerWindow: 0 };
  return scenario;
}

function addTenants(c: ConfigInput, extra: (key: string) => Record<string, unknown> = () => ({})): void {
  for (const [key, { local, limits }] of Object.entries(MAILBOXES)) {
    c.tenants[key] = { tenantId: CONTOSO.id, sender: `${local}@contoso.com`, ...(limits ? { limits } : {}), ...extra(key) };
  }
}

const sendMails = (h: Harness, mailbox: string) => h.emulator.state.requests({ kind: "sendMail", mailbox });
const tenantRow = async (h: Harness, key: string) => ((await h.get("/tenants", { key: h.keys.admin })).json.tenants as { tenant: string }[]).find((t) => t.tenant === key) as Record<string, unknown>;

describe("per-mailbox limits (deadline 10 s)", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({ scenario: scenarioWithMailboxes(), configure: (c) => addTenants(c), emulator: { maxRequests: 50_000 } });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when 200 sends to one mailbox arrive at once, then Graph never sees a fifth concurrent request and each gets one 202", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "flood@contoso.com", action: "latency", fixedMs: 20 });
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => h.send(message("flood", { subject: `flood ${i}` }))));

    expect(results.map((r) => r.status)).toEqual(Array(200).fill(202));
    expect(new Set(results.map((r) => r.json.id)).size).toBe(200);
    expect(sendMails(h, "flood@contoso.com").filter((r) => r.status === 429)).toEqual([]);
    expect(h.emulator.state.messages({ mailbox: "flood@contoso.com" })).toHaveLength(200);
    // One terminal answer per request: one log line each, and the in-flight gauge back at 0.
    const ids = new Set(results.map((r) => r.headers.get("x-request-id")));
    expect(h.logs.requests().filter((l) => ids.has(l.requestId as string))).toHaveLength(200);
    expect(metricValue((await h.get("/metrics")).text, "noreply_relay_inflight_sends")).toBe(0);
  });

  it("when one tenant's mailbox is flooded, then another tenant's sends take as long as on a quiet day", async () => {
    const quiet: number[] = [];
    for (let i = 0; i < 5; i++) quiet.push(await timed(() => h.send(message("tailspin"))));

    // 200 sends at 60 ms per Graph call, four at a time: the flood's line lasts about 3 s.
    h.emulator.state.inject({ kind: "sendMail", mailbox: "hot@contoso.com", action: "latency", fixedMs: 60 });
    const flood = Promise.all(Array.from({ length: 200 }, (_, i) => h.send(message("hot", { subject: `hot ${i}` }))));
    await new Promise((r) => setTimeout(r, 200));
    const during: number[] = [];
    for (let i = 0; i < 10; i++) during.push(await timed(() => h.send(message("tailspin"))));
    const hotRow = await tenantRow(h, "hot");

    // Had tailspin waited in the flood's line, each send would take seconds.
    expect(hotRow.waiting as number, "the flood was still waiting when tailspin's sends were done").toBeGreaterThan(50);
    expect(Math.max(...during)).toBeLessThan(Math.max(500, 5 * Math.max(...quiet)));
    expect(median(during)).toBeLessThan(Math.max(150, 3 * median(quiet)));
    expect((await flood).every((r) => r.status === 202)).toBe(true);
    expect(sendMails(h, "hot@contoso.com").filter((r) => r.status === 429)).toEqual([]);
  });

  it("when the mailbox's line is full, then further sends get 429 rate_limited with Retry-After at once, and Graph is not asked", async () => {
    // narrow: one at a time, two may wait.
    h.emulator.state.inject({ kind: "sendMail", mailbox: "narrow@contoso.com", action: "latency", fixedMs: 400 });
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const res = await h.send(message("narrow", { subject: `narrow ${i}` }));
        return { res, ms: Date.now() - started };
      }),
    );
    const refused = results.filter((r) => r.res.status === 429);

    expect(results.filter((r) => r.res.status === 202)).toHaveLength(3);
    expect(refused).toHaveLength(2);
    for (const r of refused) {
      expect(r.res.json.code).toBe("rate_limited");
      expect(Number(r.res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(r.ms).toBeLessThan(300);
    }
    expect(sendMails(h, "narrow@contoso.com")).toHaveLength(3);
  });

  it("when Graph answers 429 with Retry-After 2, then the mailbox's other sends wait until then instead of asking Graph", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "held@contoso.com", action: "respond", status: 429, retryAfter: 2, times: 1 });
    const first = h.send(message("held", { subject: "held first" }));
    await new Promise((r) => setTimeout(r, 200));
    const others = Promise.all(Array.from({ length: 3 }, (_, i) => h.send(message("held", { subject: `held ${i}` }))));
    await new Promise((r) => setTimeout(r, 300));
    expect((await tenantRow(h, "held")).throttledUntil).toEqual(expect.any(String));

    expect((await first).status).toBe(202);
    expect((await others).map((r) => r.status)).toEqual([202, 202, 202]);
    const log = sendMails(h, "held@contoso.com");
    const throttledAt = Date.parse(log.find((r) => r.status === 429)!.at);
    expect(log.map((r) => r.status).sort()).toEqual([202, 202, 202, 202, 429]);
    // Nobody went to Graph while Graph had asked the mailbox to wait (a little slack for whole seconds).
    for (const r of log.filter((e) => e.status === 202)) expect(Date.parse(r.at) - throttledAt).toBeGreaterThanOrEqual(1_900);
  });

  it("when Graph's Retry-After outlasts the deadline, then later sends to that mailbox are refused at once with the remaining wait", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "refused@contoso.com", action: "respond", status: 429, retryAfter: 30, times: 1 });
    const first = await h.send(message("refused"));
    const started = Date.now();
    const second = await h.send(message("refused"));

    expect(first.status).toBe(429);
    expect(first.headers.get("retry-after")).toBe("30");
    expect(second.status).toBe(429);
    expect(second.json.code).toBe("rate_limited");
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(28);
    expect(Number(second.headers.get("retry-after"))).toBeLessThanOrEqual(30);
    expect(Date.now() - started).toBeLessThan(300);
    expect(sendMails(h, "refused@contoso.com")).toHaveLength(1);
    const row = await tenantRow(h, "refused");
    expect(Date.parse(row.throttledUntil as string) - Date.now()).toBeGreaterThan(25_000);
  });

  it("when the daily recipient limit is reached, then the next send is refused with Retry-After at the time room frees, and the gauge shows the count", async () => {
    const one = await h.send(message("quota", { to: ["a@example.com"], cc: ["b@example.com"], bcc: ["c@example.com"] }));
    // Graph refusing a recipient sent nothing: those recipients do not count.
    h.emulator.state.inject({
      kind: "sendMail",
      mailbox: "quota@contoso.com",
      action: "respond",
      status: 400,
      times: 1,
      body: { error: { code: "ErrorInvalidRecipients", message: "At least one recipient is not valid." } },
    });
    const rejected = await h.send(message("quota", { to: ["x@example.com", "y@example.com"] }));
    const two = await h.send(message("quota", { to: ["d@example.com", "e@example.com"] }));
    const over = await h.send(message("quota", { to: ["f@example.com"] }));

    expect([one.status, rejected.status, two.status]).toEqual([202, 422, 202]);
    expect(over.status).toBe(429);
    expect(over.json.code).toBe("rate_limited");
    // The first recipients leave the rolling 24 h window a day (and at most a minute) after they were sent.
    const retryAfter = Number(over.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(86_400 - 60);
    expect(retryAfter).toBeLessThanOrEqual(86_400 + 60);
    expect(sendMails(h, "quota@contoso.com")).toHaveLength(3);
    expect(metricValue((await h.get("/metrics")).text, "noreply_relay_recipients_used", { tenant: "quota" })).toBe(5);
    expect((await tenantRow(h, "quota")).recipientsUsed).toBe(5);
  });
});

describe("per-mailbox limits (deadline 2 s)", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({
      scenario: scenarioWithMailboxes(),
      configure: (c) => {
        addTenants(c);
        c.server = { ...c.server, requestDeadlineSeconds: 2 };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("when no slot frees before the deadline, then the waiting send gets 429 rate_limited with Retry-After, not a late Graph call", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "narrow@contoso.com", action: "latency", fixedMs: 1_600 });
    const started = Date.now();
    const [slow, waiting] = await Promise.all([
      h.send(message("narrow", { subject: "takes the slot" })),
      timedResult(() => h.send(message("narrow", { subject: "waits" })), started),
    ]);

    expect(slow.status).toBe(202);
    expect(waiting.res.status).toBe(429);
    expect(waiting.res.json.code).toBe("rate_limited");
    expect(Number(waiting.res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Refused one second before its 2 s deadline: that second is what a Graph call needs.
    expect(waiting.ms).toBeLessThan(1_500);
    expect(sendMails(h, "narrow@contoso.com")).toHaveLength(1);
  });
});

async function timed(f: () => Promise<HttpResult>): Promise<number> {
  const t0 = performance.now();
  const res = await f();
  expect(res.status).toBe(202);
  return performance.now() - t0;
}

async function timedResult(f: () => Promise<HttpResult>, since: number): Promise<{ res: HttpResult; ms: number }> {
  const res = await f();
  return { res, ms: Date.now() - since };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
