import { request as httpRequest } from "node:http";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestIdMismatch, specValidator } from "../support/checked-fetch.js";
import { startHarness, type Harness } from "../support/harness.js";

/*
 * Property-based fuzzing of POST /send over real HTTP (node:http to the listening service; the
 * emulator plays Entra and Graph). Bodies are written as raw text, so they can hold what
 * JSON.stringify never writes: repeated keys, 100,000 levels of nesting, truncated text. For
 * every request:
 *
 *   - never a 5xx;
 *   - never a Graph sendMail call for a request refused with a 4xx (other than the two Graph
 *     itself gives: policy_denied, recipient_rejected);
 *   - every answer at most 64 KB, and conforming to openapi.yaml (status, headers, body,
 *     requestId equal to X-Request-Id);
 *   - no unhandled rejection in this process (vitest reports them too).
 *
 * Bounded and seeded: FUZZ_RUNS runs (default 300) from FUZZ_SEED (default below). A failure
 * names the seed and fast-check's path: `FUZZ_SEED=… FUZZ_RUNS=… npx vitest run test/fuzz` replays it.
 */

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : 20_141_414;
const RUNS = process.env.FUZZ_RUNS !== undefined ? Number(process.env.FUZZ_RUNS) : 300;
const MAX_ANSWER_BYTES = 64 * 1024;
/** Codes Graph (the emulator) gives after a sendMail call: the only 4xx that may follow one. */
const GRAPH_REFUSALS = new Set(["policy_denied", "recipient_rejected"]);

// ---------------------------------------------------------------------------------------------
// Generators

/** Characters careless and hostile clients put into text. */
const ODD = [
  "\u0000", "\u0007", "\t", "\n", "\r", "\u001b", "\u007f", "\u0085", "\u009b", "\u00ad", "\u200b", "\u200c", "\u200d",
  "\u200e", "\u202a", "\u202e", "\u2028", "\u2029", "\u2066", "\u2069", "\u2060", "\ufeff", "\ufe0f", "\ud800", "\udc00",
  "\u212a", "\uff41", "\u0430", "\u0130", "\u017f", "😀", "👩‍💻", "é", "e\u0301", "\u{E0067}", "\"", "\\", "}", "]", "{",
];

const text = fc
  .array(fc.oneof({ arbitrary: fc.string({ maxLength: 10 }), weight: 3 }, { arbitrary: fc.constantFrom(...ODD), weight: 1 }), { maxLength: 8 })
  .map((parts) => parts.join(""));

const plain = fc.constantFrom("Hello", "Invoice 2024-0042", "Zoë's order ❤️", "Ihre Bestellung", "注文");

const address = fc.oneof(
  { arbitrary: fc.constantFrom("someone@example.com", "ada@example.com", "Bob@Example.COM", "kunde@bücher.de", "kunde@xn--bcher-kva.de"), weight: 6 },
  {
    arbitrary: fc.constantFrom(
      "no-at", "@", "", "a@b@c", "x@xn--zz.com", "a@ex\u0430mple.com", "some\u200bone@example.com", "a@\u212Aontoso.com",
      "a@example\uff0ecom", "a b@example.com", "a@-example.com", "a@example..com", `${"l".repeat(65)}@example.com`,
    ),
    weight: 2,
  },
  { arbitrary: fc.emailAddress(), weight: 1 },
  { arbitrary: fc.tuple(text, text).map(([a, b]) => `${a}@${b}`), weight: 1 },
);

const recipient = fc.oneof(
  { arbitrary: address, weight: 3 },
  { arbitrary: fc.record({ address, name: fc.oneof(plain, text) }, { requiredKeys: ["address"] }), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 1 },
);

const sender = fc.constantFrom(
  "noreply@contoso.com", "NoReply@Contoso.COM", "ceo@contoso.com", "noreply@contoso.com\u200b", "n\u043ereply@contoso.com",
  "noreply@conto\u017fo.com", "\uff4eoreply@contoso.com", "noreply@contoso.co\u212A", "noreply@fabri\u212Aam.com",
);

