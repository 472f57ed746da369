import { RelayError } from "../core/problems.js";
import { abortReason } from "../core/abort.js";
import { systemClock, type Clock } from "../core/ports.js";

/**
 * Per-mailbox concurrency for Graph sendMail. Graph allows 4 concurrent requests per app per
 * mailbox and answers the fifth with 429; waiting here for a slot is cheaper for everyone than
 * provoking that. Each mailbox has its own slots and its own FIFO line, so one busy tenant never
 * delays another. Waiting is bounded twice: by the line length (`maxQueue`) and by the
 * request's deadline; either way the caller gets 429 rate_limited with an estimated Retry-After.
 *
 * It also remembers Graph's own throttling (`noteThrottled`): until then nobody of that mailbox
 * is let through, and whoever cannot wait that long is refused at once.
 */

/** Limits of one mailbox: `tenants.*.limits` in the config. */
export interface MailboxLimits {
  readonly maxConcurrency: number;
  readonly maxQueue: number;
}

/** A held slot. release() once the Graph call has finished (in `finally`); further calls are no-ops. */
export interface MailboxPermit {
  release(): void;
}

/**
 * Slots per sender mailbox, as the send use case sees them: this class for one process,
 * RedisMailboxLimiter (src/delivery/redis) for all replicas. Same contract for both; the
 * store contract tests run against each.
 */
export interface MailboxGate {
  /** Sets every mailbox's limits (start-up and reload); mailboxes not listed are forgotten once idle. */
  sync(limits: ReadonlyMap<string, MailboxLimits>): void;
  /** See MailboxLimiter.acquire. */
  acquire(key: string, options: { deadline: number; signal?: AbortSignal }): Promise<MailboxPermit>;
  /** Graph asked this mailbox to wait until `untilMs` (epoch ms). */
  noteThrottled(key: string, untilMs: number): void;
  /** Forgets Graph's throttling of this mailbox (config reload), or of every mailbox without a key (SIGHUP). */
  clearThrottle(key?: string): void;
  /** Counts of one mailbox (for /tenants), or undefined when nothing is known of it. */
  snapshot(key: string): MailboxSnapshot | undefined | Promise<MailboxSnapshot | undefined>;
}

/** Starts a timer; returns its cancel function. */
export type SetTimer = (callback: () => void, ms: number) => () => void;

export interface MailboxLimiterOptions {
  readonly clock?: Clock;
  /** Timers for deadlines and throttle ends; the default uses setTimeout, unref'd. */
  readonly setTimer?: SetTimer;
  /** Limits for a mailbox acquired before configure(); default Graph's 4 and a line of 1000. */
  readonly defaultLimits?: MailboxLimits;
  /** Assumed duration of one send until real ones were measured (ms). Default 1000. */
  readonly initialSendMs?: number;
}

/** What a mailbox looks like right now (for /tenants and tests). */
export interface MailboxSnapshot {
  readonly inFlight: number;
  readonly waiting: number;
  readonly maxConcurrency: number;
  readonly maxQueue: number;
  /** Epoch ms until which Graph asked us to hold back, if that is still ahead. */
  readonly throttledUntil?: number;
}

/** The key under which a sender mailbox is limited: addresses are case-insensitive. */
export function mailboxKey(sender: string): string {
  return sender.toLowerCase();
}

const defaultSetTimer: SetTimer = (callback, ms) => {
  // Looked up at call time so test fake timers apply; unref so a waiting line never holds the process open.
  const handle = setTimeout(callback, Math.max(0, ms));
  handle.unref?.();
  return () => clearTimeout(handle);
};

interface Waiter {
  readonly deadline: number;
  readonly resolve: (permit: MailboxPermit) => void;
  readonly reject: (reason: unknown) => void;
  settled: boolean;
  cleanup: () => void;
}

class MailboxState {
  limits: MailboxLimits;
  inFlight = 0;
  /** Live waiters; settled ones are skipped lazily (removal from the middle is O(n)). */
  waiting = 0;
  queue: Waiter[] = [];
  head = 0;
  throttledUntil = 0;
  cancelWake: (() => void) | undefined;
  /** Moving average of how long a slot is held (ms). */
  sendMs: number;
  /** Removed from the config: dropped once idle, while holders and waiters finish undisturbed. */
  retiring = false;

  constructor(limits: MailboxLimits, sendMs: number) {
    this.limits = limits;
    this.sendMs = sendMs;
  }

  idle(): boolean {
    return this.inFlight === 0 && this.waiting === 0 && this.cancelWake === undefined;
  }

  next(): Waiter | undefined {
    while (this.head < this.queue.length) {
      const w = this.queue[this.head] as Waiter;
      this.head += 1;
      if (!w.settled) {
        this.compact();
        return w;
      }
    }
    this.queue = [];
    this.head = 0;
    return undefined;
  }

