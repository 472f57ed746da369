import { isRelayError, RelayError } from "../core/problems.js";
import { systemClock, type Clock, type TokenProvider, type TokenTarget } from "../core/ports.js";

/**
 * After Entra rejects a tenant's credential (a wrong or expired secret, an app not in the
 * tenant), asking again a millisecond later gets the same answer, and a busy sender would
 * turn into a flood of failed sign-ins in the customer's Entra logs. So the rejection is
 * remembered for a short time and repeated from memory. Only credential_rejected is
 * remembered: an unreachable Entra (upstream_unavailable) may be back at the next call.
 */

export interface RememberingTokenProviderOptions {
  /**
   * How long a rejection is answered from memory (`server.credentialFailureHoldSeconds` × 1000);
   * a function is read at each rejection, so a reloaded value applies. 0 turns it off.
   */
  readonly holdMs: number | (() => number);
  readonly clock?: Clock;
  /** Where rejections are kept; default this process's memory (RedisRejectionBook shares them between replicas). */
  readonly book?: RejectionBook;
}

/** A rejection being answered from memory. */
export interface RememberedRejection {
  readonly error: RelayError;
  /** Epoch ms when Entra said no. */
  readonly since: number;
  /** Epoch ms when Entra will be asked again. */
  readonly until: number;
}

/** A TokenProvider that repeats Entra's credential_rejected from memory for a while. */
export interface RememberingTokenProvider extends TokenProvider {
  /** Forgets rejections for a tenant key (a reload brought a new credential), or all without an argument. */
  forget(tenantKey?: string): void;
  /** The rejection answered from memory for this tenant key now, if any (for GET /tenants). */
  rejection(tenantKey: string): RememberedRejection | undefined;
}

/** A remembered rejection with the tenant key it belongs to. */
export interface RejectionEntry extends RememberedRejection {
  readonly tenantKey: string;
}

/**
 * Where remembered rejections live, by target id. Reads are synchronous and local (the send
 * path's common case looks at `size` only); a shared book copies writes to the other replicas.
 */
export interface RejectionBook {
  readonly size: number;
  get(id: string): RejectionEntry | undefined;
  set(id: string, entry: RejectionEntry): void;
  delete(id: string): void;
  /** Forgets a tenant's rejections, or all without an argument. */
  forget(tenantKey?: string): void;
  /** Every remembered rejection, expired ones possibly included (they are dropped when looked up). */
  values(): IterableIterator<RejectionEntry>;
}

/** The default book: a Map in this process. */
export class MemoryRejectionBook implements RejectionBook {
  readonly #entries = new Map<string, RejectionEntry>();

  get size(): number {
    return this.#entries.size;
  }

  get(id: string): RejectionEntry | undefined {
    return this.#entries.get(id);
  }

  set(id: string, entry: RejectionEntry): void {
    this.#entries.set(id, entry);
  }

  delete(id: string): void {
    this.#entries.delete(id);
  }

  forget(tenantKey?: string): void {
    if (tenantKey === undefined) {
      this.#entries.clear();
      return;
    }
    for (const [id, entry] of this.#entries) if (entry.tenantKey === tenantKey) this.#entries.delete(id);
  }

  values(): IterableIterator<RejectionEntry> {
    return this.#entries.values();
  }
}

type Entry = RejectionEntry;

/**
 * Wraps `inner`. Rejections are remembered per token target — tenant key, tenant id and the app
 * registration with its credential settings — so a reload that changes any of these asks Entra
 * at once even without forget(), while an unchanged tenant keeps its memory across the reload.
 * The inner provider's other methods (the Entra provider's invalidate() and close()) are
 * passed through, bound to it, so the wrapper can stand wherever the inner one did.
 */
export function createRememberingTokenProvider<P extends TokenProvider>(
  inner: P,
  options: RememberingTokenProviderOptions,
): Omit<P, keyof RememberingTokenProvider> & RememberingTokenProvider {
  const clock = options.clock ?? systemClock;
  const entries: RejectionBook = options.book ?? new MemoryRejectionBook();
  // Targets are frozen and kept across reloads while their tenant is unchanged: one id each.
  const ids = new WeakMap<TokenTarget, string>();
  const idOf = (target: TokenTarget): string => {
    let id = ids.get(target);
    if (id === undefined) ids.set(target, (id = targetId(target)));
    return id;
  };

  const live = (id: string, now: number): Entry | undefined => {
    const entry = entries.get(id);
    if (entry && entry.until <= now) {
      entries.delete(id);
      return undefined;
    }
    return entry;
  };
  // The send path's usual case: nothing remembered, nothing to look up.
  const rememberedFor = (target: TokenTarget): Entry | undefined => (entries.size > 0 ? live(idOf(target), clock.now()) : undefined);

  const own: RememberingTokenProvider = {
    cachedToken(target: TokenTarget): string | undefined {
      // A remembered rejection wins over a token cached before it (getToken throws it).
      if (rememberedFor(target)) return undefined;
      return inner.cachedToken?.(target);
    },

    async getToken(target: TokenTarget, signal?: AbortSignal): Promise<string> {
      const remembered = rememberedFor(target);
      if (remembered) throw fromMemory(remembered);
      try {
        return await inner.getToken(target, signal);
      } catch (err) {
        const holdMs = typeof options.holdMs === "function" ? options.holdMs() : options.holdMs;
        if (holdMs > 0 && isRelayError(err) && err.code === "credential_rejected") {
          const since = clock.now();
          entries.set(idOf(target), { error: err, since, until: since + holdMs, tenantKey: target.tenantKey });
        }
        throw err;
      }
    },

    forget(tenantKey?: string): void {
      entries.forget(tenantKey);
    },

    rejection(tenantKey: string): RememberedRejection | undefined {
      const now = clock.now();
      let found: Entry | undefined;
      for (const entry of entries.values()) {
        if (entry.until > now && entry.tenantKey === tenantKey && (!found || entry.since > found.since)) found = entry;
      }
      return found ? { error: found.error, since: found.since, until: found.until } : undefined;
    },
  };
  return Object.assign(passThrough(inner), own) as Omit<P, keyof RememberingTokenProvider> & RememberingTokenProvider;
}

/**
 * The inner provider's methods bound to it, and its other properties read through (own and
 * inherited, e.g. a class's methods and getters), getToken excluded.
 */
function passThrough(inner: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const source = inner as Record<string, unknown>;
  for (let o: object | null = inner; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const name of Object.getOwnPropertyNames(o)) {
      if (name === "constructor" || name === "getToken" || name in out) continue;
      const value: unknown = source[name];
      if (typeof value === "function") out[name] = (value as (...args: unknown[]) => unknown).bind(inner);
      else Object.defineProperty(out, name, { get: () => source[name], enumerable: true, configurable: true });
    }
  }
  return out;
}

function fromMemory(entry: Entry): RelayError {
  const again = new Date(entry.until).toISOString();
  return new RelayError(
    "credential_rejected",
    `${entry.error.message} (remembered from ${new Date(entry.since).toISOString()}; Entra ID is asked again after ${again})`,
    { ...entry.error.extras },
  );
}

/** Stable identity of a target; configs hold file paths and env names, never secret values. */
function targetId(target: TokenTarget): string {
  return JSON.stringify([target.tenantKey, target.tenantId.toLowerCase(), target.app]);
}
