import { randomBytes, randomUUID } from "node:crypto";
import { simpleParser, type AddressObject, type EmailAddress } from "mailparser";
import type { Directory, MailboxEntry } from "./directory.js";
import type { AccessTokenClaims, EntraService } from "./entra.js";
import type { Address, StoredAttachment, StoredMessage } from "./inspection.js";

/** A Graph error answer: status plus the `code`/`message` of Graph's error envelope. */
export interface GraphError {
  status: number;
  code: string;
  message: string;
  headers?: Record<string, string>;
}

const err = (status: number, code: string, message: string): GraphError => ({ status, code, message });

/** Largest sendMail request Graph takes (4 MB); bigger messages need an upload session. */
export const GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024;
const MAX_CUSTOM_HEADERS = 5;

/*
 * Graph / Exchange Online error codes and texts. Sources: the user-sendMail reference
 * (ErrorMimeContentInvalidBase64String), "Resolve Microsoft Graph authorization errors",
 * "Limit application permissions to specific Exchange mailboxes" (RAOP), the throttling guide
 * (TooManyRequests sample), and verbatim responses quoted in public issue threads (noted).
 */
export const graphErrors = {
  tokenEmpty: err(401, "InvalidAuthenticationToken", "Access token is empty."),
  // Approximation for malformed / wrongly signed tokens (real Graph varies the text, e.g. IDX14100 for non-JWTs).
  tokenInvalid: err(401, "InvalidAuthenticationToken", "Access token validation failure."),
  tokenAudience: err(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."),
  tokenExpired: err(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."),
  /*
   * Token of tenant A for a mailbox of tenant B. Approximation: no public source shows Graph's
   * answer for this case. The emulator treats the token as not valid for the target organization:
   * 401 InvalidAuthenticationToken (the token is fine, the tenant is not), rather than 403, which
   * Graph reserves for a valid caller lacking rights. The relay's safe reading of it: one retry
   * with a fresh token, then credential_rejected (a configuration error, not retried forever).
   */
  tokenWrongTenant: err(401, "InvalidAuthenticationToken", "Access token validation failure."),
  // A token without `roles` (app never granted admin consent) — microsoftgraph/microsoft-graph-docs#5673.
  noPermissions: err(401, "NoPermissionsInAccessToken", "The token contains no permissions, or permissions can not be understood."),
  accessDenied: err(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
  accessPolicy: err(403, "ErrorAccessDenied", "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."),
  notRestEnabled: err(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise."),
  noRecipients: err(400, "ErrorInvalidRecipients", "At least one recipient is not valid., A message can't be sent because it contains no recipients."),
  headerCollection: err(400, "InvalidInternetMessageHeaderCollection", "Maximum number of headers in one message should be less than or equal to 5."),
  mimeBase64: err(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."),
  // Approximation: Graph's front door rejects > 4 MB bodies with 413; code/text vary by workload.
  tooLarge: err(413, "RequestEntityTooLarge", "The maximum request length supported is 4MB."),
  // Outlook's per app per mailbox concurrency limit (alcionai/corso#3695, magodo/terraform-provider-outlook#21).
  mailboxConcurrency: err(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
  // Generic Graph throttling answer from the throttling guide, for the per-window request budget.
  tooManyRequests: err(429, "TooManyRequests", "Please retry again later."),
  unableToDeserialize: err(400, "UnableToDeserializePostBody", "were unable to deserialize "),
  meWithAppToken: err(400, "BadRequest", "/me request is only valid with delegated authentication flow."),
  methodNotAllowed: err(405, "ErrorInvalidRequest", "The OData request is not supported."),
  // Graph's 504 and 503 carry `UnknownError` with an empty message: verbatim 504 in
  // https://github.com/microsoftgraph/microsoft-graph-docs/issues/2505 and
  // https://github.com/microsoftgraph/msgraph-sdk-android/issues/32, 503 in
  // https://github.com/microsoftgraph/microsoft-graph-docs/issues/9912.
  gatewayTimeout: err(504, "UnknownError", ""),
  serviceUnavailable: err(503, "UnknownError", ""),
  // 500 on a send, verbatim in https://github.com/microsoftgraph/microsoft-graph-docs/issues/1873.
  internalServerError: err(500, "InternalServerError", "Object reference not set to an instance of an object."),
  // Approximation: no public 502 body from Graph was found; the 503/504 shape is used.
  badGateway: err(502, "UnknownError", ""),
  // 403, verbatim in Microsoft Learn's "Send Outlook messages from another user" (Example 2,
  // https://learn.microsoft.com/en-us/graph/outlook-send-mail-from-other-user) and
  // https://github.com/DeskDirector/UserVoice/issues/379.
  sendAsDenied: err(403, "ErrorSendAsDenied", "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account., Cannot submit message."),
  // Mailbox over its quota: 403 with this text in https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/6596;
  // the code on sendMail in https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/7483.
  mailboxFull: err(403, "ErrorQuotaExceeded", "Mailbox has exceeded maximum mailbox size."),
  // Exchange's recipient rate limit (10,000 a day). The code is Exchange's (EWS ResponseCode,
  // https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsecode:
  // "the submission quota has been reached"). Approximation: no public source shows Graph's status
  // or message for it; 429 is chosen because a client that looks only at the status must not
  // take it for a short throttle it can wait out (there is no Retry-After: the window is 24 h).
  submissionQuota: err(429, "ErrorSubmissionQuotaExceeded", "The message couldn't be sent because the sender's submission quota was exceeded. Please try again later."),
  // A sender Exchange blocked (restricted after outbound spam limits). The code is Exchange's (EWS
  // ResponseCode page: message submission blocked). Approximation: status and text were not found
  // in a public source; 403 is the safe choice (not retryable).
  submissionBlocked: err(403, "ErrorMessageSubmissionBlocked", "The message can't be submitted because the sender's submission has been blocked."),
  // Outlook's upload budget, 150 MB per 5 minutes (https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits);
  // the text is verbatim in https://github.com/O365/python-o365/issues/500.
  incomingBytes: err(429, "ApplicationThrottled", "Application is over its IncomingBytes limit."),
  // A tenant without Exchange Online: 401 (https://github.com/O365/python-o365/issues/757) with this
  // body (https://github.com/MicrosoftDocs/azure-docs/issues/32957).
  organizationNotFound: (tid: string) => err(401, "OrganizationFromTenantGuidNotFound", `The tenant for tenant guid '${tid}' does not exist.`),
  invalidUser: (user: string) => err(404, "ErrorInvalidUser", `The requested user '${user}' is invalid.`),
  unresolvedRecipient: (address: string) =>
    err(400, "ErrorInvalidRecipients", `At least one recipient is not valid., Recipient '${address}' is not resolved. All recipients must be resolved before a message can be submitted.`),
  headerName: (name: string) => err(400, "InvalidInternetMessageHeader", `The internet message header name '${name}' should start with 'x-' or 'X-'.`),
  emptyParameter: (name: string) => err(400, "ErrorInvalidParameter", `The value of the parameter '${name}' is empty.`),
  segmentNotFound: (segment: string) => err(400, "BadRequest", `Resource not found for the segment '${segment}'.`),
  unsupportedMediaType: (type: string) => err(415, "UnsupportedMediaType", `The content type '${type}' is not supported.`),
} as const;

/** Graph's body for a 5xx it sends itself (faults without a body of their own), by status. */
export function serverError(status: number): GraphError {
  const known: Record<number, GraphError> = {
    500: graphErrors.internalServerError,
    502: graphErrors.badGateway,
    503: graphErrors.serviceUnavailable,
    504: graphErrors.gatewayTimeout,
  };
  return known[status] ?? { ...graphErrors.badGateway, status };
}

/** The catalogued Graph errors a `respond` fault can name with `graphError` (those that take no argument). */
export type NamedGraphError = { [K in keyof typeof graphErrors]: (typeof graphErrors)[K] extends GraphError ? K : never }[keyof typeof graphErrors];

/** Whether the mailbox may send with this `from` address: its own addresses and those it has Send As for. */
export function maySendAs(entry: MailboxEntry, from: string | undefined): boolean {
  if (from === undefined) return true;
  const lower = from.toLowerCase();
  const own = [entry.mailbox.address, ...entry.mailbox.aliases, ...entry.mailbox.sendAs].map((a) => a.toLowerCase());
  return own.includes(lower);
}

/** Graph's "2024-02-20T13:53:31" innerError date (UTC, no fraction, no zone). */
export function graphDate(d = new Date()): string {
  return d.toISOString().slice(0, 19);
}

/** Graph's error envelope. */
export function graphErrorBody(e: GraphError, requestId: string, clientRequestId: string): unknown {
  return { error: { code: e.code, message: e.message, innerError: { date: graphDate(), "request-id": requestId, "client-request-id": clientRequestId } } };
}

/** Who may send as which mailbox, established before the body is looked at. */
export interface SendMailAuthorization {
  claims: AccessTokenClaims;
  entry: MailboxEntry;
}

/**
 * Authenticates and authorizes a sendMail call the way Graph layers its checks: token
 * (signature, audience, lifetime), mailbox lookup, tenant of token vs mailbox, app roles,
 * ApplicationAccessPolicy scope, mailbox REST state.
 */
export async function authorizeSendMail(
  dir: Directory,
  entra: EntraService,
  userSegment: string,
  authorization: string | undefined,
): Promise<{ ok: true; auth: SendMailAuthorization } | { ok: false; error: GraphError; claims?: AccessTokenClaims }> {
  const m = /^Bearer\s+(.+)$/i.exec(authorization?.trim() ?? "");
  const token = m?.[1]?.trim();
  if (token === undefined || token === "") return { ok: false, error: graphErrors.tokenEmpty };
  const v = await entra.verifyAccessToken(token);
  if (!v.ok) {
    const byReason = { malformed: graphErrors.tokenInvalid, signature: graphErrors.tokenInvalid, audience: graphErrors.tokenAudience, expired: graphErrors.tokenExpired };
    return { ok: false, error: byReason[v.reason] };
  }
  const claims = v.claims;
  if (dir.tenant(String(claims.tid))?.exchangeOnline === false) return { ok: false, error: graphErrors.organizationNotFound(String(claims.tid)), claims };
  if (userSegment.toLowerCase() === "me") return { ok: false, error: graphErrors.meWithAppToken, claims };
  const entry = dir.mailbox(userSegment);
  if (entry === undefined) return { ok: false, error: graphErrors.invalidUser(userSegment), claims };
  if (entry.tenant.id.toLowerCase() !== String(claims.tid).toLowerCase()) return { ok: false, error: graphErrors.tokenWrongTenant, claims };
  const roles = Array.isArray(claims.roles) ? claims.roles : [];
  // Two ways to Mail.Send, adding up: Exchange RBAC for Applications (a scoped grant the token
  // does not show; https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac)
  // and the Entra application permission (the token's `roles`), which an ApplicationAccessPolicy
  // may narrow.
  const rbac = dir.rbacMailSend(entry.tenant.id, claims.appid, entry.mailbox);
  if (rbac !== "inScope") {
    if (!roles.includes("Mail.Send")) {
      // The app has Exchange grants, none covering this mailbox: Graph refuses with 403
      // (maester365/maester#961 handles exactly that 403). Exchange does not publish the body for
      // this case; the emulator sends the generic access-denied one.
      if (rbac === "outOfScope") return { ok: false, error: graphErrors.accessDenied, claims };
      if (roles.length === 0) return { ok: false, error: graphErrors.noPermissions, claims };
      return { ok: false, error: graphErrors.accessDenied, claims };
    }
    if (!dir.mayAccess(entry.tenant.id, claims.appid, entry.mailbox)) return { ok: false, error: graphErrors.accessPolicy, claims };
  }
  if (entry.mailbox.state === "notRestEnabled") return { ok: false, error: graphErrors.notRestEnabled, claims };
  if (entry.mailbox.state === "full") return { ok: false, error: graphErrors.mailboxFull, claims };
  if (entry.mailbox.state === "sendingBlocked") return { ok: false, error: graphErrors.submissionBlocked, claims };
  return { ok: true, auth: { claims, entry } };
}

const EMAIL = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;

type Parsed = Omit<StoredMessage, "id" | "receivedAt" | "requestId" | "tenantId" | "appId" | "mailbox" | "mailboxId" | "sender">;

function fail(e: GraphError): { ok: false; error: GraphError } {
  return { ok: false, error: e };
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Graph property names are case-insensitive on input (`Message`, `SaveToSentItems` work too). */
function prop(o: Record<string, unknown>, name: string): unknown {
  if (name in o) return o[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(o)) if (k.toLowerCase() === lower) return o[k];
  return undefined;
}

/** A JSON value as Graph reads it into a string property: scalars as written, objects as their JSON, absent as `fallback`. */
function text(v: unknown, fallback = ""): string {
  if (v === undefined || v === null) return fallback;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

function recipients(v: unknown): Address[] | GraphError {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return graphErrors.unresolvedRecipient(text(v));
  const out: Address[] = [];
  for (const r of v) {
    const ea = asRecord(prop(asRecord(r) ?? {}, "emailAddress"));
    const address = ea === undefined ? undefined : prop(ea, "address");
    if (typeof address !== "string" || !EMAIL.test(address.trim())) return graphErrors.unresolvedRecipient(typeof address === "string" ? address : "");
    const name = ea === undefined ? undefined : prop(ea, "name");
    out.push(typeof name === "string" && name !== "" ? { address: address.trim(), name } : { address: address.trim() });
  }
  return out;
}

function parseJsonMessage(raw: string): { ok: true; message: Parsed } | { ok: false; error: GraphError } {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    return fail(graphErrors.unableToDeserialize);
  }
  const root = asRecord(doc);
  if (root === undefined) return fail(graphErrors.unableToDeserialize);
  const msg = asRecord(prop(root, "message"));
  if (msg === undefined) return fail(graphErrors.emptyParameter("Message"));

  const headers = prop(msg, "internetMessageHeaders");
  const internetMessageHeaders: { name: string; value: string }[] = [];
  if (headers !== undefined && headers !== null) {
    if (!Array.isArray(headers)) return fail(graphErrors.unableToDeserialize);
    if (headers.length > MAX_CUSTOM_HEADERS) return fail(graphErrors.headerCollection);
    for (const h of headers) {
      const rec = asRecord(h) ?? {};
      const name = text(prop(rec, "name"), "");
      if (!name.toLowerCase().startsWith("x-")) return fail(graphErrors.headerName(name));
      internetMessageHeaders.push({ name, value: text(prop(rec, "value"), "") });
    }
  }

  const to = recipients(prop(msg, "toRecipients"));
  const cc = recipients(prop(msg, "ccRecipients"));
  const bcc = recipients(prop(msg, "bccRecipients"));
  const replyTo = recipients(prop(msg, "replyTo"));
  for (const r of [to, cc, bcc, replyTo]) if (!Array.isArray(r)) return fail(r);
  const [toR, ccR, bccR, replyR] = [to, cc, bcc, replyTo] as Address[][];
  if (toR!.length + ccR!.length + bccR!.length === 0) return fail(graphErrors.noRecipients);

  const body = asRecord(prop(msg, "body"));
  const bodyType = (body === undefined ? "text" : text(prop(body, "contentType"), "text")).toLowerCase();
  const content = body === undefined ? "" : text(prop(body, "content"), "");

  const attachments: StoredAttachment[] = [];
  const atts = prop(msg, "attachments");
  if (Array.isArray(atts)) {
    for (const a of atts) {
      const rec = asRecord(a) ?? {};
      const bytes = prop(rec, "contentBytes");
      const b64 = typeof bytes === "string" ? bytes : "";
      const contentId = prop(rec, "contentId");
      attachments.push({
        name: text(prop(rec, "name"), ""),
        contentType: text(prop(rec, "contentType"), "application/octet-stream"),
        size: b64 === "" ? 0 : Buffer.byteLength(b64, "base64"),
        isInline: prop(rec, "isInline") === true,
        ...(typeof contentId === "string" ? { contentId } : {}),
        ...(b64 !== "" ? { contentBytes: b64 } : {}),
      });
    }
  }

  const fromRec = asRecord(prop(asRecord(prop(msg, "from")) ?? {}, "emailAddress"));
  const fromAddress = fromRec === undefined ? undefined : prop(fromRec, "address");
  const fromName = fromRec === undefined ? undefined : prop(fromRec, "name");
  const importance = text(prop(msg, "importance"), "normal").toLowerCase();
  const save = prop(root, "saveToSentItems");
  // Exchange keeps a caller-set Message-ID when it is well formed, so a message trace finds it.
  const givenId = prop(msg, "internetMessageId");

  return {
    ok: true,
    message: {
      internetMessageId:
        typeof givenId === "string" && /^<[^<>\s@]+@[^<>\s@]+>$/.test(givenId) ? givenId : `<${randomUUID()}@emulator.local>`,
      format: "json",
      ...(typeof fromAddress === "string" ? { from: typeof fromName === "string" && fromName !== "" ? { address: fromAddress, name: fromName } : { address: fromAddress } } : {}),
      toRecipients: toR!,
      ccRecipients: ccR!,
      bccRecipients: bccR!,
      replyTo: replyR!,
      subject: text(prop(msg, "subject"), ""),
      body: { contentType: bodyType === "html" ? "html" : "text", content },
      internetMessageHeaders,
      attachments,
      importance: importance === "low" || importance === "high" ? importance : "normal",
      saveToSentItems: !(save === false || text(save).toLowerCase() === "false"),
      raw,
    },
  };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function flatten(v: AddressObject | AddressObject[] | undefined): Address[] {
  const out: Address[] = [];
  const walk = (list: EmailAddress[]) => {
    for (const e of list) {
      if (e.group !== undefined) walk(e.group);
      else if (e.address) out.push(e.name ? { address: e.address, name: e.name } : { address: e.address });
    }
  };
  for (const o of v === undefined ? [] : Array.isArray(v) ? v : [v]) walk(o.value);
  return out;
}

async function parseMimeMessage(raw: string): Promise<{ ok: true; message: Parsed } | { ok: false; error: GraphError }> {
  const compact = raw.replace(/\s+/g, "");
  if (compact === "" || compact.length % 4 !== 0 || !BASE64.test(compact)) return fail(graphErrors.mimeBase64);
  const mime = Buffer.from(compact, "base64");
  let parsed;
  try {
    parsed = await simpleParser(mime, { keepCidLinks: true, skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
  } catch {
    return fail(graphErrors.mimeBase64);
  }
  const to = flatten(parsed.to);
  const cc = flatten(parsed.cc);
  const bcc = flatten(parsed.bcc);
  if (to.length + cc.length + bcc.length === 0) return fail(graphErrors.noRecipients);
  const from = flatten(parsed.from)[0];
  const internetMessageHeaders = parsed.headerLines
    .filter((h) => h.key.toLowerCase().startsWith("x-"))
    .map((h) => ({ name: h.line.slice(0, h.line.indexOf(":")).trim(), value: h.line.slice(h.line.indexOf(":") + 1).trim() }));
  return {
    ok: true,
    message: {
      internetMessageId: parsed.messageId ?? `<${randomUUID()}@emulator.local>`,
      format: "mime",
      ...(from !== undefined ? { from } : {}),
      toRecipients: to,
      ccRecipients: cc,
      bccRecipients: bcc,
      replyTo: flatten(parsed.replyTo),
      subject: parsed.subject ?? "",
      // mailparser leaves `html` undefined (not false) for a message without an HTML part.
      body: typeof parsed.html === "string" ? { contentType: "html", content: parsed.html } : { contentType: "text", content: parsed.text ?? "" },
      internetMessageHeaders,
      attachments: parsed.attachments.map((a) => ({
        name: a.filename ?? "",
        contentType: a.contentType,
        size: a.size,
        isInline: a.contentDisposition === "inline" || a.related === true,
        ...(a.cid !== undefined ? { contentId: a.cid } : {}),
        contentBytes: a.content.toString("base64"),
      })),
      importance: parsed.priority ?? "normal",
      saveToSentItems: true,
      raw,
    },
  };
}

/** Graph-style opaque message id. */
function messageId(): string {
  return `AAMkAG${randomBytes(36).toString("base64url")}`;
}

/**
 * Parses the sendMail body (JSON, or `text/plain` base64 MIME) and builds the message to
 * store. Validation order follows Graph: body decoding, custom headers, recipients.
 */
export async function parseSendMail(
  body: Buffer,
  contentType: string | undefined,
  auth: SendMailAuthorization,
  requestId: string,
): Promise<{ ok: true; message: StoredMessage } | { ok: false; error: GraphError }> {
  const type = (contentType ?? "application/json").split(";")[0]!.trim().toLowerCase();
  const raw = body.toString("utf8");
  let result;
  if (type === "text/plain") result = await parseMimeMessage(raw);
  else if (type === "application/json" || type.endsWith("+json") || type === "") result = parseJsonMessage(raw);
  else return fail(graphErrors.unsupportedMediaType(type));
  if (!result.ok) return result;
  const { entry, claims } = auth;
  return {
    ok: true,
    message: {
      id: messageId(),
      receivedAt: new Date().toISOString(),
      requestId,
      tenantId: entry.tenant.id,
      appId: claims.appid,
      mailbox: entry.mailbox.address,
      mailboxId: entry.mailbox.id,
      sender: entry.mailbox.address,
      ...result.message,
    },
  };
}
