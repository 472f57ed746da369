import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { FaultHandle, FaultInput } from "../../src/emulator/faults.js";
import type { MailboxConcurrency, StoredMessage } from "../../src/emulator/inspection.js";
import type { EmulatorState } from "../../src/emulator/start-emulator.js";
import { CONTOSO, message } from "../support/fixtures.js";
import type { HttpResult } from "../support/harness.js";

/*
 * What the soaks share: the faults injected on Graph, the careful retrying client, the worker
 * pool that runs the clients, and the checks of what the emulator received against what the
 * clients were told. soak.ts drives one service in this process; multi-replica-soak.ts drives
 * several service processes sharing Redis. Both use these pieces, so both check the same
 * promises the same way.
 */

/** One HTTP answer to POST /send, as the client saw it. */
export interface Answer {
  readonly key: string;
  /** 0: no answer (the connection failed). */
  readonly status: number;
  readonly body: string;
  readonly replayed: boolean;
  readonly internetMessageId?: string;
}

/** An HTTP answer of POST /send as the soaks keep it. */
export function answerOf(key: string, res: HttpResult): Answer {
  return {
    key,
    status: res.status,
    body: res.text,
    replayed: res.headers.get("idempotent-replayed") === "true",
    ...(res.status === 202 ? { internetMessageId: res.json.internetMessageId as string } : {}),
  };
}

/** Sends one request of a message (same key, same body every time) and returns what came back. */
export type SendOnce = (key: string, body: Record<string, unknown>, mailbox: string) => Promise<Answer>;

// ---- faults ------------------------------------------------------------------------------

export type FaultKind =
  | "throttle"
  | "unavailable"
  | "unavailable_retry_after"
  | "accept_then_5xx"
  | "reset_before_body"
  | "reset_after_body"
  | "latency"
  | "entra_outage";
export const FAULT_KINDS: readonly FaultKind[] = [
  "throttle",
  "unavailable",
  "unavailable_retry_after",
  "accept_then_5xx",
  "reset_before_body",
  "reset_after_body",
  "latency",
  "entra_outage",
];

/** Access-token lifetime in the soaks: short, so the relay renews tokens (and meets Entra's outages) during the run. */
export const SOAK_TOKEN_LIFETIME_SECONDS = 15;

