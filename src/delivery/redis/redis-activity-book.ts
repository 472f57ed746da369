import type { Clock } from "../../core/ports.js";
import { TenantStatusBook, type TenantActivity, type TenantActivityBook } from "../tenant-status.js";
import type { RedisConnection } from "./redis-connection.js";

/**
 * The last outcome per tenant for GET /tenants, shared: each pod records locally and writes
 * the tenant's latest activity to one Redis hash (without waiting; it rides along with the
 * send's other commands), and /tenants merges the hash in first, so every replica shows the
 * newest outcome and problem whichever pod saw them.
 */
export function createRedisActivityBook(connection: RedisConnection, clock: Clock): TenantActivityBook {
  const hash = `${connection.prefix}status`;
  const book = new TenantStatusBook({
    clock,
    onRecord: (tenantKey, activity) => {
      connection.command("status.record", "HSET", [hash, tenantKey, JSON.stringify(activity)]).catch(() => {
        // Redis away: this pod still shows what it saw.
      });
    },
  });
  return {
    record: (tenantKey, outcome, note) => book.record(tenantKey, outcome, note),
    get: (tenantKey) => book.get(tenantKey),
    retain(tenantKeys) {
      const keep = new Set(tenantKeys);
      book.retain(keep);
      connection
        .command("status.retain", "HKEYS", [hash])
        .then((keys) => {
          const gone = (keys as string[]).filter((k) => !keep.has(k));
          return gone.length > 0 ? connection.command("status.retain", "HDEL", [hash, ...gone]) : undefined;
        })
        .catch(() => {});
    },
    async refresh() {
      let raw: unknown;
      try {
        raw = await connection.command("status.read", "HGETALL", [hash]);
      } catch {
        return; // /tenants still answers with what this pod knows
      }
      const flat = Array.isArray(raw) ? (raw as string[]) : Object.entries((raw ?? {}) as Record<string, string>).flat();
      for (let i = 0; i + 1 < flat.length; i += 2) {
        try {
          book.merge(flat[i]!, JSON.parse(flat[i + 1]!) as TenantActivity);
        } catch {
          // an entry this version cannot read: skip it
        }
      }
    },
  };
}
