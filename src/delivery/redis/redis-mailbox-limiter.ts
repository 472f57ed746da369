import { randomUUID } from "node:crypto";
import { abortReason } from "../../core/abort.js";
import type { Logger } from "pino";
import { systemClock, type Clock } from "../../core/ports.js";
import { rateLimited, type MailboxGate, type MailboxLimits, type MailboxPermit, type MailboxSnapshot } from "../mailbox-limiter.js";
import { LuaScript, type RedisConnection, type ScriptCall } from "./redis-connection.js";

/**
 * Per-mailbox concurrency over all replicas, in Redis. The same contract as the in-memory
 * MailboxLimiter: at most `maxConcurrency` slots per sender mailbox, a FIFO line bounded by
 * `maxQueue` and by each request's deadline, Graph's 429 holding the whole line until its
 * Retry-After, honest Retry-After on every refusal.
 *
 * Per mailbox (one hash tag, so a cluster would keep them on one node):
 *   …:holders   sorted set  slot token → lease end (Redis time, ms)
 *   …:queue     sorted set  waiter token → ticket (FIFO order)
 *   …:alive     sorted set  waiter token → lease end (waiters of a killed pod drop out)
 *   …:throttle  string      set while Graph's Retry-After runs (PX = its length)
 *   …:seq       counter     tickets
 * Holders and waiters renew their leases while they live (one pipelined call per pod per
 * third of a lease); a killed pod's slots come back when its leases end. A waiter may take a
 * slot only when fewer waiters are ahead of it than slots are free, which keeps the line FIFO
 * across pods. Releases and throttle changes are published on the `mailbox` channel, and the
 * head waiter of each pod also polls, so a lost message or a lease that ran out costs at most
 * one poll interval.
 */

const NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

/**
 * KEYS: holders, queue, alive, throttle, seq. ARGV: token, max, maxQueue, leaseMs, waitLeaseMs, remainingMs.
 * Returns {outcome, throttleMs, holders, position}; outcome granted | wait | throttled | full.
 */
const ACQUIRE = new LuaScript(
  "mailbox.acquire",
  5,
  `${NOW}
local token = ARGV[1]
local max = tonumber(ARGV[2]); local maxQueue = tonumber(ARGV[3])
local lease = tonumber(ARGV[4]); local waitLease = tonumber(ARGV[5]); local remaining = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #dead do redis.call('ZREM', KEYS[2], dead[i]) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local held = redis.call('ZCARD', KEYS[1])
local queued = redis.call('ZCARD', KEYS[2])
local rank = redis.call('ZRANK', KEYS[2], token)
local throttle = redis.call('PTTL', KEYS[4])
if throttle > 0 then
  if throttle >= remaining then
    if rank then redis.call('ZREM', KEYS[2], token); redis.call('ZREM', KEYS[3], token) end
    return {'throttled', throttle, held, queued}
  end
else
  throttle = 0
  local ahead = queued
  if rank then ahead = rank end
  if max - held > ahead then
    if rank then redis.call('ZREM', KEYS[2], token); redis.call('ZREM', KEYS[3], token) end
    redis.call('ZADD', KEYS[1], now + lease, token)
    redis.call('PEXPIRE', KEYS[1], lease * 2)
    return {'granted', 0, held + 1, 0}
  end
end
if not rank then
  if queued >= maxQueue then return {'full', throttle, held, queued} end
  local ticket = redis.call('INCR', KEYS[5])
  redis.call('PEXPIRE', KEYS[5], 86400000)
  redis.call('ZADD', KEYS[2], ticket, token)
  rank = queued
end
redis.call('ZADD', KEYS[3], now + waitLease, token)
redis.call('PEXPIRE', KEYS[2], waitLease * 2)
redis.call('PEXPIRE', KEYS[3], waitLease * 2)
return {'wait', throttle, held, rank + 1}`,
);

