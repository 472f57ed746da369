import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ConfigInput } from "../../src/config/schema.js";
import type { Emulator } from "../../src/emulator/start-emulator.js";
import { spawnServer, stopServer, type ChildServer } from "./child-server.js";
import { http, standardConfig, writeStandardFiles, type HarnessKeys, type HttpResult } from "./harness.js";

/*
 * Several replicas of the service: real `src/server.ts` processes (see child-server.ts), all
 * started with the same config file and secret files (as pods of one Deployment mount the same
 * ConfigMap and Secret), all pointed at one emulator. With `store.type: redis` in the config
 * they share one Redis. A round-robin client sends each request to the next replica, the way a
 * Service without session affinity spreads them.
 */

export interface Replica {
  readonly index: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly process: ChildServer;
  /** When it was killed (epoch ms); undefined while it runs. */
  killedAt: number | undefined;
}

export interface ReplicaSetOptions {
  readonly count: number;
  readonly emulator: Emulator;
  /** Changes to the shared config before it is written; `dir` holds the config and secret files. */
  readonly configure?: (config: ConfigInput, dir: string) => void;
  /** LOG_LEVEL of every replica; default info (one line per request). */
  readonly logLevel?: string;
  /** A built entry point each replica runs with node (the bundle, dist/server.js); default src/server.ts through tsx. */
  readonly script?: string;
}

export interface ReplicaSet {
  readonly replicas: readonly Replica[];
  /** API keys: `ops` may use every tenant, `admin` also reads GET /tenants. */
  readonly keys: HarnessKeys;
  /** Every secret value the config points at, and the API keys (for "never logged" checks). */
  readonly secrets: readonly string[];
  /** POST /send to one replica with the ops key. Throws when the connection fails or the answer is off-spec. */
  send(replica: Replica, body: unknown, headers?: Record<string, string>): Promise<HttpResult>;
  /** GET on one replica, with `key` as bearer if given. */
  get(replica: Replica, path: string, key?: string): Promise<HttpResult>;
  /** SIGKILL: no drain, its connections drop, whatever it held in the shared store is left to lapse. Resolves once it exited. */
  kill(replica: Replica): Promise<void>;
  /** Everything a replica wrote (stdout and stderr). */
  output(replica: Replica): string;
  /** The request log lines (`msg: "request"`) a replica wrote for POST /send. */
  sendLogLines(replica: Replica): number;
  /** SIGTERM to each replica still running (SIGKILL after 15 s), then the config directory goes. */
  close(): Promise<void>;
}

export async function startReplicas(options: ReplicaSetOptions): Promise<ReplicaSet> {
  const dir = await mkdtemp(join(tmpdir(), "noreply-relay-replicas-"));
  const keys: HarnessKeys = {
    ops: `ops-${randomBytes(16).toString("hex")}`,
    billing: `billing-${randomBytes(16).toString("hex")}`,
    admin: `admin-${randomBytes(16).toString("hex")}`,
  };
  const secrets = await writeStandardFiles(dir, options.emulator.caPem);
  const config = standardConfig(options.emulator.url, dir, keys);
  options.configure?.(config, dir);
  const configPath = join(dir, "config.json");
  await writeFile(configPath, JSON.stringify(config, null, 2));

  const processes = Array.from({ length: options.count }, () => spawnServer({ NOREPLY_RELAY_CONFIG: configPath, LOG_LEVEL: options.logLevel ?? "info" }, options.script !== undefined ? { script: options.script } : {}));
  const stopAll = async (): Promise<void> => {
    await Promise.all(processes.map((p) => stopServer(p)));
    await rm(dir, { recursive: true, force: true });
  };
  let replicas: Replica[];
  try {
    const urls = await Promise.all(processes.map((p) => p.listening()));
    replicas = urls.map((url, index) => ({ index, url, process: processes[index]!, killedAt: undefined }));
  } catch (err) {
    await stopAll();
    throw err;
  }

  return {
    replicas,
    keys,
    secrets: [...secrets, keys.ops, keys.billing, keys.admin],
    send(replica, body, headers = {}) {
      return http(`${replica.url}/send`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${keys.ops}`, ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
    },
    get(replica, path, key) {
      return http(`${replica.url}${path}`, key !== undefined ? { headers: { authorization: `Bearer ${key}` } } : {});
    },
    async kill(replica) {
      replica.killedAt = Date.now();
      replica.process.child.kill("SIGKILL");
      await replica.process.exited;
    },
    output: (replica) => [...replica.process.stdout, ...replica.process.stderr].join("\n"),
    sendLogLines(replica) {
      let n = 0;
      for (const line of replica.process.stdout) {
        if (!line.includes('"msg":"request"')) continue;
        try {
          const rec = JSON.parse(line) as { msg?: unknown; route?: unknown };
          if (rec.msg === "request" && rec.route === "/send") n++;
        } catch {
          // not a log line
        }
      }
      return n;
    },
    close: stopAll,
  };
}

/** Whether a request failed for want of a connection (refused, reset, closed), rather than with an answer. */
export function isConnectionFailure(err: unknown): boolean {
  return err instanceof TypeError && err.message === "fetch failed";
}

/**
 * Each request to the next replica in turn. Given the replica a message's previous request
 * went to, the next one after it, so a retry (or the second of a double click) always lands on
 * another replica. A replica whose connection failed is dropped from the turn, as a load
 * balancer would.
 */
export class RoundRobin {
  readonly #live: Replica[];
  #turn = 0;

  constructor(replicas: readonly Replica[]) {
    this.#live = [...replicas];
  }

  next(after?: Replica): Replica {
    if (this.#live.length === 0) throw new Error("no replica left to send to");
    const previous = after === undefined ? -1 : this.#live.indexOf(after);
    if (previous >= 0) return this.#live[(previous + 1) % this.#live.length]!;
    const replica = this.#live[this.#turn % this.#live.length]!;
    this.#turn = (this.#turn + 1) % this.#live.length;
    return replica;
  }

  drop(replica: Replica): void {
    const i = this.#live.indexOf(replica);
    if (i >= 0) this.#live.splice(i, 1);
  }

  get live(): readonly Replica[] {
    return this.#live;
  }
}
