import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { StoreConfig } from "../../config/schema.js";
import { StoreUnavailableError } from "../store-unavailable.js";
import type { StoreObserver } from "../../core/ports.js";

/**
 * The Redis (or Valkey) connection every shared delivery store uses: one command connection
 * (auto-pipelined, no offline queue, so a missing Redis answers at once instead of piling
 * commands up) and one subscriber connection for the wake-up channels. Commands that fail for
 * any reason become StoreUnavailableError: the stores fail closed, never open.
 */

/** A Lua script run by EVALSHA, loaded with EVAL when Redis does not know it (after a restart or failover). */
export class LuaScript {
  readonly sha: string;

  constructor(
    readonly name: string,
    readonly keys: number,
    readonly source: string,
  ) {
    // Scripts use TIME before writing: Redis 7 replicates effects by default; older versions need this call.
    this.source = `if redis.replicate_commands then redis.replicate_commands() end\n${source}`;
    this.sha = createHash("sha1").update(this.source).digest("hex");
  }
}

/** One shared channel per kind of news; the message says which key. */
export type StoreChannel = "idem" | "mailbox" | "cred";

export interface RedisConnectionOptions {
  readonly config: StoreConfig;
  readonly logger: Logger;
  readonly env?: NodeJS.ProcessEnv;
  readonly observer?: Pick<StoreObserver, "storeError" | "storeUp">;
  /** Name shown by CLIENT LIST, e.g. the pod's host name. */
  readonly clientName?: string;
}

/** The connection as the stores use it. */
export interface RedisConnection {
  /** The configured key prefix; every key and channel starts with it. */
  readonly prefix: string;
  /** Whether the command connection is up and the last command did not fail for connection reasons. */
  readonly up: boolean;
  /** Runs a script; failures become StoreUnavailableError. */
  run(script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
  /** Runs several scripts in one round trip; each result, or a StoreUnavailableError in its place. */
  runMany(calls: readonly ScriptCall[]): Promise<unknown[]>;
  /** A plain command (GET, HGETALL …); failures become StoreUnavailableError. */
  command(operation: string, name: string, args: readonly (string | number)[]): Promise<unknown>;
  publish(channel: StoreChannel, message: string): void;
  /** Calls `listener` with each message on `channel` (from every pod, this one included). */
  subscribe(channel: StoreChannel, listener: (message: string) => void): void;
  /** Called after every (re)connect, e.g. to reload state that may have been missed meanwhile. */
  onReady(listener: () => void): void;
  /** Network writes of the command connection so far: each is one round trip (bench and tests). */
  readonly writes: number;
  close(): Promise<void>;
}

export interface ScriptCall {
  readonly script: LuaScript;
  readonly keys: readonly string[];
  readonly args: readonly (string | number)[];
}

/** The URL with its password, from url/urlFile/urlEnv and passwordFile/passwordEnv. Never logged. */
export function resolveRedisUrl(config: StoreConfig, env: NodeJS.ProcessEnv = process.env): { url: string; password?: string } {
  let url: string | undefined = config.url;
  if (config.urlFile !== undefined) url = readFileSync(config.urlFile, "utf8").trim();
  if (config.urlEnv !== undefined) url = env[config.urlEnv]?.trim();
  if (url === undefined || url === "") throw new Error("store: no Redis URL (set url, urlFile or urlEnv)");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`store: the Redis URL from ${where(config)} is not a URL`);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") throw new Error(`store: the Redis URL from ${where(config)} must start with redis:// or rediss://`);
  let password: string | undefined;
  if (config.passwordFile !== undefined) password = readFileSync(config.passwordFile, "utf8").replace(/\r?\n$/, "");
  if (config.passwordEnv !== undefined) password = env[config.passwordEnv];
  return password !== undefined ? { url, password } : { url };
}

