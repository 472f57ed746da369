import { z } from "zod";
import type { FieldError } from "../core/problems.js";

/*
 * The wire shape of POST /send. This schema is the single source of the OpenAPI
 * `SendRequest` schema (derived with `z.toJSONSchema`), so every field is described and
 * nothing in it needs a transform: checks JSON Schema cannot express are refinements
 * (skipped by the conversion), and rules that span fields live in `checkSendRequest`.
 */

/** RFC 5321 §4.5.3.1 limits. */
export const MAX_LOCAL_PART = 64;
export const MAX_DOMAIN = 255;
export const MAX_ADDRESS = 254;
/** Exchange Online: at most 500 recipients (to + cc + bcc) per message. */
export const MAX_RECIPIENTS = 500;
/** Graph: custom internet message headers per message. */
export const MAX_HEADERS = 5;
export const MAX_SUBJECT = 255;
export const MAX_ATTACHMENTS = 100;

const NO_LINE_BREAK = /^[^\r\n]*$/;
// RFC 5322 atext (plus dots between atoms) and UTF-8 (SMTPUTF8); quoted local parts are not accepted.
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+)*$/;
const DOMAIN = /^(?:[A-Za-z0-9\u0080-\uFFFF](?:[A-Za-z0-9\u0080-\uFFFF-]*[A-Za-z0-9\u0080-\uFFFF])?)(?:\.[A-Za-z0-9\u0080-\uFFFF](?:[A-Za-z0-9\u0080-\uFFFF-]*[A-Za-z0-9\u0080-\uFFFF])?)*$/;
const HEADER_NAME = /^[Xx]-[!-9;-~]+$/;
const MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(?:\s*;[^\r\n]*)?$/;

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

/** Why `address` is not a mailbox address we pass on, or undefined when it is fine. */
export function addressProblem(address: string): string | undefined {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\s\u0000-\u001f\u007f]/.test(address)) return "must not contain spaces, tabs or line breaks";
  const at = address.indexOf("@");
  if (at < 0 || address.indexOf("@", at + 1) >= 0) return "must contain exactly one @";
  if (address.length > MAX_ADDRESS) return `must be at most ${MAX_ADDRESS} characters`;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length === 0 || local.length > MAX_LOCAL_PART) return `the part before @ must be 1 to ${MAX_LOCAL_PART} characters`;
  if (domain.length === 0 || domain.length > MAX_DOMAIN) return `the domain must be 1 to ${MAX_DOMAIN} characters`;
  if (!LOCAL_PART.test(local)) return "the part before @ has characters or dots that are not allowed";
  if (!DOMAIN.test(domain)) return "the domain is not a valid host name";
  return undefined;
}

const address = z
  .string()
  .max(MAX_ADDRESS)
  .superRefine((v, ctx) => {
    const problem = addressProblem(v);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  })
  .meta({ format: "email", examples: ["someone@example.com"] });

const displayName = z
  .string()
  .max(255)
  .regex(NO_LINE_BREAK, "must not contain line breaks")
  .describe("Display name shown with the address.");

const recipient = z
  .union([
    address.describe("Email address."),
    z
      .strictObject({
        address: address.describe("Email address."),
        name: displayName.optional(),
      })
      .describe("Address with a display name."),
  ])
  .describe('A recipient: "a@example.com" or {"address": "a@example.com", "name": "A"}.');

const recipients = (what: string, max: number) => z.array(recipient).max(max).optional().describe(what);

const attachment = z
  .strictObject({
    filename: z.string().min(1).max(255).regex(NO_LINE_BREAK, "must not contain line breaks").describe("File name shown to the recipient."),
    contentType: z
      .string()
      .max(255)
      .regex(MEDIA_TYPE, "must be a media type such as application/pdf")
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
      .regex(/^[^\s<>]+$/, "must not contain spaces or angle brackets")
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
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be a tenant key (letters, digits, . _ -)")
      .describe("The tenant key from the service's config; the message is sent from that tenant's configured sender."),
    to: recipients("Primary recipients.", MAX_RECIPIENTS),
    cc: recipients("Carbon-copy recipients.", MAX_RECIPIENTS),
    bcc: recipients("Blind carbon-copy recipients.", MAX_RECIPIENTS),
    replyTo: recipients("Addresses replies should go to.", 100),
    subject: z
      .string()
      .min(1, "must not be empty")
      .max(MAX_SUBJECT)
      .regex(NO_LINE_BREAK, "must not contain line breaks")
      .describe("Subject line."),
    text: z.string().optional().describe("Plain-text body. Used when html is absent."),
    html: z.string().optional().describe("HTML body. Wins over text when both are given."),
    attachments: z.array(attachment).max(MAX_ATTACHMENTS).optional().describe("File attachments, inline or not."),
    headers: z
      .record(
        z.string().max(128).regex(HEADER_NAME, "header names must start with X- and use printable characters without ':'"),
        z.string().max(998).regex(NO_LINE_BREAK, "must not contain line breaks").describe("Header value."),
      )
      .optional()
      .describe(`Custom internet message headers (at most ${MAX_HEADERS}, names starting with X-).`),
    importance: z.enum(["low", "normal", "high"]).optional().describe("Message importance; default normal."),
    saveToSentItems: z.boolean().optional().describe("Keep a copy in the sender's Sent Items; default from the tenant's config (false)."),
    from: address.optional().describe("Must equal the tenant's configured sender when given (compared case-insensitively)."),
    dryRun: z.boolean().optional().describe("Validate and resolve everything, send nothing; answers 200 with the same body shape."),
  })
  .describe("One message to send.");

/** A syntactically valid /send body (cross-field rules not yet checked). */
export type SendRequest = z.output<typeof sendRequestSchema>;
export type WireRecipient = NonNullable<SendRequest["to"]>[number];

/** `to[1].address`, `headers["X-Order-Id"]`, `(body)` for the body itself. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === "" ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out === "" ? "(body)" : out;
}

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

export type SendRequestCheck = { ok: true; value: SendRequest } | { ok: false; errors: FieldError[] };

/** Validates a parsed JSON body: shape first, then the rules that span fields. */
export function parseSendRequest(body: unknown): SendRequestCheck {
  const result = sendRequestSchema.safeParse(body, { error: errorMap });
  if (!result.success) return { ok: false, errors: issueErrors(result.error.issues) };
  const errors = checkSendRequest(result.data);
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: result.data };
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
