import { startEmulator } from "../../src/emulator/start-emulator.js";
import { CONTOSO, standardScenario } from "../support/fixtures.js";
import type { HttpResult } from "../support/harness.js";
import { metricValue } from "../support/harness.js";
import { isConnectionFailure, RoundRobin, startReplicas, type Replica, type ReplicaSet } from "../support/multi-replica.js";
import { startTestRedis, type TestRedis } from "../support/redis-server.js";
import {
  answerOf,
  bodyText,
  carefulClient,
  checkDeliveries,
  checkGraphConcurrency,
  FaultInjector,
  leakedInLogs,
  mulberry32,
  newSeed,
  parseBody,
  planMessage,
  runClients,
  sleep,
  SOAK_TOKEN_LIFETIME_SECONDS,
  SoakLedger,
  SUBJECT_PREFIX,
  totalSends,
  type Answer,
  type ClientOptions,
  type PlannedMessage,
  type SendOnce,
} from "./soak-kit.js";

/*
 * The multi-replica soak: the fault soak of soak.ts against several service processes
 * (src/server.ts, one config file, one Redis, one emulator) behind a round-robin client, so
 * every retry of a message lands on another replica and a double click reaches two at once.
 * Graph gets the same random faults (429, 503, 504 after accepting, resets, latency). Part-way
 * through, one replica is killed with SIGKILL: requests it had get no answer (counted apart,
 * not violations), the client drops it and retries elsewhere, and what it held in Redis (mailbox
 * slots, pending Idempotency-Keys) must lapse with `store.leaseSeconds`. Then it checks:
 *   - every request to a live replica got one answer, and each replica counted and logged it,
 *   - no key produced two messages; every 202 is the one message of its key; nothing went out
 *     unannounced (202 or 504) or unasked,
 *   - Graph never had more sends of a mailbox at once than its `limits.maxConcurrency` (4, and 2
 *     for one tenant), by the emulator's own measure, and never answered 429 for concurrency,
 *   - the tenant with `recipientsPerDay: 30` got at most 30 recipients delivered over all
 *     replicas, the rest refused with 429 rate_limited,
 *   - after the kill: keys the dead replica owned ended as 504 outcome_unknown replays (never a
 *     second message), every mailbox's slots came back (all free at the end, and 2×limit new
 *     sends per mailbox all succeed once the leases lapsed),
 *   - no secret or message body in any replica's output; every answer conformed to openapi.yaml.
 *
 * `npm run soak -- --replicas 3` runs it big (3,000 messages; flags --messages --concurrency
 * --fault-rate --seed --lease-seconds --kill-after, and `--store memory` to watch the checks
 * catch replicas that do not share their state); test/soak/multi-replica-soak.test.ts runs it
 * small inside `npm test`.
 */

export interface MultiReplicaSoakOptions {
  /** Service processes; default 3. */
  readonly replicas?: number;
  /** Logical messages, each with its own Idempotency-Key. */
  readonly messages: number;
  /** Clients sending at the same time. */
  readonly concurrency: number;
  /** Chance that a fault is injected before a request (on that request's mailbox). Default 0.15. */
  readonly faultRate?: number;
  /** Chance that a client sends a request twice at once (to two replicas). Default 0.05. */
  readonly doubleSendRate?: number;
  /** Requests per message at most (the first included). Default 6. */
  readonly maxAttempts?: number;
  readonly seed?: number;
  /** `redis` (default): the shared store under test. `memory`: each replica on its own, which the checks must catch. */
  readonly store?: "redis" | "memory";
  /** `store.leaseSeconds`; default 2, so the kill shows within seconds. */
  readonly leaseSeconds?: number;
  /** Share of the messages started before one replica is killed; default 0.4; 0 = no kill. */
  readonly killAfter?: number;
  /** A built entry point the replicas run with node (`--server dist/server.js`: the bundle the image runs); default src/ through tsx. */
  readonly script?: string;
  /** Progress lines. */
  readonly progress?: (line: string) => void;
}

