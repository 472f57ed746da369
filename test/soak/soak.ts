import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { FaultHandle, FaultInput } from "../../src/emulator/faults.js";
import { CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { metricValue, startHarness, type HttpResult } from "../support/harness.js";

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
 *   - Graph never answered 429 for concurrency (only the injected ones),
 *   - and every answer conformed to openapi.yaml (the harness checks each).
 *
 * `npm run soak` runs it big (flags: --messages --concurrency --fault-rate --seed) and exits 1 on
 * any violation; test/soak/soak.test.ts runs it small inside `npm test`.
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
  readonly durationMs: number;
  /** Every promise broken; empty when the soak passed. */
  readonly violations: string[];
}

type FaultKind =
  | "throttle"
  | "unavailable"
  | "unavailable_retry_after"
  | "accept_then_5xx"
  | "reset_before_body"
  | "reset_after_body"
  | "latency"
  | "entra_outage";
const FAULT_KINDS: readonly FaultKind[] = [
  "throttle",
  "unavailable",
  "unavailable_retry_after",
  "accept_then_5xx",
  "reset_before_body",
  "reset_after_body",
  "latency",
  "entra_outage",
];
/** Access-token lifetime in the soak: short, so the relay renews tokens (and meets Entra's outages) during the run. */
const SOAK_TOKEN_LIFETIME_SECONDS = 15;

/** The soak's tenants: each its own sender mailbox in Contoso, so four lines run side by side. */
const SOAK_TENANTS = ["soak-a", "soak-b", "soak-c", "soak-d"] as const;

interface Answer {
  readonly key: string;
  readonly status: number;
  readonly body: string;
  readonly replayed: boolean;
  readonly internetMessageId?: string;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = mulberry32(seed);
  const faultRate = options.faultRate ?? 0.15;
  const doubleSendRate = options.doubleSendRate ?? 0.05;
  const maxAttempts = options.maxAttempts ?? 6;
  const progress = options.progress ?? (() => {});
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

  const answers: Answer[] = [];
  const violations: string[] = [];
  const faultsInjected: Record<string, number> = {};
  const handles: FaultHandle[] = [];
  const handleKinds = new Map<FaultHandle, FaultKind>();
  const finals: Record<string, number> = {};
  let requests = 0;
  const started = Date.now();
  try {
    const sentBefore = totalSends((await h.get("/metrics")).text);

    let outage: FaultHandle | undefined;
    const injectFault = (mailbox: string): void => {
      let kind = FAULT_KINDS[Math.floor(random() * FAULT_KINDS.length)]!;
      // One Entra outage at a time: token requests are few, so queued outages would keep Entra down all run.
      if (kind === "entra_outage" && outage !== undefined && outage.remaining !== 0) kind = "latency";
      faultsInjected[kind] = (faultsInjected[kind] ?? 0) + 1;
      const handle = h.emulator.state.inject(faultFor(kind, mailbox, random));
      handles.push(handle);
      handleKinds.set(handle, kind);
      if (kind === "entra_outage") outage = handle;
    };

    const sendOnce = async (key: string, body: Record<string, unknown>, mailbox: string): Promise<Answer> => {
      if (random() < faultRate) injectFault(mailbox);
      requests++;
      let res: HttpResult;
      try {
        res = await h.send(body, { headers: { "idempotency-key": key } });
      } catch (err) {
        violations.push(`key ${key}: no answer: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`);
        return { key, status: 0, body: "", replayed: false };
      }
      const answer: Answer = {
        key,
        status: res.status,
        body: res.text,
        replayed: res.headers.get("idempotent-replayed") === "true",
        ...(res.status === 202 ? { internetMessageId: res.json.internetMessageId as string } : {}),
      };
      answers.push(answer);
      return answer;
    };

    // One careful client per message: the same key and body on every retry.
    const client = async (i: number): Promise<void> => {
      const tenant = SOAK_TENANTS[i % SOAK_TENANTS.length]!;
      const mailbox = `${tenant}@contoso.com`;
      const key = `soak-${run}-${i}`;
      const recipients = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, r) => `r${r}.${i}@example.com`);
      const body = message(tenant, { subject: `soak ${key}`, to: recipients });
      let last: Answer | undefined;
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        const twice = random() < doubleSendRate;
        const results = await Promise.all([sendOnce(key, body, mailbox), ...(twice ? [sendOnce(key, body, mailbox)] : [])]);
        last = results.find((r) => r.status === 202) ?? results[0]!;
        // 202: done. 504: Graph may have it; one retry with the key must get the same 504 back.
        if (last.status === 202 || (last.status === 504 && attempt >= 2) || ![429, 503, 504, 0].includes(last.status)) break;
        const problem = JSON.parse(last.body || "{}") as { retryAfterSeconds?: number; aadsts?: string };
        const retryAfter = Number(problem.retryAfterSeconds ?? 1);
        // Impatient but not hasty: a fraction of Retry-After, so the service's own waits get exercised.
        // An Entra outage is waited out as told: the relay promises the send works after it.
        await sleep(problem.aadsts !== undefined ? retryAfter * 1000 : Math.min(retryAfter * 1000, 600) * (0.5 + random() / 2));
      }
      const final = last === undefined ? "none" : String(last.status);
      finals[final] = (finals[final] ?? 0) + 1;
    };

    let next = 0;
    let done = 0;
    const ticker = setInterval(() => progress(`${done}/${options.messages} messages, ${requests} requests, ${Math.round((Date.now() - started) / 1000)} s`), 5_000);
    try {
      await Promise.all(
        Array.from({ length: Math.min(options.concurrency, options.messages) }, async () => {
          while (next < options.messages) {
            await client(next++);
            done++;
          }
        }),
      );
    } finally {
      clearInterval(ticker);
    }
    for (const handle of handles) handle.clear();

    // --- what the service says it did
    const metrics = (await h.get("/metrics")).text;
    const counted = totalSends(metrics) - sentBefore;
    if (answers.length !== requests) violations.push(`${requests} requests but ${answers.length} answers`);
    if (counted !== requests) violations.push(`${requests} requests but noreply_relay_send_total grew by ${counted}`);
    const logLines = h.logs.requests().filter((l) => l.route === "/send").length;
    if (logLines !== requests) violations.push(`${requests} requests but ${logLines} request log lines`);
    const inflight = metricValue(metrics, "noreply_relay_inflight_sends");
    if (inflight !== 0) violations.push(`noreply_relay_inflight_sends is ${inflight} after the soak`);

    // --- what the emulator received
    const stored = h.emulator.state.messages({ subject: `soak soak-${run}-` });
    const byKey = new Map<string, string[]>();
    for (const m of stored) {
      const key = m.subject.slice("soak ".length);
      byKey.set(key, [...(byKey.get(key) ?? []), m.internetMessageId ?? ""]);
    }
    const duplicates = [...byKey.values()].filter((ids) => ids.length > 1).length;
    if (duplicates > 0) violations.push(`${duplicates} keys produced more than one message`);

    const answersByKey = new Map<string, Answer[]>();
    for (const a of answers) answersByKey.set(a.key, [...(answersByKey.get(a.key) ?? []), a]);
    for (const [key, list] of answersByKey) {
      const accepted = list.filter((a) => a.status === 202);
      const bodies = new Set(accepted.map((a) => a.body));
      if (bodies.size > 1) violations.push(`key ${key}: 202 answers with different bodies`);
      const delivered = byKey.get(key) ?? [];
      if (accepted.length > 0 && (delivered.length !== 1 || delivered[0] !== accepted[0]!.internetMessageId)) {
        violations.push(`key ${key}: 202 with ${accepted[0]!.internetMessageId} but the emulator holds [${delivered.join(", ")}]`);
      }
      if (delivered.length > 0 && accepted.length === 0 && !list.some((a) => a.status === 504)) {
        violations.push(`key ${key}: a message went out but the client was told ${[...new Set(list.map((a) => a.status))].join(", ")}`);
      }
    }
    for (const key of byKey.keys()) if (!answersByKey.has(key)) violations.push(`key ${key}: a message nobody asked for`);

    const graph429 = h.emulator.state.requests({ kind: "sendMail", status: 429 }).filter((r) => r.faultId === undefined).length;
    if (graph429 > 0) violations.push(`Graph answered ${graph429} requests with its own 429 (concurrency)`);

    const statuses: Record<string, number> = {};
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    return {
      seed,
      messages: options.messages,
      requests,
      answers: answers.length,
      statuses,
      replays: answers.filter((a) => a.replayed).length,
      faultsInjected,
      faultsHit: handles.reduce((n, f) => n + f.hits, 0),
      faultsHitByKind: handles.reduce<Record<string, number>>((acc, f) => {
        const kind = handleKinds.get(f)!;
        acc[kind] = (acc[kind] ?? 0) + f.hits;
        return acc;
      }, {}),
      finals,
      delivered: stored.length,
      duplicates,
      graphConcurrency429: graph429,
      durationMs: Date.now() - started,
      violations,
    };
  } finally {
    await h.close();
  }
}

