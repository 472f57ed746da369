import type { RequestKind } from "./faults.js";

/** An email address as Graph writes it (`emailAddress` unwrapped). */
export interface Address {
  address: string;
  name?: string;
}

/** An attachment of a stored message. */
export interface StoredAttachment {
  name: string;
  contentType: string;
  /** Decoded size in bytes. */
  size: number;
  isInline: boolean;
  contentId?: string;
  /** Base64 content; only while raw content is retained (see `keepRaw` / `maxRetainedBytes`). */
  contentBytes?: string;
}

/** A message accepted by sendMail, as `/_emulator/messages` returns it. */
export interface StoredMessage {
  /** Generated Graph-style message id. */
  id: string;
  internetMessageId: string;
  receivedAt: string;
  /** request-id of the sendMail call that submitted it. */
  requestId: string;
  format: "json" | "mime";
  tenantId: string;
  appId: string;
  /** The mailbox the message was sent as (from the URL), primary address. */
  mailbox: string;
  mailboxId: string;
  /** Same as `mailbox`; the address Graph sends as. */
  sender: string;
  /** `message.from` (JSON) or the From header (MIME), when given. */
  from?: Address;
  toRecipients: Address[];
  ccRecipients: Address[];
  bccRecipients: Address[];
  replyTo: Address[];
  subject: string;
  body: { contentType: "text" | "html"; content: string };
  internetMessageHeaders: { name: string; value: string }[];
  attachments: StoredAttachment[];
  importance: "low" | "normal" | "high";
  saveToSentItems: boolean;
  /** The request body exactly as received (base64 MIME or JSON text), while retained. */
  raw?: string;
}

/** Query filters for stored messages; string matches are case-insensitive. */
export interface MessageFilter {
  /** Sent-as mailbox or From address. */
  sender?: string;
  /** Any of to/cc/bcc. */
  recipient?: string;
  /** Substring of the subject. */
  subject?: string;
  /** Tenant id. */
  tenant?: string;
  /** Mailbox address or id. */
  mailbox?: string;
  appId?: string;
  requestId?: string;
}

/** One line of `/_emulator/requests`. Never holds secrets, assertions or tokens. */
export interface RequestLogEntry {
  /** The request-id (Graph) / trace id sent back. */
  id: string;
  at: string;
  method: string;
  /** Path without query string. */
  path: string;
  kind: RequestKind;
  /** HTTP status sent, or 0 when the connection was reset or the request hung. */
  status: number;
  outcome: "answered" | "reset" | "hang" | "aborted";
  tenant?: string;
  clientId?: string;
  mailbox?: string;
  durationMs: number;
  /** AADSTS code or Graph error code of an error answer. */
  errorCode?: string;
  /** Id of the injected fault that decided the outcome, if any. */
  faultId?: string;
}

/**
 * sendMail requests at the same time per (app, mailbox), as Graph's MailboxConcurrency rule
 * counts them: what `/_emulator/concurrency` returns. Since the start or the last reset.
 */
export interface MailboxConcurrency {
  appId: string;
  /** Primary address of the mailbox (its id when the scenario no longer has it). */
  mailbox: string;
  mailboxId: string;
  /** Requests being processed now. */
  inFlight: number;
  /** Most requests at once, counting one that arrived only to be refused by the MailboxConcurrency rule. */
  peak: number;
  /** Requests refused with 429 ApplicationThrottled for concurrency (injected faults not counted). */
  concurrencyRejections: number;
}

/** Query filters for the request log. */
export interface RequestFilter {
  kind?: RequestKind;
  status?: number;
  tenant?: string;
  clientId?: string;
  mailbox?: string;
  outcome?: RequestLogEntry["outcome"];
}

const lc = (s: string | undefined) => s?.toLowerCase();

/** Fixed-capacity FIFO: pushing past capacity drops the oldest entry in O(1). */
class Ring<T> {
  private items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(private capacity: number) {
    this.items = new Array<T | undefined>(Math.min(capacity, 1024));
  }

  push(item: T): T | undefined {
    if (this.count < this.capacity) {
      if (this.count === this.items.length) this.grow();
      this.items[(this.start + this.count) % this.items.length] = item;
      this.count++;
      return undefined;
    }
    const dropped = this.items[this.start];
    this.items[this.start] = item;
    this.start = (this.start + 1) % this.items.length;
    return dropped;
  }

  /** Oldest first. */
  *values(): IterableIterator<T> {
    for (let i = 0; i < this.count; i++) yield this.items[(this.start + i) % this.items.length]!;
  }

  get size(): number {
    return this.count;
  }

  clear(): void {
    this.items = new Array<T | undefined>(Math.min(this.capacity, 1024));
    this.start = 0;
    this.count = 0;
  }

  private grow(): void {
    const next = new Array<T | undefined>(Math.min(this.capacity, this.items.length * 2));
    for (let i = 0; i < this.count; i++) next[i] = this.items[(this.start + i) % this.items.length];
    this.items = next;
    this.start = 0;
  }
}

function retainedBytes(m: StoredMessage): number {
  let n = m.raw?.length ?? 0;
  for (const a of m.attachments) n += a.contentBytes?.length ?? 0;
  return n;
}

function stripContent(m: StoredMessage): void {
  delete m.raw;
  for (const a of m.attachments) delete a.contentBytes;
}

/**
 * Accepted messages, bounded twice so a long benchmark cannot eat the heap: at most
 * `maxMessages` (oldest dropped), and at most `maxRetainedBytes` of raw bodies and attachment
 * contents (oldest messages lose their raw content first, metadata stays).
 */
