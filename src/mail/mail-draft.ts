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