export interface MultiReplicaSoakReport {
  readonly seed: number;
  readonly replicas: number;
  readonly store: "redis" | "memory";
  readonly leaseSeconds: number;
  readonly messages: number;
  /** HTTP requests sent to POST /send (recovery sends included). */
  readonly requests: number;
  /** Answers received. */
  readonly answers: number;
  /** Requests without an answer because their replica was killed (expected, not violations). */
  readonly lostToKill: number;
  readonly statuses: Record<string, number>;
  readonly replays: number;
  readonly faultsInjected: Record<string, number>;
  readonly faultsHit: number;
  /** How each message ended for its client. */
  readonly finals: Record<string, number>;
  readonly delivered: number;
  /** Keys with more than one message: must be 0. */
  readonly duplicates: number;
  /** Per sender mailbox: most sendMails at Graph at once (the emulator's measure) and the limit. */
  readonly peakConcurrency: Record<string, { peak: number; limit: number }>;
  /** Graph's own MailboxConcurrency 429s: must be 0. */
  readonly graphConcurrency429: number;
  readonly dailyLimit: DailyLimitReport;
  readonly perReplica: readonly ReplicaReport[];
  readonly kill?: KillReport;
  /**
   * Leases the surviving replicas lost while they still worked (noreply_relay_store_lease_lost_total):
   * an event loop that stalled longer than `store.leaseSeconds` lets others take its slots.
   */
  readonly leasesLost: { readonly mailbox: number; readonly idempotency: number };
  readonly durationMs: number;
  /** Every promise broken; empty when the soak passed. */
  readonly violations: string[];
}

export interface DailyLimitReport {
  readonly tenant: string;
  readonly limit: number;
  /** Recipients the client asked for, over all its messages. */
  readonly recipientsAsked: number;
  /** Recipients of the tenant's messages the emulator holds: at most `limit`. */
  readonly recipientsDelivered: number;
  readonly messagesDelivered: number;
  /** The shared count a replica reports in GET /tenants (outcome_unknown sends stay counted). */
  readonly recipientsCounted: number | undefined;
  /** 429 rate_limited answers naming the daily limit. */
  readonly refusals: number;
  /** How the tenant's messages ended. */
  readonly finals: Record<string, number>;
}

export interface ReplicaReport {
  readonly replica: number;
  readonly requests: number;
  readonly answers: number;
  readonly killed: boolean;
  /** POST /send request lines it logged. */
  readonly logLines: number;
  /** Growth of noreply_relay_send_total (survivors only). */
  readonly counted?: number;
}

export interface KillReport {
  readonly replica: number;
  /** Messages started when the signal went. */
  readonly afterMessages: number;
  /** Since the soak's first request. */
  readonly atMs: number;
  /** Its requests still unanswered at that moment, per sender mailbox. */
  readonly inFlight: Record<string, number>;
  /** How the messages of those requests ended for their clients. */
  readonly inFlightResolvedAs: Record<string, number>;
  /** 504 outcome_unknown replays of keys whose first request's replica stopped before answering. */
  readonly lapsedLeaseReplays: number;
  /** When the load ended, ms after the kill. */
  readonly loadEndedAfterMs: number;
  /**
   * From the kill until no mailbox had a slot held or a send waiting (GET /tenants, looked at
   * from the end of the load on: then only the dead replica's unexpired leases can hold any).
   */
  readonly slotsFreeAfterMs?: number;
  /** Per mailbox: new sends made once its leases had lapsed, and how many got 202. */
  readonly recovery: Record<string, { sent: number; accepted: number }>;
}

const TENANTS = ["soak-a", "soak-b", "soak-c", "soak-d", "soak-daily"] as const;
/** Its `limits.maxConcurrency` is below Graph's 4. */
const NARROW_TENANT = "soak-b";
const NARROW_LIMIT = 2;
/** Its `limits.recipientsPerDay` is tiny, so the run exhausts it. */
const DAILY_TENANT = "soak-daily";
const DAILY_LIMIT = 30;
const GRAPH_LIMIT = 4;
const LAPSED_DETAIL = "stopped before it answered";

