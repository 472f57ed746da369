import { createHash, hash, type Hash } from "node:crypto";
import { abortReason } from "../core/abort.js";
import type { FieldError } from "../core/problems.js";
import { systemClock, type Clock } from "../core/ports.js";

/**
 * Idempotency-Key handling for POST /send: a retry with the same key from the same caller
 * gets the first answer and sends nothing.
 *
 * Protocol for the use case (src/mail/idempotent-send.ts; semantics in docs/delivery.md):
 *   let claim = await store.begin(caller, key, fingerprint);
 *   if (claim.kind === "in_flight") claim = await claim.wait(deadlineSignal);
 *   "replay"   → answer claim.response, send nothing;
 *   "conflict" → 409 idempotency_conflict;
 *   "new"      → do the work, then exactly one of
 *                claim.complete(response) — whenever Graph may have been called (202, 504 outcome_unknown, 4xx from Graph …),
 *                claim.abandon()          — when provably nothing was sent (validation, refusals before Graph, 429),
 *                so the key stays free and a retry can succeed.
 * complete/abandon settle once; later calls are no-ops, so `finally { await claim.abandon() }` is a safe net.
 */

/** The longest Idempotency-Key accepted (characters). */
export const IDEMPOTENCY_KEY_MAX_LENGTH = 255;

/*
 * What is remembered per key is the use case's business (its answer, as JSON): the stores
 * only keep and hand it back, typed by the parameter `A`.
 */

/** The caller owns the key and must settle it with complete() or abandon(). */
export interface IdempotencyNew<A> {
  readonly kind: "new";
  /** Remember `answer` (JSON) for the TTL and hand it to every waiting replay. */
  complete(answer: A): Promise<void>;
  /** Forget the key (nothing was sent); the longest-waiting replay, if any, becomes the new owner. */
  abandon(): Promise<void>;
}

/** The key was answered before: return this answer, send nothing. */
export interface IdempotencyReplay<A> {
  readonly kind: "replay";
  readonly response: A;
}

/** The key is known with a different request body. */
export interface IdempotencyConflict {
  readonly kind: "conflict";
}

/** The first request with this key is still running. */
export interface IdempotencyInFlight<A> {
  readonly kind: "in_flight";
  /**
   * Resolves with the first request's answer (replay), or with ownership (new) when the first
   * abandoned and this waiter is next in line — never in_flight. (conflict only in the corner
   * where the key was abandoned and re-claimed with another body meanwhile.) Rejects with
   * `signal.reason` when the signal aborts (e.g. the request deadline), leaving the line
   * without disturbing the others.
   */
  wait(signal?: AbortSignal): Promise<IdempotencySettled<A>>;
}

export type IdempotencyClaim<A> = IdempotencyNew<A> | IdempotencyReplay<A> | IdempotencyConflict | IdempotencyInFlight<A>;

/** A claim that needs no more waiting. */
export type IdempotencySettled<A> = IdempotencyNew<A> | IdempotencyReplay<A> | IdempotencyConflict;

/**
 * Storage of Idempotency-Keys, async so that a shared store (e.g. Redis with SET NX and a
 * pending marker) can implement the same contract as the in-memory one.
 */
export interface IdempotencyStore<A> {
  /**
   * Claims `key` for `callerKey` (keys are scoped per caller). `fingerprint` identifies the
   * request body (see requestFingerprint); a known key with another fingerprint is a conflict,
   * whether the first request has finished or not.
   */
  begin(callerKey: string, key: string, fingerprint: string, context?: IdempotencyContext): Promise<IdempotencyClaim<A>>;
}

/** About the request that claims a key. */
export interface IdempotencyContext {
  /** Its X-Request-Id: a shared store names it when the claim outlives its pod (see lapsedLeaseResponse). */
  readonly requestId?: string;
}

/**
 * Checks an Idempotency-Key header value: 1–255 printable ASCII characters. Returns the
 * field error for a validation_failed problem, or undefined when the key is fine.
 */
export function checkIdempotencyKey(value: string): FieldError | undefined {
  if (value.length === 0 || value.length > IDEMPOTENCY_KEY_MAX_LENGTH) {
    return { path: "Idempotency-Key", message: `must be 1 to ${IDEMPOTENCY_KEY_MAX_LENGTH} characters` };
  }
  // Printable ASCII only: the key goes into logs and a shared store, and headers are Latin-1 anyway.
  if (!/^[\x20-\x7e]+$/.test(value) || value.trim().length === 0) {
    return { path: "Idempotency-Key", message: "must be printable ASCII and not blank" };
  }
  return undefined;
}

