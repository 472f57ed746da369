import { afterEach, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { APP, CONTOSO, client, mail, scenario } from "../emulator/fixtures.js";

/*
 * The soaks judge the relay by what the emulator measured: the most sendMail requests one
 * mailbox had at Graph at once, and how many Graph refused for its MailboxConcurrency rule. This
 * checks the measurement itself over HTTPS, so a soak's "peak <= limit" cannot pass because the
 * meter never counts.
 */
describe("the emulator's per-mailbox concurrency meter", () => {
  let emu: Emulator | undefined;
  afterEach(async () => {
    await emu?.close();
    emu = undefined;
  });

  /** Six sendMails to one mailbox at once, each held at Graph for `holdMs`. */
  async function sixAtOnce(e: Emulator, holdMs: number): Promise<number[]> {
    const c = client(e);
    try {
      const token = await e.state.mintAccessToken({ tenantId: CONTOSO, appId: APP });
      const latency = e.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "latency", fixedMs: holdMs });
      const answers = await Promise.all(Array.from({ length: 6 }, () => c.sendMail("noreply@contoso.com", token, mail()).then((r) => r.status)));
      latency.clear();
      return answers.sort();
    } finally {
      await c.close();
    }
  }

  it("when six sends reach a mailbox with Graph's limit of 4 at once, then the peak is 5 (the refused one included), two were refused and none is left in flight", async () => {
    emu = await startEmulator({ scenario: { ...scenario(), throttling: { mailboxConcurrency: 4, requestsPerWindow: 0 } } });
    // Held for a second, so all six overlap even on a busy machine.
    expect(await sixAtOnce(emu, 1000)).toEqual([202, 202, 202, 202, 429, 429]);

    expect(emu.state.concurrency({ mailbox: "noreply@contoso.com" })).toEqual([
      expect.objectContaining({ appId: APP, mailbox: "noreply@contoso.com", inFlight: 0, peak: 5, concurrencyRejections: 2 }),
    ]);
    const c = client(emu);
    try {
      const res = await c.fetch("/_emulator/concurrency?mailbox=no-reply@contoso.com");
      expect(((await res.json()) as { value: unknown[] }).value).toEqual([expect.objectContaining({ mailbox: "noreply@contoso.com", peak: 5, concurrencyRejections: 2 })]);
      expect(((await (await c.fetch("/_emulator/concurrency?mailbox=billing@contoso.com")).json()) as { value: unknown[] }).value).toEqual([]);
    } finally {
      await c.close();
    }

    emu.state.reset();
    expect(emu.state.concurrency()).toEqual([]);
  });

  it("when Graph's limits are off, then the meter still measures every request at once and refuses none", async () => {
    emu = await startEmulator({ scenario: scenario() });
    expect(await sixAtOnce(emu, 1000)).toEqual([202, 202, 202, 202, 202, 202]);
    expect(emu.state.concurrency()).toEqual([expect.objectContaining({ mailbox: "noreply@contoso.com", inFlight: 0, peak: 6, concurrencyRejections: 0 })]);
  });
});
