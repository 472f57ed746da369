import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadScenarioFile, parseScenario, ScenarioError } from "../../src/emulator/scenario.js";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { APP, client, CONTOSO, mail, scenario, SECRET } from "./fixtures.js";

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

describe("/_emulator/messages", () => {
  it("lists accepted messages with their details, filtered by query", async () => {
    emu.state.reset();
    await http.sendMail("noreply@contoso.com", token, mail({ subject: "Invoice 1", bccRecipients: [{ emailAddress: { address: "audit@contoso.com" } }] }, "alice@example.org"));
    await http.sendMail("billing@contoso.com", token, mail({ subject: "Invoice 2", importance: "high" }, "bob@example.org"));
    const get = async (q: string) => ((await (await http.fetch(`/_emulator/messages${q}`)).json()) as { value: Record<string, unknown>[] }).value;
    expect(await get("")).toHaveLength(2);
    expect((await get("?sender=BILLING@contoso.com")).map((m) => m.subject)).toEqual(["Invoice 2"]);
    expect((await get("?recipient=audit@contoso.com")).map((m) => m.subject)).toEqual(["Invoice 1"]);
    expect((await get("?subject=invoice")).length).toBe(2);
    expect((await get("?tenant=contoso.com")).length).toBe(2);
    expect(await get("?tenant=fabrikam.com")).toEqual([]);
    const [m] = await get("?subject=Invoice%202");
    expect(m).toMatchObject({ importance: "high", appId: APP, tenantId: CONTOSO, saveToSentItems: true, format: "json" });
    expect(m!.id).toMatch(/^AAMk/);
    expect(typeof m!.receivedAt).toBe("string");
    expect(JSON.parse(String(m!.raw))).toMatchObject({ message: { subject: "Invoice 2" } });
    const page = (await (await http.fetch("/_emulator/messages?limit=1&raw=false")).json()) as { count: number; value: Record<string, unknown>[] };
    expect(page.count).toBe(2);
    expect(page.value.map((v) => [v.subject, "raw" in v])).toEqual([["Invoice 2", false]]);
  });

  it("when the message sets a well-formed internetMessageId, then the stored message keeps it, as Exchange does", async () => {
    emu.state.reset();
    await http.sendMail("noreply@contoso.com", token, mail({ subject: "kept", internetMessageId: "<abc-123@contoso.com>" }));
    await http.sendMail("noreply@contoso.com", token, mail({ subject: "generated", internetMessageId: "not an id" }));
    const [kept] = emu.state.messages({ subject: "kept" });
    const [generated] = emu.state.messages({ subject: "generated" });
    expect(kept!.internetMessageId).toBe("<abc-123@contoso.com>");
    expect(generated!.internetMessageId).toMatch(/^<[0-9a-f-]+@emulator\.local>$/);
  });

  it("renders an HTML page per mailbox with everything escaped", async () => {
    await http.sendMail("noreply@contoso.com", token, mail({ subject: `<script>alert("x")</script>` }));
    const res = await http.fetch("/_emulator/");
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toContain("noreply@contoso.com");
    expect(html).not.toContain("<script>");
    expect(html).toContain("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;");
  });
});

describe("/_emulator/requests", () => {
  it("records every request, token calls included, and never the secret or the token", async () => {
    emu.state.reset();
    await http.token(CONTOSO, APP, SECRET);
    await http.token(CONTOSO, APP, "wrong-secret-value");
    await http.sendMail("ghost@contoso.com", token, mail());
    const res = await http.fetch("/_emulator/requests");
    const text = await res.text();
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain("wrong-secret-value");
    expect(text).not.toContain(token);
    const { value } = JSON.parse(text) as { value: Record<string, unknown>[] };
    expect(value.map((r) => [r.method, r.kind, r.status, r.errorCode ?? null])).toEqual([
      ["POST", "token", 200, null],
      ["POST", "token", 401, "AADSTS7000215"],
      ["POST", "sendMail", 404, "ErrorInvalidUser"],
    ]);
    expect(value[0]).toMatchObject({ path: `/${CONTOSO}/oauth2/v2.0/token`, tenant: CONTOSO, clientId: APP, outcome: "answered" });
    expect(value[2]).toMatchObject({ mailbox: "ghost@contoso.com", clientId: APP });
    expect(typeof value[0]!.durationMs).toBe("number");
    const filtered = (await (await http.fetch("/_emulator/requests?kind=sendMail")).json()) as { value: unknown[] };
    expect(filtered.value).toHaveLength(1);
  });
});