export function faultFor(kind: FaultKind, mailbox: string, random: () => number): FaultInput {
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

/** Before a request, with chance `rate`, one random fault on the next Graph request(s) of its mailbox (or Entra). */
export class FaultInjector {
  readonly injected: Record<string, number> = {};
  readonly #handles: { handle: FaultHandle; kind: FaultKind }[] = [];
  #outage: FaultHandle | undefined;

  constructor(
    private readonly emulator: EmulatorState,
    private readonly random: () => number,
    private readonly rate: number,
  ) {}

  maybeInject(mailbox: string): void {
    if (this.random() >= this.rate) return;
    let kind = FAULT_KINDS[Math.floor(this.random() * FAULT_KINDS.length)]!;
    // One Entra outage at a time: token requests are few, so queued outages would keep Entra down all run.
    if (kind === "entra_outage" && this.#outage !== undefined && this.#outage.remaining !== 0) kind = "latency";
    this.injected[kind] = (this.injected[kind] ?? 0) + 1;
    const handle = this.emulator.inject(faultFor(kind, mailbox, this.random));
    this.#handles.push({ handle, kind });
    if (kind === "entra_outage") this.#outage = handle;
  }

  /** Injected faults that a Graph or Entra request actually met. */
  get hits(): number {
    return this.#handles.reduce((n, f) => n + f.handle.hits, 0);
  }

  /** The same by kind (entra_outage counts token requests answered 503 AADSTS90033). */
  hitsByKind(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const { handle, kind } of this.#handles) out[kind] = (out[kind] ?? 0) + handle.hits;
    return out;
  }

  /** Removes the faults nobody met. */
  clear(): void {
    for (const { handle } of this.#handles) handle.clear();
  }
}

// ---- clients -----------------------------------------------------------------------------

/** One logical message: its key, tenant, sender mailbox, body (1 to 3 recipients) and how many recipients. */
export interface PlannedMessage {
  readonly key: string;
  readonly tenant: string;
  readonly mailbox: string;
  readonly body: Record<string, unknown>;
  readonly recipients: number;
}

/** Subjects are `soak <key>`, so the emulator's messages map back to keys. */
export const SUBJECT_PREFIX = "soak ";

/** The text of every message of a run: it must never show up in the service's log. */
export function bodyText(run: string): string {
  return `soak body ${run}`;
}

/** Message `i` of a run: tenants take turns; keys are `soak-<run>-<i>`. */
export function planMessage(i: number, run: string, tenants: readonly string[], random: () => number): PlannedMessage {
  const tenant = tenants[i % tenants.length]!;
  const key = `soak-${run}-${i}`;
  const to = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, r) => `r${r}.${i}@example.com`);
  const body = message(tenant, { subject: `${SUBJECT_PREFIX}${key}`, to, text: bodyText(run) });
  return { key, tenant, mailbox: `${tenant}@contoso.com`, body, recipients: to.length };
}

export interface ClientOptions {
  readonly random: () => number;
  /** Chance that a request goes out twice at once (a double click). Default 0.05. */
  readonly doubleSendRate?: number;
  /** Requests per message at most (the first included). Default 6. */
  readonly maxAttempts?: number;
  /** A Retry-After longer than this (s) ends the message: nobody waits a day for a retry. Default 60. */
  readonly longestWaitSeconds?: number;
}

/**
 * One careful client per message: the same key and body on every retry, now and then the same
 * request twice at once. Stops at a 202, at a second 504 (the first may be Graph's; the retry
 * must replay it), at any other answer, at a Retry-After nobody would wait for, or after
 * `maxAttempts`. Returns the last answer (a 202 if one of a double send got it).
 */
export async function carefulClient(plan: PlannedMessage, sendOnce: SendOnce, options: ClientOptions): Promise<Answer> {
  const { random } = options;
  const doubleSendRate = options.doubleSendRate ?? 0.05;
  const maxAttempts = options.maxAttempts ?? 6;
  const longestWait = options.longestWaitSeconds ?? 60;
  let last: Answer | undefined;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const twice = random() < doubleSendRate;
    const results = await Promise.all([sendOnce(plan.key, plan.body, plan.mailbox), ...(twice ? [sendOnce(plan.key, plan.body, plan.mailbox)] : [])]);
    last = results.find((r) => r.status === 202) ?? results[0];
    if (last.status === 202 || (last.status === 504 && attempt >= 2) || ![429, 503, 504, 0].includes(last.status)) break;
    const problem = parseBody(last.body);
    const retryAfter = Number(problem.retryAfterSeconds ?? 1);
    if (retryAfter > longestWait) break;
    // Impatient but not hasty: a fraction of Retry-After, so the service's own waits get exercised.
    // An Entra outage is waited out as told: the relay promises the send works after it.
    await sleep(problem.aadsts !== undefined ? retryAfter * 1000 : Math.min(retryAfter * 1000, 600) * (0.5 + random() / 2));
  }
  return last!;
}

/** Runs `client(i)` for i = 0 … messages-1, `concurrency` at a time, with a progress line every 5 s. */
export async function runClients(options: {
  readonly messages: number;
  readonly concurrency: number;
  readonly client: (i: number) => Promise<void>;
  readonly progress?: (line: string) => void;
  readonly requests: () => number;
}): Promise<void> {
  const started = Date.now();
  let next = 0;
  let done = 0;
  const ticker = setInterval(
    () => options.progress?.(`${done}/${options.messages} messages, ${options.requests()} requests, ${Math.round((Date.now() - started) / 1000)} s`),
    5_000,
  );
  try {
    await Promise.all(
      Array.from({ length: Math.min(options.concurrency, options.messages) }, async () => {
        while (next < options.messages) {
          await options.client(next++);
          done++;
        }
      }),
    );
  } finally {
    clearInterval(ticker);
  }
}

/** The answers, finals and violations of one soak run. */
export class SoakLedger {
  readonly answers: Answer[] = [];
  readonly violations: string[] = [];
  readonly finals: Record<string, number> = {};
  requests = 0;

  answered(answer: Answer): Answer {
    this.answers.push(answer);
    return answer;
  }

  /** How a message ended for its client. */
  final(answer: Answer | undefined): void {
    const final = answer === undefined ? "none" : String(answer.status);
    this.finals[final] = (this.finals[final] ?? 0) + 1;
  }

  statuses(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const a of this.answers) out[a.status] = (out[a.status] ?? 0) + 1;
    return out;
  }

  replays(): number {
    return this.answers.filter((a) => a.replayed).length;
  }
}

// ---- checks ------------------------------------------------------------------------------

