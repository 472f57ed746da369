import { z } from "zod";
import type { FieldError } from "../core/problems.js";
import { formatFieldPath } from "../core/field-path.js";
import type { JsonShapeLimits } from "../core/json-text.js";
import { MAX_ADDRESS, MAX_RECIPIENTS, addressProblem, senderLookAlikeProblem } from "../mail/addresses.js";
import { plainTextProblem, type PlainTextOptions } from "../mail/plain-text.js";

/*
 * The wire shape of POST /send. This schema is the single source of the OpenAPI
 * `SendRequest` schema (derived with `z.toJSONSchema`), so every field is described and
 * nothing in it needs a transform: checks JSON Schema cannot express are refinements
 * (skipped by the conversion), and rules that span fields live in `checkSendRequest`.
 */

// Address rules and the recipient limit are the send use case's (src/mail/addresses.ts): the SMTP door applies them too.
export { MAX_ADDRESS, MAX_DOMAIN, MAX_LOCAL_PART, MAX_RECIPIENTS, addressProblem, senderLookAlikeProblem } from "../mail/addresses.js";
/** Graph: custom internet message headers per message. */
export const MAX_HEADERS = 5;
export const MAX_SUBJECT = 255;
export const MAX_ATTACHMENTS = 100;

/**
 * The shape the JSON reader accepts for a /send body before validation looks at it (see
 * readJsonBody): the real body nests 3 levels deep, has at most 15 members per object and
 * 500 items per list, so these refuse only what no caller means, and bound what validation
 * can be made to walk (and report).
 */
export const SEND_BODY_SHAPE: JsonShapeLimits = Object.freeze({ maxDepth: 64, maxMembers: 64, maxItems: 1000 });

const NO_LINE_BREAK = /^[^\r\n]*$/;
const TENANT_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Display names and file names: no line breaks (their own rule), no tab. */
const NAME_TEXT: PlainTextOptions = Object.freeze({ lineBreaks: true });
/** Subject and header values: a tab is allowed. */
const LINE_TEXT: PlainTextOptions = Object.freeze({ tab: true, lineBreaks: true });
/** replyTo's own limit; to, cc and bcc have MAX_RECIPIENTS. */
const MAX_REPLY_TO = 100;
const HEADER_NAME = /^[Xx]-[!-9;-~]+$/;
// Parameters in printable ASCII (a tab allowed as white space): RFC 2045 has nothing else.
const MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(?:[ \t]*;[\t -~]*)?$/;

/** Characters decoded per step: a multiple of 4, so each slice decodes on its own. */
const BASE64_SLICE = 64 * 1024;
/** Decoding target, reused: the decoded bytes are never needed, only how many there are. */
const decodeScratch = Buffer.allocUnsafeSlow((BASE64_SLICE / 4) * 3);

/** The 6-bit value of a base64 character (the alphabet already checked). */
function base64Value(c: number): number {
  if (c >= 97) return c - 71; // a-z
  if (c >= 65) return c - 65; // A-Z
  if (c >= 48) return c + 4; // 0-9
  return c === 43 ? 62 : 63; // + /
}

/**
 * Standard, padded base64 without whitespace: exactly the strings that
 * `Buffer.from(v, "base64").toString("base64")` returns unchanged, checked without building
 * that second string (the 100 KB attachment case took 70 µs and a 137 KB string; this takes
 * about 15 µs and allocates nothing the GC sees). Node's decoder skips what it does not
 * understand (spaces, line breaks, other characters) and stops at a `=`, so all characters are
 * in the alphabet exactly when the decoded length is the one the string's length and padding
 * imply. What it would wrongly accept is ruled out first: the URL-safe `-` and `_`, and
 * characters above U+00FF, which it reads by their low byte (hence: ASCII only). The last
 * character before padding must carry no unused bits, as re-encoding would have shown.
 */