/**
 * The request fingerprint: hex SHA-256 of the canonical JSON of the body as the caller sent it
 * (after JSON.parse, before defaults are applied). Canonical = RFC 8785 (JCS) for values that come
 * from JSON.parse: object keys sorted by UTF-16 code units, no whitespace, numbers and strings as
 * JSON.stringify writes them, `undefined` members left out. So key order and whitespace do not
 * matter, while any change of a value — including adding `"cc": []` — does.
 */
export function requestFingerprint(body: unknown): string {
  const hash = createHash("sha256");
  writeCanonical(hash, body);
  return hash.digest("hex");
}

/** Canonical JSON text of a JSON value (see requestFingerprint). */
export function canonicalJson(value: unknown): string {
  const parts: string[] = [];
  writeCanonical({ update: (s: string) => parts.push(s) }, value);
  return parts.join("");
}

/** An array or object being written: its items, or its sorted keys, and how far along. */
interface OpenValue {
  readonly items?: readonly unknown[];
  readonly record?: Readonly<Record<string, unknown>>;
  readonly keys?: readonly string[];
  next: number;
}

/**
 * Writes `root` canonically, iteratively: an explicit stack of open arrays and objects instead
 * of recursion, so no nesting a caller sends can overflow the call stack (a body 2,540 levels
 * deep once did, as a 500). `toJSON` is honoured once per value, as JSON.stringify does.
 */
function writeCanonical(out: Pick<Hash, "update"> | { update(s: string): unknown }, root: unknown): void {
  const open: OpenValue[] = [];
  let value: unknown = root;
  for (;;) {
    if (value !== null && typeof value === "object" && typeof (value as { toJSON?: unknown }).toJSON === "function") {
      value = (value as { toJSON(): unknown }).toJSON();
    }
    if (value === null || typeof value !== "object") {
      // JSON.stringify gives JCS's number and string forms; undefined/functions have no JSON form.
      const text = JSON.stringify(value) as string | undefined;
      if (text === undefined) throw new TypeError(`not a JSON value: ${typeof value}`);
      out.update(text);
    } else if (Array.isArray(value)) {
      out.update("[");
      open.push({ items: value, next: 0 });
    } else {
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((k) => record[k] !== undefined && typeof record[k] !== "function")
        .sort();
      out.update("{");
      open.push({ record, keys, next: 0 });
    }
    // The next value to write: the next item or member of the innermost open value, closing those done.
    for (;;) {
      const top = open[open.length - 1];
      if (top === undefined) return;
      if (top.items !== undefined) {
        if (top.next < top.items.length) {
          if (top.next > 0) out.update(",");
          const item = top.items[top.next++];
          // As in JSON.stringify, holes and undefined inside arrays are null.
          value = item === undefined || typeof item === "function" ? null : item;
          break;
        }
        out.update("]");
      } else {
        const keys = top.keys!;
        if (top.next < keys.length) {
          const key = keys[top.next];
          if (top.next++ > 0) out.update(",");
          out.update(JSON.stringify(key));
          out.update(":");
          value = top.record![key!];
          break;
        }
        out.update("}");
      }
      open.pop();
    }
  }
}

/** Limits of the in-memory store; the config's `idempotency` section has the same names. */
export interface MemoryIdempotencyOptions {
  /** How long a completed key is remembered, from its completion. Default 24 h. */
  readonly ttlSeconds?: number;
  /** Most remembered (completed) keys. Default 100,000. */
  readonly maxEntries?: number;
  /**
   * Most bytes the remembered keys may take in this process (see entryBytes: what an entry really
   * costs, measured as RSS, not only its answer's length). Default 64 MiB.
   */
  readonly maxBytes?: number;
  readonly clock?: Clock;
}

interface Waiter<A> {
  resolve(claim: IdempotencySettled<A>): void;
  detach(): void;
}

interface Pending<A> {
  readonly fingerprint: string;
  readonly waiters: Waiter<A>[];
}

/*
 * A remembered key is one Map entry of two flat one-byte strings, nothing else (issue 15: an
 * entry of objects — the JSON pair as key, the hex fingerprint, the answer as parsed JSON, a
 * record of expiry and size — took ~960 B of RSS for a small answer):
 *
 *   key:   the first 16 bytes of SHA-256 of the (caller, key) pair, as 16 latin1 characters;
 *   value: expiry (ms since the epoch, 7 bytes big-endian) · the first 16 bytes of SHA-256 of the
 *          fingerprint · the answer as UTF-8 JSON, all as latin1 characters (one byte each).
 *
 * 128 bits make an accidental collision of two keys, or of two bodies under one key, about as
 * likely as a random UUID meeting another; SHA-256 keeps a caller from crafting one.
 */