describe("scenario through the API", () => {
  it("PATCH adds a tenant, PUT replaces everything, invalid input is a 400 with issues", async () => {
    const other = await startEmulator({ scenario: scenario() });
    const c = client(other);
    try {
      const patch = await c.fetch("/_emulator/scenario", {
        method: "PATCH",
        headers: { "content-type": "application/yaml" },
        body: stringify({ tenants: [{ id: "12121212-3434-4565-8787-909090909090", domains: ["tailspin.com"], mailboxes: [{ address: "hello@tailspin.com" }] }] }),
      });
      expect(patch.status).toBe(200);
      expect(other.state.scenario.tenants.map((t) => t.domains[0])).toEqual(["contoso.com", "fabrikam.com", "tailspin.com"]);

      const bad = await c.fetch("/_emulator/scenario", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ tenants: [{ id: "x", color: "red" }] }) });
      expect(bad.status).toBe(400);
      const body = (await bad.json()) as { issues: { path: string; message: string }[] };
      expect(body.issues.map((i) => i.path)).toEqual(expect.arrayContaining(["tenants.0.id", "tenants.0"]));

      const put = await c.fetch("/_emulator/scenario", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ tenants: [] }) });
      expect(put.status).toBe(200);
      expect((await c.token(CONTOSO, APP, SECRET)).status).toBe(400);
    } finally {
      await c.close();
      await other.close();
    }
  });

  it("loads a YAML file, and reset({ reloadScenario }) goes back to it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "emulator-scenario-"));
    const file = join(dir, "scenario.yaml");
    writeFileSync(file, stringify(scenario()));
    const other = await startEmulator({ scenario: file });
    try {
      other.state.loadScenario({ tenants: [] });
      expect(other.state.scenario.apps).toHaveLength(0);
      other.state.reset({ reloadScenario: true });
      expect(other.state.scenario.apps).toHaveLength(6);
    } finally {
      await other.close();
    }
  });

  it("the example scenario shipped with the emulator is valid", async () => {
    const s = await loadScenarioFile("src/emulator/example-scenario.yaml");
    expect(s.tenants.map((t) => t.displayName)).toEqual(["Contoso", "Fabrikam", "Tailspin (consent pending)"]);
  });

  it("rejects unknown keys and bad values in scenarios", () => {
    expect(() => parseScenario({ tenants: [], tenant: [] })).toThrow(ScenarioError);
    expect(() => parseScenario({ apps: [{ clientId: APP, secrets: [{ value: "x", expires: "2030-01-01" }] }] })).toThrow(/Unrecognized key/);
    expect(() => parseScenario({ tenants: [{ id: CONTOSO, accessPolicies: [{ appId: APP }] }] })).toThrow(/exactly one of `allow` or `deny`/);
    expect(() => parseScenario({ tenants: [{ id: CONTOSO, domains: ["a.com"] }, { id: "0f0e0d0c-0b0a-4909-8807-060504030201", domains: ["A.com"] }] })).toThrow(/duplicate tenant domain/);
    const s = parseScenario({ throttling: false, tenants: [{ id: CONTOSO, mailboxes: [{ address: "x@contoso.com" }] }] });
    expect(s.throttling).toEqual({ mailboxConcurrency: 0, requestsPerWindow: 0, windowSeconds: 600, recipientsPerDay: 0, uploadBytesPerWindow: 0, uploadWindowSeconds: 300 });
    expect(s.tenants[0]!.mailboxes[0]!.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseScenario({ tenants: [{ id: CONTOSO, mailboxes: [{ address: "x@contoso.com" }] }] }).tenants[0]!.mailboxes[0]!.id).toBe(s.tenants[0]!.mailboxes[0]!.id);
  });
});

describe("bounded storage", () => {
  it("keeps at most maxMessages, and no raw content when keepRaw is false", async () => {
    const small = await startEmulator({ scenario: scenario(), maxMessages: 3, keepRaw: false });
    const c = client(small);
    try {
      const t = await c.accessToken(CONTOSO, APP);
      for (let i = 0; i < 5; i++) {
        const attachments = [{ "@odata.type": "#microsoft.graph.fileAttachment", name: "a.bin", contentBytes: Buffer.alloc(10).toString("base64") }];
        expect((await c.sendMail("noreply@contoso.com", t, mail({ subject: `n${i}`, attachments }))).status).toBe(202);
      }
      const kept = small.state.messages();
      expect(kept.map((m) => m.subject)).toEqual(["n2", "n3", "n4"]);
      expect(kept.every((m) => m.raw === undefined && m.attachments[0]!.contentBytes === undefined && m.attachments[0]!.size === 10)).toBe(true);
    } finally {
      await c.close();
      await small.close();
    }
  });

  it("drops raw content of the oldest messages past maxRetainedBytes, keeping their metadata", async () => {
    const small = await startEmulator({ scenario: scenario(), maxRetainedBytes: 5_000 });
    const c = client(small);
    try {
      const t = await c.accessToken(CONTOSO, APP);
      for (let i = 0; i < 4; i++) {
        await c.sendMail("noreply@contoso.com", t, mail({ subject: `r${i}`, body: { contentType: "Text", content: "x".repeat(2_000) } }));
      }
      const kept = small.state.messages();
      expect(kept).toHaveLength(4);
      expect(kept.map((m) => m.raw !== undefined)).toEqual([false, false, true, true]);
    } finally {
      await c.close();
      await small.close();
    }
  });
});
