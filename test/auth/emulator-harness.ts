import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { parseConfig } from "../../src/config/load-config.js";
import type { Config } from "../../src/config/schema.js";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import type { ScenarioInput } from "../../src/emulator/scenario.js";
import type { SendObserver, TokenTarget } from "../../src/core/ports.js";

/** Shared by the auth and graph component tests: the emulator, temp files, a recording observer and logger. */

export const CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47";
export const FABRIKAM = "0d5c8f2e-3b1a-4c6d-9e7f-1a2b3c4d5e6f";
/** A tenant the emulator does not know. */
export const NOWHERE = "00000000-dead-beef-0000-000000000000";
/** The multi-tenant app, consented with Mail.Send in contoso and fabrikam. */
export const APP = "11111111-2222-3333-4444-555555555555";
export const GOOD_SECRET = "good~secret.value-1";

type ObserverCall =
  | { kind: "tokenRequest"; tenant: string; outcome: string }
  | { kind: "credentialFallback"; tenant: string }
  | { kind: "graphResponse"; tenant: string; status: number | "error"; seconds: number }
  | { kind: "graphThrottled"; tenant: string };

export interface RecordingObserver extends SendObserver {
  readonly calls: ObserverCall[];
  of<K extends ObserverCall["kind"]>(kind: K): Extract<ObserverCall, { kind: K }>[];
}

export function recordingObserver(): RecordingObserver {
  const calls: ObserverCall[] = [];
  return {
    calls,
    of: <K extends ObserverCall["kind"]>(kind: K) => calls.filter((c): c is Extract<ObserverCall, { kind: K }> => c.kind === kind),
    tokenRequest: (tenant, outcome) => calls.push({ kind: "tokenRequest", tenant, outcome }),
    credentialFallback: (tenant) => calls.push({ kind: "credentialFallback", tenant }),
    graphResponse: (tenant, status, seconds) => calls.push({ kind: "graphResponse", tenant, status, seconds }),
    graphThrottled: (tenant) => calls.push({ kind: "graphThrottled", tenant }),
  };
}

/** A pino logger whose lines are kept, so tests can check that no secret or token was logged. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

export interface Harness {
  readonly emulator: Emulator;
  readonly dir: string;
  readonly caFile: string;
  /** Writes a temp file (secret, certificate, token) and returns its path. */
  file(name: string, content: string): string;
  /** A config on the emulator: `cloud` and `tls` filled in, the rest from `yaml` (JSON is YAML). */
  config(rest: Record<string, unknown>): Config;
  /** Token requests the emulator answered (its request log is written when a response closes). */
  tokenRequests(): Promise<number>;
  sendMailRequests(): Promise<number>;
  close(): Promise<void>;
}

export async function startHarness(scenario: ScenarioInput): Promise<Harness> {
  const emulator = await startEmulator({ scenario, throttling: false });
  const dir = mkdtempSync(join(tmpdir(), "relay-adapters-"));
  const file = (name: string, content: string): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };
  const caFile = file("ca.pem", emulator.caPem);
  const settle = () => new Promise((r) => setTimeout(r, 30));
  return {
    emulator,
    dir,
    caFile,
    file,
    config: (rest) =>
      parseConfig(
        JSON.stringify({
          cloud: { authorityHost: emulator.url, graphBaseUrl: emulator.url },
          tls: { caFile },
          callers: {},
          ...rest,
        }),
      ),
    async tokenRequests() {
      await settle();
      return emulator.state.requests({ kind: "token" }).length;
    },
    async sendMailRequests() {
      await settle();
      return emulator.state.requests({ kind: "sendMail" }).length;
    },
    async close() {
      await emulator.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The token target of a tenant key, as the use case builds it from the config. */
export function targetOf(config: Config, tenantKey: string): TokenTarget {
  const tenant = config.tenants[tenantKey];
  if (tenant === undefined) throw new Error(`no tenant ${tenantKey}`);
  const app = tenant.app ?? config.app;
  if (app === undefined) throw new Error(`no app for ${tenantKey}`);
  return { tenantKey, tenantId: tenant.tenantId, app };
}

/** A TCP port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}