export class MessageStore {
  private readonly ring: Ring<StoredMessage>;
  private retained = 0;
  /** Messages still holding content, oldest first, for trimming. */
  private withContent: StoredMessage[] = [];
  private withContentHead = 0;

  constructor(
    maxMessages: number,
    private readonly keepRaw: boolean,
    private readonly maxRetainedBytes: number,
  ) {
    this.ring = new Ring(maxMessages);
  }

  add(m: StoredMessage): void {
    if (!this.keepRaw) stripContent(m);
    const dropped = this.ring.push(m);
    if (dropped !== undefined) this.release(dropped);
    const bytes = retainedBytes(m);
    if (bytes > 0) {
      this.retained += bytes;
      this.withContent.push(m);
      while (this.retained > this.maxRetainedBytes && this.withContentHead < this.withContent.length) {
        this.release(this.withContent[this.withContentHead++]!);
      }
      if (this.withContentHead > 4096 && this.withContentHead * 2 > this.withContent.length) {
        this.withContent = this.withContent.slice(this.withContentHead);
        this.withContentHead = 0;
      }
    }
  }

  private release(m: StoredMessage): void {
    this.retained -= retainedBytes(m);
    stripContent(m);
  }

  list(filter: MessageFilter = {}): StoredMessage[] {
    const sender = lc(filter.sender);
    const recipient = lc(filter.recipient);
    const subject = lc(filter.subject);
    const tenant = lc(filter.tenant);
    const mailbox = lc(filter.mailbox);
    const appId = lc(filter.appId);
    const out: StoredMessage[] = [];
    for (const m of this.ring.values()) {
      if (sender !== undefined && lc(m.sender) !== sender && lc(m.from?.address) !== sender) continue;
      if (recipient !== undefined && ![...m.toRecipients, ...m.ccRecipients, ...m.bccRecipients].some((r) => lc(r.address) === recipient)) continue;
      if (subject !== undefined && !m.subject.toLowerCase().includes(subject)) continue;
      if (tenant !== undefined && lc(m.tenantId) !== tenant) continue;
      if (mailbox !== undefined && lc(m.mailbox) !== mailbox && lc(m.mailboxId) !== mailbox) continue;
      if (appId !== undefined && lc(m.appId) !== appId) continue;
      if (filter.requestId !== undefined && m.requestId !== filter.requestId) continue;
      out.push(m);
    }
    return out;
  }

  get size(): number {
    return this.ring.size;
  }

  clear(): void {
    this.ring.clear();
    this.withContent = [];
    this.withContentHead = 0;
    this.retained = 0;
  }
}

/** Bounded log of every non-control request. */
export class RequestLog {
  private readonly ring: Ring<RequestLogEntry>;

  constructor(maxEntries: number) {
    this.ring = new Ring(maxEntries);
  }

  add(e: RequestLogEntry): void {
    this.ring.push(e);
  }

  list(filter: RequestFilter = {}): RequestLogEntry[] {
    const out: RequestLogEntry[] = [];
    for (const e of this.ring.values()) {
      if (filter.kind !== undefined && e.kind !== filter.kind) continue;
      if (filter.status !== undefined && e.status !== filter.status) continue;
      if (filter.outcome !== undefined && e.outcome !== filter.outcome) continue;
      if (filter.tenant !== undefined && lc(e.tenant) !== lc(filter.tenant)) continue;
      if (filter.clientId !== undefined && lc(e.clientId) !== lc(filter.clientId)) continue;
      if (filter.mailbox !== undefined && lc(e.mailbox) !== lc(filter.mailbox)) continue;
      out.push(e);
    }
    return out;
  }

  clear(): void {
    this.ring.clear();
  }
}

/** HTML-escapes text for element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

const addr = (a: Address) => (a.name ? `${a.name} <${a.address}>` : a.address);

/** The `/_emulator/` page: accepted messages grouped by mailbox, newest first. Everything is escaped. */
export function renderMessagesPage(messages: readonly StoredMessage[]): string {
  const byMailbox = new Map<string, StoredMessage[]>();
  for (const m of messages) {
    const list = byMailbox.get(m.mailbox) ?? [];
    list.push(m);
    byMailbox.set(m.mailbox, list);
  }
  const sections = [...byMailbox]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([mailbox, list]) => {
      const rows = list
        .slice()
        .reverse()
        .map((m) => {
          const to = [...m.toRecipients, ...m.ccRecipients, ...m.bccRecipients].map(addr).join(", ");
          const att = m.attachments.map((a) => `${a.name} (${a.size} B)`).join(", ");
          return `<tr><td>${escapeHtml(m.receivedAt)}</td><td>${escapeHtml(m.from ? addr(m.from) : m.sender)}</td><td>${escapeHtml(to)}</td><td>${escapeHtml(m.subject)}</td><td>${escapeHtml(m.body.contentType)}</td><td>${escapeHtml(att)}</td><td>${escapeHtml(m.appId)}</td></tr>`;
        })
        .join("\n");
      return `<h2>${escapeHtml(mailbox)} <small>(${list.length})</small></h2>
<table><thead><tr><th>Received</th><th>From</th><th>Recipients</th><th>Subject</th><th>Body</th><th>Attachments</th><th>App</th></tr></thead>
<tbody>
${rows}
</tbody></table>`;
    })
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>M365 emulator: accepted messages</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f4f4f4}</style>
</head><body><h1>Accepted messages</h1>
<p>${messages.length} message(s). JSON: <a href="/_emulator/messages">/_emulator/messages</a>, requests: <a href="/_emulator/requests">/_emulator/requests</a></p>
${sections || "<p>No messages yet.</p>"}
</body></html>`;
}
