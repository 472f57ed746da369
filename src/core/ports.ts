/**
 * The seams of the send use case. The real adapters live in src/auth (Entra tokens)
 * and src/graph (Graph sendMail); tests and benches may put fakes beside them, but the
 * component tests use the real ones against the emulator.
 */

/**
 * An Entra ID app registration and how the relay proves it is that app. These are the
 * settings, never the secret values: files and environment variable names to read them from.
 * src/config/schema.ts parses the config file into exactly this shape (checked at compile time
 * there), so the ports need nothing from the config module.
 */
export interface AppRegistration {
  /** Application (client) ID. */
  readonly clientId: string;
  readonly credential: CredentialSettings;
}

export type CredentialSettings =
  | {
      readonly type: "secret";
      readonly secretFile?: string | undefined;
      readonly secretEnv?: string | undefined;
      readonly secondarySecretFile?: string | undefined;
      readonly secondarySecretEnv?: string | undefined;
      readonly expiresAt?: Date | undefined;
    }
  | {
      readonly type: "certificate";
      readonly certificateFile: string;
      readonly sendCertificateChain: boolean;
      readonly expiresAt?: Date | undefined;
    }
  | {
      readonly type: "workloadIdentity";
      readonly tokenFile: string;
      readonly expiresAt?: Date | undefined;
    };

/** Which app registration and tenant a token is for; built once per config load. */
export interface TokenTarget {
  /** Tenant key from the config (label for metrics and logs). */
  readonly tenantKey: string;
  /** Entra tenant: GUID or verified domain. */
  readonly tenantId: string;
  readonly app: AppRegistration;
}

export interface TokenProvider {
  /**
   * A Graph access token for the target. Implementations reuse one credential per
   * (tenant, app registration) so the SDK cache works and concurrent first calls share
   * one token request. Throws RelayError `credential_rejected` (with `aadsts`) when Entra
   * refuses, `upstream_unavailable` when Entra cannot be reached.
   */
  getToken(target: TokenTarget, signal?: AbortSignal): Promise<string>;
  /**
   * The token getToken would return at once, without waiting for anything, if there is one
   * (cached and not due for renewal); undefined otherwise. Lets a caller skip setting up the
   * wait (deadline signal, promise) on the common path.
   */
  cachedToken?(target: TokenTarget): string | undefined;
}

/** A message in Microsoft Graph's `message` resource shape, ready for sendMail. */
export interface GraphRecipient {
  emailAddress: { address: string; name?: string };
}

export interface GraphFileAttachment {
  "@odata.type": "#microsoft.graph.fileAttachment";
  name: string;
  contentType: string;
  contentBytes: string;
  isInline?: boolean;
  contentId?: string;
}

export interface GraphMessage {
  subject: string;
  body: { contentType: "Text" | "HTML"; content: string };
  toRecipients: GraphRecipient[];
  ccRecipients?: GraphRecipient[];
  bccRecipients?: GraphRecipient[];
  replyTo?: GraphRecipient[];
  from?: GraphRecipient;
  attachments?: GraphFileAttachment[];
  internetMessageHeaders?: { name: string; value: string }[];
  importance?: "low" | "normal" | "high";
  internetMessageId?: string;
}

/**
 * A request body as text in parts, sent one after the other: large parts (attachments' base64)
 * are the strings the caller sent, never copied into one string or Buffer.
 */
export interface SendMailBody {
  /** Joined, the body's text. */
  readonly parts: readonly string[];
  /** The body's length in UTF-8 bytes. */
  readonly bytes: number;
}

/**
 * One sendMail, in Graph's JSON form (a `message` resource) or its MIME form (the message as a
 * client wrote it): https://learn.microsoft.com/en-us/graph/outlook-send-mime-message.
 */
export type GraphSendRequest = GraphJsonSendRequest | GraphMimeSendRequest;

/** sendMail with Content-Type application/json: `{ message, saveToSentItems }`. */
export interface GraphJsonSendRequest extends GraphSendCommon {
  readonly message: GraphMessage;
  readonly saveToSentItems: boolean;
  /**
   * Optional: `JSON.stringify({ message, saveToSentItems })` (as text, or in parts: see
   * serializeSendMail), already made by the send use case to check Graph's 4 MB limit. When
   * present, adapters send exactly this as the sendMail body instead of serialising `message`
   * a second time (it can be megabytes).
   */
  readonly body?: string | SendMailBody;
  readonly mime?: undefined;
}

