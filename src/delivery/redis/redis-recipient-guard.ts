import {
  assertWithinDailyLimit,
  dailyLimitReached,
  noReservation,
  quotaExhausted,
  type RecipientLedger,
  type RecipientReservation,
} from "../recipient-guard.js";
import { systemClock, type Clock } from "../../core/ports.js";
import { LuaScript, type RedisConnection } from "./redis-connection.js";

/**
 * The rolling 24 h recipient guard in Redis: one count per sender mailbox for all replicas, so
 * `recipientsPerDay` is what the mailbox sends, not what each pod sends. Same shape as the
 * in-memory guard: per-minute buckets (a hash: bucket start → count, plus the total under `t`)
 * and a sorted set of bucket starts, so pruning is amortised O(1) and a mailbox costs at most
 * 1440 small fields. A bucket is forgotten a full window after its END (errs towards "too
 * many"). Times are Redis's own clock, so pods with skewed clocks agree.
 */

const NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

// Drops buckets whose end lies a window back; leaves `total` holding what is left.
const PRUNE = `
local horizon = now - tonumber(ARGV[3]) - tonumber(ARGV[4])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon)
local total = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
for i = 1, #old do
  total = total - tonumber(redis.call('HGET', KEYS[1], old[i]) or '0')
  redis.call('HDEL', KEYS[1], old[i])
end
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon)
  if total <= 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    total = 0
  else
    redis.call('HSET', KEYS[1], 't', total)
  end
end`;

/**
 * KEYS: counts hash, bucket set, exhausted marker. ARGV: count, limit, windowMs, bucketMs.
 * Returns {'ok', bucketStart, total}, {'full', retryAfterMs, total} or {'exhausted', ms left, 0}.
 */
const RESERVE = new LuaScript(
  "recipients.reserve",
  3,
  `${NOW}
local exhausted = redis.call('PTTL', KEYS[3])
if exhausted > 0 then return {'exhausted', exhausted, 0} end
${PRUNE}
local count = tonumber(ARGV[1]); local limit = tonumber(ARGV[2])
local windowMs = tonumber(ARGV[3]); local bucketMs = tonumber(ARGV[4])
if total + count > limit then
  local needed = total + count - limit
  local freed = 0
  local starts = redis.call('ZRANGE', KEYS[2], 0, -1)
  for i = 1, #starts do
    freed = freed + tonumber(redis.call('HGET', KEYS[1], starts[i]) or '0')
    if freed >= needed then return {'full', tonumber(starts[i]) + bucketMs + windowMs - now, total} end
  end
  return {'full', windowMs, total}
end
local start = now - (now % bucketMs)
redis.call('HINCRBY', KEYS[1], start, count)
redis.call('HINCRBY', KEYS[1], 't', count)
redis.call('ZADD', KEYS[2], start, start)
redis.call('PEXPIRE', KEYS[1], windowMs + 2 * bucketMs)
redis.call('PEXPIRE', KEYS[2], windowMs + 2 * bucketMs)
return {'ok', start, total + count}`,
);

/** KEYS: counts hash, bucket set. ARGV: bucketStart, count. Gives recipients back while their bucket lives. */
const RELEASE = new LuaScript(
  "recipients.release",
  2,
  `local left = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if left < 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 't', -tonumber(ARGV[2]))
return 1`,
);

/** KEYS: counts hash, bucket set. ARGV: -, -, windowMs, bucketMs. */
const USED = new LuaScript(
  "recipients.used",
  2,
  `${NOW}
${PRUNE}
return total`,
);

/** KEYS: exhausted marker. ARGV: ms. Keeps the later of two ends. */
const EXHAUST = new LuaScript(
  "recipients.exhaust",
  1,
  `if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1`,
);

export const RECIPIENT_SCRIPTS: readonly LuaScript[] = [RESERVE, RELEASE, USED, EXHAUST];

export interface RedisRecipientGuardOptions {
  readonly connection: RedisConnection;
  /** The rolling window (ms). Default 24 h. */
  readonly windowMs?: number;
  /** Bucket width (ms). Default 1 minute. */
  readonly bucketMs?: number;
  /** The service's clock (exhaust's `untilMs` is on it); the window itself runs on Redis's clock. */
  readonly clock?: Clock;
}

/** See the module comment. */
export class RedisRecipientGuard implements RecipientLedger {
  readonly #c: RedisConnection;
  readonly #windowMs: number;
  readonly #bucketMs: number;
  readonly #clock: Clock;

  constructor(options: RedisRecipientGuardOptions) {
    this.#c = options.connection;
    this.#clock = options.clock ?? systemClock;
    this.#windowMs = options.windowMs ?? 86_400_000;
    this.#bucketMs = options.bucketMs ?? 60_000;
  }

  async reserve(key: string, count: number, limit: number): Promise<RecipientReservation> {
    if (count <= 0) return noReservation;
    assertWithinDailyLimit(count, limit);
    const keys = this.#keys(key);
    const [outcome, value] = (await this.#c.run(RESERVE, [...keys, this.#exhaustedKey(key)], [count, limit, this.#windowMs, this.#bucketMs])) as [string, number, number];
    if (outcome === "exhausted") throw quotaExhausted(Number(value));
    if (outcome === "full") throw dailyLimitReached(limit, Math.max(1, Math.ceil(Number(value) / 1000)));
    const bucket = String(value);
    let released = false;
    return {
      count,
      release: () => {
        if (released) return;
        released = true;
        // Redis away: the recipients stay counted (errs towards "too many", never a blocked mailbox).
        this.#c.run(RELEASE, keys, [bucket, count]).catch(() => {});
      },
    };
  }

  async used(key: string): Promise<number> {
    return Number(await this.#c.run(USED, this.#keys(key), ["", "", this.#windowMs, this.#bucketMs]));
  }

  async usage(keys: readonly string[]): Promise<ReadonlyMap<string, number>> {
    const out = new Map<string, number>();
    // Chunks keep one scrape from queueing tens of thousands of commands at once.
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      const results = await this.#c.runMany(chunk.map((k) => ({ script: USED, keys: this.#keys(k), args: ["", "", this.#windowMs, this.#bucketMs] })));
      results.forEach((r, j) => {
        if (r instanceof Error) throw r;
        if (Number(r) > 0) out.set(chunk[j]!, Number(r));
      });
    }
    return out;
  }

  /** Every pod refuses the mailbox until then (Exchange's ErrorSubmissionQuotaExceeded). */
  exhaust(key: string, untilMs: number): void {
    const ms = Math.ceil(untilMs - this.#clock.now());
    if (ms <= 0) return;
    this.#c.run(EXHAUST, [this.#exhaustedKey(key)], [ms]).catch(() => {
      // Redis away: the other pods learn it from Exchange themselves.
    });
  }

  #exhaustedKey(key: string): string {
    return `${this.#c.prefix}rcpt:{${encodeURIComponent(key)}}:exhausted`;
  }

  #keys(key: string): [string, string] {
    const tag = `${this.#c.prefix}rcpt:{${encodeURIComponent(key)}}`;
    return [tag, `${tag}:buckets`];
  }
}