/** KEYS: holders, queue. ARGV: token, channel, mailbox. Frees the slot; wakes the line when someone waits. */
const RELEASE = new LuaScript(
  "mailbox.release",
  2,
  `local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[2]) > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed`,
);

/** KEYS: queue, alive. ARGV: token. A waiter that gave up leaves the line. */
const LEAVE = new LuaScript(
  "mailbox.leave",
  2,
  `redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`,
);

/** KEYS: holders or alive. ARGV: leaseMs, token… Renews leases still held; returns how many were. */
const RENEW = new LuaScript(
  "mailbox.renew",
  1,
  `${NOW}
local n = 0
for i = 2, #ARGV do n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return n`,
);

/** KEYS: throttle. ARGV: ms, channel, mailbox. Keeps the later of two throttle ends. */
const THROTTLE = new LuaScript(
  "mailbox.throttle",
  1,
  `local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1`,
);

/** KEYS: throttle. ARGV: channel, mailbox. */
const CLEAR_THROTTLE = new LuaScript(
  "mailbox.clearThrottle",
  1,
  `redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`,
);

/** KEYS: holders, queue, alive, throttle. Returns {holders, waiting, throttleMs}. */
const SNAPSHOT = new LuaScript(
  "mailbox.snapshot",
  4,
  `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for i = 1, #dead do redis.call('ZREM', KEYS[2], dead[i]) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local throttle = redis.call('PTTL', KEYS[4])
if throttle < 0 then throttle = 0 end
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), throttle}`,
);

export const MAILBOX_SCRIPTS: readonly LuaScript[] = [ACQUIRE, RELEASE, LEAVE, RENEW, THROTTLE, CLEAR_THROTTLE, SNAPSHOT];

export interface RedisMailboxLimiterOptions {
  readonly connection: RedisConnection;
  readonly logger: Logger;
  /** Slot and waiter lease (ms): how soon a killed pod's holds come back. */
  readonly leaseMs: number;
  readonly clock?: Clock;
  /** How often the head waiter of a mailbox asks again without news (ms). Default 250. */
  readonly pollMs?: number;
  readonly defaultLimits?: MailboxLimits;
  /** Assumed duration of one send until real ones were measured (ms). Default 1000. */
  readonly initialSendMs?: number;
  /** Counts slots whose lease lapsed while this pod still used them. */
  readonly onLeaseLost?: () => void;
}

interface Waiter {
  readonly token: string;
  readonly deadline: number;
  readonly resolve: (permit: MailboxPermit) => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
  position: number;
}

interface Mailbox {
  readonly keys: { holders: string; queue: string; alive: string; throttle: string; seq: string };
  /** This pod's waiters in the order they joined the line (= ticket order). */
  readonly waiters: Waiter[];
  /** This pod's slot tokens. */
  readonly held: Set<string>;
  /** Moving average of how long a slot is held (ms), for Retry-After estimates. */
  sendMs: number;
  busy: boolean;
  again: boolean;
  /** Local copy of the shared throttle end (epoch ms), for estimates. */
  throttledUntil: number;
}

const EWMA_WEIGHT = 0.2;

/** See the module comment. */
export class RedisMailboxLimiter implements MailboxGate {
  readonly #c: RedisConnection;
  readonly #o: RedisMailboxLimiterOptions;
  readonly #clock: Clock;
  readonly #pollMs: number;
  readonly #limits = new Map<string, MailboxLimits>();
  readonly #defaults: MailboxLimits;
  readonly #mailboxes = new Map<string, Mailbox>();
  readonly #heartbeat: NodeJS.Timeout;

