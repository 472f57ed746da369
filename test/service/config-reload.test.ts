import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CONTOSO, TAILSPIN, message, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness } from "../support/harness.js";

/*
 * Hot reload of the config file over HTTP: the file is rewritten as deploy tools do (a new file
 * renamed over the old one) and the service follows it without a restart.
 */

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("config hot reload", () => {
  let h: Harness;
  const reloads = async (outcome: string) => metricValue((await h.get("/metrics")).text, "noreply_relay_config_reload_total", { outcome });
  const tokenRequests = (tenant: string) => h.emulator.state.requests({ kind: "token", tenant }).length;

  beforeAll(async () => {
    const scenario = standardScenario();
    scenario.tenants![0]!.mailboxes!.push({ address: "alerts@contoso.com" });
    h = await startHarness({ scenario });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when the service starts, then the reload counter has its three outcomes at 0", async () => {
    const text = (await h.get("/metrics")).text;
    for (const outcome of ["success", "invalid", "unchanged"]) {
      expect(text).toMatch(new RegExp(`^noreply_relay_config_reload_total\\{outcome="${outcome}"\\} \\d+$`, "m"));
    }
  });

  it("when the file adds a tenant and removes another while sends run, then sends in flight finish, the new tenant sends and the removed one is gone", async () => {
    const successes = await reloads("success");
    h.emulator.state.inject({ kind: "sendMail", action: "latency", fixedMs: 500 });
    const running = Promise.all([
      ...Array.from({ length: 10 }, (_, i) => h.send(message("tailspin", { subject: `in flight ${i}` }))),
      ...Array.from({ length: 10 }, (_, i) => h.send(message("contoso", { subject: `in flight ${i}` }))),
    ]);
    await until("sends in flight", async () => (metricValue((await h.get("/metrics")).text, "noreply_relay_inflight_sends") === 20 ? true : undefined));
    expect((await h.send(message("alerts"))).status).toBe(404);

    await h.rewriteConfig((c) => {
      delete c.tenants.tailspin;
      c.tenants.alerts = { tenantId: CONTOSO.id, sender: "alerts@contoso.com" };
    });
    // No signal, no call: the watcher sees the file change.
    const added = await until("the new tenant", async () => {
      const res = await h.send(message("alerts", { subject: "after reload" }));
      return res.status === 404 ? undefined : res;
    });

    expect(added.status).toBe(202);
    expect((await running).map((r) => r.status)).toEqual(Array(20).fill(202));
    expect(h.emulator.state.messages({ tenant: TAILSPIN.id, subject: "in flight" })).toHaveLength(10);
    const removed = await h.send(message("tailspin"));
    expect(removed.status).toBe(404);
    expect(removed.json.code).toBe("unknown_tenant");
    expect(h.emulator.state.messages({ mailbox: "alerts@contoso.com" })).toHaveLength(1);
    expect((await reloads("success")) - successes).toBe(1);
  });

  it("when the new file is invalid, then it is refused, the config in force stays, and the reason is logged and counted", async () => {
    const invalid = await reloads("invalid");
    const before = h.configInput.tenants.contoso!.sender;
    await h.rewriteConfig((c) => {
      c.tenants.contoso!.sender = "not-an-email";
    });
    await until("the refused reload", async () => ((await reloads("invalid")) > invalid ? true : undefined));

    const res = await h.send(message("contoso", { subject: "old config" }));
    expect(res.status).toBe(202);
    expect(res.json.sender).toBe(before);
    const refusal = h.logs.records().find((r) => r.msg === "config reload refused; the previous config stays in force");
    expect(refusal).toMatchObject({ level: 40, problems: expect.arrayContaining(["tenants.contoso.sender: invalid email"]) });

    await h.rewriteConfig((c) => {
      c.tenants.contoso!.sender = before;
    });
    expect(h.reload()).toBe("unchanged"); // the file is back to the config in force
  });

  it("when a reload changes one tenant's credential settings, then only that tenant asks Entra for a new token", async () => {
    expect((await h.send(message("contoso"))).status).toBe(202);
    expect((await h.send(message("fabrikam"))).status).toBe(403);
    const contosoTokens = tokenRequests(CONTOSO.id);
    expect(contosoTokens).toBeLessThanOrEqual(1); // 0 when an earlier test fetched it

    await h.rewriteConfig((c) => {
      // The same Entra tenant by its verified domain: another credential.
      c.tenants.fabrikam!.tenantId = "fabrikam.com";
    });
    expect(h.reload()).toBe("success");
    expect((await h.send(message("contoso"))).status).toBe(202);
    expect((await h.send(message("fabrikam"))).status).toBe(403);

    expect(tokenRequests(CONTOSO.id)).toBe(contosoTokens);
    expect(h.emulator.state.requests({ kind: "token" }).filter((r) => r.tenant === "fabrikam.com" || r.path.includes("fabrikam.com"))).toHaveLength(1);
  });

  it("when a reload changes a key read only at start-up, then the rest applies and a warning names that key", async () => {
    await h.rewriteConfig((c) => {
      c.server = { ...c.server, drainTimeoutSeconds: 3, maxBodyBytes: 4096 };
      c.tenants.contoso!.displayName = "Contoso after reload";
    });
    expect(h.reload()).toBe("success");

    const warning = h.logs.records().find((r) => r.msg === "config reload: these settings change only after a restart");
    expect(warning).toMatchObject({ level: 40, keys: ["server.drainTimeoutSeconds"] });
    // server.maxBodyBytes is read per request: it applies at once.
    expect((await h.send(message("contoso", { text: "x".repeat(5000) }))).status).toBe(413);
    const tenants = (await h.get("/tenants", { key: h.keys.admin })).json.tenants as { tenant: string; displayName?: string }[];
    expect(tenants.find((t) => t.tenant === "contoso")?.displayName).toBe("Contoso after reload");
  });
});