  /** 1-based place of `w` among the live waiters. */
  position(w: Waiter): number {
    let place = 0;
    for (let i = this.head; i < this.queue.length; i += 1) {
      const other = this.queue[i] as Waiter;
      if (!other.settled) place += 1;
      if (other === w) return place;
    }
    return this.waiting + 1;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}

const EWMA_WEIGHT = 0.2;

/**
 * Slots per sender mailbox, see the module comment. All state is per key: pass
 * mailboxKey(tenant.sender).
 */
export class MailboxLimiter implements MailboxGate {
  readonly #clock: Clock;
  readonly #setTimer: SetTimer;
  readonly #defaults: MailboxLimits;
  readonly #initialSendMs: number;
  readonly #states = new Map<string, MailboxState>();

  constructor(options: MailboxLimiterOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#setTimer = options.setTimer ?? defaultSetTimer;
    this.#defaults = options.defaultLimits ?? { maxConcurrency: 4, maxQueue: 1000 };
    this.#initialSendMs = options.initialSendMs ?? 1000;
  }

  /**
   * Sets a mailbox's limits (start-up and reload). Holders keep their slots when the limit
   * shrinks; new grants wait until the count is under it. A bigger limit lets waiters in at once.
   */
  configure(key: string, limits: MailboxLimits): void {
    const state = this.#states.get(key);
    if (!state) {
      this.#states.set(key, new MailboxState(limits, this.#initialSendMs));
      return;
    }
    state.limits = limits;
    state.retiring = false;
    this.#dispatch(key, state);
  }

  /**
   * Forgets a mailbox that left the config. Holders and waiters finish under the old state;
   * it is dropped when idle, so no one gets twice the slots during a reload.
   */
  remove(key: string): void {
    const state = this.#states.get(key);
    if (!state) return;
    state.retiring = true;
    this.#dropIfIdle(key, state);
  }