  constructor(options: RedisMailboxLimiterOptions) {
    this.#c = options.connection;
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#pollMs = options.pollMs ?? 250;
    this.#defaults = options.defaultLimits ?? { maxConcurrency: 4, maxQueue: 1000 };
    this.#c.subscribe("mailbox", (key) => {
      const box = this.#mailboxes.get(key);
      if (box && box.waiters.length > 0) this.#pump(key, box);
    });
    this.#heartbeat = setInterval(() => void this.#renew(), Math.max(250, Math.floor(options.leaseMs / 3)));
    this.#heartbeat.unref();
  }

  sync(limits: ReadonlyMap<string, MailboxLimits>): void {
    this.#limits.clear();
    for (const [key, l] of limits) this.#limits.set(key, l);
    for (const [key, box] of this.#mailboxes) {
      // A bigger limit may let this pod's waiters in at once.
      if (box.waiters.length > 0) this.#pump(key, box);
      // Mailboxes gone from the config cost nothing once idle.
      else if (!limits.has(key) && box.held.size === 0) this.#mailboxes.delete(key);
    }
  }

  async acquire(key: string, options: { deadline: number; signal?: AbortSignal }): Promise<MailboxPermit> {
    const { deadline, signal } = options;
    if (signal?.aborted) throw abortReason(signal);
    const box = this.#box(key);
    const token = randomUUID();
    const reply = await this.#ask(key, box, token, deadline);
    if (reply.outcome === "granted") return this.#permit(key, box, token);
    if (reply.outcome !== "wait") throw this.#refusal(key, box, reply);
    if (deadline <= this.#clock.now()) {
      this.#leave(box, token);
      throw rateLimited("no slot of this sender mailbox is free before the deadline", this.#estimateMs(key, box, reply.position));
    }
    return new Promise<MailboxPermit>((resolve, reject) => {
      const waiter: Waiter = {
        token,
        deadline,
        resolve,
        reject,
        signal,
        onAbort: () => {
          if (waiter.settled) return;
          this.#settle(box, waiter);
          this.#leave(box, token);
          reject(abortReason(signal));
        },
        timer: undefined,
        settled: false,
        position: reply.position,
      };
      waiter.timer = setTimeout(() => {
        if (waiter.settled) return;
        const estimate = this.#estimateMs(key, box, waiter.position);
        this.#settle(box, waiter);
        this.#leave(box, token);
        reject(rateLimited("no slot of this sender mailbox became free before the deadline", estimate));
      }, deadline - this.#clock.now());
      waiter.timer.unref();
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      box.waiters.push(waiter);
      this.#schedulePoll(key, box, reply.throttleMs > 0 ? reply.throttleMs : this.#pollMs);
    });
  }

  noteThrottled(key: string, untilMs: number): void {
    const ms = Math.ceil(untilMs - this.#clock.now());
    if (ms <= 0) return;
    const box = this.#box(key);
    box.throttledUntil = Math.max(box.throttledUntil, untilMs);
    this.#c.run(THROTTLE, [box.keys.throttle], [ms, `${this.#c.prefix}mailbox`, key]).catch(() => {
      // Redis away: the other pods will meet Graph's 429 themselves; nothing else to do.
    });
  }

  /** Forgets Graph's throttling of this mailbox on every pod (config reload), or of every configured mailbox (SIGHUP). */
  clearThrottle(key?: string): void {
    for (const k of key === undefined ? [...new Set([...this.#limits.keys(), ...this.#mailboxes.keys()])] : [key]) {
      const box = this.#box(k);
      box.throttledUntil = 0;
      this.#c.run(CLEAR_THROTTLE, [box.keys.throttle], [`${this.#c.prefix}mailbox`, k]).catch(() => {});
    }
  }

  async snapshot(key: string): Promise<MailboxSnapshot | undefined> {
    const box = this.#box(key);
    const [holders, waiting, throttleMs] = (await this.#c.run(SNAPSHOT, [box.keys.holders, box.keys.queue, box.keys.alive, box.keys.throttle], [])) as number[];
    const limits = this.#limitsOf(key);
    return {
      inFlight: holders!,
      waiting: waiting!,
      maxConcurrency: limits.maxConcurrency,
      maxQueue: limits.maxQueue,
      ...(throttleMs! > 0 ? { throttledUntil: this.#clock.now() + throttleMs! } : {}),
    };
  }

  /** Stops the heartbeat; slots still held lapse with their leases. */
  close(): void {
    clearInterval(this.#heartbeat);
  }

  #limitsOf(key: string): MailboxLimits {
    return this.#limits.get(key) ?? this.#defaults;
  }

  #box(key: string): Mailbox {
    let box = this.#mailboxes.get(key);
    if (!box) {
      const tag = `${this.#c.prefix}mb:{${encodeURIComponent(key)}}`;
      box = {
        keys: { holders: `${tag}:holders`, queue: `${tag}:queue`, alive: `${tag}:alive`, throttle: `${tag}:throttle`, seq: `${tag}:seq` },
        waiters: [],
        held: new Set(),
        sendMs: this.#o.initialSendMs ?? 1000,
        busy: false,
        again: false,
        throttledUntil: 0,
      };
      this.#mailboxes.set(key, box);
    }
    return box;
  }

  async #ask(key: string, box: Mailbox, token: string, deadline: number): Promise<Reply> {
    const limits = this.#limitsOf(key);
    const { holders, queue, alive, throttle, seq } = box.keys;
    const raw = (await this.#c.run(
      ACQUIRE,
      [holders, queue, alive, throttle, seq],
      [token, limits.maxConcurrency, limits.maxQueue, this.#o.leaseMs, this.#o.leaseMs, Math.max(0, deadline - this.#clock.now())],
    )) as [string, number, number, number];
    const reply: Reply = { outcome: raw[0] as Reply["outcome"], throttleMs: Number(raw[1]), holders: Number(raw[2]), position: Number(raw[3]) };
    box.throttledUntil = reply.throttleMs > 0 ? this.#clock.now() + reply.throttleMs : 0;
    return reply;
  }

  #refusal(key: string, box: Mailbox, reply: Reply): Error {
    if (reply.outcome === "throttled") return rateLimited("Microsoft Graph is throttling this sender mailbox", reply.throttleMs);
    return rateLimited(`${reply.position} sends are already waiting for this sender mailbox`, this.#estimateMs(key, box, reply.position + 1));
  }

  #permit(key: string, box: Mailbox, token: string): MailboxPermit {
    box.held.add(token);
    const grantedAt = this.#clock.now();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        box.held.delete(token);
        const heldMs = Math.max(0, this.#clock.now() - grantedAt);
        box.sendMs += EWMA_WEIGHT * (heldMs - box.sendMs);
        this.#c.run(RELEASE, [box.keys.holders, box.keys.queue], [token, `${this.#c.prefix}mailbox`, key]).then(
          () => {
            // This pod's own line learns at once, without waiting for the published message.
            if (box.waiters.length > 0) this.#pump(key, box);
          },
          () => {
            // Redis away: the slot comes back when its lease ends.
          },
        );
      },
    };
  }

  /**
   * Asks again for this pod's waiters, head first, until one has to keep waiting: those behind
   * it locally are behind it in the shared line too (tickets follow the order of asking).
   */
  #pump(key: string, box: Mailbox): void {
    if (box.busy) {
      box.again = true;
      return;
    }
    box.busy = true;
    const step = async (): Promise<void> => {
      while (box.waiters.length > 0) {
        const waiter = box.waiters[0]!;
        let reply: Reply;
        try {
          reply = await this.#ask(key, box, waiter.token, waiter.deadline);
        } catch {
          // Redis away: keep waiting; the deadline answers if it does not come back.
          this.#schedulePoll(key, box, this.#pollMs * 4);
          return;
        }
        if (waiter.settled) {
          if (reply.outcome === "granted") this.#permit(key, box, waiter.token).release();
          continue;
        }
        if (reply.outcome === "granted") {
          this.#settle(box, waiter);
          waiter.resolve(this.#permit(key, box, waiter.token));
          continue;
        }
        if (reply.outcome === "wait") {
          waiter.position = reply.position;
          // Graph's throttling refuses at once those whose deadline comes first.
          if (reply.throttleMs > 0) this.#refuseThrottled(box, reply.throttleMs);
          this.#schedulePoll(key, box, reply.throttleMs > 0 ? reply.throttleMs : this.#pollMs);
          return;
        }
        // throttled beyond this waiter's deadline, or (after a limit change) a full line
        this.#settle(box, waiter);
        this.#leave(box, waiter.token);
        waiter.reject(this.#refusal(key, box, reply));
      }
    };
    void step().finally(() => {
      box.busy = false;
      if (box.again) {
        box.again = false;
        if (box.waiters.length > 0) this.#pump(key, box);
      }
    });
  }

  #refuseThrottled(box: Mailbox, throttleMs: number): void {
    const until = this.#clock.now() + throttleMs;
    for (const w of [...box.waiters]) {
      if (w.settled || w.deadline > until) continue;
      this.#settle(box, w);
      this.#leave(box, w.token);
      w.reject(rateLimited("Microsoft Graph is throttling this sender mailbox", throttleMs));
    }
  }

  #pollTimers = new Map<string, NodeJS.Timeout>();

  #schedulePoll(key: string, box: Mailbox, ms: number): void {
    const existing = this.#pollTimers.get(key);
    if (existing) clearTimeout(existing);
    // Jitter, so pods polling the same mailbox do not ask in lockstep.
    const timer = setTimeout(() => {
      this.#pollTimers.delete(key);
      if (box.waiters.length > 0) this.#pump(key, box);
    }, ms + Math.floor(Math.random() * 50));
    timer.unref();
    this.#pollTimers.set(key, timer);
  }

  #settle(box: Mailbox, waiter: Waiter): void {
    waiter.settled = true;
    if (waiter.timer) clearTimeout(waiter.timer);
    waiter.signal?.removeEventListener("abort", waiter.onAbort);
    const i = box.waiters.indexOf(waiter);
    if (i >= 0) box.waiters.splice(i, 1);
  }

  #leave(box: Mailbox, token: string): void {
    this.#c.run(LEAVE, [box.keys.queue, box.keys.alive], [token]).catch(() => {
      // Redis away: the waiter's lease ends and the line forgets it.
    });
  }

  async #renew(): Promise<void> {
    const calls: (ScriptCall & { expect: number })[] = [];
    for (const box of this.#mailboxes.values()) {
      if (box.held.size > 0) calls.push({ script: RENEW, keys: [box.keys.holders], args: [this.#o.leaseMs, ...box.held], expect: box.held.size });
      const waiting = box.waiters.filter((w) => !w.settled).map((w) => w.token);
      if (waiting.length > 0) calls.push({ script: RENEW, keys: [box.keys.alive], args: [this.#o.leaseMs, ...waiting], expect: -1 });
    }
    if (calls.length === 0) return;
    const results = await this.#c.runMany(calls);
    results.forEach((r, i) => {
      const expected = calls[i]!.expect;
      // ZADD XX CH counts updated members; fewer than held means a lease lapsed while the send ran.
      if (expected > 0 && typeof r === "number" && r < expected) this.#o.onLeaseLost?.();
    });
  }

  /** How long until the `place`-th in line would get a slot: rounds of the average send, after any throttle. */
  #estimateMs(key: string, box: Mailbox, place: number): number {
    const limits = this.#limitsOf(key);
    const rounds = Math.ceil(Math.max(1, place) / limits.maxConcurrency);
    return Math.max(0, box.throttledUntil - this.#clock.now()) + rounds * box.sendMs;
  }
}

interface Reply {
  readonly outcome: "granted" | "wait" | "throttled" | "full";
  readonly throttleMs: number;
  readonly holders: number;
  readonly position: number;
}
