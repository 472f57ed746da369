import { systemClock, type Clock } from "../core/ports.js";

/**
 * Things that may be used once only (an admin-consent `state` parameter): the first claim of an
 * id within its time to live wins, every later one is refused. A shared implementation makes the
 * first claim on any replica the only one.
 */
export interface OnceBook {
  /** True the first time `id` is claimed (until `ttlMs` after that claim), false afterwards. */
  claim(id: string, ttlMs: number): Promise<boolean>;
}

/** The in-process book, bounded: the oldest ids are forgotten first beyond `maxEntries`. */
export class MemoryOnceBook implements OnceBook {
  readonly #clock: Clock;
  readonly #maxEntries: number;
  /** id → expiry (epoch ms), in claim order. */
  readonly #claimed = new Map<string, number>();

  constructor(options: { clock?: Clock; maxEntries?: number } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#maxEntries = options.maxEntries ?? 100_000;
  }

  claim(id: string, ttlMs: number): Promise<boolean> {
    const now = this.#clock.now();
    for (const [old, until] of this.#claimed) {
      if (until > now && this.#claimed.size < this.#maxEntries) break;
      this.#claimed.delete(old);
    }
    const until = this.#claimed.get(id);
    if (until !== undefined && until > now) return Promise.resolve(false);
    this.#claimed.delete(id);
    this.#claimed.set(id, now + ttlMs);
    return Promise.resolve(true);
  }
}
