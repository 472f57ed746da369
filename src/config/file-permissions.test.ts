import { chmodSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openSecretFiles, secretFileRefs, warnOpenSecretFiles } from "./file-permissions.js";
import { parseConfig } from "./load-config.js";
import type { ConfigInput } from "./schema.js";

const APP = "11111111-2222-3333-4444-555555555555";
const SECRET = "s3cr3t-value-never-logged";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nrr-perm-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A real file with `mode` (chmod after writing, so the umask does not interfere). */
function file(name: string, mode: number, content = SECRET): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

function config(input: Partial<ConfigInput>): ReturnType<typeof parseConfig> {
  return parseConfig(
    JSON.stringify({
      app: { clientId: APP, credential: { type: "secret", secretEnv: "UNUSED" } },
      tenants: { contoso: { tenantId: "contoso.com", sender: "noreply@contoso.com" } },
      callers: {},
      ...input,
    }),
  );
}

function logged(): { lines: Record<string, unknown>[]; text: () => string; logger: Logger } {
  const lines: Record<string, unknown>[] = [];
  let raw = "";
  const logger = pino({ level: "info" }, {
    write: (s: string) => {
      raw += s;
      lines.push(JSON.parse(s) as Record<string, unknown>);
    },
  });
  return { lines, text: () => raw, logger };
}

/** The groups of a process that is not in the files' group (they were made by this one). */
const notInFileGroup = (): number[] => [statSync(dir).gid + 1];
/** The groups of a process in the files' group: a pod whose fsGroup owns the mounted Secret. */
const inFileGroup = (): number[] => [statSync(dir).gid];

