import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";

/** A throw-away directory with a config file and the files it points to. */
export interface TempConfig {
  readonly dir: string;
  readonly configPath: string;
  file(name: string, content: string): string;
  writeConfig(config: unknown): string;
  cleanup(): void;
}

export function tempConfig(): TempConfig {
  const dir = mkdtempSync(join(tmpdir(), "nrr-onboarding-"));
  const configPath = join(dir, "config.yaml");
  return {
    dir,
    configPath,
    file(name, content) {
      const p = join(dir, name);
      writeFileSync(p, content, { mode: 0o600 });
      return p;
    },
    writeConfig(config) {
      writeFileSync(configPath, stringify(config));
      return configPath;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const APP_ID = "11111111-2222-3333-4444-555555555555";
export const OWN_APP_ID = "99999999-8888-7777-6666-555555555555";
export const CONTOSO_TID = "72f988bf-86f1-41af-91ab-2d7cd011db47";
export const FABRIKAM_TID = "0b3c5a7e-3d1f-4c8e-9a2b-6f1e2d3c4b5a";
export const STATE_KEY = "consent-state-key-for-tests-0123456789abcdef";

/** Collects what a CLI command writes. */
export function capture(): { write(s: string): boolean; text(): string } {
  let buf = "";
  return {
    write(s: string) {
      buf += s;
      return true;
    },
    text: () => buf,
  };
}

/** A config object (input shape) for offline CLI tests; secrets are file paths that need not exist. */
export function baseConfig(dir: string, now: Date): Record<string, unknown> {
  const days = (n: number) => new Date(now.getTime() + n * 86_400_000).toISOString();
  return {
    cloud: { authorityHost: "https://login.microsoftonline.com" },
    server: { publicUrl: "https://relay.example.net" },
    consent: { stateSecretFile: join(dir, "state-key"), stateTtlSeconds: 3600 },
    app: { clientId: APP_ID, credential: { type: "secret", secretFile: join(dir, "app-secret"), expiresAt: days(400) } },
    tenants: {
      contoso: { tenantId: CONTOSO_TID, sender: "noreply@contoso.com", displayName: "Contoso Ltd" },
      fabrikam: {
        tenantId: "fabrikam.com",
        sender: "no-reply@fabrikam.com",
        app: { clientId: OWN_APP_ID, credential: { type: "secret", secretEnv: "FABRIKAM_SECRET", expiresAt: days(10) } },
      },
    },
    callers: { billing: { keySha256: "a".repeat(64), tenants: ["*"] } },
  };
}