export function isStrictBase64(value: string): boolean {
  const n = value.length;
  if (n % 4 !== 0) return false;
  if (n === 0) return true;
  if (Buffer.byteLength(value, "utf8") !== n) return false;
  if (value.indexOf("-") !== -1 || value.indexOf("_") !== -1) return false;
  const pad = value.charCodeAt(n - 1) !== 61 ? 0 : value.charCodeAt(n - 2) !== 61 ? 1 : 2;
  for (let start = 0; start < n; start += BASE64_SLICE) {
    const end = Math.min(n, start + BASE64_SLICE);
    const slice = start === 0 && end === n ? value : value.slice(start, end);
    const want = ((end - start) / 4) * 3 - (end === n ? pad : 0);
    if (decodeScratch.write(slice, 0, "base64") !== want) return false;
  }
  if (pad === 0) return true;
  // "QR==" decodes like "QQ==": only the canonical form (unused bits zero) is accepted.
  const last = base64Value(value.charCodeAt(n - 1 - pad));
  return (last & (pad === 1 ? 0b11 : 0b1111)) === 0;
}

/**
 * A zod refinement: the string is plain text (plainTextProblem). Strings over `maxLength` are
 * left to the field's max rule, which refuses them anyway, so a long one is not scanned.
 */
function plainText(options: PlainTextOptions, maxLength: number): (value: string, ctx: z.core.$RefinementCtx<string>) => void {
  return (value, ctx) => {
    if (value.length > maxLength) return;
    const problem = plainTextProblem(value, options);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  };
}

const UNPAIRED_SURROGATE = /\p{Cs}/u;
const UNPAIRED_MESSAGE = "must not contain unpaired surrogates (\\ud800–\\udfff alone): they cannot be sent as UTF-8";
/** Whether `value` can be written as UTF-8: no unpaired surrogates (String.prototype.isWellFormed). */
const wellFormed = (value: string): boolean => !UNPAIRED_SURROGATE.test(value);

const address = z
  .string()
  .max(MAX_ADDRESS)
  .superRefine((v, ctx) => {
    const problem = addressProblem(v);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  })
  .meta({ format: "email", examples: ["someone@example.com"] });

const ADDRESS_DESCRIPTION =
  "Email address. An internationalized domain is written as A-labels (xn--…) or as NFC U-labels, one script per label; no control, bidirectional-formatting or invisible characters anywhere.";

const displayName = z
  .string()
  .max(255)
  .regex(NO_LINE_BREAK, "must not contain line breaks")
  .superRefine(plainText(NAME_TEXT, 255))
  .describe("Display name shown with the address: text without line breaks, tabs, control, bidirectional-formatting or invisible characters.");

const recipient = z
  .union([
    address.describe(ADDRESS_DESCRIPTION),
    z
      .strictObject({
        address: address.describe(ADDRESS_DESCRIPTION),
        name: displayName.optional(),
      })
      .describe("Address with a display name."),
  ])
  .describe('A recipient: "a@example.com" or {"address": "a@example.com", "name": "A"}.');

const recipients = (what: string, max: number) => z.array(recipient).max(max).optional().describe(what);

const attachment = z
  .strictObject({
    filename: z
      .string()
      .min(1)
      .max(255)
      .regex(NO_LINE_BREAK, "must not contain line breaks")
      .superRefine(plainText(NAME_TEXT, 255))
      .describe("File name shown to the recipient: text without line breaks, tabs, control, bidirectional-formatting or invisible characters."),
    contentType: z
      .string()
      .max(255)
      .regex(MEDIA_TYPE, "must be a media type such as application/pdf (parameters in printable ASCII)")
      .describe("Media type, e.g. application/pdf or image/png."),
    content: z
      .string()
      // refine, not superRefine: zod's superRefine hangs a closure on each check's payload, and
      // with it V8 kept every attachment's string alive into the next scavenge, which promoted
      // them all (≈ 5 MB/s of old-generation growth at 200 req/s, a mark-compact every ~1 s).
      .refine(isStrictBase64, "must be standard base64 (A-Z a-z 0-9 + /, padded with =, no line breaks)")
      .meta({ contentEncoding: "base64" })
      .describe("The file's bytes, base64-encoded."),
    contentId: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[!-;=?-~]+$/, "must be printable ASCII without spaces or angle brackets")
      .optional()
      .describe('Content-ID for inline use: the HTML refers to it as <img src="cid:logo">.'),
    inline: z.boolean().optional().describe("Show inline (referenced by contentId from the HTML) instead of as an attachment. Needs contentId."),
  })
  .describe("A file attachment.");

