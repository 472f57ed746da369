/**
 * Per-client-address bookkeeping of the SMTP door: open connections (for the per-client cap)
 * and recent failed AUTH attempts (for the lockout). Bounded: at most `maxAddresses` addresses
 * are remembered; the oldest failure records go first.
 */
export class ClientGuard {
  private readonly open = new Map<string, number>();
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly options: {
      readonly maxConnectionsPerClient: number;
      readonly maxAuthFailures: number;
      readonly windowMs: number;
      readonly now: () => number;
      readonly maxAddresses?: number;
    },
  ) {}

  /** Counts a new connection; false (and not counted) when the address is at its cap. */
  connect(address: string): boolean {
    const n = this.open.get(address) ?? 0;
    if (this.options.maxConnectionsPerClient > 0 && n >= this.options.maxConnectionsPerClient) return false;
    this.open.set(address, n + 1);
    return true;
  }

  disconnect(address: string): void {
    const n = this.open.get(address) ?? 0;
    if (n <= 1) this.open.delete(address);
    else this.open.set(address, n - 1);
  }

  /** Whether the address has used up its failed AUTH attempts in the current window. */
  lockedOut(address: string): boolean {
    return this.recent(address).length >= this.options.maxAuthFailures;
  }

  /** One failed AUTH attempt. */
  authFailed(address: string): void {
    const list = this.recent(address);
    list.push(this.options.now());
    this.failures.delete(address);
    this.failures.set(address, list);
    const max = this.options.maxAddresses ?? 100_000;
    while (this.failures.size > max) {
      const oldest = this.failures.keys().next().value as string;
      this.failures.delete(oldest);
    }
  }

  private recent(address: string): number[] {
    const list = this.failures.get(address);
    if (list === undefined) return [];
    const since = this.options.now() - this.options.windowMs;
    const kept = list.filter((t) => t > since);
    if (kept.length === 0) this.failures.delete(address);
    else if (kept.length !== list.length) this.failures.set(address, kept);
    return kept;
  }
}