const DIGEST_BYTES = 16;
const EXPIRY_BYTES = 7;
const FINGERPRINT_BYTES = DIGEST_BYTES;
const ANSWER_AT = EXPIRY_BYTES + FINGERPRINT_BYTES;

/*
 * What one remembered key costs in RSS beyond its value's characters: the Map's slot (3 pointers
 * and a bucket share, up to twice over just after it grows), the key string (header + 16 bytes),
 * the value string's header and padding, all scaled by old space's page and fragmentation
 * overhead. ENTRY_RSS_FACTOR scales the value's characters the same way. Calibrated with
 * bench/idempotency-memory.mjs (200,000 keys, small answers, see docs/benchmarks-log.md): a
 * small answer's entry is accounted 549 B and measured at 480–500 B of RSS, and 200,000 keys
 * under maxBytes 32 MiB grew RSS by 29 MiB (`npm run bench` reports both).
 */
const ENTRY_OVERHEAD_BYTES = 160;
const ENTRY_RSS_FACTOR = 1.25;

/** The bytes a remembered key whose packed value has this length is accounted for (see ENTRY_OVERHEAD_BYTES). */
function entryBytes(valueLength: number): number {
  return ENTRY_OVERHEAD_BYTES + Math.ceil(valueLength * ENTRY_RSS_FACTOR);
}

function digest16(text: string): string {
  return hash("sha256", text, "buffer").toString("latin1", 0, DIGEST_BYTES);
}

function packEntry(expiresAt: number, shortFingerprint: string, answerJson: string): string {
  const answerBytes = Buffer.byteLength(answerJson);
  const buf = Buffer.allocUnsafe(ANSWER_AT + answerBytes);
  // Whole milliseconds (an expiry rounded up by under 1 ms), 56 bits: far beyond any clock.
  let t = Math.max(0, Math.ceil(expiresAt));
  for (let i = EXPIRY_BYTES - 1; i >= 0; i--) {
    buf[i] = t % 256;
    t = Math.floor(t / 256);
  }
  buf.write(shortFingerprint, EXPIRY_BYTES, FINGERPRINT_BYTES, "latin1");
  buf.write(answerJson, ANSWER_AT, answerBytes, "utf8");
  // A fresh sequential one-byte string: no cons or sliced string keeps anything else alive.
  return buf.toString("latin1");
}

function entryExpiresAt(value: string): number {
  let t = 0;
  for (let i = 0; i < EXPIRY_BYTES; i++) t = t * 256 + value.charCodeAt(i);
  return t;
}

function entryAnswer<A>(value: string): A {
  return JSON.parse(Buffer.from(value, "latin1").toString("utf8", ANSWER_AT)) as A;
}

/**
 * The default store: one process's memory. Completed keys are bounded by count and bytes and
 * evicted oldest first; they expire `ttlSeconds` after completion. Keys still running are kept
 * apart and never evicted (their number is bounded by the requests in progress), so a waiter
 * can always count on an answer.
 */
export class MemoryIdempotencyStore<A> implements IdempotencyStore<A> {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #clock: Clock;
  readonly #pending = new Map<string, Pending<A>>();
  // Values are packed entries (packEntry).
  readonly #done = new Map<string, string>();
  // The ids of #done in completion order = expiry order (one TTL for all), oldest at #head: a key
  // is added once, at the end, and removed only as the oldest (expiry, eviction). Not the Map's own
  // order: a Map iterator starts at its table's first slot and steps over every deleted one, so
  // looking at the oldest after evictions cost time linear in the evicted (at maxEntries, on every
  // begin: 200,000 keys through a full store took 3× as long).
  #order: string[] = [];
  #head = 0;
  #bytes = 0;

  constructor(options: MemoryIdempotencyOptions = {}) {
    this.#ttlMs = (options.ttlSeconds ?? 86_400) * 1000;
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#clock = options.clock ?? systemClock;
  }