/** The body of POST /send (openapi.yaml `SendRequest`). */
export const sendRequestSchema = z
  .strictObject({
    tenant: z
      .string()
      .regex(TENANT_KEY, "must be a tenant key (letters, digits, . _ -)")
      .describe("The tenant key from the service's config; the message is sent from that tenant's configured sender."),
    to: recipients("Primary recipients.", MAX_RECIPIENTS),
    cc: recipients("Carbon-copy recipients.", MAX_RECIPIENTS),
    bcc: recipients("Blind carbon-copy recipients.", MAX_RECIPIENTS),
    replyTo: recipients("Addresses replies should go to.", MAX_REPLY_TO),
    subject: z
      .string()
      .min(1, "must not be empty")
      .max(MAX_SUBJECT)
      .regex(NO_LINE_BREAK, "must not contain line breaks")
      .superRefine(plainText(LINE_TEXT, MAX_SUBJECT))
      .describe("Subject line: text without line breaks, control, bidirectional-formatting or invisible characters (a tab is allowed)."),
    text: z.string().refine(wellFormed, UNPAIRED_MESSAGE).optional().describe("Plain-text body. Used when html is absent."),
    html: z.string().refine(wellFormed, UNPAIRED_MESSAGE).optional().describe("HTML body. Wins over text when both are given."),
    attachments: z.array(attachment).max(MAX_ATTACHMENTS).optional().describe("File attachments, inline or not."),
    headers: z
      .record(
        z.string().max(128).regex(HEADER_NAME, "header names must start with X- and use printable characters without ':'"),
        z
          .string()
          .max(998)
          .regex(NO_LINE_BREAK, "must not contain line breaks")
          .superRefine(plainText(LINE_TEXT, 998))
          .describe("Header value: text without line breaks, control, bidirectional-formatting or invisible characters (a tab is allowed)."),
      )
      .optional()
      .describe(`Custom internet message headers (at most ${MAX_HEADERS}, names starting with X-).`),
    importance: z.enum(["low", "normal", "high"]).optional().describe("Message importance; default normal."),
    saveToSentItems: z.boolean().optional().describe("Keep a copy in the sender's Sent Items; default from the tenant's config (false)."),
    from: address
      .superRefine((value, ctx) => {
        // An address already refused is not refused twice.
        const problem = addressProblem(value) === undefined ? senderLookAlikeProblem(value) : undefined;
        if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
      })
      .optional()
      .describe(
        "Must equal the tenant's configured sender when given (compared after Unicode NFC normalisation, ignoring the case of A–Z only); compatibility characters (such as U+212A KELVIN SIGN for K) are refused.",
      ),
    dryRun: z.boolean().optional().describe("Validate and resolve everything, send nothing; answers 200 with the same body shape."),
  })
  .describe("One message to send.");

/** A syntactically valid /send body (cross-field rules not yet checked). */
export type SendRequest = z.output<typeof sendRequestSchema>;
export type WireRecipient = NonNullable<SendRequest["to"]>[number];

export { formatFieldPath };

function issueErrors(issues: readonly z.core.$ZodIssue[], base: readonly PropertyKey[] = []): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of issues) {
    const path = [...base, ...issue.path];
    switch (issue.code) {
      case "unrecognized_keys":
        for (const key of issue.keys) out.push({ path: formatFieldPath([...path, key]), message: "unknown field" });
        break;
      case "invalid_key":
        out.push(...issueErrors(issue.issues, path));
        break;
      case "invalid_union":
        out.push({ path: formatFieldPath(path), message: 'must be an address string or an object {"address", "name"}' });
        break;
      default:
        out.push({ path: formatFieldPath(path), message: issue.message });
    }
  }
  return out;
}

const errorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === "invalid_type") return iss.input === undefined ? "is required" : `must be ${article(iss.expected)}`;
  return undefined;
};

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

/**
 * The outcome of validation. `omitted` is set when validation stopped early (see
 * unknownFields): `errors` then lists the first of that many more unknown fields, and nothing
 * else was checked.
 */
export type SendRequestCheck = { ok: true; value: SendRequest } | { ok: false; errors: FieldError[]; omitted?: number };

/** The most errors validation lists before it stops counting them one by one; the answer lists as many (MAX_FIELD_ERRORS). */
export const MAX_LISTED_ERRORS = 20;

const TOP_FIELDS: ReadonlySet<string> = new Set(Object.keys(sendRequestSchema.shape));
const RECIPIENT_FIELDS: ReadonlySet<string> = new Set(["address", "name"]);
const ATTACHMENT_FIELDS: ReadonlySet<string> = new Set(Object.keys(attachment.shape));
const LIST_FIELDS: readonly (readonly [string, ReadonlySet<string>])[] = [
  ["to", RECIPIENT_FIELDS],
  ["cc", RECIPIENT_FIELDS],
  ["bcc", RECIPIENT_FIELDS],
  ["replyTo", RECIPIENT_FIELDS],
  ["attachments", ATTACHMENT_FIELDS],
];

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Unknown fields of the body and of its recipients and attachments, counted with plain loops
 * before zod looks at anything. Only when there are more than one answer lists does validation
 * stop here: a careless caller still hears of every problem at once, while a body of 300,000
 * unknown fields (each object under the reader's 64 members) costs a count, not 300,000 zod
 * issues and union attempts. Undefined when the body has at most MAX_LISTED_ERRORS of them.
 */
function unknownFields(body: unknown): { errors: FieldError[]; omitted: number } | undefined {
  if (!isRecord(body)) return undefined;
  const errors: FieldError[] = [];
  let count = 0;
  const unknown = (path: readonly (string | number)[]): void => {
    if (++count <= MAX_LISTED_ERRORS) errors.push({ path: formatFieldPath(path), message: "unknown field" });
  };
  for (const key of Object.keys(body)) if (!TOP_FIELDS.has(key)) unknown([key]);
  for (const [field, known] of LIST_FIELDS) {
    const list = body[field];
    if (!Array.isArray(list)) continue;
    for (let i = 0; i < list.length; i++) {
      const item: unknown = list[i];
      if (!isRecord(item)) continue;
      for (const key of Object.keys(item)) if (!known.has(key)) unknown([field, i, key]);
    }
  }
  return count > MAX_LISTED_ERRORS ? { errors, omitted: count - errors.length } : undefined;
}

/**
 * Validates a parsed JSON body: shape first, then the rules that span fields. The usual request
 * (recipients, subject, text or html, no attachments or headers) is recognised as valid by
 * validSimpleRequest without zod; anything else, and every refusal, is zod's.
 */
export function parseSendRequest(body: unknown): SendRequestCheck {
  const simple = validSimpleRequest(body);
  if (simple !== undefined) return { ok: true, value: simple };
  return parseWithSchema(body);
}

/** parseSendRequest without the shortcut: the schema and checkSendRequest decide. */
export function parseWithSchema(body: unknown): SendRequestCheck {
  const early = unknownFields(body);
  if (early !== undefined) return { ok: false, ...early };
  const result = sendRequestSchema.safeParse(body, { error: errorMap });
  if (!result.success) return { ok: false, errors: issueErrors(result.error.issues) };
  const errors = checkSendRequest(result.data);
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: result.data };
}

/**
 * The body itself when it is a request without attachments or headers that the schema and
 * checkSendRequest would accept as it is (the schema has no transforms, so what it returns then
 * equals the body), checked with the same rules and limits in plain code; undefined when not
 * sure, and the schema decides. It never refuses: a refusal's wording is the schema's alone. A
 * test compares the two on generated bodies (send-request-schema.test.ts).
 */