const mailboxOf = (tenant: string): string => `${tenant}@contoso.com`;
const limitOf = (tenant: string): number => (tenant === NARROW_TENANT ? NARROW_LIMIT : GRAPH_LIMIT);

export async function runMultiReplicaSoak(options: MultiReplicaSoakOptions): Promise<MultiReplicaSoakReport> {
  const seed = options.seed ?? newSeed();
  const random = mulberry32(seed);
  const replicaCount = options.replicas ?? 3;
  const storeType = options.store ?? "redis";
  const leaseSeconds = options.leaseSeconds ?? 2;
  const killAfter = options.killAfter ?? 0.4;
  const progress = options.progress ?? (() => {});
  const run = `${seed.toString(36)}-${Date.now().toString(36)}`;
  const clientOptions: ClientOptions = { random, doubleSendRate: options.doubleSendRate ?? 0.05, maxAttempts: options.maxAttempts ?? 6 };

  const scenario = standardScenario();
  for (const t of TENANTS) scenario.tenants![0]!.mailboxes!.push({ address: mailboxOf(t) });
  // Graph's concurrency rule as in Exchange Online; its hourly budget off.
  scenario.throttling = { mailboxConcurrency: GRAPH_LIMIT, requestsPerWindow: 0 };
  // Each sendMail takes a little while, so the sends of a mailbox overlap at Graph.
  scenario.latency = { fixedMs: 30, jitterMs: 30 };

  let redis: TestRedis | undefined;
  const emulator = await startEmulator({
    scenario,
    keepRaw: false,
    maxMessages: options.messages * 2 + 1_000,
    maxRequests: options.messages * 8 + 1_000,
    tokenLifetimeSeconds: SOAK_TOKEN_LIFETIME_SECONDS,
  });
  try {
    if (storeType === "redis") redis = await startTestRedis();
    const startedAt = Date.now();
    const set = await startReplicas({
      count: replicaCount,
      emulator,
      ...(options.script !== undefined ? { script: options.script } : {}),
      configure: (c) => {
        c.store =
          redis !== undefined ? { type: "redis", url: redis.url, keyPrefix: `soak-${run}:`, leaseSeconds } : { type: "memory" };
        for (const t of TENANTS) {
          c.tenants[t] = {
            tenantId: CONTOSO.id,
            sender: mailboxOf(t),
            limits: { maxConcurrency: limitOf(t), recipientsPerDay: t === DAILY_TENANT ? DAILY_LIMIT : 1_000_000 },
          };
        }
      },
    });
    progress(`${replicaCount} replicas (store ${storeType}) listening after ${Date.now() - startedAt} ms`);
    try {
      return await soak(set);
    } finally {
      await set.close();
    }
  } finally {
    await emulator.close();
    await redis?.stop();
  }

  async function soak(set: ReplicaSet): Promise<MultiReplicaSoakReport> {
    const { replicas } = set;
    const ledger = new SoakLedger();
    const { violations } = ledger;
    const faults = new FaultInjector(emulator.state, random, options.faultRate ?? 0.15);
    const roundRobin = new RoundRobin(replicas);
    const perReplica = replicas.map(() => ({ requests: 0, answers: 0 }));
    const outstanding = replicas.map(() => new Map<number, PlannedMessage>());
    const plans = new Map<string, PlannedMessage>();
    const lastAnswer = new Map<string, Answer>();
    const lastReplica = new Map<string, Replica>();
    let lostToKill = 0;
    let requestSeq = 0;
    let faultsOn = true;
    const started = Date.now();

    const sendOnce: SendOnce = async (key, body, mailbox) => {
      if (faultsOn) faults.maybeInject(mailbox);
      // The replica after the one this message's previous request went to: retries move on.
      const replica = roundRobin.next(lastReplica.get(key));
      lastReplica.set(key, replica);
      const seq = requestSeq++;
      ledger.requests++;
      perReplica[replica.index]!.requests++;
      outstanding[replica.index]!.set(seq, plans.get(key)!);
      let res: HttpResult;
      try {
        res = await set.send(replica, body, { "idempotency-key": key });
      } catch (err) {
        const noAnswer = { key, status: 0, body: "", replayed: false };
        if (isConnectionFailure(err)) roundRobin.drop(replica);
        if (isConnectionFailure(err) && replica.killedAt !== undefined) lostToKill++;
        else violations.push(`key ${key}: no answer from replica ${replica.index}: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
        return noAnswer;
      } finally {
        outstanding[replica.index]!.delete(seq);
      }
      perReplica[replica.index]!.answers++;
      const answer = ledger.answered(answerOf(key, res));
      lastAnswer.set(key, answer);
      return answer;
    };

    const sendMessage = async (plan: PlannedMessage): Promise<Answer> => {
      plans.set(plan.key, plan);
      const final = await carefulClient(plan, sendOnce, clientOptions);
      ledger.final(final);
      return final;
    };

    // --- the kill, part-way through
    const victim = killAfter > 0 && replicas.length > 1 ? replicas[replicas.length - 1]! : undefined;
    const killAtMessage = Math.floor(options.messages * killAfter);
    let killing: Promise<void> | undefined;
    let kill: { afterMessages: number; atMs: number; inFlight: PlannedMessage[] } | undefined;
    const killVictim = (afterMessages: number): void => {
      if (victim === undefined || killing !== undefined) return;
      kill = { afterMessages, atMs: Date.now() - started, inFlight: [...outstanding[victim.index]!.values()] };
      progress(`SIGKILL to replica ${victim.index} after ${afterMessages} messages, ${kill.inFlight.length} of its requests unanswered`);
      killing = set.kill(victim);
    };

    await runClients({
      messages: options.messages,
      concurrency: options.concurrency,
      requests: () => ledger.requests,
      progress,
      client: async (i) => {
        if (i === killAtMessage) killVictim(i);
        await sendMessage(planMessage(i, run, TENANTS, random));
      },
    });
    await killing;
    faults.clear();
    faultsOn = false;
    const survivors = replicas.filter((r) => r.killedAt === undefined);

    const loadEnded = Date.now();

    // Every slot and waiter of every mailbox free (GET /tenants shows the shared state). Releases
    // are written just after answering and a lapsed lease is noticed at the next look, so this
    // waits up to two leases; holds still there after that never come back.
    const allFree = async (when: string): Promise<{ at?: number; rows: TenantRow[] }> => {
      const giveUp = Date.now() + 2 * leaseSeconds * 1000 + 2_000;
      for (;;) {
        const rows = await tenantRows(set, survivors[0]!);
        const busy = rows.filter((t) => (TENANTS as readonly string[]).includes(t.tenant) && (t.inFlight > 0 || t.waiting > 0));
        if (busy.length === 0) return { at: Date.now(), rows };
        if (Date.now() > giveUp) {
          for (const t of busy) violations.push(`${t.tenant}: ${t.inFlight} slots held and ${t.waiting} waiting ${when}`);
          return { rows };
        }
        await sleep(50);
      }
    };

    // --- after the kill: the survivors hold nothing now, so whatever is held is the dead
    // replica's until its leases lapse; then every mailbox must send again
    let slotsFreeAfterMs: number | undefined;
    const recovery: Record<string, { sent: number; accepted: number }> = {};
    if (victim?.killedAt !== undefined) {
      const free = await allFree("once the dead replica's leases should have lapsed");
      if (free.at !== undefined) slotsFreeAfterMs = free.at - victim.killedAt;
      const lapsed = victim.killedAt + leaseSeconds * 1000 + 500;
      if (Date.now() < lapsed) await sleep(lapsed - Date.now());
      let n = options.messages;
      const recoveryPlans: PlannedMessage[] = [];
      for (const t of TENANTS) {
        if (t === DAILY_TENANT) continue; // exhausted for a day by design
        for (let k = 0; k < 2 * limitOf(t); k++) recoveryPlans.push(planMessage(n++, run, [t], random));
      }
      const finals = await Promise.all(recoveryPlans.map((p) => sendMessage(p)));
      recoveryPlans.forEach((p, i) => {
        const r = (recovery[p.mailbox] ??= { sent: 0, accepted: 0 });
        r.sent++;
        if (finals[i]!.status === 202) r.accepted++;
      });
      for (const [mailbox, r] of Object.entries(recovery)) {
        if (r.accepted !== r.sent) violations.push(`${mailbox}: after the kill's leases lapsed, ${r.sent - r.accepted} of ${r.sent} new sends failed`);
      }
    }
    const tenantsNow = (await allFree("after all sends ended")).rows;

    // --- what each replica says it did
    const { requests, answers } = ledger;
    const leasesLost = { mailbox: 0, idempotency: 0 };
    const replicaReports: ReplicaReport[] = [];
    for (const r of replicas) {
      const mine = perReplica[r.index]!;
      const logLines = set.sendLogLines(r);
      if (r.killedAt !== undefined) {
        if (logLines > mine.requests) violations.push(`replica ${r.index}: ${logLines} request log lines for ${mine.requests} requests`);
        replicaReports.push({ replica: r.index, requests: mine.requests, answers: mine.answers, killed: true, logLines });
        continue;
      }
      const metrics = (await set.get(r, "/metrics")).text;
      const counted = totalSends(metrics);
      if (mine.answers !== mine.requests) violations.push(`replica ${r.index}: ${mine.requests} requests but ${mine.answers} answers`);
      if (counted !== mine.requests) violations.push(`replica ${r.index}: ${mine.requests} requests but noreply_relay_send_total says ${counted}`);
      if (logLines !== mine.requests) violations.push(`replica ${r.index}: ${mine.requests} requests but ${logLines} request log lines`);
      const inflight = metricValue(metrics, "noreply_relay_inflight_sends");
      if (inflight !== 0) violations.push(`replica ${r.index}: noreply_relay_inflight_sends is ${inflight} after the soak`);
      leasesLost.mailbox += metricValue(metrics, "noreply_relay_store_lease_lost_total", { kind: "mailbox" });
      leasesLost.idempotency += metricValue(metrics, "noreply_relay_store_lease_lost_total", { kind: "idempotency" });
      replicaReports.push({ replica: r.index, requests: mine.requests, answers: mine.answers, killed: false, logLines, counted });
    }
    violations.push(...leakedInLogs(replicas.map((r) => set.output(r)).join("\n"), [...set.secrets, bodyText(run)]));

    // --- what the emulator received and measured
    const deliveries = checkDeliveries(answers, emulator.state.messages({ subject: `${SUBJECT_PREFIX}soak-${run}-` }));
    violations.push(...deliveries.violations);
    const concurrency = checkGraphConcurrency(emulator.state.concurrency(), new Map(TENANTS.map((t) => [mailboxOf(t), limitOf(t)])));
    violations.push(...concurrency.violations);

    // --- the daily limit, over all replicas
    const dailyPlans = [...plans.values()].filter((p) => p.tenant === DAILY_TENANT);
    const dailyMessages = [...deliveries.byKey.entries()].filter(([key]) => plans.get(key)?.tenant === DAILY_TENANT).flatMap(([, list]) => list);
    const recipientsDelivered = dailyMessages.reduce((n, m) => n + m.toRecipients.length + m.ccRecipients.length + m.bccRecipients.length, 0);
    const recipientsAsked = dailyPlans.reduce((n, p) => n + p.recipients, 0);
    const refusals = answers.filter((a) => a.status === 429 && detailOf(a.body).includes(`limit of ${DAILY_LIMIT} recipients`)).length;
    const dailyFinals: Record<string, number> = {};
    for (const p of dailyPlans) {
      const status = String(lastAnswer.get(p.key)?.status ?? "none");
      dailyFinals[status] = (dailyFinals[status] ?? 0) + 1;
    }
    const recipientsCounted = tenantsNow.find((t) => t.tenant === DAILY_TENANT)?.recipientsUsed;
    if (recipientsDelivered > DAILY_LIMIT) violations.push(`${DAILY_TENANT}: ${recipientsDelivered} recipients delivered, the daily limit is ${DAILY_LIMIT}`);
    if (recipientsCounted !== undefined && recipientsCounted > DAILY_LIMIT) violations.push(`${DAILY_TENANT}: the shared count says ${recipientsCounted} recipients, the limit is ${DAILY_LIMIT}`);
    if (recipientsAsked > DAILY_LIMIT && refusals === 0) violations.push(`${DAILY_TENANT}: ${recipientsAsked} recipients asked for, but no send was refused for the daily limit`);

    // --- the kill
    let killReport: KillReport | undefined;
    if (victim !== undefined && kill !== undefined) {
      const inFlight: Record<string, number> = {};
      const inFlightResolvedAs: Record<string, number> = {};
      for (const p of kill.inFlight) {
        inFlight[p.mailbox] = (inFlight[p.mailbox] ?? 0) + 1;
        const status = String(lastAnswer.get(p.key)?.status ?? "none");
        inFlightResolvedAs[status] = (inFlightResolvedAs[status] ?? 0) + 1;
      }
      killReport = {
        replica: victim.index,
        afterMessages: kill.afterMessages,
        atMs: kill.atMs,
        loadEndedAfterMs: loadEnded - victim.killedAt!,
        inFlight,
        inFlightResolvedAs,
        lapsedLeaseReplays: answers.filter((a) => a.status === 504 && detailOf(a.body).includes(LAPSED_DETAIL)).length,
        ...(slotsFreeAfterMs !== undefined ? { slotsFreeAfterMs } : {}),
        recovery,
      };
    }

    return {
      seed,
      replicas: replicas.length,
      store: storeType,
      leaseSeconds,
      messages: options.messages,
      requests,
      answers: answers.length,
      lostToKill,
      statuses: ledger.statuses(),
      replays: ledger.replays(),
      faultsInjected: faults.injected,
      faultsHit: faults.hits,
      finals: ledger.finals,
      delivered: deliveries.delivered,
      duplicates: deliveries.duplicates,
      peakConcurrency: concurrency.peaks,
      graphConcurrency429: concurrency.graphConcurrency429,
      dailyLimit: {
        tenant: DAILY_TENANT,
        limit: DAILY_LIMIT,
        recipientsAsked,
        recipientsDelivered,
        messagesDelivered: dailyMessages.length,
        recipientsCounted,
        refusals,
        finals: dailyFinals,
      },
      perReplica: replicaReports,
      ...(killReport !== undefined ? { kill: killReport } : {}),
      leasesLost,
      durationMs: Date.now() - started,
      violations,
    };
  }
}

interface TenantRow {
  readonly tenant: string;
  readonly inFlight: number;
  readonly waiting: number;
  readonly recipientsUsed: number;
}

async function tenantRows(set: ReplicaSet, replica: Replica): Promise<TenantRow[]> {
  const res = await set.get(replica, "/tenants", set.keys.admin);
  if (res.status !== 200) throw new Error(`GET /tenants answered ${res.status}`);
  return (res.json as { tenants: TenantRow[] }).tenants;
}

/** A problem's `detail`, or "" when the body has none. */
function detailOf(body: string): string {
  const detail = parseBody(body).detail;
  return typeof detail === "string" ? detail : "";
}
