import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ScenarioInput } from "../../src/emulator/scenario.js";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { runCli } from "../../src/onboarding/cli.js";
import type { VerifyReport } from "../../src/onboarding/verify.js";
import { capture, tempConfig, type TempConfig } from "./fixtures.js";

/*
 * `verify` end to end: the CLI in-process with the real token provider (src/auth) and Graph
 * sender (src/graph), against the emulator over HTTPS. Nothing is mocked.
 */

const CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP = "11111111-2222-4333-8444-555555555555";
const APP_NO_ROLES = "22222222-3333-4444-8555-666666666666";
const APP_GREEDY = "33333333-4444-4555-8666-777777777777";
const APP_ELSEWHERE = "44444444-5555-4666-8777-888888888888";
const APP_POLICY = "55555555-6666-4777-8888-999999999999";
const SECRET = "right-secret-value";
const OLD_SECRET = "expired-secret-value";
const DAY = 86_400_000;

const scenario: ScenarioInput = {
  tenants: [
    {
      id: CONTOSO,
      domains: ["contoso.com"],
      mailboxes: [{ address: "noreply@contoso.com" }, { address: "someone@contoso.com" }],
      consents: [
        { appId: APP, roles: ["Mail.Send"] },
        { appId: APP_NO_ROLES, roles: [] },
        { appId: APP_GREEDY, roles: ["Mail.Send", "Mail.ReadWrite", "User.Read.All"] },
        { appId: APP_POLICY, roles: ["Mail.Send"] },
      ],
      accessPolicies: [{ appId: APP_POLICY, allow: ["someone@contoso.com"] }],
    },
    { id: "0b3c5a7e-3d1f-4c8e-9a2b-6f1e2d3c4b5a", domains: ["fabrikam.com"], consents: [{ appId: APP_ELSEWHERE, roles: ["Mail.Send"] }] },
  ],
  apps: [
    { clientId: APP, secrets: [{ value: SECRET }, { value: OLD_SECRET, expiresAt: "2020-01-01T00:00:00Z" }] },
    { clientId: APP_NO_ROLES, secrets: [{ value: SECRET }] },
    { clientId: APP_GREEDY, secrets: [{ value: SECRET }] },
    { clientId: APP_POLICY, secrets: [{ value: SECRET }] },
    { clientId: APP_ELSEWHERE, homeTenant: "0b3c5a7e-3d1f-4c8e-9a2b-6f1e2d3c4b5a", secrets: [{ value: SECRET }] },
  ],
  throttling: false,
};

let emu: Emulator;
let tmp: TempConfig;

beforeAll(async () => {
  emu = await startEmulator({ port: 0, scenario });
  tmp = tempConfig();
  const ca = tmp.file("ca.pem", emu.caPem);
  const good = tmp.file("good-secret", `${SECRET}\n`);
  const wrong = tmp.file("wrong-secret", "not-the-secret");
  const old = tmp.file("old-secret", OLD_SECRET);
  const now = Date.now();
  const app = (clientId: string, secretFile: string, expiresInDays = 400) => ({
    clientId,
    credential: { type: "secret", secretFile, expiresAt: new Date(now + expiresInDays * DAY).toISOString() },
  });
  const tenant = (app: unknown, tenantId = CONTOSO) => ({ tenantId, sender: "noreply@contoso.com", app });
  tmp.writeConfig({
    cloud: { authorityHost: emu.url, graphBaseUrl: emu.url },
    tls: { caFile: ca },
    tenants: {
      good: tenant(app(APP, good)),
      bydomain: tenant(app(APP, good), "contoso.com"),
      wrongsecret: tenant(app(APP, wrong)),
      expiredsecret: tenant(app(APP, old, -3)),
      noconsent: tenant(app(APP_ELSEWHERE, good)),
      noroles: tenant(app(APP_NO_ROLES, good)),
      greedy: tenant(app(APP_GREEDY, good)),
      nearexpiry: tenant(app(APP, good, 12)),
      badmailbox: { tenantId: CONTOSO, sender: "nobody@contoso.com", app: app(APP, good) },
      policyblocked: tenant(app(APP_POLICY, good)),
    },
    callers: {},
  });
});

afterAll(async () => {
  await emu?.close();
  tmp?.cleanup();
});

async function verify(...args: string[]): Promise<{ code: number; report: VerifyReport; stderr: string }> {
  const stdout = capture();
  const stderr = capture();
  const code = await runCli(["verify", ...args, "--json", "--config", tmp.configPath], { stdout, stderr, env: {} });
  return { code, report: JSON.parse(stdout.text()) as VerifyReport, stderr: stderr.text() };
}

function statusOf(report: VerifyReport, id: string) {
  return report.checks.find((c) => c.id === id);
}

