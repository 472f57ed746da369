import type { WorkTracker } from "./ports.js";

/**
 * Readiness and graceful shutdown. Work is each send the use case has taken on, until its
 * Graph call is over (a caller that hangs up does not cut short a send that is already on its
 * way to Graph); the HTTP exchanges around it are the listener's to close.
 */
export class Lifecycle implements WorkTracker {
  private draining = false;
  private active = 0;
  private waiters: (() => void)[] = [];
  /** Pre-bound so a listener can be attached per request without allocating a closure. */
  readonly leave = (): void => {
    this.active--;
    if (this.active === 0 && this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  };

  /** 200 on /readyz: config loaded (the app exists only then) and not shutting down. */
  get ready(): boolean {
    return !this.draining;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Work in progress. */
  get inProgress(): number {
    return this.active;
  }

  enter(): void {
    this.active++;
  }

  /** From now on /readyz answers 503 and new sends are refused. */
  beginDrain(): void {
    this.draining = true;
  }

  /** Resolves true when no work is left, or false when `timeoutMs` passed first. */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }
}
