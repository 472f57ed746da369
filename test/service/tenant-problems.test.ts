import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { describeWithTool } from "../support/external-tools.js";
import { message } from "../support/fixtures.js";
import { startHarness, type Harness, type Replica } from "../support/harness.js";
import { startTestRedis, type TestRedis } from "../support/redis-server.js";

/*
 * GET /tenants keeps a tenant's lastProblem honest: it is the last problem on the tenant's or
 * the service's side, and a caller's own mistake (a wrong sender, an oversized message, an
 * address Graph cannot resolve) does not replace it.
 */

type Row = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- assertions read arbitrary members

describe("GET /tenants after callers' own mistakes", () => {
  let h: Harness;
  const row = async (tenant: string): Promise<Row> => {
    const res = await h.get("/tenants", { key: h.keys.admin });
    expect(res.status).toBe(200);
    return (res.json.tenants as Row[]).find((r) => r.tenant === tenant)!;
  };

  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when Entra rejected a tenant's credential and then a caller sends from the wrong sender or too big a message, then lastProblem still says credential_rejected", async () => {
    const rejected = await h.send(message("litware"));
    expect(rejected.json).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });
    const before = await row("litware");

    const wrongSender = await h.send(message("litware", { from: "ceo@litware.com" }));
    expect(wrongSender.json).toMatchObject({ code: "sender_not_allowed" });
    const big = "A".repeat(4 * 1024 * 1024);
    const tooBig = await h.send(message("litware", { attachments: [{ filename: "big.bin", contentType: "application/octet-stream", content: big }] }));
    expect(tooBig.json).toMatchObject({ code: "payload_too_large" });

    const after = await row("litware");
    expect(after.lastOutcome).toBe("payload_too_large");
    expect(after.lastProblem).toEqual(before.lastProblem);
    expect(after.lastProblem).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });
  });

  it("when Graph found the sender mailbox unusable and later refuses a caller's recipients, then lastProblem still says mailbox_unavailable", async () => {
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", graphError: "notRestEnabled", times: 1 });
    expect((await h.send(message("contoso"))).json).toMatchObject({ code: "mailbox_unavailable" });
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", graphError: "noRecipients", times: 1 });
    expect((await h.send(message("contoso"))).json).toMatchObject({ code: "recipient_rejected" });

    const contoso = await row("contoso");
    expect(contoso.lastOutcome).toBe("recipient_rejected");
    expect(contoso.lastProblem).toMatchObject({ code: "mailbox_unavailable", graphCode: "MailboxNotEnabledForRESTAPI" });
  });
});

describeWithTool("redis-server", "GET /tenants after callers' own mistakes, on several replicas with the Redis store", () => {
  let redis: TestRedis;
  let h: Harness;
  let r2: Replica;
  let r3: Replica;

  beforeAll(async () => {
    redis = await startTestRedis();
    h = await startHarness({
      logLevel: "warn",
      configure: (c) => {
        c.store = { type: "redis", url: redis.url, keyPrefix: "tenant-problems:", connectTimeoutSeconds: 5 };
      },
    });
    [r2, r3] = [await h.replica(), await h.replica()];
  });
  afterAll(async () => {
    await h?.close();
    await redis?.stop();
  });

  it("when one replica saw credential_rejected and another a caller's mistake or a success, then a third replica's /tenants still shows credential_rejected", async () => {
    expect((await h.send(message("litware"))).json).toMatchObject({ code: "credential_rejected" });
    expect((await r2.send(message("litware", { from: "ceo@litware.com" }))).json).toMatchObject({ code: "sender_not_allowed" });

    const res = await r3.get("/tenants", { key: h.keys.admin });
    const litware = (res.json.tenants as Row[]).find((r) => r.tenant === "litware")!;
    expect(litware.lastOutcome).toBe("sender_not_allowed");
    expect(litware.lastProblem).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });

    // A success elsewhere keeps the problem too (as on one replica).
    expect((await h.send(message("contoso"))).status).toBe(202);
    h.emulator.state.inject({ kind: "sendMail", mailbox: "noreply@contoso.com", action: "respond", graphError: "notRestEnabled", times: 1 });
    expect((await h.send(message("contoso"))).json).toMatchObject({ code: "mailbox_unavailable" });
    expect((await r2.send(message("contoso"))).status).toBe(202);
    const contoso = ((await r3.get("/tenants", { key: h.keys.admin })).json.tenants as Row[]).find((r) => r.tenant === "contoso")!;
    expect(contoso).toMatchObject({ lastOutcome: "sent", lastProblem: { code: "mailbox_unavailable" } });
  });
});