describe("noreply-relay verify (against the emulator)", () => {
  it("when the tenant is set up well, then every check passes and the exit code is 0", async () => {
    const { code, report } = await verify("good");
    expect(report.checks.map((c) => `${c.status} ${c.id}`)).toEqual([
      "PASS credential-expiry",
      "PASS token",
      "PASS tenant-id",
      "PASS app-id",
      "PASS mail-send",
    ]);
    expect(report.ok).toBe(true);
    expect(code).toBe(0);
    expect(report.claims).toMatchObject({ tid: CONTOSO, appId: APP, roles: ["Mail.Send"] });
  });

  it("when --send-test is given, then one real message goes from the sender to that address through Graph", async () => {
    const before = emu.state.messages().length;
    const { code, report } = await verify("good", "--send-test", "ops@example.org");
    expect(statusOf(report, "send-test")).toMatchObject({ status: "PASS", message: expect.stringContaining("Graph accepted a test message from noreply@contoso.com to ops@example.org") });
    expect(code).toBe(0);
    const sent = emu.state.messages().slice(before);
    expect(sent).toHaveLength(1);
    expect(JSON.stringify(sent[0])).toContain("noreply@contoso.com");
    expect(JSON.stringify(sent[0])).toContain("ops@example.org");
  });

  it("when the access policy does not cover the sender, then the test send FAILs as policy_denied with what to do", async () => {
    const { code, report } = await verify("policyblocked", "--send-test", "ops@example.org");
    expect(statusOf(report, "mail-send")?.status).toBe("PASS");
    expect(statusOf(report, "send-test")).toMatchObject({ status: "FAIL", code: "policy_denied", advice: expect.stringContaining("policy-script") });
    expect(code).toBe(1);
  });

  it("when the sender mailbox does not exist, then the test send FAILs as mailbox_unavailable", async () => {
    const { code, report } = await verify("badmailbox", "--send-test", "ops@example.org");
    expect(statusOf(report, "send-test")).toMatchObject({ status: "FAIL", code: "mailbox_unavailable" });
    expect(code).toBe(1);
  });

  it("when the tenantId is a domain, then it is resolved through the authority's openid-configuration and compared", async () => {
    const { code, report } = await verify("bydomain");
    expect(statusOf(report, "tenant-id")).toMatchObject({ status: "PASS", message: expect.stringContaining("resolved through the authority") });
    expect(code).toBe(0);
  });

  it("when the secret is wrong, then the token check FAILs with AADSTS7000215 and what to do, exit 1", async () => {
    const { code, report } = await verify("wrongsecret");
    expect(statusOf(report, "token")).toMatchObject({ status: "FAIL", aadsts: "7000215", code: "credential_rejected", advice: expect.stringMatching(/Value \(not its Secret ID\)/) });
    expect(code).toBe(1);
  });

  it("when the secret has expired, then both the recorded expiry and Entra's AADSTS7000222 FAIL", async () => {
    const { code, report } = await verify("expiredsecret");
    expect(statusOf(report, "credential-expiry")).toMatchObject({ status: "FAIL", message: expect.stringMatching(/expired on .* \(3 day\(s\) ago\)/) });
    expect(statusOf(report, "token")).toMatchObject({ status: "FAIL", aadsts: "7000222" });
    expect(code).toBe(1);
  });

  it("when the app was never consented in the tenant, then the token check FAILs with the AADSTS code and points to admin consent", async () => {
    const { code, report } = await verify("noconsent");
    const token = statusOf(report, "token")!;
    expect(token.status).toBe("FAIL");
    expect(["700016", "7000229"]).toContain(token.aadsts);
    expect(token.advice).toMatch(/admin consent/);
    expect(code).toBe(1);
  });

  it("when the token has no Mail.Send role, then mail-send FAILs and says how to fix it", async () => {
    const { code, report } = await verify("noroles");
    expect(statusOf(report, "token")?.status).toBe("PASS");
    expect(statusOf(report, "mail-send")).toMatchObject({ status: "FAIL", message: expect.stringContaining("no Mail.Send role (roles: none)"), advice: expect.stringContaining("consent-url") });
    expect(code).toBe(1);
  });

  it("when the tenant uses RBAC for Applications (--rbac), then no Mail.Send in the token is right and a tenant-wide one FAILs", async () => {
    const rbacOk = await verify("noroles", "--rbac");
    expect(statusOf(rbacOk.report, "mail-send")?.status).toBe("PASS");
    expect(statusOf(rbacOk.report, "send-test")).toMatchObject({ status: "WARN", advice: expect.stringContaining("--send-test") });
    expect(rbacOk.code).toBe(0);
    const rbacWide = await verify("good", "--rbac");
    expect(statusOf(rbacWide.report, "mail-send")).toMatchObject({ status: "FAIL", message: expect.stringContaining("ANY mailbox") });
    expect(rbacWide.code).toBe(1);
  });

  it("when the app has more than Mail.Send, then excess permissions are a WARN naming them, and the exit code stays 0", async () => {
    const { code, report } = await verify("greedy");
    expect(statusOf(report, "excess-permissions")).toMatchObject({
      status: "WARN",
      message: expect.stringMatching(/Mail\.ReadWrite, User\.Read\.All \(Mail\.ReadWrite can reach the content of every mailbox\)/),
    });
    expect(code).toBe(0);
  });

  it("when the credential expires within 30 days, then credential-expiry WARNs", async () => {
    const { code, report } = await verify("nearexpiry");
    expect(statusOf(report, "credential-expiry")).toMatchObject({ status: "WARN", message: expect.stringMatching(/in 1[12] day\(s\)/) });
    expect(code).toBe(0);
  });

  it("when run for humans, then it prints PASS/WARN/FAIL lines and a verdict, and never the token", async () => {
    const stdout = capture();
    const stderr = capture();
    const code = await runCli(["verify", "greedy", "--config", tmp.configPath], { stdout, stderr, env: {} });
    const text = stdout.text();
    expect(code).toBe(0);
    expect(text).toMatch(/^PASS {2}token +token obtained/m);
    expect(text).toMatch(/^WARN {2}excess-permissions/m);
    expect(text).toMatch(/^result: PASS with warnings \(0 FAIL, 1 WARN\)$/m);
    expect(text + stderr.text()).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./);
    expect(text + stderr.text()).not.toContain(SECRET);
  });

  it("when the tenant key is unknown, then it says which exist and exits 1", async () => {
    const stdout = capture();
    const stderr = capture();
    const code = await runCli(["verify", "nope", "--config", tmp.configPath], { stdout, stderr, env: {} });
    expect(code).toBe(1);
    expect(stderr.text()).toMatch(/no tenant "nope" in the config \(configured: good, bydomain/);
  });
});
