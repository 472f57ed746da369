import type { Clock } from "../../core/ports.js";
import { TenantStatusBook, type TenantActivity, type TenantActivityBook } from "../tenant-status.js";
import type { RedisConnection } from "./redis-connection.js";

/**
 * The last outcome per tenant for GET /tenants, shared: each pod records locally and writes
 * the tenant's latest activity to one Redis hash (without waiting; it rides along with the
 * send's other commands), and /tenants merges the hash in first, so every replica shows the
 * newest outcome and problem whichever pod saw them.
 *
 * A problem is also written to a second hash, only when one happens: a pod that never saw it
 * overwrites the tenant's activity with its own later success or caller's mistake, and
 * without the second hash the problem would be gone for every pod but the one that saw it.
 */
export function createRedisActivityBook(connection: RedisConnection, clock: Clock): TenantActivityBook {
  const hash = `${connection.prefix}status`;
  const problems = `${connection.prefix}status-problem`;
  const book = new TenantStatusBook({
    clock,
    onRecord: (tenantKey, activity) => {
      const away = (): void => {
        // Redis away: this pod still shows what it saw.
      };
      connection.command("status.record", "HSET", [hash, tenantKey, JSON.stringify(activity)]).catch(away);
      const problem = activity.lastProblem;
      if (problem !== undefined && problem.at === activity.lastOutcomeAt && problem.code === activity.lastOutcome) {
        connection.command("status.record", "HSET", [problems, tenantKey, JSON.stringify(problem)]).catch(away);
      }
    },
  });
  return {
    record: (tenantKey, outcome, note) => book.record(tenantKey, outcome, note),
    get: (tenantKey) => book.get(tenantKey),
    retain(tenantKeys) {
      const keep = new Set(tenantKeys);
      book.retain(keep);
      for (const h of [hash, problems]) {
        connection
          .command("status.retain", "HKEYS", [h])
          .then((keys) => {
            const gone = (keys as string[]).filter((k) => !keep.has(k));
            return gone.length > 0 ? connection.command("status.retain", "HDEL", [h, ...gone]) : undefined;
          })
          .catch(() => {});
      }
    },
    async refresh() {
      let raw: [unknown, unknown];
      try {
        raw = await Promise.all([connection.command("status.read", "HGETALL", [hash]), connection.command("status.read", "HGETALL", [problems])]);
      } catch {
        return; // /tenants still answers with what this pod knows
      }
      for (const [tenantKey, json] of entries(raw[0])) {
        try {
          book.merge(tenantKey, JSON.parse(json) as TenantActivity);
        } catch {
          // an entry this version cannot read: skip it
        }
      }
      for (const [tenantKey, json] of entries(raw[1])) {
        try {
          const problem = JSON.parse(json) as Partial<NonNullable<TenantActivity["lastProblem"]>> | null;
          if (typeof problem?.code === "string" && typeof problem.at === "number") book.mergeProblem(tenantKey, problem as NonNullable<TenantActivity["lastProblem"]>);
        } catch {
          // an entry this version cannot read: skip it
        }
      }
    },
  };
}

/** HGETALL's reply as [field, value] pairs (a flat array or an object, by client). */
function entries(raw: unknown): [string, string][] {
  const flat = Array.isArray(raw) ? (raw as string[]) : Object.entries((raw ?? {}) as Record<string, string>).flat();
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
  return pairs;
}
