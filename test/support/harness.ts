import { randomBytes } from "node:crypto";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { RelayApp } from "../../src/app.js";
import type { ConfigReloadOutcome } from "../../src/config/config-watcher.js";
import { loadConfigFile } from "../../src/config/load-config.js";
import type { Config, ConfigInput } from "../../src/config/schema.js";
import { startEmulator, type Emulator, type EmulatorOptions } from "../../src/emulator/start-emulator.js";
import type { ScenarioInput } from "../../src/emulator/scenario.js";
import type { RouteRegistrar } from "../../src/http/route-table.js";
import { tenantsRoute } from "../../src/http/tenants-route.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { apiKeyDigest } from "../../src/tenants/caller-directory.js";
import { checkedFetch, type CheckedRequestInit } from "./checked-fetch.js";
import { checkedRequest } from "./checked-request.js";
import {
  ADATUM,
  APP_ID,
  APP_SECRET,
  CONTOSO,
  FABRIKAM,
  LITWARE,
  LITWARE_APP_ID,
  NORTHWIND,
  TAILSPIN,
  WOODGROVE,
  WOODGROVE_APP_ID,
  WOODGROVE_NEW_SECRET,
  WOODGROVE_OLD_SECRET,
  standardScenario,
} from "./fixtures.js";

/** Captured pino output: one JSON object per line. */
export class LogCapture {
  readonly lines: string[] = [];

  write(chunk: string): void {
    this.lines.push(chunk);
  }

  get text(): string {
    return this.lines.join("");
  }

  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** The per-request lines (`msg: "request"`). */
  requests(): Record<string, unknown>[] {
    return this.records().filter((r) => r.msg === "request");
  }
}

export interface HttpResult {
  status: number;
  headers: Headers;
  text: string;
  /** Parsed JSON body, when the body is JSON. */
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test assertions read arbitrary members
}

/**
 * One request to the relay. The answer must conform to openapi.yaml or this throws (see
 * checked-fetch.ts); a test of deliberately off-spec behaviour passes `offSpec: "<why>"`.
 */