  /** Configures every mailbox in `limits` and removes all others: one call per config load. */
  sync(limits: ReadonlyMap<string, MailboxLimits>): void {
    for (const [key, l] of limits) this.configure(key, l);
    for (const key of [...this.#states.keys()]) if (!limits.has(key)) this.remove(key);
  }

  /**
   * Waits for a slot of mailbox `key`. `deadline` (epoch ms) is the latest time the slot is
   * still useful: leave room for the Graph call itself. Rejects with RelayError rate_limited
   * (retryAfterSeconds set) when the line is full, when Graph's throttling outlasts the
   * deadline, or when the deadline passes in line; with `signal.reason` when the signal aborts.
   * A free slot is granted without any timer.
   */
  acquire(key: string, options: { deadline: number; signal?: AbortSignal }): Promise<MailboxPermit> {
    const { deadline, signal } = options;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const state = this.#state(key);
    const now = this.#clock.now();
    const throttled = state.throttledUntil > now;
    if (!throttled && state.waiting === 0 && state.inFlight < state.limits.maxConcurrency) {
      return Promise.resolve(this.#grant(key, state));
    }
    if (throttled && state.throttledUntil >= deadline) {
      return Promise.reject(this.#throttledError(state, now));
    }
    if (state.waiting >= state.limits.maxQueue) {
      return Promise.reject(
        rateLimited(
          `${state.waiting} sends are already waiting for this sender mailbox`,
          this.#estimateMs(state, state.waiting + 1, now),
        ),
      );
    }
    if (deadline <= now) {
      return Promise.reject(rateLimited("no slot of this sender mailbox is free before the deadline", this.#estimateMs(state, state.waiting + 1, now)));
    }
    return new Promise<MailboxPermit>((resolve, reject) => {
      const waiter: Waiter = { deadline, resolve, reject, settled: false, cleanup: () => {} };
      const cancelTimer = this.#setTimer(() => {
        if (waiter.settled) return;
        const estimate = this.#estimateMs(state, state.position(waiter), this.#clock.now());
        this.#settle(key, state, waiter);
        reject(rateLimited("no slot of this sender mailbox became free before the deadline", estimate));
      }, deadline - now);
      const onAbort = (): void => {
        if (waiter.settled) return;
        this.#settle(key, state, waiter);
        reject(abortReason(signal));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      waiter.cleanup = () => {
        cancelTimer();
        signal?.removeEventListener("abort", onAbort);
      };
      state.queue.push(waiter);
      state.waiting += 1;
      if (throttled) this.#scheduleWake(key, state);
    });
  }

  /**
   * Graph answered 429 for this mailbox and asked us to wait until `untilMs` (epoch ms, from
   * Retry-After). Nobody is let through before then; waiters whose deadline comes first are
   * refused now rather than at their deadline.
   */
  noteThrottled(key: string, untilMs: number): void {
    const now = this.#clock.now();
    if (untilMs <= now) return;
    const state = this.#state(key);
    if (untilMs <= state.throttledUntil) return;
    state.throttledUntil = untilMs;
    for (let i = state.head; i < state.queue.length; i += 1) {
      const w = state.queue[i] as Waiter;
      if (w.settled || w.deadline > untilMs) continue;
      this.#settle(key, state, w);
      w.reject(this.#throttledError(state, now));
    }
    if (state.cancelWake) {
      state.cancelWake();
      state.cancelWake = undefined;
    }
    this.#scheduleWake(key, state);
  }

  /**
   * Forgets Graph's 429 for mailbox `key` (a config reload changed its tenant, or SIGHUP): sends
   * waiting for the throttle to end are let in at once. Without `key`, for every mailbox.
   * (Issue 12; a shared implementation must offer the same.)
   */
  clearThrottle(key?: string): void {
    const states = key === undefined ? [...this.#states] : ([[key, this.#states.get(key)]] as const);
    for (const [k, state] of states) {
      if (!state || state.throttledUntil === 0) continue;
      state.throttledUntil = 0;
      if (state.cancelWake) {
        state.cancelWake();
        state.cancelWake = undefined;
      }
      this.#dispatch(k, state);
    }
  }

  /** Epoch ms until which the mailbox is held back after Graph's 429, if still ahead. */
  throttledUntil(key: string): number | undefined {
    const until = this.#states.get(key)?.throttledUntil ?? 0;
    return until > this.#clock.now() ? until : undefined;
  }

  /** Counts of one mailbox, or undefined when it has no state. */
  snapshot(key: string): MailboxSnapshot | undefined {
    const state = this.#states.get(key);
    if (!state) return undefined;
    const throttledUntil = this.throttledUntil(key);
    return {
      inFlight: state.inFlight,
      waiting: state.waiting,
      maxConcurrency: state.limits.maxConcurrency,
      maxQueue: state.limits.maxQueue,
      ...(throttledUntil !== undefined ? { throttledUntil } : {}),
    };
  }

  #state(key: string): MailboxState {
    let state = this.#states.get(key);
    if (!state) {
      state = new MailboxState(this.#defaults, this.#initialSendMs);
      this.#states.set(key, state);
    }
    return state;
  }

  #grant(key: string, state: MailboxState): MailboxPermit {
    state.inFlight += 1;
    const grantedAt = this.#clock.now();
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        state.inFlight -= 1;
        const held = Math.max(0, this.#clock.now() - grantedAt);
        state.sendMs += EWMA_WEIGHT * (held - state.sendMs);
        this.#dispatch(key, state);
      },
    };
  }

  #settle(key: string, state: MailboxState, waiter: Waiter): void {
    waiter.settled = true;
    waiter.cleanup();
    state.waiting -= 1;
    this.#dropIfIdle(key, state);
  }

  #dispatch(key: string, state: MailboxState): void {
    if (state.throttledUntil > this.#clock.now()) {
      this.#scheduleWake(key, state);
      return;
    }
    while (state.inFlight < state.limits.maxConcurrency) {
      const waiter = state.next();
      if (!waiter) break;
      waiter.settled = true;
      waiter.cleanup();
      state.waiting -= 1;
      waiter.resolve(this.#grant(key, state));
    }
    this.#dropIfIdle(key, state);
  }

  #scheduleWake(key: string, state: MailboxState): void {
    // One timer per throttled mailbox, not per waiter.
    if (state.cancelWake || state.waiting === 0) return;
    state.cancelWake = this.#setTimer(() => {
      state.cancelWake = undefined;
      this.#dispatch(key, state);
    }, state.throttledUntil - this.#clock.now());
  }

  #dropIfIdle(key: string, state: MailboxState): void {
    if (state.retiring && state.idle() && this.#states.get(key) === state) this.#states.delete(key);
  }

  /** How long until the `place`-th in line would get a slot: rounds of the average send, after any throttle. */
  #estimateMs(state: MailboxState, place: number, now: number): number {
    const rounds = Math.ceil(place / state.limits.maxConcurrency);
    return Math.max(0, state.throttledUntil - now) + rounds * state.sendMs;
  }

  #throttledError(state: MailboxState, now: number): RelayError {
    return rateLimited("Microsoft Graph is throttling this sender mailbox", state.throttledUntil - now);
  }
}

/** 429 rate_limited with an honest Retry-After (whole seconds, at least 1). */
export function rateLimited(detail: string, waitMs: number): RelayError {
  return new RelayError("rate_limited", detail, { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) });
}