export interface DeliveryCheck {
  /** Soak messages the emulator stored. */
  readonly delivered: number;
  /** Keys with more than one message: must be 0. */
  readonly duplicates: number;
  /** Messages per key. */
  readonly byKey: ReadonlyMap<string, readonly StoredMessage[]>;
  readonly violations: string[];
}

/**
 * What the emulator received against what the clients were told (answers with status 0 are not
 * answers and are left out by the caller): no key has two messages; every 202 is the one message
 * of its key, and all 202s of a key carry the same body; no message went out unless its client
 * was told 202 or 504 (maybe); no message went out that nobody asked for.
 */
export function checkDeliveries(answers: readonly Answer[], stored: readonly StoredMessage[]): DeliveryCheck {
  const violations: string[] = [];
  const byKey = new Map<string, StoredMessage[]>();
  for (const m of stored) {
    const key = m.subject.slice(SUBJECT_PREFIX.length);
    byKey.set(key, [...(byKey.get(key) ?? []), m]);
  }
  const duplicates = [...byKey.values()].filter((list) => list.length > 1).length;
  if (duplicates > 0) violations.push(`${duplicates} keys produced more than one message`);

  const answersByKey = new Map<string, Answer[]>();
  for (const a of answers) answersByKey.set(a.key, [...(answersByKey.get(a.key) ?? []), a]);
  for (const [key, list] of answersByKey) {
    const accepted = list.filter((a) => a.status === 202);
    if (new Set(accepted.map((a) => a.body)).size > 1) violations.push(`key ${key}: 202 answers with different bodies`);
    const delivered = (byKey.get(key) ?? []).map((m) => m.internetMessageId);
    if (accepted.length > 0 && (delivered.length !== 1 || delivered[0] !== accepted[0]!.internetMessageId)) {
      violations.push(`key ${key}: 202 with ${accepted[0]!.internetMessageId} but the emulator holds [${delivered.join(", ")}]`);
    }
    if (delivered.length > 0 && accepted.length === 0 && !list.some((a) => a.status === 504)) {
      violations.push(`key ${key}: a message went out but the client was told ${[...new Set(list.map((a) => a.status))].join(", ")}`);
    }
  }
  for (const key of byKey.keys()) if (!answersByKey.has(key)) violations.push(`key ${key}: a message nobody asked for`);
  return { delivered: stored.length, duplicates, byKey, violations };
}

export interface ConcurrencyCheck {
  /** Per sender mailbox: the most sendMails Graph had at once, and the relay's limit for it. */
  readonly peaks: Record<string, { peak: number; limit: number }>;
  /** Graph's own 429s for its MailboxConcurrency rule (injected 429s not counted): must be 0. */
  readonly graphConcurrency429: number;
  readonly violations: string[];
}

/** The emulator's measurements against each mailbox's `limits.maxConcurrency`. */
export function checkGraphConcurrency(meters: readonly MailboxConcurrency[], limits: ReadonlyMap<string, number>): ConcurrencyCheck {
  const violations: string[] = [];
  const peaks: Record<string, { peak: number; limit: number }> = {};
  let graphConcurrency429 = 0;
  for (const [mailbox, limit] of limits) {
    const mine = meters.filter((m) => m.mailbox.toLowerCase() === mailbox.toLowerCase());
    const peak = Math.max(0, ...mine.map((m) => m.peak));
    peaks[mailbox] = { peak, limit };
    if (peak > limit) violations.push(`${mailbox}: Graph had ${peak} sends at once, the limit is ${limit}`);
    graphConcurrency429 += mine.reduce((n, m) => n + m.concurrencyRejections, 0);
  }
  if (graphConcurrency429 > 0) violations.push(`Graph answered ${graphConcurrency429} requests with its own 429 (MailboxConcurrency)`);
  return { peaks, graphConcurrency429, violations };
}

/** Each text that must never appear in the service's output (secrets, API keys, a message body) and was found. */
export function leakedInLogs(logs: string, secrets: readonly string[]): string[] {
  return secrets.filter((s) => logs.includes(s)).map((s) => `the service log holds a secret or a message body (${s.length} characters)`);
}

// ---- small things ------------------------------------------------------------------------

export function totalSends(metrics: string): number {
  let sum = 0;
  for (const line of metrics.split("\n")) if (line.startsWith("noreply_relay_send_total{")) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

export function parseBody(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text || "{}") as unknown;
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A small seeded PRNG, so a run's choices can be repeated with its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function newSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

export function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Whether `moduleUrl` is the script node was started with (`tsx test/soak/soak.ts`). */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}
