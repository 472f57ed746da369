import type { MimeHeaders } from "./mime-message.js";

/**
 * A message as the send use case sees it: the caller's request with its wire forms
 * (string or object recipients, header maps) already normalised by src/http.
 */
export interface MailAddress {
  readonly address: string;
  readonly name?: string;
}

export interface MailAttachment {
  readonly filename: string;
  readonly contentType: string;
  /** Strict base64, already checked. */
  readonly contentBase64: string;
  readonly contentId?: string;
  readonly inline: boolean;
}

export interface MailHeader {
  readonly name: string;
  readonly value: string;
}

export interface MailDraft {
  /** Tenant key the caller asked for. */
  readonly tenant: string;
  /** The sender the caller expects; must equal the tenant's sender when given. */
  readonly from?: string;
  readonly to: readonly MailAddress[];
  readonly cc: readonly MailAddress[];
  readonly bcc: readonly MailAddress[];
  readonly replyTo: readonly MailAddress[];
  readonly subject: string;
  readonly text?: string;
  readonly html?: string;
  readonly attachments: readonly MailAttachment[];
  readonly headers: readonly MailHeader[];
  readonly importance?: "low" | "normal" | "high";
  /** Request's choice; the tenant's config decides when absent. */
  readonly saveToSentItems?: boolean;
  readonly dryRun: boolean;
}

/** to + cc + bcc: what Exchange counts against the recipient rate limit. */
export function recipientCount(draft: MailDraft): number {
  return draft.to.length + draft.cc.length + draft.bcc.length;
}

/**
 * A message the client wrote itself (SMTP DATA), sent to Graph in MIME form as it is. The
 * door has read its header (readMimeHeaders); the use case applies the same tenant, sender,
 * recipient, limit and idempotency rules as to a MailDraft.
 */
export interface MimeDraft {
  readonly kind: "mime";
  /** Tenant key (the SMTP username). */
  readonly tenant: string;
  /** The envelope sender (MAIL FROM). */
  readonly envelopeFrom: string;
  /** The envelope recipients (RCPT TO): whom the message goes to. */
  readonly envelopeTo: readonly string[];
  /** The message as the client wrote it: header and body, line ends and dots as received after DATA. */
  readonly raw: Buffer;
  readonly headers: MimeHeaders;
}

export function isMimeDraft(draft: MailDraft | MimeDraft): draft is MimeDraft {
  return (draft as Partial<MimeDraft>).kind === "mime";
}
