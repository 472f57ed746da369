import { createHash, hash, timingSafeEqual } from "node:crypto";
import type { Config } from "../config/schema.js";

/** An authenticated calling application. */
export interface Caller {
  /** Name from the config (`billing`): the log label. Never the key. */
  readonly name: string;
  /** Tenant keys it may send for; `"*"` = all. */
  readonly tenants: ReadonlySet<string> | "*";
  readonly admin: boolean;
}

interface KeyEntry {
  readonly digest: Buffer;
  readonly caller: Caller;
}

/**
 * Callers by API key. Only SHA-256 digests are stored (the config never holds a key).
 *
 * Timing: the presented key is hashed first, then its digest is compared with EVERY
 * configured digest by `timingSafeEqual`, without stopping at a match. The time taken
 * depends on the number of callers only, not on which one matched or how many leading
 * bytes agreed. (A Map keyed by the hex digest would also be acceptable: its timing can at
 * most reveal a prefix of a stored digest, and choosing keys whose digests share a chosen
 * prefix costs 2^8 hashes per byte, while a digest is useless without a SHA-256 preimage.
 * The linear scan needs no such argument and costs nanoseconds for the few callers a
 * deployment has.)
 */
export class CallerDirectory {
  private readonly entries: readonly KeyEntry[];

  constructor(config: Pick<Config, "callers">) {
    this.entries = Object.entries(config.callers).map(([name, c]) => ({
      digest: Buffer.from(c.keySha256, "hex"),
      caller: Object.freeze({
        name,
        tenants: c.tenants.includes("*") ? ("*" as const) : new Set(c.tenants),
        admin: c.admin,
      }),
    }));
  }

  /** The caller whose key this is, or undefined. */
  authenticate(apiKey: string): Caller | undefined {
    // crypto.hash: one call, no Hash object per request.
    const digest = hash("sha256", apiKey, "buffer");
    let found: Caller | undefined;
    for (const e of this.entries) {
      // No early exit: every entry is compared whatever the outcome.
      if (timingSafeEqual(digest, e.digest)) found = e.caller;
    }
    return found;
  }
}

/** Whether `caller` may send for `tenantKey` by its allow-list (not whether the tenant exists). */
export function callerMayUse(caller: Caller, tenantKey: string): boolean {
  return caller.tenants === "*" || caller.tenants.has(tenantKey);
}

/** Hex SHA-256 of an API key, as `callers.*.keySha256` expects it. */
export function apiKeyDigest(apiKey: string): string {
  return createHash("sha256").update(apiKey, "utf8").digest("hex");
}
