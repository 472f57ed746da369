import { RelayError, type ProblemExtras } from "../core/problems.js";
import { headerValue, type ResponseHeaders } from "../net/retry-after.js";

/** Graph's error body: `{ "error": { "code", "message", "innerError": { "request-id", "date" } } }`. */
export interface GraphErrorBody {
  readonly code?: string;
  readonly message?: string;
  readonly requestId?: string;
}

/** Reads Graph's error body; anything else (HTML from a proxy, empty) gives an empty result. */
export function parseGraphErrorBody(text: string): GraphErrorBody {
  if (text === "") return {};
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; innerError?: Record<string, unknown> } };
    const error = parsed.error;
    if (error === undefined || error === null || typeof error !== "object") return {};
    const inner = error.innerError;
    return {
      code: typeof error.code === "string" ? error.code : undefined,
      message: typeof error.message === "string" ? error.message : undefined,
      requestId: typeof inner?.["request-id"] === "string" ? inner["request-id"] : undefined,
    };
  } catch {
    return {};
  }
}

/** Who the refused request was for, so the detail can name it. */
export interface RefusalContext {
  readonly sender: string;
  readonly tenantId: string;
  readonly clientId: string;
  /** `rbac`: the tenant grants Mail.Send through Exchange RBAC for Applications (tokens carry no role). */
  readonly accessModel?: "consent" | "rbac";
}

/** A refusal turned into the caller's problem, and how loudly to log it. */
export interface MappedRefusal {
  readonly error: RelayError;
  /** warn: our request was wrong or the tenant is misconfigured; error: Graph failed. */
  readonly level: "info" | "warn" | "error";
}

// Exchange's texts for an app that an ApplicationAccessPolicy or an RBAC-for-Applications
// management scope keeps from a mailbox.
const POLICY_DENIED = /Access to OData is disabled|\[RAOP\]|AccessPolicy|ManagementScope|blocked by tenant administrator/i;
const MAILBOX_CODES = new Set(["ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotHostedInExchangeOnline", "ResourceNotFound", "ErrorNonExistentMailbox", "Request_ResourceNotFound"]);
const VALIDATION_CODES = /^(InvalidInternetMessageHeader|ErrorMimeContentInvalidBase64String|ErrorInvalidProperty|RequestBodyRead|BadRequest|ErrorInvalidRequest|InvalidRequest)/;
/** 401 for a token without any `roles` claim: the app was never granted admin consent. */
export const NO_PERMISSIONS = "NoPermissionsInAccessToken";
/** 401 for a tenant without Exchange Online: no token, however fresh, changes it. */
export const NO_EXCHANGE_ONLINE = "OrganizationFromTenantGuidNotFound";
/** Exchange's daily recipient limit for the mailbox (10,000 in a rolling 24 h): whatever the status, it is no short throttle. */
export const SUBMISSION_QUOTA = "ErrorSubmissionQuotaExceeded";
/**
 * How long a mailbox stays refused after ErrorSubmissionQuotaExceeded: Exchange counts recipients
 * over a rolling 24 hours and blocks the sender until the oldest leave the window
 * (https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/fix-error-for-submission-quota-exceeded-in-exchange-online).
 * The relay cannot see Exchange's count, so it assumes the whole window.
 */
export const SUBMISSION_QUOTA_WINDOW_MS = 86_400_000;
// Graph error messages can quote addresses but never a secret; they are clipped anyway.
const MAX_GRAPH_MESSAGE = 300;

/**
 * Maps a refused sendMail (any status but 202, 429 and 503, which the retry loop handles) to
 * a problem. Graph's `error.code` and `request-id` go into the extras; its message only where
 * the caller needs it to fix the request (recipients, invalid content).
 *
 * 401 InvalidAuthenticationToken becomes `credential_rejected` (not retryable): the sender
 * already retried once with a fresh token, so Graph refuses every token this app gets for
 * this tenant (wrong cloud or audience, tenant without Exchange Online). A retryable
 * `upstream_unavailable` would have callers retry a configuration error forever.
 */
