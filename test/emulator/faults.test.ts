import { ClientSecretCredential } from "@azure/identity";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { APP, client, CONTOSO, credentialOptions, GRAPH_SCOPE, mail, scenario, SECRET } from "./fixtures.js";

let emu: Emulator;
let http: ReturnType<typeof client>;
let token: string;

beforeAll(async () => {
  emu = await startEmulator({ scenario: scenario() });
  http = client(emu);
  token = await http.accessToken(CONTOSO, APP);
});
afterAll(async () => {
  await http.close();
  await emu.close();
});
afterEach(() => {
  emu.state.reset();
  emu.state.setLatency(null);
});

const send = (user = "noreply@contoso.com", subject = "fault test") => http.sendMail(user, token, mail({ subject }));

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, performance.now() - t];
}

describe("latency", () => {
  it("global latency (fixed + jitter) delays Entra and Graph requests", async () => {
    emu.state.setLatency({ fixedMs: 120, jitterMs: 30 });
    const [res, ms] = await timed(() => send());
    expect(res.status).toBe(202);
    expect(ms).toBeGreaterThanOrEqual(115);
    const [, tokenMs] = await timed(() => http.token(CONTOSO, APP, SECRET));
    expect(tokenMs).toBeGreaterThanOrEqual(115);
  });

  it("per-match latency only delays matching requests", async () => {
    emu.state.inject({ kind: "sendMail", mailbox: "billing@contoso.com", action: "latency", fixedMs: 200 });
    const [, fast] = await timed(() => send("noreply@contoso.com"));
    const [res, slow] = await timed(() => send("billing@contoso.com"));
    expect(res.status).toBe(202);
    expect(slow).toBeGreaterThanOrEqual(195);
    expect(fast).toBeLessThan(150);
  });
});

describe("answers", () => {
  it("the next N requests to a mailbox answer the injected status, body and Retry-After", async () => {
    const fault = emu.state.inject({
      kind: "sendMail",
      mailbox: "noreply@contoso.com",
      times: 2,
      action: "respond",
      status: 503,
      retryAfter: 7,
      body: { error: { code: "ServiceUnavailable", message: "Service is unavailable." } },
    });
    for (let i = 0; i < 2; i++) {
      const res = await send();
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("7");
      expect(res.headers.get("request-id")).toMatch(/^[0-9a-f-]{36}$/);
      expect(await res.json()).toEqual({ error: { code: "ServiceUnavailable", message: "Service is unavailable." } });
    }
    expect((await send()).status).toBe(202);
    expect(fault.hits).toBe(2);
    expect(emu.state.faults()).toEqual([]);
    expect(emu.state.messages({ subject: "fault test" })).toHaveLength(1);
  });

  it("a fault scoped to one mailbox leaves the others alone", async () => {
    emu.state.inject({ kind: "sendMail", mailbox: "billing@contoso.com", action: "respond", status: 500 });
    expect((await send("noreply@contoso.com")).status).toBe(202);
    expect((await send("billing@contoso.com")).status).toBe(500);
  });

  it("504 after accepting: the answer is a gateway timeout, but the message IS stored", async () => {
    emu.state.inject({ kind: "sendMail", times: 1, action: "acceptThen504" });
    const res = await send("noreply@contoso.com", "ambiguous");
    expect(res.status).toBe(504);
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error).toMatchObject({ code: "UnknownError", message: "" });
    const stored = emu.state.messages({ subject: "ambiguous" });
    expect(stored).toHaveLength(1);
    expect(stored[0]!.requestId).toBe(res.headers.get("request-id"));
  });
});

describe("connections", () => {
  it("resets the connection before reading the body", async () => {
    emu.state.inject({ kind: "sendMail", times: 1, action: "reset", when: "beforeBody" });
    await expect(send()).rejects.toThrow();
    expect(emu.state.messages()).toHaveLength(0);
    expect(emu.state.requests({ kind: "sendMail" }).at(-1)).toMatchObject({ outcome: "reset", status: 0 });
    expect((await send()).status).toBe(202);
  });

  it("resets the connection after reading the body (nothing stored)", async () => {
    emu.state.inject({ kind: "sendMail", times: 1, action: "reset", when: "afterBody" });
    await expect(send()).rejects.toThrow();
    expect(emu.state.messages()).toHaveLength(0);
    expect(emu.state.requests({ outcome: "reset" })).toHaveLength(1);
  });

  it("hangs until the client gives up", async () => {
    emu.state.inject({ kind: "sendMail", action: "hang" });
    const [outcome, ms] = await timed(() =>
      http
        .fetch("/v1.0/users/noreply@contoso.com/sendMail", {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify(mail()),
          signal: AbortSignal.timeout(250),
        })
        .then(
          () => "answered",
          (e: Error) => e.name,
        ),
    );
    expect(outcome).toBe("TimeoutError");
    expect(ms).toBeGreaterThanOrEqual(240);
    await new Promise((r) => setTimeout(r, 50));
    expect(emu.state.requests({ kind: "sendMail" }).at(-1)).toMatchObject({ outcome: "hang", status: 0 });
  });

  it("hangs until the emulator closes", async () => {
    const other = await startEmulator({ scenario: scenario() });
    const c = client(other);
    const t = await c.accessToken(CONTOSO, APP);
    other.state.inject({ kind: "sendMail", action: "hang" });
    let settled = false;
    const pending = c.sendMail("noreply@contoso.com", t, mail()).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false);
    await other.close();
    await expect(pending).rejects.toThrow();
    await c.close();
  });
});

