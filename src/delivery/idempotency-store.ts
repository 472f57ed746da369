import { createHash, type Hash } from "node:crypto";
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
  /** Most bytes of remembered keys and responses (approximate). Default 64 MiB. */
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

interface Done<A> {
  readonly fingerprint: string;
  readonly response: A;
  readonly expiresAt: number;
  readonly bytes: number;
}

// Map key, fingerprint, timestamps and Map overhead, so tiny responses are not counted as free.
const ENTRY_OVERHEAD_BYTES = 160;

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
  // Insertion order = completion order = expiry order (one TTL for all), so the oldest is first.
  readonly #done = new Map<string, Done<A>>();
  #bytes = 0;

  constructor(options: MemoryIdempotencyOptions = {}) {
    this.#ttlMs = (options.ttlSeconds ?? 86_400) * 1000;
    this.#maxEntries = options.maxEntries ?? 100_000;
    this.#maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.#clock = options.clock ?? systemClock;
  }

  begin(callerKey: string, key: string, fingerprint: string): Promise<IdempotencyClaim<A>> {
    // JSON of the pair cannot collide the way "a:b"+"c" and "a"+"b:c" would when joined.
    return Promise.resolve(this.#claim(JSON.stringify([callerKey, key]), fingerprint));
  }

  /** Remembered keys, their approximate bytes, and keys still running. */
  stats(): { entries: number; bytes: number; inFlight: number } {
    this.#expire();
    return { entries: this.#done.size, bytes: this.#bytes, inFlight: this.#pending.size };
  }

  #claim(id: string, fingerprint: string): IdempotencyClaim<A> {
    this.#expire();
    const done = this.#done.get(id);
    if (done) {
      return done.fingerprint === fingerprint ? { kind: "replay", response: done.response } : { kind: "conflict" };
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
        // A JSON copy: what is replayed cannot be changed later by whoever holds the original.
        const response = JSON.parse(JSON.stringify(given)) as A;
        this.#pending.delete(id);
        this.#remember(id, pending.fingerprint, response);
        const replay: IdempotencyReplay<A> = { kind: "replay", response };
        // Waiters are answered even when the response was too big to remember.
        for (const waiter of pending.waiters.splice(0)) {
          waiter.detach();
          waiter.resolve(replay);
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

  #remember(id: string, fingerprint: string, response: A): void {
    const bytes = ENTRY_OVERHEAD_BYTES + 2 * id.length + fingerprint.length + Buffer.byteLength(JSON.stringify(response));
    // Larger than the whole budget: not remembered (waiters were answered); evicting everything for it would be worse.
    if (bytes > this.#maxBytes) return;
    this.#done.set(id, { fingerprint, response, expiresAt: this.#clock.now() + this.#ttlMs, bytes });
    this.#bytes += bytes;
    for (const [oldId, old] of this.#done) {
      if (this.#done.size <= this.#maxEntries && this.#bytes <= this.#maxBytes) break;
      this.#done.delete(oldId);
      this.#bytes -= old.bytes;
    }
  }

  #expire(): void {
    const now = this.#clock.now();
    for (const [id, entry] of this.#done) {
      if (entry.expiresAt > now) break;
      this.#done.delete(id);
      this.#bytes -= entry.bytes;
    }
  }
}
