import type { Logger } from "pino";

/**
 * Writes that must reach Redis eventually (an Idempotency-Key's answer, a freed key) but failed
 * because Redis was away. They are retried with backoff until they succeed or `giveUpAfterMs`
 * passes; the caller's answer never waits for them. Bounded: beyond `maxPending` the oldest
 * write is given up (logged), so a long outage cannot grow memory without limit.
 */
export class BackgroundWrites {
  readonly #logger: Logger;
  readonly #giveUpAfterMs: number;
  readonly #maxPending: number;
  readonly #what: string;
  readonly #pending = new Set<Task>();
  #closed = false;

  constructor(options: { logger: Logger; giveUpAfterMs: number; what: string; maxPending?: number }) {
    this.#logger = options.logger;
    this.#giveUpAfterMs = options.giveUpAfterMs;
    this.#maxPending = options.maxPending ?? 10_000;
    this.#what = options.what;
  }

  /** Retries `write` until it resolves; `onGiveUp` runs when it never did. */
  add(kind: string, write: () => Promise<unknown>, onGiveUp: () => void = () => {}): void {
    if (this.#closed) return;
    if (this.#pending.size >= this.#maxPending) {
      const oldest = this.#pending.values().next().value as Task;
      this.#drop(oldest, "too many writes waiting for Redis");
    }
    const task: Task = { kind, write, onGiveUp, giveUpAt: Date.now() + this.#giveUpAfterMs, delayMs: 250, timer: undefined };
    this.#pending.add(task);
    this.#schedule(task);
  }

  /** Writes still waiting for Redis. */
  get size(): number {
    return this.#pending.size;
  }

  close(): void {
    this.#closed = true;
    for (const task of this.#pending) if (task.timer) clearTimeout(task.timer);
    if (this.#pending.size > 0) this.#logger.warn({ store: this.#what, pending: this.#pending.size }, "store: stopping with writes Redis never took");
    this.#pending.clear();
  }

  #schedule(task: Task): void {
    task.timer = setTimeout(() => {
      task.write().then(
        () => this.#pending.delete(task),
        () => {
          if (!this.#pending.has(task)) return;
          if (Date.now() >= task.giveUpAt) {
            this.#drop(task, "Redis did not come back in time");
            return;
          }
          task.delayMs = Math.min(task.delayMs * 2, 5_000);
          this.#schedule(task);
        },
      );
    }, task.delayMs);
    task.timer.unref();
  }

  #drop(task: Task, reason: string): void {
    if (task.timer) clearTimeout(task.timer);
    this.#pending.delete(task);
    task.onGiveUp();
    this.#logger.error({ store: this.#what, write: task.kind, reason }, "store: gave up a write to Redis");
  }
}

interface Task {
  readonly kind: string;
  readonly write: () => Promise<unknown>;
  readonly onGiveUp: () => void;
  readonly giveUpAt: number;
  delayMs: number;
  timer: NodeJS.Timeout | undefined;
}