function faultFor(kind: FaultKind, mailbox: string, random: () => number): FaultInput {
  const base = { kind: "sendMail" as const, mailbox, times: 1 };
  switch (kind) {
    case "throttle":
      // Graph's Retry-After has decimals ("2.128", "0.249"): 0.050 to 1.500 s here.
      return { ...base, action: "respond", status: 429, retryAfter: Math.round(50 + random() * 1_450) / 1000 };
    case "unavailable":
      return { ...base, action: "respond", status: 503 };
    case "unavailable_retry_after":
      return { ...base, action: "respond", status: 503, retryAfter: 1 };
    case "accept_then_5xx":
      // Stored, then 500, 502 or 504: each may have sent the mail.
      return { ...base, action: "acceptThen504", status: [500, 502, 504][Math.floor(random() * 3)]! };
    case "reset_before_body":
      return { ...base, action: "reset", when: "beforeBody" };
    case "reset_after_body":
      return { ...base, action: "reset", when: "afterBody" };
    case "latency":
      return { ...base, times: 1 + Math.floor(random() * 4), action: "latency", fixedMs: 100 + Math.floor(random() * 700) };
    case "entra_outage":
      // Entra's incident answer (503 temporarily_unavailable, AADSTS90033) for Contoso's next token request.
      return { kind: "token", tenant: CONTOSO.id, action: "respond", status: 503, times: 1 };
  }
}

function totalSends(metrics: string): number {
  let sum = 0;
  for (const line of metrics.split("\n")) if (line.startsWith("noreply_relay_send_total{")) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A small seeded PRNG, so a run's choices can be repeated with its seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const seed = flag(args, "seed");
  const report = await runSoak({
    messages: Number(flag(args, "messages") ?? 5_000),
    concurrency: Number(flag(args, "concurrency") ?? 64),
    faultRate: Number(flag(args, "fault-rate") ?? 0.15),
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    progress: (line) => console.error(line),
  });
  console.log(JSON.stringify(report));
  process.exitCode = report.violations.length === 0 ? 0 : 1;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((err: unknown) => {
    console.error("soak failed:", err);
    process.exit(1);
  });
}
