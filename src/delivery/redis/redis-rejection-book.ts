import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { RelayError, type ProblemCode, type ProblemExtras } from "../../core/problems.js";
import type { RejectionBook, RejectionEntry } from "../../auth/credential-failure-memory.js";
import { systemClock, type Clock } from "../../core/ports.js";
import type { RedisConnection } from "./redis-connection.js";

/**
 * Remembered credential rejections shared by all replicas. Reads stay local and synchronous
 * (the send path must not pay a Redis round trip to learn that nothing is remembered); every
 * write goes to one Redis hash and is announced on the `cred` channel, and each pod copies
 * what it hears. A pod that starts, or reconnects after missing messages, reads the hash.
 * So when Entra rejects a tenant's secret on one pod, the others stop asking too.
 *
 * Entries hold the problem's code, text and Entra code, never a secret: credential settings
 * appear only through the hashed target id.
 */

interface Wire {
  readonly tenantKey: string;
  readonly code: ProblemCode;
  readonly message: string;
  readonly extras: ProblemExtras;
  readonly since: number;
  readonly until: number;
}

type Message = { readonly op: "set"; readonly field: string; readonly entry: Wire } | { readonly op: "forget"; readonly tenantKey?: string };

export class RedisRejectionBook implements RejectionBook {
  readonly #c: RedisConnection;
  readonly #logger: Logger;
  readonly #local = new Map<string, RejectionEntry>();
  readonly #hash: string;

  private constructor(
    connection: RedisConnection,
    logger: Logger,
    private readonly clock: Clock,
  ) {
    this.#c = connection;
    this.#logger = logger;
    this.#hash = `${connection.prefix}cred`;
  }

  /** Subscribes and loads what other pods remember now. */
  static async open(connection: RedisConnection, logger: Logger, clock: Clock = systemClock): Promise<RedisRejectionBook> {
    const book = new RedisRejectionBook(connection, logger, clock);
    connection.subscribe("cred", (text) => book.#hear(text));
    connection.onReady(() => void book.#load().catch(() => {}));
    await book.#load();
    return book;
  }

  get size(): number {
    return this.#local.size;
  }

  get(id: string): RejectionEntry | undefined {
    return this.#local.size === 0 ? undefined : this.#local.get(field(id));
  }

  set(id: string, entry: RejectionEntry): void {
    const f = field(id);
    this.#local.set(f, entry);
    const wire = toWire(entry);
    const text = JSON.stringify(wire);
    this.#c
      .command("credentials.remember", "HSET", [this.#hash, f, text])
      .then(() => this.#c.publish("cred", JSON.stringify({ op: "set", field: f, entry: wire } satisfies Message)))
      .catch(() => this.#logger.debug({ tenant: entry.tenantKey }, "store: a credential rejection was kept on this pod only (Redis unavailable)"));
  }

  delete(id: string): void {
    const f = field(id);
    this.#local.delete(f);
    // Expired entries are dropped everywhere by their own clocks; cleaning the hash is housekeeping.
    this.#c.command("credentials.expire", "HDEL", [this.#hash, f]).catch(() => {});
  }

  forget(tenantKey?: string): void {
    this.#forgetLocal(tenantKey);
    const remove =
      tenantKey === undefined
        ? this.#c.command("credentials.forget", "DEL", [this.#hash])
        : this.#c.command("credentials.forget", "HGETALL", [this.#hash]).then((raw) => {
            const fields = Object.entries(toRecord(raw))
              .filter(([, text]) => parse(text)?.tenantKey === tenantKey)
              .map(([f]) => f);
            return fields.length > 0 ? this.#c.command("credentials.forget", "HDEL", [this.#hash, ...fields]) : undefined;
          });
    remove
      .then(() => this.#c.publish("cred", JSON.stringify((tenantKey === undefined ? { op: "forget" } : { op: "forget", tenantKey }) satisfies Message)))
      .catch(() => this.#logger.warn({ tenant: tenantKey ?? "*" }, "store: could not forget credential rejections in Redis; other pods keep them until they expire"));
  }

  values(): IterableIterator<RejectionEntry> {
    return this.#local.values();
  }

  #forgetLocal(tenantKey: string | undefined): void {
    if (tenantKey === undefined) {
      this.#local.clear();
      return;
    }
    for (const [f, entry] of this.#local) if (entry.tenantKey === tenantKey) this.#local.delete(f);
  }

  #hear(text: string): void {
    let message: Message;
    try {
      message = JSON.parse(text) as Message;
    } catch {
      return;
    }
    if (message.op === "forget") this.#forgetLocal(message.tenantKey);
    else if (message.op === "set") {
      const entry = fromWire(message.entry);
      if (entry) this.#local.set(message.field, entry);
    }
  }

  async #load(): Promise<void> {
    const raw = await this.#c.command("credentials.load", "HGETALL", [this.#hash]);
    const now = this.clock.now();
    const stale: string[] = [];
    for (const [f, text] of Object.entries(toRecord(raw))) {
      const entry = fromWire(parse(text));
      if (!entry || entry.until <= now) stale.push(f);
      else this.#local.set(f, entry);
    }
    if (stale.length > 0) await this.#c.command("credentials.expire", "HDEL", [this.#hash, ...stale]).catch(() => {});
  }
}

function field(id: string): string {
  return createHash("sha256").update(id).digest("hex").slice(0, 32);
}

function toWire(entry: RejectionEntry): Wire {
  return {
    tenantKey: entry.tenantKey,
    code: entry.error.code,
    message: entry.error.message,
    extras: entry.error.extras,
    since: entry.since,
    until: entry.until,
  };
}

function fromWire(wire: Wire | undefined): RejectionEntry | undefined {
  if (!wire || typeof wire.tenantKey !== "string" || typeof wire.until !== "number") return undefined;
  return { tenantKey: wire.tenantKey, since: wire.since, until: wire.until, error: new RelayError(wire.code, wire.message, wire.extras) };
}

function parse(text: string): Wire | undefined {
  try {
    return JSON.parse(text) as Wire;
  } catch {
    return undefined;
  }
}

/** HGETALL through `call` answers a flat [field, value, …] list. */
function toRecord(raw: unknown): Record<string, string> {
  if (!Array.isArray(raw)) return (raw ?? {}) as Record<string, string>;
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) out[String(raw[i])] = String(raw[i + 1]);
  return out;
}
