import { createHash, randomUUID } from "node:crypto";
import { abortReason } from "../../core/abort.js";
import type { Logger } from "pino";
import type { IdempotencyClaim, IdempotencyNew, IdempotencySettled, IdempotencyStore } from "../idempotency-store.js";
import { BackgroundWrites } from "./background-writes.js";
import { isStoreUnavailable } from "../store-unavailable.js";
import { LuaScript, type RedisConnection } from "./redis-connection.js";

/**
 * Idempotency-Keys in Redis, so a retry that lands on another replica is still a replay.
 *
 * One string per (caller, key), holding JSON: `{s:"p"}` while the first request works (a
 * pending marker with the owner's token, a lease end and the first request's id), `{s:"d"}`
 * once answered (the stored response). Every transition is one Lua script, so two replicas
 * can never both own a key. The owner renews the lease while it works; a lease that ran out
 * means the pod died or lost Redis mid-send, and the key becomes `outcome_unknown` (the mail
 * may have gone out), never free for a second send. Waiters on other pods hear of every
 * change on the `idem` channel and look again; they also look again when the lease ends.
 */

const NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

/** KEYS: key. ARGV: fingerprint, owner, leaseMs, ttlMs, requestId. */
const BEGIN = new LuaScript(
  "idempotency.begin",
  1,
  `${NOW}
local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('SET', KEYS[1], cjson.encode({s = 'p', f = ARGV[1], o = ARGV[2], x = now + tonumber(ARGV[3]), q = ARGV[5]}), 'PX', ARGV[4])
  return {'new'}
end
local d = cjson.decode(raw)
if d.f ~= ARGV[1] then return {'conflict'} end
if d.s == 'd' then return {'replay', d.r} end
if d.x <= now then return {'expired', d.o, d.q or ''} end
return {'in_flight', tostring(d.x - now)}`,
);

/** KEYS: key. ARGV: owner of the expired lease, response JSON, ttlMs, channel, id. */
const EXPIRE_TO_UNKNOWN = new LuaScript(
  "idempotency.expire",
  1,
  `${NOW}
local raw = redis.call('GET', KEYS[1])
if not raw then return {'gone'} end
local d = cjson.decode(raw)
if d.s == 'd' then return {'replay', d.r} end
if d.o ~= ARGV[1] or d.x > now then return {'changed'} end
redis.call('SET', KEYS[1], cjson.encode({s = 'd', f = d.f, o = d.o, r = ARGV[2], e = 1}), 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {'replay', ARGV[2]}`,
);

/**
 * KEYS: key. ARGV: owner, response JSON, ttlMs, channel, id, fingerprint. The owner's answer
 * replaces its pending marker, and also an outcome_unknown written because its lease ran out:
 * the real answer is better for later replays. A key that is gone (Redis lost its data while
 * the answer waited to be written) gets the answer too; one that another request owns now does not.
 */
const COMPLETE = new LuaScript(
  "idempotency.complete",
  1,
  `local raw = redis.call('GET', KEYS[1])
local f = ARGV[6]
if raw then
  local d = cjson.decode(raw)
  if d.o ~= ARGV[1] then return 0 end
  if d.s == 'd' and d.e ~= 1 then return 0 end
  f = d.f
end
redis.call('SET', KEYS[1], cjson.encode({s = 'd', f = f, o = ARGV[1], r = ARGV[2]}), 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1`,
);

/** KEYS: key. ARGV: owner, channel, id. Frees the key when this owner still holds it (or its lapsed lease). */
const ABANDON = new LuaScript(
  "idempotency.abandon",
  1,
  `local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local d = cjson.decode(raw)
if d.o ~= ARGV[1] or (d.s == 'd' and d.e ~= 1) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1`,
);

/** KEYS: key. ARGV: owner, leaseMs. */
const RENEW = new LuaScript(
  "idempotency.renew",
  1,
  `${NOW}
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local d = cjson.decode(raw)
if d.s ~= 'p' or d.o ~= ARGV[1] then return 0 end
d.x = now + tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(d), 'KEEPTTL')
return 1`,
);