export async function http(url: string, init: CheckedRequestInit = {}): Promise<HttpResult> {
  const res = await checkedFetch(url, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export interface HarnessOptions {
  /** Emulator scenario; default `standardScenario()`. */
  scenario?: ScenarioInput;
  /** Changes to the service config before it is written and loaded; `dir` holds the config and secret files. */
  configure?: (config: ConfigInput, dir: string) => void;
  /** Writes further files into `dir` before the config is loaded (e.g. a secret a tenant added by `configure` reads). */
  beforeLoad?: (dir: string) => Promise<void>;
  emulator?: Omit<EmulatorOptions, "scenario" | "port">;
  /** Route modules besides /send and the probes; default [tenantsRoute]. */
  routes?: readonly RouteRegistrar[];
  /** See StartServerOptions.permissionRecheckMs. */
  permissionRecheckMs?: number;
  /** Level of the captured service log; default debug. */
  logLevel?: string;
  /** Environment for `*Env` config keys (merged over process.env). */
  env?: NodeJS.ProcessEnv;
}

/** An emulator, a temp dir with config and secret files, and the service (src/server.ts wiring) on 127.0.0.1:0. */
export interface Harness {
  readonly emulator: Emulator;
  readonly relay: RelayApp;
  /** The config loaded at start. */
  readonly config: Config;
  /** The config file as written last (see rewriteConfig). */
  readonly configInput: ConfigInput;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** The SMTP door's ports on 127.0.0.1, when the config enables it (see test/smtp/smtp-support.ts). */
  readonly smtp?: { readonly submission: number; readonly implicitTls?: number };
  readonly dir: string;
  readonly configPath: string;
  /** API keys: `ops` may use every tenant, `billing` only contoso, `admin` every tenant and GET /tenants. */
  readonly keys: HarnessKeys;
  /** Every secret value the config points at (for "never logged" checks). */
  readonly secrets: readonly string[];
  readonly logs: LogCapture;
  readonly logger: Logger;
  /** POST /send with the ops key (or `key`), JSON body. */
  send(body: unknown, options?: { key?: string | null; headers?: Record<string, string> }): Promise<HttpResult>;
  get(path: string, options?: { key?: string }): Promise<HttpResult>;
  /** Applies `change` to the config, writes the file (atomically, as deploy tools do) and returns its text. */
  rewriteConfig(change: (config: ConfigInput) => void): Promise<string>;
  /** What SIGHUP does: forget credential rejections and re-read the file now. */
  reload(): ConfigReloadOutcome;
  /**
   * Another replica of the service: the same config file, the same emulator, its own process
   * state and port (for the shared store's tests). Stopped by close() if not before.
   */
  replica(): Promise<Replica>;
  close(): Promise<void>;
}

/** A further instance of the service beside the harness's own. */
export interface Replica {
  readonly relay: RelayApp;
  readonly url: string;
  send(body: unknown, options?: { key?: string | null; headers?: Record<string, string> }): Promise<HttpResult>;
  get(path: string, options?: { key?: string }): Promise<HttpResult>;
  stop(): Promise<void>;
}

export interface HarnessKeys {
  readonly ops: string;
  readonly billing: string;
  readonly admin: string;
}

/** The service config for the standard scenario, with secrets in files under `dir`. */
export function standardConfig(emulatorUrl: string, dir: string, keys: Pick<HarnessKeys, "ops" | "billing"> & Partial<HarnessKeys>): ConfigInput {
  return {
    cloud: { authorityHost: emulatorUrl, graphBaseUrl: emulatorUrl },
    tls: { caFile: join(dir, "ca.pem") },
    app: { clientId: APP_ID, credential: { type: "secret", secretFile: join(dir, "app-secret"), expiresAt: "2027-06-30T00:00:00Z" } },
    server: { requestDeadlineSeconds: 10, drainTimeoutSeconds: 10 },
    tenants: {
      contoso: { tenantId: CONTOSO.id, sender: "noreply@contoso.com" },
      fabrikam: { tenantId: FABRIKAM.id, sender: "noreply@fabrikam.com" },
      northwind: { tenantId: NORTHWIND.id, sender: "noreply@northwind.com" },
      adatum: { tenantId: ADATUM.id, sender: "noreply@adatum.com" },
      tailspin: { tenantId: TAILSPIN.id, sender: "noreply@tailspin.com" },
      woodgrove: {
        tenantId: WOODGROVE.id,
        sender: "noreply@woodgrove.com",
        app: {
          clientId: WOODGROVE_APP_ID,
          credential: { type: "secret", secretFile: join(dir, "woodgrove-secret"), secondarySecretFile: join(dir, "woodgrove-secret-next") },
        },
      },
      litware: {
        tenantId: LITWARE.id,
        sender: "noreply@litware.com",
        app: { clientId: LITWARE_APP_ID, credential: { type: "secret", secretFile: join(dir, "litware-secret") } },
      },
    },
    callers: {
      ops: { keySha256: apiKeyDigest(keys.ops), tenants: ["*"] },
      billing: { keySha256: apiKeyDigest(keys.billing), tenants: ["contoso"] },
      ...(keys.admin !== undefined ? { admin: { keySha256: apiKeyDigest(keys.admin), tenants: ["*"], admin: true } } : {}),
    },
  };
}

/** Writes the CA and secret files the standard config points at; returns the secret values. */
export async function writeStandardFiles(dir: string, caPem: string): Promise<string[]> {
  const litwareWrong = `wrong-${randomBytes(12).toString("hex")}`;
  await Promise.all([
    writeFile(join(dir, "ca.pem"), caPem),
    writeFile(join(dir, "app-secret"), APP_SECRET),
    writeFile(join(dir, "woodgrove-secret"), WOODGROVE_OLD_SECRET),
    writeFile(join(dir, "woodgrove-secret-next"), WOODGROVE_NEW_SECRET),
    writeFile(join(dir, "litware-secret"), litwareWrong),
  ]);
  return [APP_SECRET, WOODGROVE_OLD_SECRET, WOODGROVE_NEW_SECRET, litwareWrong];
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const emulator = await startEmulator({ ...options.emulator, scenario: options.scenario ?? standardScenario() });
  const dir = await mkdtemp(join(tmpdir(), "noreply-relay-test-"));
  const keys: HarnessKeys = {
    ops: `ops-${randomBytes(16).toString("hex")}`,
    billing: `billing-${randomBytes(16).toString("hex")}`,
    admin: `admin-${randomBytes(16).toString("hex")}`,
  };
  const secrets = await writeStandardFiles(dir, emulator.caPem);
  const configInput = standardConfig(emulator.url, dir, keys);
  options.configure?.(configInput, dir);
  await options.beforeLoad?.(dir);
  const configPath = join(dir, "config.json");
  await writeFile(configPath, JSON.stringify(configInput, null, 2));
  const env = { ...process.env, ...options.env };
  const config = loadConfigFile(configPath, env);

  const logs = new LogCapture();
  const logger = pino({ level: options.logLevel ?? "debug" }, logs);
  const start = (log: Logger) =>
    startServer({
      config,
      configPath,
      logger: log,
      port: 0,
      host: "127.0.0.1",
      env,
      routes: options.routes ?? [tenantsRoute],
      ...(options.permissionRecheckMs !== undefined ? { permissionRecheckMs: options.permissionRecheckMs } : {}),
    });
  let server: RunningServer;
  try {
    server = await start(logger);
  } catch (err) {
    // A start-up refusal is a test's subject too: leave nothing running behind it.
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const { relay, url } = server;
  let written = 0;
  // In-process requests through supertest, each answer checked against openapi.yaml.
  const send = (target: RelayApp): Harness["send"] =>
    (body, opts = {}) => {
      const key = opts.key === undefined ? keys.ops : opts.key;
      return checkedRequest(target.server).post("/send", {
        headers: {
          "content-type": "application/json",
          ...(key !== null ? { authorization: `Bearer ${key}` } : {}),
          ...opts.headers,
        },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
    };
  const get = (target: RelayApp): Harness["get"] =>
    (path, opts = {}) => checkedRequest(target.server).get(path, opts.key !== undefined ? { headers: { authorization: `Bearer ${opts.key}` } } : {});
  const replicas = new Set<Replica>();

  return {
    emulator,
    relay,
    config,
    configInput,
    url,
    ...(server.smtp !== undefined ? { smtp: server.smtp } : {}),
    dir,
    configPath,
    keys,
    secrets: [...secrets, keys.ops, keys.billing, keys.admin],
    logs,
    logger,
    send: send(relay),
    get: get(relay),
    async rewriteConfig(change) {
      change(configInput);
      const text = JSON.stringify(configInput, null, 2);
      const next = join(dir, `config.json.${++written}.tmp`);
      await writeFile(next, text);
      await rename(next, configPath);
      return text;
    },
    reload: () => server.reload(),
    async replica() {
      const other = await start(logger.child({ replica: replicas.size + 2 }));
      let stopped = false;
      const replica: Replica = {
        relay: other.relay,
        url: other.url,
        send: send(other.relay),
        get: get(other.relay),
        async stop() {
          if (stopped) return;
          stopped = true;
          replicas.delete(replica);
          await other.stop(1000);
        },
      };
      replicas.add(replica);
      return replica;
    },
    async close() {
      await Promise.all([...replicas].map((r) => r.stop()));
      await server.stop(1000);
      await emulator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The value of one series in Prometheus text, or 0 when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    if (want.every((w) => rest.includes(w))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}
