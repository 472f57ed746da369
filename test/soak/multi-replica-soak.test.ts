import { expect, it } from "vitest";
import { describeWithTool } from "../support/external-tools.js";
import { runMultiReplicaSoak } from "./multi-replica-soak.js";

/*
 * The multi-replica soak of `npm run soak -- --replicas 3`, small enough for every test run:
 * three service processes sharing one redis-server, a round-robin client, Graph faults, one
 * replica killed with SIGKILL part-way. About 20 s here; the long run is in the soak's header.
 */
describeWithTool("redis-server", "multi-replica soak", () => {
  it(
    "when 300 messages go round-robin to three replicas sharing Redis through Graph faults and one replica is killed mid-run, " +
      "then no key sends twice, no mailbox exceeds its limit at Graph, the daily limit holds over all replicas and the dead replica's slots and keys come back",
    async () => {
      const report = await runMultiReplicaSoak({ replicas: 3, messages: 300, concurrency: 32, leaseSeconds: 3 });
      const context = `seed ${report.seed}`;

      expect(report.violations, context).toEqual([]);
      // One answer per request, except those the killed replica took down with it.
      expect(report.answers + report.lostToKill, context).toBe(report.requests);
      expect(report.duplicates, context).toBe(0);
      expect(report.graphConcurrency429, context).toBe(0);

      // The limits held, and the run pushed against them (so "at most" was not met by idling).
      const { "soak-b@contoso.com": narrow, ...others } = report.peakConcurrency;
      expect(narrow, context).toEqual({ peak: 2, limit: 2 });
      for (const p of Object.values(others)) expect(p.peak, context).toBeLessThanOrEqual(4);
      expect(Math.max(...Object.values(others).map((p) => p.peak)), context).toBe(4);

      expect(report.dailyLimit.recipientsDelivered, context).toBeLessThanOrEqual(30);
      expect(report.dailyLimit.recipientsCounted, context).toBeLessThanOrEqual(30);
      expect(report.dailyLimit.refusals, context).toBeGreaterThan(0);

      // The kill happened with work in flight; keys it owned were replayed as 504 outcome_unknown;
      // afterwards every mailbox sent again.
      const kill = report.kill!;
      expect(Object.values(kill.inFlight).reduce((a, b) => a + b, 0), context).toBeGreaterThan(0);
      expect(kill.lapsedLeaseReplays, context).toBeGreaterThan(0);
      for (const r of Object.values(kill.recovery)) expect(r.accepted, context).toBe(r.sent);
      for (const r of report.perReplica.filter((p) => !p.killed)) expect(r.answers, context).toBe(r.requests);

      // A soak, not a stroll: faults were met and retries were replayed on other replicas.
      expect(report.faultsHit, context).toBeGreaterThan(10);
      expect(report.replays, context).toBeGreaterThan(0);
    },
    120_000,
  );
});