export const IDEMPOTENCY_SCRIPTS: readonly LuaScript[] = [BEGIN, EXPIRE_TO_UNKNOWN, COMPLETE, ABANDON, RENEW];

export interface RedisIdempotencyOptions<A> {
  readonly connection: RedisConnection;
  readonly logger: Logger;
  /** How long an answered key is remembered (ms), from its answer. */
  readonly ttlMs: number;
  /** Lease of a pending key (ms); renewed every third of it while the owner works. */
  readonly leaseMs: number;
  /**
   * The answer a replay gets when the first request's pod stopped mid-send (its lease ran
   * out): a 504 outcome_unknown problem carrying the first request's id.
   */
  readonly expiredResponse: (firstRequestId: string) => A;
  /** Counts leases this pod lost while still working (Redis slow or down for longer than the lease). */
  readonly onLeaseLost?: () => void;
}

interface Owned {
  readonly key: string;
  readonly owner: string;
}

/** See the module comment. */
export class RedisIdempotencyStore<A> implements IdempotencyStore<A> {
  readonly #c: RedisConnection;
  readonly #o: RedisIdempotencyOptions<A>;
  readonly #owned = new Set<Owned>();
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #writes: BackgroundWrites;
  readonly #heartbeat: NodeJS.Timeout;

  constructor(options: RedisIdempotencyOptions<A>) {
    this.#c = options.connection;
    this.#o = options;
    this.#writes = new BackgroundWrites({ logger: options.logger, giveUpAfterMs: Math.max(60_000, options.leaseMs * 6), what: "idempotency" });
    this.#c.subscribe("idem", (id) => {
      const waiters = this.#waiters.get(id);
      if (waiters) for (const wake of [...waiters]) wake();
    });
    this.#heartbeat = setInterval(() => void this.#renew(), Math.max(250, Math.floor(options.leaseMs / 3)));
    this.#heartbeat.unref();
  }

  async begin(callerKey: string, key: string, fingerprint: string, context: { requestId?: string } = {}): Promise<IdempotencyClaim<A>> {
    const id = keyId(callerKey, key);
    return this.#claim(id, fingerprint, context.requestId ?? "");
  }

  /** Stops the heartbeat and pending background writes (after a drain). */
  close(): void {
    clearInterval(this.#heartbeat);
    this.#writes.close();
  }

  async #claim(id: string, fingerprint: string, requestId: string): Promise<IdempotencyClaim<A>> {
    const redisKey = `${this.#c.prefix}idem:{${id}}`;
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const owner = randomUUID();
      const reply = (await this.#c.run(BEGIN, [redisKey], [fingerprint, owner, this.#o.leaseMs, this.#o.ttlMs, requestId])) as string[];
      switch (reply[0]) {
        case "new":
          return this.#owner(redisKey, id, owner, fingerprint);
        case "conflict":
          return { kind: "conflict" };
        case "replay":
          return { kind: "replay", response: JSON.parse(reply[1]!) as A };
        case "in_flight":
          return { kind: "in_flight", wait: (signal) => this.#wait(id, fingerprint, requestId, Number(reply[1]), signal) };
        case "expired": {
          const response = JSON.stringify(this.#o.expiredResponse(reply[2] || requestId));
          const after = (await this.#c.run(EXPIRE_TO_UNKNOWN, [redisKey], [reply[1]!, response, this.#o.ttlMs, this.#channel(), id])) as string[];
          if (after[0] === "replay") return { kind: "replay", response: JSON.parse(after[1]!) as A };
          continue; // changed or gone meanwhile: look again
        }
        default:
          throw new Error(`unexpected idempotency reply ${String(reply[0])}`);
      }
    }
    // Only reachable when the key changes hands five times in a row: treat it as still in flight.
    return { kind: "in_flight", wait: (signal) => this.#wait(id, fingerprint, requestId, 100, signal) };
  }

  #channel(): string {
    return `${this.#c.prefix}idem`;
  }

  #owner(redisKey: string, id: string, owner: string, fingerprint: string): IdempotencyNew<A> {
    const owned: Owned = { key: redisKey, owner };
    this.#owned.add(owned);
    let settled = false;
    const write = async (what: "complete" | "abandon", run: () => Promise<unknown>): Promise<void> => {
      try {
        await run();
        this.#owned.delete(owned);
      } catch (err) {
        if (!isStoreUnavailable(err)) throw err;
        // Redis is away: keep renewing (for complete) and retry in the background, so the real
        // answer (or the free key) lands once it is back. The caller's answer does not wait.
        this.#writes.add(what, async () => {
          await run();
          this.#owned.delete(owned);
        }, () => this.#owned.delete(owned));
      }
    };
    return {
      kind: "new",
      complete: (response) => {
        if (settled) return Promise.resolve();
        settled = true;
        return write("complete", () => this.#c.run(COMPLETE, [redisKey], [owner, JSON.stringify(response), this.#o.ttlMs, this.#channel(), id, fingerprint]));
      },
      abandon: () => {
        if (settled) return Promise.resolve();
        settled = true;
        // No more renewals: if the abandon itself cannot be written, the lease lapses into outcome_unknown (safe).
        this.#owned.delete(owned);
        return write("abandon", () => this.#c.run(ABANDON, [redisKey], [owner, this.#channel(), id]));
      },
    };
  }

  #wait(id: string, fingerprint: string, requestId: string, leaseLeftMs: number, signal: AbortSignal | undefined): Promise<IdempotencySettled<A>> {
    return new Promise<IdempotencySettled<A>>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let looking = false;
      let again = false;
      const finish = (): void => {
        done = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const set = this.#waiters.get(id);
        set?.delete(look);
        if (set?.size === 0) this.#waiters.delete(id);
      };
      const onAbort = (): void => {
        if (done) return;
        finish();
        reject(abortReason(signal));
      };
      const schedule = (ms: number): void => {
        if (timer) clearTimeout(timer);
        // Looked at again when the lease would end even if no news arrives (a killed pod publishes nothing).
        timer = setTimeout(look, Math.max(20, ms + 20));
        timer.unref();
      };
      const look = (): void => {
        if (done) return;
        if (looking) {
          again = true;
          return;
        }
        looking = true;
        this.#claim(id, fingerprint, requestId).then(
          (claim) => {
            looking = false;
            if (done) {
              // The waiter gave up meanwhile: an ownership it was handed must not be left hanging.
              if (claim.kind === "new") void claim.abandon();
              return;
            }
            if (claim.kind !== "in_flight") {
              finish();
              resolve(claim);
              return;
            }
            if (again) {
              again = false;
              look();
              return;
            }
            schedule(Math.min(leaseLeftMs, this.#o.leaseMs));
          },
          (err: unknown) => {
            looking = false;
            if (done) return;
            finish();
            reject(err instanceof Error ? err : new Error("the shared store failed"));
          },
        );
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      let set = this.#waiters.get(id);
      if (!set) this.#waiters.set(id, (set = new Set()));
      set.add(look);
      schedule(leaseLeftMs);
      // The first request may have finished between begin() and now.
      look();
    });
  }

  async #renew(): Promise<void> {
    if (this.#owned.size === 0) return;
    const owned = [...this.#owned];
    const results = await this.#c.runMany(owned.map((o) => ({ script: RENEW, keys: [o.key], args: [o.owner, this.#o.leaseMs] })));
    results.forEach((r, i) => {
      const o = owned[i]!;
      // Answered meanwhile (the renewal crossed the completion on the wire): nothing was lost.
      if (r !== 0 || !this.#owned.has(o)) return;
      // Not ours any more: the lease lapsed (Redis was away too long) and the key says outcome_unknown.
      this.#owned.delete(o);
      this.#o.onLeaseLost?.();
    });
  }
}

/** The Redis key id of a (caller, Idempotency-Key) pair: hashed, so no caller text reaches Redis key names. */
export function keyId(callerKey: string, key: string): string {
  return createHash("sha256").update(JSON.stringify([callerKey, key])).digest("hex").slice(0, 40);
}