const attachment = fc.record(
  {
    filename: fc.oneof(fc.constant("invoice.pdf"), text, fc.constant("Invoice_\u202Efdp.exe")),
    contentType: fc.constantFrom("application/pdf", "text/plain; charset=utf-8", "image/png", "bad", "application/pdf; name=\u0000x", "text/plain; name=é"),
    content: fc.oneof(fc.base64String({ maxLength: 64 }), fc.constantFrom("QQ==", "not base64", "QR==", "")),
    contentId: fc.oneof(fc.constant("logo"), text),
    inline: fc.boolean(),
  },
  { requiredKeys: ["filename", "contentType", "content"] },
);

const headerName = fc.oneof(fc.constantFrom("X-Order-Id", "X-A", "x-a", "Bad", "X-\u00e9", "X-Order:Id", "__proto__"), text);

/** A body shaped like a message: mostly fields of the right kind, some of them odd. */
const messageBody = fc.record(
  {
    tenant: fc.oneof({ arbitrary: fc.constant("contoso"), weight: 8 }, { arbitrary: fc.constantFrom("nope", "", "CONTOSO", "../etc", "fabrikam"), weight: 1 }),
    to: fc.array(recipient, { maxLength: 4 }),
    cc: fc.array(recipient, { maxLength: 2 }),
    bcc: fc.array(recipient, { maxLength: 2 }),
    replyTo: fc.array(recipient, { maxLength: 2 }),
    subject: fc.oneof({ arbitrary: plain, weight: 3 }, { arbitrary: text, weight: 2 }),
    text: fc.oneof(plain, text),
    html: fc.oneof(fc.constant("<p>Hi</p>"), text),
    attachments: fc.array(attachment, { maxLength: 2 }),
    headers: fc.dictionary(headerName, fc.oneof(plain, text), { maxKeys: 7 }),
    importance: fc.constantFrom("low", "normal", "high", "urgent"),
    saveToSentItems: fc.boolean(),
    from: sender,
    dryRun: fc.boolean(),
  },
  { requiredKeys: ["tenant", "to", "subject"] },
);

/** A body that passes validation (so requests do reach Graph now and then). */
const validBody = fc.record({
  tenant: fc.constant("contoso"),
  to: fc.array(fc.constantFrom("someone@example.com", "ada@example.com", "kunde@bücher.de"), { minLength: 1, maxLength: 3 }),
  subject: plain,
  text: plain,
  dryRun: fc.boolean(),
});

type Mutation = (body: string) => string;

/** `body` with `insert` before its last `}` (or as it is when it is not an object). */
const beforeClose = (body: string, insert: string): string => {
  const at = body.lastIndexOf("}");
  if (at <= 0) return body;
  const empty = /^\s*\{\s*$/.test(body.slice(0, at));
  return `${body.slice(0, at)}${empty ? insert.replace(/^,/, "") : insert}${body.slice(at)}`;
};

/** What a hostile or careless client does to the text of a body. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.constant<Mutation>((b) => b), weight: 6 },
  { arbitrary: fc.integer({ min: 1, max: 120_000 }).map<Mutation>((n) => (b) => beforeClose(b, `,"deep":${"[".repeat(n)}${"]".repeat(n)}`)), weight: 2 },
  { arbitrary: fc.integer({ min: 1, max: 5_000 }).map<Mutation>((n) => (b) => beforeClose(b, `,"deep":${'{"a":'.repeat(n)}1${"}".repeat(n)}`)), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 120_000 }).map<Mutation>((n) => (b) => `${"[".repeat(n)}${b}${"]".repeat(n)}`), weight: 1 },
  {
    arbitrary: fc.integer({ min: 1, max: 100_000 }).map<Mutation>((n) => (b) => beforeClose(b, Array.from({ length: n }, (_, i) => `,"k${i}":${i}`).join(""))),
    weight: 2,
  },
  {
    arbitrary: fc.integer({ min: 400, max: 3_000 }).map<Mutation>((n) => (b) => beforeClose(b, `,"cc":[${Array.from({ length: n }, (_, i) => `{"address":"r${i}@example.com","x${i % 70}":1}`).join(",")}]`)),
    weight: 1,
  },
  { arbitrary: fc.constantFrom("subject", "tenant", "to", "text", "dryRun", "headers").map<Mutation>((k) => (b) => beforeClose(b, `,"${k}":"again"`)), weight: 2 },
  {
    arbitrary: fc
      .constantFrom('"__proto__":{"isAdmin":true}', '"\\u005f_proto__":1', '"constructor":{"prototype":{"isAdmin":true}}', '"headers":{"__proto__":"v"}', '"to":[{"address":"a@example.com","__proto__":{}}]')
      .map<Mutation>((member) => (b) => beforeClose(b, `,${member}`)),
    weight: 2,
  },
  {
    arbitrary: fc
      .tuple(fc.constantFrom("tenant", "to", "subject", "text", "attachments", "headers", "from", "dryRun", "importance"), fc.jsonValue({ maxDepth: 3 }))
      .map<Mutation>(([k, v]) => (b) => beforeClose(b, `,"${k}":${JSON.stringify(v) ?? "null"}`)),
    weight: 2,
  },
  { arbitrary: fc.nat().map<Mutation>((n) => (b) => b.slice(0, n % (b.length + 1))), weight: 1 },
  { arbitrary: fc.constantFrom<Mutation>((b) => `\ufeff${b}`, (b) => ` \n\t${b} \r\n`, (b) => `${b}${b}`, (b) => `${b},`, (b) => b.replace(/:/, "::")), weight: 1 },
);

const body = fc.oneof(
  { arbitrary: fc.tuple(messageBody, mutation).map(([b, m]) => m(JSON.stringify(b))), weight: 6 },
  { arbitrary: validBody.map((b) => JSON.stringify(b)), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null"), weight: 1 },
  { arbitrary: fc.string({ maxLength: 40 }), weight: 1 },
);

interface RequestPlan {
  readonly body: string;
  readonly contentType: string | undefined;
  readonly auth: "ops" | "billing" | "none" | "wrong" | "basic" | "twice";
  /** Idempotency-Key values, each sent as a header of its own. */
  readonly keys: readonly string[];
  /** Sent in two writes (chunked) instead of one with Content-Length. */
  readonly chunked: boolean;
}