export function validSimpleRequest(body: unknown): SendRequest | undefined {
  if (!isRecord(body)) return undefined;
  let recipients = 0;
  for (const key of Object.keys(body)) {
    const value = body[key];
    switch (key) {
      case "tenant":
        if (typeof value !== "string" || !TENANT_KEY.test(value)) return undefined;
        break;
      case "to":
      case "cc":
      case "bcc": {
        const n = validRecipients(value, MAX_RECIPIENTS);
        if (n < 0) return undefined;
        recipients += n;
        break;
      }
      case "replyTo":
        if (validRecipients(value, MAX_REPLY_TO) < 0) return undefined;
        break;
      case "subject":
        if (typeof value !== "string" || value.length === 0 || value.length > MAX_SUBJECT || !NO_LINE_BREAK.test(value) || plainTextProblem(value, LINE_TEXT) !== undefined) return undefined;
        break;
      case "text":
      case "html":
        if (typeof value !== "string" || !wellFormed(value)) return undefined;
        break;
      case "importance":
        if (value !== "low" && value !== "normal" && value !== "high") return undefined;
        break;
      case "saveToSentItems":
      case "dryRun":
        if (typeof value !== "boolean") return undefined;
        break;
      case "from":
        if (!validAddress(value) || senderLookAlikeProblem(value) !== undefined) return undefined;
        break;
      default:
        // attachments, headers, unknown fields: the schema's.
        return undefined;
    }
  }
  if (body.tenant === undefined || body.subject === undefined) return undefined;
  if (recipients === 0 || recipients > MAX_RECIPIENTS) return undefined;
  if (body.text === undefined && body.html === undefined) return undefined;
  return body as SendRequest;
}

function validAddress(value: unknown): value is string {
  return typeof value === "string" && value.length <= MAX_ADDRESS && addressProblem(value) === undefined;
}

/** How many recipients the list holds when the schema would accept it (at most `max`), else -1. */
function validRecipients(list: unknown, max: number): number {
  if (!Array.isArray(list) || list.length > max) return -1;
  for (const r of list) {
    if (validAddress(r)) continue;
    if (!isRecord(r) || !validAddress(r.address)) return -1;
    for (const key of Object.keys(r)) {
      if (key === "address") continue;
      if (key !== "name") return -1;
      const name = r.name;
      if (typeof name !== "string" || name.length > 255 || !NO_LINE_BREAK.test(name) || plainTextProblem(name, NAME_TEXT) !== undefined) return -1;
    }
  }
  return list.length;
}

/** Rules across fields, each reported at the path a caller would fix. */
export function checkSendRequest(req: SendRequest): FieldError[] {
  const errors: FieldError[] = [];
  const count = (req.to?.length ?? 0) + (req.cc?.length ?? 0) + (req.bcc?.length ?? 0);
  if (count === 0) errors.push({ path: "to", message: "at least one recipient is required in to, cc or bcc" });
  if (count > MAX_RECIPIENTS) errors.push({ path: "to", message: `at most ${MAX_RECIPIENTS} recipients in to, cc and bcc together (${count} given)` });
  if (req.text === undefined && req.html === undefined) errors.push({ path: "text", message: "give text or html (or both)" });
  if (req.headers !== undefined) {
    const names = Object.keys(req.headers);
    if (names.length > MAX_HEADERS) errors.push({ path: "headers", message: `at most ${MAX_HEADERS} custom headers (${names.length} given)` });
    const seen = new Set<string>();
    for (const name of names) {
      const lower = name.toLowerCase();
      if (seen.has(lower)) errors.push({ path: formatFieldPath(["headers", name]), message: "duplicate header name (names are case-insensitive)" });
      seen.add(lower);
    }
  }
  req.attachments?.forEach((a, i) => {
    if (a.inline === true && a.contentId === undefined) errors.push({ path: `attachments[${i}].contentId`, message: "is required for an inline attachment" });
  });
  return errors;
}

/** The address of a wire recipient, whichever form it took. */
export function recipientAddress(r: WireRecipient): string {
  return typeof r === "string" ? r : r.address;
}