describe.skipIf(process.platform === "win32")("secret file permissions at start-up", () => {
  it("when a client secret file is readable by others (mode 0644), then one warning names its config key, file and mode, and what to set in Kubernetes, never the secret", () => {
    const secretFile = file("client-secret", 0o644);
    const { lines, text, logger } = logged();
    const open = warnOpenSecretFiles(config({ app: { clientId: APP, credential: { type: "secret", secretFile } } }), logger, { groups: inFileGroup() });
    expect(open).toHaveLength(1);
    expect(lines).toEqual([
      expect.objectContaining({ level: 40, event: "secret_file_permissions", key: "app.credential.secretFile", file: secretFile, mode: "0644", openTo: ["others"] }),
    ]);
    expect(String(lines[0]!.msg)).toContain("defaultMode: 0440");
    expect(String(lines[0]!.msg)).toContain("fsGroup");
    expect(text()).not.toContain(SECRET);
  });

  it("when the files are 0600, 0400, or 0440 in a group this process is in (the chart's Secret volumes with fsGroup), then nothing is logged", () => {
    const { lines, logger } = logged();
    const cfg = config({
      app: { clientId: APP, credential: { type: "secret", secretFile: file("a", 0o600), secondarySecretFile: file("b", 0o400) } },
      consent: { stateSecretFile: file("state-key", 0o440) },
      store: { type: "redis", url: "redis://redis:6379/0", passwordFile: file("redis-password", 0o440) },
    });
    expect(warnOpenSecretFiles(cfg, logger, { groups: inFileGroup() })).toEqual([]);
    expect(lines).toEqual([]);
  });

  it("when a file is readable by a group this process is not in, or writable by its group, then it is open to the group", () => {
    const readable = file("readable", 0o640);
    const writable = file("writable", 0o660);
    const cfg = config({
      app: { clientId: APP, credential: { type: "certificate", certificateFile: readable } },
      metrics: { tokenFile: writable },
    });
    expect(openSecretFiles(cfg, { groups: notInFileGroup() })).toEqual([
      { file: readable, keys: ["app.credential.certificateFile"], mode: "0640", openTo: ["group"] },
      { file: writable, keys: ["metrics.tokenFile"], mode: "0660", openTo: ["group"] },
    ]);
    expect(openSecretFiles(cfg, { groups: inFileGroup() })).toEqual([{ file: writable, keys: ["metrics.tokenFile"], mode: "0660", openTo: ["group"] }]);
  });

  it("when every kind of secret file is open, then each config key is checked: app and tenant credentials, certificate, consent key, Redis URL and password, metrics token", () => {
    const open = (name: string): string => file(name, 0o604);
    const cfg = config({
      app: { clientId: APP, credential: { type: "secret", secretFile: open("app"), secondarySecretFile: open("app-next") } },
      tenants: {
        contoso: { tenantId: "contoso.com", sender: "noreply@contoso.com", app: { clientId: APP, credential: { type: "certificate", certificateFile: open("contoso.pem") } } },
        fabrikam: { tenantId: "fabrikam.com", sender: "noreply@fabrikam.com", app: { clientId: APP, credential: { type: "secret", secretFile: open("fabrikam") } } },
      },
      consent: { stateSecretFile: open("state") },
      store: { type: "redis", urlFile: open("redis-url"), passwordFile: open("redis-password") },
      metrics: { tokenFile: open("metrics-token") },
    });
    expect(openSecretFiles(cfg, { groups: inFileGroup() }).map((f) => f.keys[0])).toEqual([
      "app.credential.secretFile",
      "app.credential.secondarySecretFile",
      "tenants.contoso.app.credential.certificateFile",
      "tenants.fabrikam.app.credential.secretFile",
      "consent.stateSecretFile",
      "store.urlFile",
      "store.passwordFile",
      "metrics.tokenFile",
    ]);
  });

  it("when CA files or a workload identity token are world-readable, then they are not secrets here and nothing is logged", () => {
    const cfg = config({
      tls: { caFile: file("ca.pem", 0o644) },
      app: { clientId: APP, credential: { type: "workloadIdentity", tokenFile: file("token", 0o644) } },
      store: { type: "redis", url: "redis://redis:6379/0", tls: { caFile: file("redis-ca.pem", 0o644) } },
    });
    expect(secretFileRefs(cfg)).toEqual([]);
    expect(openSecretFiles(cfg, { groups: notInFileGroup() })).toEqual([]);
  });

  it("when one file is named by several keys, then it gets one line listing them all", () => {
    const shared = file("shared", 0o644);
    const { lines, logger } = logged();
    warnOpenSecretFiles(
      config({
        app: { clientId: APP, credential: { type: "secret", secretFile: shared } },
        tenants: { contoso: { tenantId: "contoso.com", sender: "noreply@contoso.com", app: { clientId: APP, credential: { type: "secret", secretFile: shared } } } },
      }),
      logger,
      { groups: inFileGroup() },
    );
    expect(lines).toEqual([expect.objectContaining({ key: "app.credential.secretFile", keys: ["app.credential.secretFile", "tenants.contoso.app.credential.secretFile"] })]);
  });

  it("when the file is a symlink (as in a Kubernetes Secret volume), then the mode of the file it points to counts", () => {
    const target = file("..data-client-secret", 0o644);
    const link = join(dir, "client-secret");
    symlinkSync(target, link);
    const open = openSecretFiles(config({ app: { clientId: APP, credential: { type: "secret", secretFile: link } } }), { groups: inFileGroup() });
    expect(open).toEqual([{ file: link, keys: ["app.credential.secretFile"], mode: "0644", openTo: ["others"] }]);
  });

  it("when many files are open, then 20 get a line each and one more line counts the rest", () => {
    const tenants: Record<string, unknown> = {};
    for (let i = 0; i < 25; i++) {
      tenants[`t${i}`] = { tenantId: `t${i}.example.com`, sender: `noreply@t${i}.example.com`, app: { clientId: APP, credential: { type: "secret", secretFile: file(`s${i}`, 0o644) } } };
    }
    const { lines, logger } = logged();
    expect(warnOpenSecretFiles(config({ tenants } as Partial<ConfigInput>), logger, { groups: inFileGroup() })).toHaveLength(25);
    expect(lines).toHaveLength(21);
    expect(lines[20]).toMatchObject({ event: "secret_file_permissions", more: 5 });
  });

  it("when a file is missing, then it is left to the config check (no warning, no throw)", () => {
    const cfg = config({ consent: { stateSecretFile: join(dir, "missing") } });
    expect(openSecretFiles(cfg, { groups: inFileGroup() })).toEqual([]);
  });

  it("when running on Windows, then nothing is checked (mode bits mean nothing there)", () => {
    const cfg = config({ consent: { stateSecretFile: file("state", 0o666) } });
    expect(openSecretFiles(cfg, { platform: "win32" })).toEqual([]);
  });
});