  begin(callerKey: string, key: string, fingerprint: string): Promise<IdempotencyClaim<A>> {
    // JSON of the pair cannot collide the way "a:b"+"c" and "a"+"b:c" would when joined.
    return Promise.resolve(this.#claim(digest16(JSON.stringify([callerKey, key])), fingerprint));
  }

  /** Remembered keys, the bytes they are accounted for (entryBytes), and keys still running. */
  stats(): { entries: number; bytes: number; inFlight: number } {
    this.#expire();
    return { entries: this.#done.size, bytes: this.#bytes, inFlight: this.#pending.size };
  }

  #claim(id: string, fingerprint: string): IdempotencyClaim<A> {
    this.#expire();
    const done = this.#done.get(id);
    if (done !== undefined) {
      return done.startsWith(digest16(fingerprint), EXPIRY_BYTES) ? { kind: "replay", response: entryAnswer<A>(done) } : { kind: "conflict" };
    }
    const pending = this.#pending.get(id);
    if (pending) {
      if (pending.fingerprint !== fingerprint) return { kind: "conflict" };
      return { kind: "in_flight", wait: (signal) => this.#wait(id, fingerprint, signal) };
    }
    const fresh: Pending<A> = { fingerprint, waiters: [] };
    this.#pending.set(id, fresh);
    return this.#owner(id, fresh);
  }

  #owner(id: string, pending: Pending<A>): IdempotencyNew<A> {
    let settled = false;
    return {
      kind: "new",
      complete: (given) => {
        if (settled) return Promise.resolve();
        settled = true;
        // Kept as JSON text: what is replayed cannot be changed later by whoever holds the original.
        const json = JSON.stringify(given);
        this.#pending.delete(id);
        this.#remember(id, pending.fingerprint, json);
        // Waiters are answered even when the response was too big to remember; each gets its own copy.
        for (const waiter of pending.waiters.splice(0)) {
          waiter.detach();
          waiter.resolve({ kind: "replay", response: JSON.parse(json) as A });
        }
        return Promise.resolve();
      },
      abandon: () => {
        if (settled) return Promise.resolve();
        settled = true;
        const next = pending.waiters.shift();
        if (!next) {
          this.#pending.delete(id);
          return Promise.resolve();
        }
        // Hand the key to the longest waiter; the rest keep waiting on it, so one send, not many.
        const successor: Pending<A> = { fingerprint: pending.fingerprint, waiters: pending.waiters.splice(0) };
        this.#pending.set(id, successor);
        next.detach();
        next.resolve(this.#owner(id, successor));
        return Promise.resolve();
      },
    };
  }

  #wait(id: string, fingerprint: string, signal: AbortSignal | undefined): Promise<IdempotencySettled<A>> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      // Look again by id: the first request may have finished, or abandoned, since begin().
      const now = this.#claim(id, fingerprint);
      if (now.kind !== "in_flight") {
        resolve(now);
        return;
      }
      const onAbort = (): void => {
        // Look up by id: an abandon() may have moved this waiter to a successor's line.
        const line = this.#pending.get(id)?.waiters;
        const i = line ? line.indexOf(waiter) : -1;
        if (line && i >= 0) line.splice(i, 1);
        reject(abortReason(signal));
      };
      const waiter: Waiter<A> = { resolve, detach: () => signal?.removeEventListener("abort", onAbort) };
      signal?.addEventListener("abort", onAbort, { once: true });
      (this.#pending.get(id) as Pending<A>).waiters.push(waiter);
    });
  }

  #remember(id: string, fingerprint: string, json: string): void {
    // Larger than the whole budget: not remembered (waiters were answered); evicting everything for it would be worse.
    if (entryBytes(ANSWER_AT + Buffer.byteLength(json)) > this.#maxBytes) return;
    const value = packEntry(this.#clock.now() + this.#ttlMs, digest16(fingerprint), json);
    this.#done.set(id, value);
    this.#order.push(id);
    this.#bytes += entryBytes(value.length);
    while (this.#done.size > this.#maxEntries || this.#bytes > this.#maxBytes) this.#dropOldest();
  }

  #expire(): void {
    const now = this.#clock.now();
    while (this.#head < this.#order.length) {
      const oldest = this.#done.get(this.#order[this.#head] as string) as string;
      if (entryExpiresAt(oldest) > now) break;
      this.#dropOldest();
    }
  }

  #dropOldest(): void {
    const id = this.#order[this.#head] as string;
    this.#bytes -= entryBytes((this.#done.get(id) as string).length);
    this.#done.delete(id);
    this.#order[this.#head++] = "";
    // Compact once the dropped half outweighs the rest: amortised O(1) per key.
    if (this.#head >= 1024 && this.#head * 2 >= this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    } else if (this.#head === this.#order.length) {
      this.#order = [];
      this.#head = 0;
    }
  }
}