/**
 * sendMail with Content-Type text/plain: the body is the base64 of a MIME message (headers
 * included), at most 4 MB as sent. Graph takes the recipients from its To, Cc and Bcc headers
 * and always keeps a copy in Sent Items (the MIME form has no saveToSentItems).
 */
export interface GraphMimeSendRequest extends GraphSendCommon {
  /** The base64 text, measured (ASCII: its length is its size in bytes). */
  readonly mime: SendMailBody;
  readonly message?: undefined;
}

/** What every sendMail request carries besides the message. */
export interface GraphSendCommon {
  readonly target: TokenTarget;
  /** The tenant's configured sender: the only mailbox ever used in the URL. */
  readonly sender: string;
  /** Epoch milliseconds after which no further attempt or wait may start. */
  readonly deadline: number;
  /** Sent as `client-request-id` so Graph's logs and ours meet. */
  readonly requestId: string;
  readonly signal?: AbortSignal;
  /**
   * How the tenant grants Mail.Send. With `rbac` (Exchange RBAC for Applications) the token has
   * no Mail.Send role by design, so a 403 means "mailbox outside the app's management scope"
   * (policy_denied), never "grant consent", and the token is kept. Default `consent`.
   */
  readonly accessModel?: "consent" | "rbac";
  /**
   * Called at each 429 from Graph with the epoch ms until which Graph asked the mailbox to
   * wait, before the sender sleeps or gives up; the use case holds the mailbox's other sends
   * until then, so they do not run into the same 429.
   */
  readonly onThrottled?: (untilMs: number) => void;
  /**
   * Called when Exchange refused the message for the mailbox's daily recipient quota
   * (ErrorSubmissionQuotaExceeded), with the epoch ms until which the mailbox should send nothing
   * (the end of the rolling 24 h window); the use case makes the recipient guard refuse until then.
   */
  readonly onSubmissionQuotaExceeded?: (untilMs: number) => void;
}

export interface GraphSendResult {
  /** Graph's `request-id` response header of the accepted attempt. */
  readonly graphRequestId?: string;
  /** Attempts made (1 when the first was accepted). */
  readonly attempts: number;
}

export interface GraphSender {
  /**
   * Sends from `sender`. Resolves only when Graph answered 202. Throws RelayError:
   * policy_denied, permission_missing, mailbox_unavailable, recipient_rejected,
   * payload_too_large, rate_limited (429 outlasting the deadline, with retryAfterSeconds),
   * upstream_unavailable, outcome_unknown (a 5xx other than 503, a timeout or a reset after the
   * body was sent),
   * credential_rejected (from the token provider).
   */
  send(request: GraphSendRequest): Promise<GraphSendResult>;
}

/** Counts work that a graceful shutdown must wait for. */
export interface WorkTracker {
  enter(): void;
  leave(): void;
}

/** The clock, injectable so limits and expiry can be tested without waiting. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * What the adapters report while they work; src/metrics implements it on the
 * contract's metrics. Labels are tenant keys from the config, never addresses.
 */
export interface SendObserver {
  /** One real token request to Entra (cache hits are not requests). outcome: success | credential_rejected | upstream_unavailable. */
  tokenRequest(tenantKey: string, outcome: "success" | "credential_rejected" | "upstream_unavailable"): void;
  /** The primary secret was rejected and the secondary one was used instead. */
  credentialFallback(tenantKey: string): void;
  /** One HTTP attempt to Graph finished: its status ("error" for reset/timeout) and duration. */
  graphResponse(tenantKey: string, status: number | "error", seconds: number): void;
  /** Graph answered 429 for this tenant's sender. */
  graphThrottled(tenantKey: string): void;
}

/** An observer that records nothing, for tools that need no metrics (e.g. the CLI). */
export const silentObserver: SendObserver = {
  tokenRequest: () => {},
  credentialFallback: () => {},
  graphResponse: () => {},
  graphThrottled: () => {},
};

/** What the shared store reports (src/delivery/redis); src/metrics implements it when the store is Redis. */
export interface StoreObserver {
  /** A command failed (Redis down, timeout, refused), by operation. */
  storeError(operation: string): void;
  /** The connection came up (true) or went down (false). */
  storeUp(up: boolean): void;
  /** A send went on under this pod's own limits because Redis was unavailable (`onUnavailable: local`). */
  storeFallback(operation: "mailbox" | "recipients"): void;
  /** A lease lapsed while this pod still worked under it. */
  storeLeaseLost(kind: "mailbox" | "idempotency"): void;
}
