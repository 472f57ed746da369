import { resolve } from "node:path";
import { CONTOSO, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type HttpResult } from "../support/harness.js";
import { runMultiReplicaSoak, type MultiReplicaSoakOptions } from "./multi-replica-soak.js";
import {
  answerOf,
  bodyText,
  carefulClient,
  checkDeliveries,
  checkGraphConcurrency,
  FaultInjector,
  flag,
  isEntryPoint,
  leakedInLogs,
  mulberry32,
  newSeed,
  planMessage,
  runClients,
  SOAK_TOKEN_LIFETIME_SECONDS,
  SoakLedger,
  SUBJECT_PREFIX,
  totalSends,
  type SendOnce,
} from "./soak-kit.js";

/*
 * The fault soak: thousands of sends through the service (real adapters, HTTP) to the emulator,
 * with random 429 (fractional Retry-After, as Graph sends it) / 503 / store-then-500/502/504 /
 * connection resets / latency injected on Graph, and Entra ID outages (503 AADSTS90033 on the
 * token endpoint, with tokens short-lived enough to be renewed during the run), by clients that
 * retry the way a careful client does (same Idempotency-Key and body on every retry, and now and
 * then the same request twice at once, like a double click). Then it checks what the issue
 * promises:
 *   - every request got exactly one answer (the client saw one; the service counted and logged one),
 *   - every 202 matches exactly one message in the emulator, with that key,
 *   - no key ever caused a second message, and no message went out unannounced (202 or 504),
 *   - Graph never had more than 4 sends of a mailbox at once, and never answered 429 for
 *     concurrency (only the injected ones),
 *   - no secret or message body reached the log,
 *   - and every answer conformed to openapi.yaml (the harness checks each).
 *
 * `npm run soak` runs it big (flags: --messages --concurrency --fault-rate --seed) and exits 1 on
 * any violation; test/soak/soak.test.ts runs it small inside `npm test`. With `--replicas N`
 * (N > 1) it runs the multi-replica soak instead (multi-replica-soak.ts), whose replicas are
 * processes: `--server dist/server.js` runs the build (the bundle the image runs) instead of src/.
 */

export interface SoakOptions {
  /** Logical messages, each with its own Idempotency-Key. */
  readonly messages: number;
  /** Clients sending at the same time. */
  readonly concurrency: number;
  /** Chance that a fault is injected before a request (on that request's mailbox). */
  readonly faultRate?: number;
  /** Chance that a client sends a request twice at once. */
  readonly doubleSendRate?: number;
  /** Requests per message at most (the first included). */
  readonly maxAttempts?: number;
  readonly seed?: number;
  /** Progress lines (npm run soak prints them). */
  readonly progress?: (line: string) => void;
}

export interface SoakReport {
  readonly seed: number;
  readonly messages: number;
  /** HTTP requests sent to POST /send. */
  readonly requests: number;
  /** Answers received (one per request, or a violation). */
  readonly answers: number;
  readonly statuses: Record<string, number>;
  /** Replays answered from the Idempotency-Key store. */
  readonly replays: number;
  readonly faultsInjected: Record<string, number>;
  /** Injected faults that a Graph or Entra request actually met. */
  readonly faultsHit: number;
  /** The same, by fault kind (entra_outage counts token requests answered 503 AADSTS90033). */
  readonly faultsHitByKind: Record<string, number>;
  /** How each message ended for its client. */
  readonly finals: Record<string, number>;
  /** Messages the emulator stored for the soak. */
  readonly delivered: number;
  /** Keys with more than one message: must be 0. */
  readonly duplicates: number;
  readonly graphConcurrency429: number;
  /** Per sender mailbox: most sendMails at Graph at once (the emulator's measure) and the limit. */
  readonly peakConcurrency: Record<string, { peak: number; limit: number }>;
  readonly durationMs: number;
  /** Every promise broken; empty when the soak passed. */
  readonly violations: string[];
}

