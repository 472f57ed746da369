import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, USAGE, type CliIo } from "../../src/onboarding/cli.js";
import { verifyConsentState } from "../../src/onboarding/consent.js";
import { APP_ID, baseConfig, capture, CONTOSO_TID, OWN_APP_ID, STATE_KEY, tempConfig, type TempConfig } from "./fixtures.js";
import { assignedLiteral, tokenize } from "./ps-tokens.js";

const now = Date.parse("2026-03-01T12:00:00Z");
let tmp: TempConfig;

beforeAll(() => {
  tmp = tempConfig();
  tmp.file("state-key", `${STATE_KEY}\n`);
  tmp.writeConfig(baseConfig(tmp.dir, new Date(now)));
});
afterAll(() => tmp.cleanup());

async function cli(argv: string[], extra: Partial<CliIo> = {}) {
  const stdout = capture();
  const stderr = capture();
  const code = await runCli(argv, { stdout, stderr, env: { NOREPLY_RELAY_CONFIG: tmp.configPath }, clock: { now: () => now }, ...extra });
  return { code, out: stdout.text(), err: stderr.text() };
}

describe("noreply-relay CLI", () => {
  it("when asked for help, then it prints the usage with every command and exits 0", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe(USAGE);
    for (const cmd of ["tenants", "consent-url", "policy-script", "verify", "hash-key", "--send-test", "--legacy", "--json"]) expect(r.out).toContain(cmd);
  });

  it("when the command is unknown or missing, or an option is unknown, then it prints usage and exits 2", async () => {
    for (const argv of [["frobnicate"], [], ["tenants", "--frob"], ["consent-url"], ["policy-script", "a", "b"], ["verify", "x", "--send-test", "not-an-address"]]) {
      const r = await cli(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.err).toContain("Usage: noreply-relay <command>");
      expect(r.out).toBe("");
    }
    expect((await cli(["frobnicate"])).err).toMatch(/^noreply-relay: unknown command "frobnicate"/);
  });

  it("when no config is given, then it says how to give one and exits 2", async () => {
    const r = await cli(["tenants"], { env: {} });
    expect(r.code).toBe(2);
    expect(r.err).toContain("pass --config <file> or set NOREPLY_RELAY_CONFIG");
  });

  it("when the config is invalid, then the messages name each bad key by path and it exits 1", async () => {
    const bad = tempConfig();
    try {
      const raw = baseConfig(bad.dir, new Date(now)) as { tenants: Record<string, Record<string, unknown>> };
      raw.tenants.contoso!.sender = "not-an-address";
      raw.tenants.contoso!.colour = "blue";
      bad.writeConfig(raw);
      const r = await cli(["tenants", "--config", bad.configPath]);
      expect(r.code).toBe(1);
      expect(r.err).toContain("tenants.contoso.sender: invalid email");
      expect(r.err).toContain("tenants.contoso.colour: unknown key");
      expect((await cli(["tenants", "--config", `${bad.dir}/missing.yaml`])).err).toContain("(file): cannot read: ENOENT");
    } finally {
      bad.cleanup();
    }
  });

  it("when verify's secret files are missing, then the config check names them and exits 1 before any request", async () => {
    const r = await cli(["verify", "contoso"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("app.credential.secretFile: cannot read file (ENOENT)");
    expect(r.err).toContain("tenants.fabrikam.app.credential.secretEnv: environment variable FABRIKAM_SECRET is not set");
  });

  it("when listing tenants, then each row has sender, credential type, client id, expiry and days left", async () => {
    const r = await cli(["tenants"]);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^TENANT +TENANT ID +SENDER +CREDENTIAL +CLIENT ID +EXPIRES +DAYS LEFT$/);
    expect(lines[1]).toMatch(new RegExp(`^contoso +${CONTOSO_TID} +noreply@contoso.com +secret \\(shared\\) +${APP_ID} +2027-04-05 +400$`));
    expect(lines[2]).toMatch(new RegExp(`^fabrikam +fabrikam.com +no-reply@fabrikam.com +secret +${OWN_APP_ID} +2026-03-11 +10 \\(renew!\\)$`));
    const json = JSON.parse((await cli(["tenants", "--json"])).out);
    expect(json).toContainEqual(expect.objectContaining({ tenantKey: "fabrikam", daysLeft: 10, status: "expiring", clientId: OWN_APP_ID, sender: "no-reply@fabrikam.com" }));
  });

  it("when making a consent URL, then stdout is the link alone, with a state the callback accepts", async () => {
    const r = await cli(["consent-url", "contoso"]);
    expect(r.code).toBe(0);
    const url = new URL(r.out.trim());
    expect(url.origin + url.pathname).toBe(`https://login.microsoftonline.com/${CONTOSO_TID}/adminconsent`);
    expect(url.searchParams.get("client_id")).toBe(APP_ID);
    expect(url.searchParams.get("redirect_uri")).toBe("https://relay.example.net/consent/callback");
    expect(verifyConsentState(url.searchParams.get("state")!, Buffer.from(STATE_KEY), now)).toMatchObject({ ok: true, payload: { key: "contoso" } });
    expect(r.err).toContain("valid until 2026-03-01T13:00:00.000Z");
    const json = JSON.parse((await cli(["consent-url", "newco.onmicrosoft.com", "--json"])).out);
    expect(json).toMatchObject({ tenant: "newco.onmicrosoft.com", clientId: APP_ID, expiresAt: "2026-03-01T13:00:00.000Z" });
  });

  it("when the consent state key is missing, then the error names consent.stateSecretFile and exits 1", async () => {
    const other = tempConfig();
    try {
      other.writeConfig(baseConfig(other.dir, new Date(now)));
      const r = await cli(["consent-url", "contoso", "--config", other.configPath]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/^noreply-relay: consent\.stateSecretFile: cannot read file \(ENOENT\)/);
    } finally {
      other.cleanup();
    }
  });

  it("when printing a policy script, then it is the RBAC script for the tenant, or the ApplicationAccessPolicy one with --legacy", async () => {
    const rbac = await cli(["policy-script", "contoso"]);
    expect(rbac.code).toBe(0);
    expect(rbac.out).toContain("New-ManagementRoleAssignment");
    expect(assignedLiteral(tokenize(rbac.out), "Sender")).toBe("noreply@contoso.com");
    const legacy = await cli(["policy-script", "fabrikam", "--legacy"]);
    expect(legacy.out).toContain("New-ApplicationAccessPolicy");
    expect(assignedLiteral(tokenize(legacy.out), "AppId")).toBe(OWN_APP_ID);
    const missing = await cli(["policy-script", "nope"]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('no tenant "nope"');
  });

  it("when hashing a key from stdin, then only its SHA-256 is printed", async () => {
    const key = "an-api-key-that-is-long-enough-to-use-0123456789";
    const r = await cli(["hash-key"], { stdin: Readable.from([`${key}\n`]) });
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${createHash("sha256").update(key).digest("hex")}\n`);
    expect(r.out).not.toContain(key);
    const short = await cli(["hash-key"], { stdin: Readable.from(["short"]) });
    expect(short.err).toContain("shorter than 32 characters");
    expect((await cli(["hash-key"], { stdin: Readable.from([""]) })).code).toBe(2);
  });

  it("when generating a key, then a strong random key and its keySha256 are printed once", async () => {
    const a = JSON.parse((await cli(["hash-key", "--generate", "--json"])).out) as { key: string; keySha256: string };
    const b = JSON.parse((await cli(["hash-key", "--generate", "--json"])).out) as { key: string; keySha256: string };
    expect(a.key).toMatch(/^nrr_[A-Za-z0-9_-]{43}$/);
    expect(a.key).not.toBe(b.key);
    expect(a.keySha256).toBe(createHash("sha256").update(a.key).digest("hex"));
    const text = (await cli(["hash-key", "--generate"])).out;
    expect(text).toMatch(/shown only now/);
    expect(text).toMatch(/keySha256 for callers\.<name>\.keySha256/);
  });

  it("when run as a program (npx tsx src/onboarding/cli.ts), then it works and its exit code is the command's", () => {
    const ok = spawnSync("npx", ["tsx", "src/onboarding/cli.ts", "consent-url", "contoso", "--config", tmp.configPath], { encoding: "utf8", env: { ...process.env } });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^https://login\\.microsoftonline\\.com/${CONTOSO_TID}/adminconsent\\?client_id=${APP_ID}&`));
    const bad = spawnSync("npx", ["tsx", "src/onboarding/cli.ts", "nonsense"], { encoding: "utf8", env: { ...process.env } });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('unknown command "nonsense"');
  }, 60_000);
});