const plan: fc.Arbitrary<RequestPlan> = fc.record({
  body,
  contentType: fc.oneof(
    { arbitrary: fc.constant("application/json"), weight: 12 },
    {
      arbitrary: fc.constantFrom(
        "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;", "text/plain", "application/x-www-form-urlencoded",
        "application/jsonx", "application/json; charset=latin1", "multipart/form-data; boundary=x", undefined,
      ),
      weight: 2,
    },
  ),
  auth: fc.oneof(
    { arbitrary: fc.constant("ops" as const), weight: 10 },
    { arbitrary: fc.constantFrom("billing" as const, "none" as const, "wrong" as const, "basic" as const, "twice" as const), weight: 2 },
  ),
  keys: fc.oneof(
    { arbitrary: fc.constant([]), weight: 6 },
    { arbitrary: fc.constantFrom("fuzz-1", "fuzz-2", "fuzz-3").map((k) => [k]), weight: 3 },
    { arbitrary: fc.constantFrom(["fuzz-1", "fuzz-2"], ["fuzz-3", "fuzz-3"], ["a", "b", "c"]), weight: 1 },
    { arbitrary: fc.constantFrom([""], ["   "], ["x".repeat(256)], ["cl\u00e9"], ["a\tb"]), weight: 1 },
  ),
  chunked: fc.boolean(),
});

// ---------------------------------------------------------------------------------------------
// The service

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly bytes: number;
}

function summary(p: RequestPlan): string {
  const shown = p.body.length > 300 ? `${p.body.slice(0, 300)}… (${p.body.length} characters)` : p.body;
  return JSON.stringify({ ...p, body: shown });
}