/** The soak's tenants: each its own sender mailbox in Contoso, so four lines run side by side. */
const SOAK_TENANTS = ["soak-a", "soak-b", "soak-c", "soak-d"] as const;

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const seed = options.seed ?? newSeed();
  const random = mulberry32(seed);
  const run = `${seed.toString(36)}-${Date.now().toString(36)}`;

  const scenario = standardScenario();
  for (const t of SOAK_TENANTS) scenario.tenants![0]!.mailboxes!.push({ address: `${t}@contoso.com` });
  // Graph's concurrency rule on (a fifth concurrent request per mailbox gets 429), its hourly budget off.
  scenario.throttling = { mailboxConcurrency: 4, requestsPerWindow: 0 };
  const h = await startHarness({
    scenario,
    logLevel: "info",
    emulator: {
      keepRaw: false,
      maxMessages: options.messages * 2 + 1_000,
      maxRequests: options.messages * 8 + 1_000,
      tokenLifetimeSeconds: SOAK_TOKEN_LIFETIME_SECONDS,
    },
    configure: (c) => {
      for (const t of SOAK_TENANTS) c.tenants[t] = { tenantId: CONTOSO.id, sender: `${t}@contoso.com`, limits: { recipientsPerDay: 1_000_000 } };
    },
  });

  const ledger = new SoakLedger();
  const faults = new FaultInjector(h.emulator.state, random, options.faultRate ?? 0.15);
  const started = Date.now();
  try {
    const sentBefore = totalSends((await h.get("/metrics")).text);

    const sendOnce: SendOnce = async (key, body, mailbox) => {
      faults.maybeInject(mailbox);
      ledger.requests++;
      let res: HttpResult;
      try {
        res = await h.send(body, { headers: { "idempotency-key": key } });
      } catch (err) {
        ledger.violations.push(`key ${key}: no answer: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
        return { key, status: 0, body: "", replayed: false };
      }
      return ledger.answered(answerOf(key, res));
    };

    await runClients({
      messages: options.messages,
      concurrency: options.concurrency,
      requests: () => ledger.requests,
      ...(options.progress !== undefined ? { progress: options.progress } : {}),
      client: async (i) => {
        const plan = planMessage(i, run, SOAK_TENANTS, random);
        ledger.final(await carefulClient(plan, sendOnce, { random, doubleSendRate: options.doubleSendRate ?? 0.05, maxAttempts: options.maxAttempts ?? 6 }));
      },
    });
    faults.clear();

    // --- what the service says it did
    const { requests, answers, violations } = ledger;
    const metrics = (await h.get("/metrics")).text;
    const counted = totalSends(metrics) - sentBefore;
    if (answers.length !== requests) violations.push(`${requests} requests but ${answers.length} answers`);
    if (counted !== requests) violations.push(`${requests} requests but noreply_relay_send_total grew by ${counted}`);
    const logLines = h.logs.requests().filter((l) => l.route === "/send").length;
    if (logLines !== requests) violations.push(`${requests} requests but ${logLines} request log lines`);
    const inflight = metricValue(metrics, "noreply_relay_inflight_sends");
    if (inflight !== 0) violations.push(`noreply_relay_inflight_sends is ${inflight} after the soak`);
    violations.push(...leakedInLogs(h.logs.text, [...h.secrets, bodyText(run)]));

    // --- what the emulator received and measured
    const deliveries = checkDeliveries(answers, h.emulator.state.messages({ subject: `${SUBJECT_PREFIX}soak-${run}-` }));
    violations.push(...deliveries.violations);
    const concurrency = checkGraphConcurrency(h.emulator.state.concurrency(), new Map(SOAK_TENANTS.map((t) => [`${t}@contoso.com`, 4])));
    violations.push(...concurrency.violations);

    return {
      seed,
      messages: options.messages,
      requests,
      answers: answers.length,
      statuses: ledger.statuses(),
      replays: ledger.replays(),
      faultsInjected: faults.injected,
      faultsHit: faults.hits,
      faultsHitByKind: faults.hitsByKind(),
      finals: ledger.finals,
      delivered: deliveries.delivered,
      duplicates: deliveries.duplicates,
      graphConcurrency429: concurrency.graphConcurrency429,
      peakConcurrency: concurrency.peaks,
      durationMs: Date.now() - started,
      violations,
    };
  } finally {
    await h.close();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const seed = flag(args, "seed");
  const replicas = Number(flag(args, "replicas") ?? 1);
  const common = {
    concurrency: Number(flag(args, "concurrency") ?? 64),
    faultRate: Number(flag(args, "fault-rate") ?? 0.15),
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    progress: (line: string) => console.error(line),
  };
  let report: { violations: readonly string[] };
  if (flag(args, "server") !== undefined && replicas <= 1) throw new Error("--server needs --replicas N (N > 1): the single-replica soak runs the service in its own process");
  if (replicas > 1) {
    const store = flag(args, "store") ?? "redis";
    if (store !== "redis" && store !== "memory") throw new Error("--store must be redis or memory");
    const options: MultiReplicaSoakOptions = {
      ...common,
      replicas,
      messages: Number(flag(args, "messages") ?? 3_000),
      store: store,
      ...(flag(args, "lease-seconds") !== undefined ? { leaseSeconds: Number(flag(args, "lease-seconds")) } : {}),
      ...(flag(args, "kill-after") !== undefined ? { killAfter: Number(flag(args, "kill-after")) } : {}),
      ...(flag(args, "server") !== undefined ? { script: resolve(flag(args, "server")!) } : {}),
    };
    report = await runMultiReplicaSoak(options);
  } else {
    report = await runSoak({ ...common, messages: Number(flag(args, "messages") ?? 5_000) });
  }
  console.log(JSON.stringify(report));
  process.exitCode = report.violations.length === 0 ? 0 : 1;
}

if (isEntryPoint(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error("soak failed:", err);
    process.exit(1);
  });
}