/** host:port of the URL, for messages (no user, no password). */
export function redisEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}:${u.port || "6379"}`;
  } catch {
    return "(unparsable URL)";
  }
}

function where(config: StoreConfig): string {
  if (config.urlFile !== undefined) return "store.urlFile";
  if (config.urlEnv !== undefined) return `store.urlEnv (${config.urlEnv})`;
  return "store.url";
}

/**
 * Connects (waiting up to `connectTimeoutSeconds`), loads the scripts and subscribes. Rejects
 * with an Error whose message names the endpoint and the reason, never the password.
 */
export async function connectRedis(options: RedisConnectionOptions, scripts: readonly LuaScript[]): Promise<RedisConnection> {
  const { config, logger, observer } = options;
  const { url, password } = resolveRedisUrl(config, options.env);
  const endpoint = redisEndpoint(url);
  let tls: ConnectionOptions | undefined;
  if (url.startsWith("rediss:")) {
    tls = {
      ...(config.tls.caFile !== undefined ? { ca: readFileSync(config.tls.caFile, "utf8") } : {}),
      ...(config.tls.serverName !== undefined ? { servername: config.tls.serverName } : {}),
    };
  }
  const base: RedisOptions = {
    lazyConnect: true,
    // Fail fast while disconnected: a send must not wait on a queue that may never drain.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: config.commandTimeoutMs,
    connectTimeout: Math.min(config.connectTimeoutSeconds * 1000, 10_000),
    enableAutoPipelining: true,
    // Reconnect forever, backing off to 2 s: Redis coming back must heal the pod without a restart.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    ...(password !== undefined ? { password } : {}),
    ...(tls !== undefined ? { tls } : {}),
    ...(options.clientName !== undefined ? { connectionName: options.clientName } : {}),
  };
  const client = new Redis(url, base);
  const subscriber = new Redis(url, { ...base, enableOfflineQueue: true, enableAutoPipelining: false, commandTimeout: undefined });
  let lastError = "";
  const noteError = (err: Error): void => {
    lastError = describeRedisError(err);
  };
  client.on("error", noteError);
  subscriber.on("error", (err: Error) => logger.debug({ err: describeRedisError(err) }, "store: subscriber connection error"));

  const deadline = Date.now() + config.connectTimeoutSeconds * 1000;
  for (;;) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch (err) {
      noteError(err as Error);
      client.disconnect();
      if (Date.now() >= deadline) {
        subscriber.disconnect();
        throw new Error(`store: cannot reach Redis at ${endpoint} within ${config.connectTimeoutSeconds} s: ${lastError}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  await subscriber.connect().catch((err: unknown) => {
    client.disconnect();
    subscriber.disconnect();
    throw new Error(`store: cannot open the subscriber connection to ${endpoint}: ${describeRedisError(err as Error)}`);
  });
  const prefix = config.keyPrefix;
  const channelName = (channel: StoreChannel): string => `${prefix}${channel}`;
  const listeners = new Map<string, ((message: string) => void)[]>();
  subscriber.on("message", (channel: string, message: string) => {
    for (const listener of listeners.get(channel) ?? []) {
      try {
        listener(message);
      } catch (err) {
        logger.error({ err, channel }, "store: a channel listener failed");
      }
    }
  });

  const loadScripts = async (): Promise<void> => {
    await Promise.all(scripts.map((s) => client.script("LOAD", s.source)));
  };
  await loadScripts();

  let up = true;
  observer?.storeUp(true);
  const readyListeners: (() => void)[] = [];
  let everDown = false;
  client.on("ready", () => {
    if (!everDown) return;
    logger.info({ endpoint }, "store: Redis connection is back");
    up = true;
    observer?.storeUp(true);
    loadScripts().catch(() => {});
    for (const l of readyListeners) l();
  });
  client.on("close", () => {
    if (!up) return;
    everDown = true;
    up = false;
    observer?.storeUp(false);
    logger.warn({ endpoint, reason: lastError || "connection closed" }, "store: Redis connection lost; keyed sends get 503 until it is back");
  });

  let writes = 0;
  const countWrites = (): void => {
    const stream = (client as unknown as { stream?: { write: (...a: unknown[]) => boolean; __counted?: boolean } }).stream;
    if (!stream || stream.__counted) return;
    const write = stream.write.bind(stream);
    stream.write = (...a: unknown[]) => {
      writes += 1;
      return write(...a);
    };
    stream.__counted = true;
  };
  countWrites();
  client.on("connect", countWrites);

  const fail = (operation: string, err: unknown): StoreUnavailableError => {
    observer?.storeError(operation);
    const reason = describeRedisError(err as Error);
    logger.warn({ operation, reason }, "store: Redis command failed");
    return new StoreUnavailableError(operation, err);
  };

  const evalScript = async (target: Redis, script: LuaScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> => {
    try {
      return await target.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith("NOSCRIPT")) throw err;
      return target.eval(script.source, keys.length, ...keys, ...args);
    }
  };

  return {
    prefix,
    get up() {
      return up && client.status === "ready";
    },
    get writes() {
      return writes;
    },
    async run(script, keys, args) {
      try {
        return await evalScript(client, script, keys, args);
      } catch (err) {
        throw fail(script.name, err);
      }
    },
    async runMany(calls) {
      if (calls.length === 0) return [];
      const pipeline = client.pipeline();
      for (const c of calls) pipeline.evalsha(c.script.sha, c.keys.length, ...c.keys, ...c.args);
      let results: [Error | null, unknown][] | null;
      try {
        results = await pipeline.exec();
      } catch (err) {
        const e = fail(calls[0]!.script.name, err);
        return calls.map(() => e);
      }
      return Promise.all(
        (results ?? []).map(async ([err, value], i) => {
          if (err === null) return value;
          const call = calls[i]!;
          if (String(err.message).startsWith("NOSCRIPT")) {
            try {
              return await client.eval(call.script.source, call.keys.length, ...call.keys, ...call.args);
            } catch (again) {
              return fail(call.script.name, again);
            }
          }
          return fail(call.script.name, err);
        }),
      );
    },
    async command(operation, name, args) {
      try {
        return await client.call(name, ...args);
      } catch (err) {
        throw fail(operation, err);
      }
    },
    publish(channel, message) {
      client.publish(channelName(channel), message).catch((err: unknown) => {
        observer?.storeError("publish");
        logger.debug({ err: describeRedisError(err as Error), channel }, "store: publish failed");
      });
    },
    subscribe(channel, listener) {
      const name = channelName(channel);
      const list = listeners.get(name);
      if (list) {
        list.push(listener);
        return;
      }
      listeners.set(name, [listener]);
      subscriber.subscribe(name).catch((err: unknown) => logger.error({ err: describeRedisError(err as Error), channel }, "store: subscribe failed"));
    },
    onReady(listener) {
      readyListeners.push(listener);
    },
    async close() {
      await Promise.allSettled([client.quit(), subscriber.quit()]);
      client.disconnect();
      subscriber.disconnect();
    },
  };
}

/** A short reason without secrets: ioredis messages name host, port and Redis's own error text. */
export function describeRedisError(err: Error | undefined): string {
  if (err === undefined) return "unknown error";
  const code = (err as NodeJS.ErrnoException).code;
  const message = String(err.message ?? err).split("\n")[0]!.slice(0, 200);
  return code !== undefined && !message.includes(code) ? `${code} ${message}` : message;
}