describe("POST /send under fuzzing", () => {
  let h: Harness;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => void rejections.push(reason);

  beforeAll(async () => {
    process.on("unhandledRejection", onRejection);
    h = await startHarness({ logLevel: "warn" });
  });
  afterAll(async () => {
    process.off("unhandledRejection", onRejection);
    await h?.close();
  });

  /** One request over a connection of its own; undefined when the service closed it before answering. */
  function send(p: RequestPlan): Promise<Answer | undefined> {
    const keys: Record<RequestPlan["auth"], string[]> = {
      ops: [`Bearer ${h.keys.ops}`],
      billing: [`Bearer ${h.keys.billing}`],
      none: [],
      wrong: ["Bearer not-a-key"],
      basic: ["Basic Zm9vOmJhcg=="],
      twice: [`Bearer ${h.keys.ops}`, "Bearer not-a-key"],
    };
    return new Promise((resolve) => {
      let answered = false;
      const req = httpRequest(`${h.url}/send`, { method: "POST", agent: false }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", () => resolve(undefined));
        res.on("end", () => {
          const raw = Buffer.concat(chunks);
          const headers = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, v);
          }
          resolve({ status: res.statusCode ?? 0, headers, text: raw.toString("utf8"), bytes: raw.length });
        });
      });
      // A refusal before the body is read closes the connection while the body is still going out.
      req.on("error", () => {
        if (!answered) resolve(undefined);
      });
      if (p.contentType !== undefined) req.setHeader("content-type", p.contentType);
      const auth = keys[p.auth];
      if (auth.length > 0) req.setHeader("authorization", auth);
      if (p.keys.length > 0) req.setHeader("idempotency-key", [...p.keys]);
      const bytes = Buffer.from(p.body, "utf8");
      if (p.chunked && bytes.length > 1) {
        const half = Math.floor(bytes.length / 2);
        req.write(bytes.subarray(0, half));
        req.end(bytes.subarray(half));
      } else {
        req.setHeader("content-length", bytes.length);
        req.end(bytes);
      }
    });
  }

  /** Whether the service may refuse `p` before reading its body (and so close the connection early). */
  const refusedUnread = (p: RequestPlan): boolean =>
    p.auth !== "ops" && p.auth !== "billing" ? true : p.keys.length > 1 || p.keys.some((k) => !/^[\x20-\x7e]{1,255}$/.test(k) || k.trim() === "");

  it(`when ${RUNS} generated requests (seed ${SEED}) are sent, then none gets a 5xx, an answer over 64 KB or off the spec, and no 4xx sent mail`, async () => {
    const sendMails = (): number => h.emulator.state.requests({ kind: "sendMail" }).length;
    let statuses: Record<number, number> = {};
    const property = fc.asyncProperty(plan, async (p) => {
      const before = sendMails();
      const answer = await send(p);
      const called = sendMails() - before;
      if (answer === undefined) {
        // Only a request refused unread may lose its answer to the connection closing under it.
        expect(refusedUnread(p), "the connection closed without an answer").toBe(true);
        expect(called).toBe(0);
        return;
      }
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      expect(answer.status, answer.text.slice(0, 500)).toBeLessThan(500);
      expect(answer.bytes, "answer size").toBeLessThanOrEqual(MAX_ANSWER_BYTES);
      const errors = specValidator().validateAnyResponse({ method: "POST", path: "/send", status: answer.status, headers: answer.headers, body: answer.text });
      errors.push(...requestIdMismatch(answer.headers, answer.text));
      expect(errors, answer.text.slice(0, 500)).toEqual([]);
      if (answer.status >= 400) {
        const code = (JSON.parse(answer.text) as { code: string }).code;
        if (!GRAPH_REFUSALS.has(code)) expect(called, `${code} after a Graph sendMail call`).toBe(0);
      }
    });
    const started = performance.now();
    const result = await fc.check(property, { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 120_000, markInterruptAsFailure: true });
    if (result.failed) {
      const example = result.counterexample?.[0];
      throw new Error(
        [
          `fuzzing failed after ${result.numRuns} runs: replay with FUZZ_SEED=${result.seed} FUZZ_RUNS=${RUNS} (fast-check path ${result.counterexamplePath ?? "-"})`,
          example !== undefined ? `request: ${summary(example)}` : "interrupted: the time limit passed",
          `error: ${result.errorInstance instanceof Error ? result.errorInstance.message.slice(0, 2_000) : String(result.errorInstance)}`,
        ].join("\n"),
      );
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.info(`fuzz: ${result.numRuns} runs, seed ${SEED}, ${seconds} s, statuses ${JSON.stringify(statuses)}`);
    statuses = {};
    expect(rejections).toEqual([]);
    // Still healthy: an ordinary message goes out.
    const res = await send({ body: JSON.stringify({ tenant: "contoso", to: ["someone@example.com"], subject: "after", text: "x" }), contentType: "application/json", auth: "ops", keys: [], chunked: false });
    expect(res?.status).toBe(202);
  }, 180_000);
});