export function mapGraphRefusal(status: number, body: GraphErrorBody, headers: ResponseHeaders, ctx: RefusalContext): MappedRefusal {
  const graphCode = body.code;
  const message = body.message ?? "";
  const extras: ProblemExtras = {
    ...(graphCode !== undefined ? { graphCode } : {}),
    ...graphRequestIdOf(body, headers),
  };
  const quoted = message !== "" ? ` Graph said: "${clip(message)}"` : "";
  const mailbox = `mailbox ${ctx.sender}`;

  // Graph's code first: these arrive as 401/403/429 but each means something the status does not.
  if (graphCode === "ErrorSendAsDenied") {
    return warn(
      "sender_not_allowed",
      `Exchange Online refused to send as ${ctx.sender} from ${mailbox} (ErrorSendAsDenied): the sending account lacks the Send As right for that address. ` +
        `The tenant's sender must be a mailbox the app sends from directly (not a group, a shared address or another user's alias), or an Exchange admin must grant Send As.`,
      extras,
    );
  }
  if (graphCode === "ErrorQuotaExceeded") {
    return warn(
      "mailbox_unavailable",
      `The sender ${mailbox} is full (ErrorQuotaExceeded): Exchange Online sends nothing from a mailbox over its quota. ` +
        `A tenant admin must empty it (Sent Items, Deleted Items) or raise its quota; saveToSentItems: false keeps the relay from filling it.`,
      extras,
    );
  }
  if (graphCode === "ErrorMessageSubmissionBlocked") {
    return warn(
      "mailbox_unavailable",
      `Exchange Online has blocked the sender ${mailbox} from sending (ErrorMessageSubmissionBlocked), typically after it crossed outbound spam limits. ` +
        `A tenant admin of ${ctx.tenantId} must review and release ${ctx.sender} under "Restricted entities" in the Microsoft Defender portal; until then every send from it fails.`,
      extras,
    );
  }
  if (graphCode === NO_EXCHANGE_ONLINE) {
    return warn(
      "mailbox_unavailable",
      `Tenant ${ctx.tenantId} has no Exchange Online (OrganizationFromTenantGuidNotFound), so ${mailbox} cannot send. ` +
        `Check tenantId, and that the tenant has an Exchange Online subscription with a mailbox for the sender.`,
      extras,
    );
  }
  if (graphCode === SUBMISSION_QUOTA) {
    return info(
      "rate_limited",
      `Exchange Online refused the message: ${mailbox} has used its daily recipient quota (ErrorSubmissionQuotaExceeded, a rolling 24 hours). Nothing was sent; retry after the time given.`,
      { ...extras, retryAfterSeconds: SUBMISSION_QUOTA_WINDOW_MS / 1000 },
    );
  }
  if (status === 403 && POLICY_DENIED.test(message)) {
    return warn(
      "policy_denied",
      `Exchange Online refused app ${ctx.clientId} access to ${mailbox} (ApplicationAccessPolicy or RBAC for Applications scope). ` +
        `An Exchange admin of tenant ${ctx.tenantId} must add the mailbox to the app's policy or management scope (check with Test-ApplicationAccessPolicy or Test-ServicePrincipalAuthorization).`,
      extras,
    );
  }
  if (ctx.accessModel === "rbac" && (status === 403 || graphCode === NO_PERMISSIONS)) {
    // RBAC for Applications: the grant is an Exchange role assignment with a management scope, and
    // the token never carries Mail.Send. A refusal means the mailbox is outside that scope (or no
    // assignment exists yet). A tenant-wide Mail.Send would "fix" it by letting the app send as
    // every mailbox, so that is never the advice; and the token stays (a new one would be the same).
    return warn(
      "policy_denied",
      `Exchange Online refused app ${ctx.clientId} access to ${mailbox}: tenant ${ctx.tenantId} uses RBAC for Applications and the mailbox is outside the app's management scope. ` +
        `An Exchange admin of the tenant must add the mailbox to the management scope of the app's "Application Mail.Send" role assignment (run the script from noreply-relay policy-script; check with Test-ServicePrincipalAuthorization). ` +
        `Do not grant the app a tenant-wide permission instead. Scope changes can take up to 2 hours to reach Graph.`,
      extras,
    );
  }
  if (status === 403 || graphCode === NO_PERMISSIONS) {
    return warn(
      "permission_missing",
      `Graph denied sendMail from ${mailbox} to app ${ctx.clientId}: its token has no Mail.Send application permission in tenant ${ctx.tenantId}. ` +
        `A tenant admin must grant admin consent for Mail.Send (Application) to the app.`,
      extras,
    );
  }
  if (graphCode !== undefined && MAILBOX_CODES.has(graphCode)) {
    const why =
      graphCode === "MailboxNotEnabledForRESTAPI" || graphCode === "MailboxNotHostedInExchangeOnline"
        ? "exists but is not an Exchange Online mailbox enabled for the REST API (on-premises, inactive or unlicensed)"
        : "does not exist in the tenant";
    return warn(
      "mailbox_unavailable",
      `The sender ${mailbox} ${why}. Check the tenant's sender setting or give the mailbox an Exchange Online license.`,
      extras,
    );
  }
  if (status === 404) {
    return warn("mailbox_unavailable", `Graph found no ${mailbox} in tenant ${ctx.tenantId}. Check the tenant's sender setting.`, extras);
  }
  if (graphCode?.startsWith("ErrorInvalidRecipients") === true) {
    return info("recipient_rejected", `Microsoft Graph rejected at least one recipient; fix the addresses and send again.${quoted}`, extras);
  }
  if (status === 413 || graphCode === "ErrorMessageSizeExceeded" || graphCode === "RequestEntityTooLarge") {
    return info("payload_too_large", "The message is larger than Microsoft Graph accepts (4 MB per request, attachments included). Send smaller attachments.", extras);
  }
  if (status === 401) {
    return warn(
      "credential_rejected",
      `Graph refused the access token of app ${ctx.clientId} for tenant ${ctx.tenantId}, also after a fresh one was issued. ` +
        `Check that graphBaseUrl belongs to the same cloud as authorityHost and that the tenant has Exchange Online.`,
      extras,
    );
  }
  if (status >= 500) {
    // The sender answers 5xx itself (outcome_unknown once the body was written); this is the rest.
    return {
      error: new RelayError("upstream_unavailable", `Microsoft Graph failed with HTTP ${status}. Retry later.`, { ...extras, retryAfterSeconds: 5 }),
      level: "error",
    };
  }
  if (status === 408) {
    return {
      error: new RelayError("upstream_unavailable", "Microsoft Graph timed out reading the request. Retry later.", { ...extras, retryAfterSeconds: 5 }),
      level: "warn",
    };
  }
  // 400 and any other 4xx: our request was wrong. Validation should have caught it earlier.
  const known = graphCode !== undefined && VALIDATION_CODES.test(graphCode) ? "" : " (unexpected refusal)";
  const detail = `Microsoft Graph refused the message with HTTP ${status}${known}.${quoted}`;
  // validation_failed always lists what was wrong (openapi.yaml): here, the message as Graph saw it.
  return warn("validation_failed", detail, { ...extras, errors: [{ path: "(message)", message: `refused by Microsoft Graph${graphCode !== undefined ? ` (${graphCode})` : ""}` }] });
}

function graphRequestIdOf(body: GraphErrorBody, headers: ResponseHeaders): { graphRequestId?: string } {
  const id = headerValue(headers, "request-id") ?? body.requestId;
  return id !== undefined ? { graphRequestId: id } : {};
}

function warn(code: RelayError["code"], detail: string, extras: ProblemExtras): MappedRefusal {
  return { error: new RelayError(code, detail, extras), level: "warn" };
}

function info(code: RelayError["code"], detail: string, extras: ProblemExtras): MappedRefusal {
  return { error: new RelayError(code, detail, extras), level: "info" };
}

function clip(text: string): string {
  return text.length > MAX_GRAPH_MESSAGE ? `${text.slice(0, MAX_GRAPH_MESSAGE)}…` : text;
}