describe("token endpoint down", () => {
  it("503 on every token request until cleared", async () => {
    const down = emu.state.inject({ kind: "token", action: "respond", status: 503 });
    // No pipeline retries: @azure/identity would otherwise back off on 503 for seconds.
    const first = new ClientSecretCredential(CONTOSO, APP, SECRET, { ...credentialOptions(emu), retryOptions: { maxRetries: 0 } });
    await expect(first.getToken(GRAPH_SCOPE)).rejects.toThrow();
    expect((await http.token(CONTOSO, APP, SECRET)).status).toBe(503);
    down.clear();
    const second = new ClientSecretCredential(CONTOSO, APP, SECRET, credentialOptions(emu));
    await expect(second.getToken(GRAPH_SCOPE)).resolves.toHaveProperty("token");
  });

  it("connection resets on token requests of one tenant (matched by domain)", async () => {
    emu.state.inject({ kind: "token", tenant: "contoso.com", action: "reset" });
    await expect(http.token(CONTOSO, APP, SECRET)).rejects.toThrow();
    expect(emu.state.requests({ kind: "token", outcome: "reset" })[0]).toMatchObject({ tenant: CONTOSO });
  });

  it("a failing discovery endpoint makes MSAL fail before any token request", async () => {
    emu.state.inject({ kind: "discovery", action: "respond", status: 500 });
    const credential = new ClientSecretCredential(CONTOSO, APP, SECRET, { ...credentialOptions(emu), retryOptions: { maxRetries: 0 } });
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow();
    expect(emu.state.requests({ kind: "token" })).toHaveLength(0);
  });
});

describe("control API", () => {
  it("injects, lists and clears faults over HTTP", async () => {
    const created = await http.fetch("/_emulator/faults", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "sendMail", clientId: APP, times: 3, action: "respond", status: 429, retryAfter: 2 }),
    });
    expect(created.status).toBe(201);
    const fault = (await created.json()) as { id: string; remaining: number };
    expect(fault.remaining).toBe(3);
    expect((await send()).status).toBe(429);
    const listed = (await (await http.fetch("/_emulator/faults")).json()) as { value: { id: string; remaining: number }[] };
    expect(listed.value).toEqual([expect.objectContaining({ id: fault.id, remaining: 2 })]);
    expect((await http.fetch(`/_emulator/faults/${fault.id}`, { method: "DELETE" })).status).toBe(200);
    expect((await send()).status).toBe(202);
  });

  it("rejects an invalid fault with 400", async () => {
    const res = await http.fetch("/_emulator/faults", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ action: "explode" }) });
    expect(res.status).toBe(400);
  });

  it("sets latency and throttling over HTTP", async () => {
    const put = (path: string, body: unknown) => http.fetch(path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(await (await put("/_emulator/latency", { fixedMs: 5, jitterMs: 0 })).json()).toEqual({ fixedMs: 5, jitterMs: 0 });
    expect(await (await put("/_emulator/throttling", false)).json()).toEqual({ mailboxConcurrency: 0, requestsPerWindow: 0, windowSeconds: 600, recipientsPerDay: 0, uploadBytesPerWindow: 0, uploadWindowSeconds: 300 });
    await put("/_emulator/throttling", null);
  });

  it("POST /_emulator/reset clears messages, requests and faults", async () => {
    await send();
    emu.state.inject({ kind: "token", action: "hang" });
    expect((await http.fetch("/_emulator/reset", { method: "POST" })).status).toBe(200);
    expect(emu.state.messages()).toHaveLength(0);
    expect(emu.state.requests()).toHaveLength(0);
    expect(emu.state.faults()).toHaveLength(0);
  });
});
