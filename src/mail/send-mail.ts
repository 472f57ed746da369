import { randomUUID } from "node:crypto";
import type { MailboxGate, MailboxPermit } from "../delivery/mailbox-limiter.js";
import type { RecipientLedger, RecipientReservation } from "../delivery/recipient-guard.js";
import type { IdempotencyNew, IdempotencyReplay, IdempotencyStore } from "../delivery/idempotency-store.js";
import type { TenantActivityBook } from "../delivery/tenant-status.js";
import { isRelayError, RelayError, toRelayError } from "../core/problems.js";
import { callerMayUse, type Caller } from "../tenants/caller-directory.js";
import type { Tenant, TenantDirectory } from "../tenants/tenant-directory.js";
import { buildGraphMessage, GRAPH_MAX_REQUEST_BYTES, internetMessageIdFor, serializeSendMail } from "./graph-message.js";
import { isMimeDraft, recipientCount, type MailDraft, type MimeDraft } from "./mail-draft.js";
import type { Clock, GraphJsonSendRequest, GraphMimeSendRequest, GraphSender, SendMailBody, TokenProvider, WorkTracker } from "../core/ports.js";
import { graphMimeBody, mimeRecipients } from "./mime-message.js";
import { idempotencyDisposition, type RecordedAnswer } from "./send-answer.js";

/** Time a Graph attempt needs after a slot is granted; the graph adapter's retry policy uses the same second. */
const SLOT_HEADROOM_MS = 1_000;

export interface SendCommand {
  readonly caller: Caller;
  /** A request of the JSON API, or a message a client wrote itself (SMTP). */
  readonly draft: MailDraft | MimeDraft;
  /** The request's id (HTTP X-Request-Id, SMTP session id); Graph gets it as `client-request-id`. */
  readonly requestId: string;
  /** When the request arrived (epoch ms); the deadline counts from here. */
  readonly receivedAt: number;
}

/** A send with an Idempotency-Key: sent at most once per (caller, key) within the key's TTL. */
export interface KeyedSendCommand extends Omit<SendCommand, "draft"> {
  /** The key as the caller gave it (syntax already checked by the door). */
  readonly key: string;
  /** Identifies the request as sent (requestFingerprint of the JSON body, a hash of the MIME message): same key, other fingerprint is a conflict. */
  readonly fingerprint: string;
  /**
   * Builds the draft (validating the request). Called only when this request owns the key: a
   * replay is answered without looking at the request again.
   */
  readonly draft: () => MailDraft | MimeDraft;
}

/** Either this request sent (or tried to), or it is a replay of the first request's answer. */
export type KeyedSendResult = { readonly kind: "sent"; readonly receipt: SendReceipt } | { readonly kind: "replay"; readonly answer: RecordedAnswer };

export interface SendReceipt {
  readonly status: "sent" | "dry_run";
  /** Our id for the message (a UUID); also the left side of its Message-ID. */
  readonly id: string;
  readonly internetMessageId: string;
  readonly tenant: Tenant;
  readonly acceptedAt: Date;
  readonly graphRequestId?: string;
  readonly attempts: number;
}

export interface SendMailDeps {
  /** The current tenants (replaced on config reload). */
  readonly tenants: () => TenantDirectory;
  readonly tokenProvider: TokenProvider;
  readonly graphSender: GraphSender;
  /** Slots per sender mailbox (Graph allows 4 concurrent sends per app and mailbox). */
  readonly limiter: MailboxGate;
  /** Recipients per sender mailbox and rolling 24 h. */
  readonly recipients: RecipientLedger;
  readonly clock: Clock;
  /** `server.requestDeadlineSeconds` of the current config. */
  readonly deadlineSeconds: () => number;
  /** The inflight_sends gauge. */
  readonly inflight: { inc(): void; dec(): void };
  /** Last outcome and last problem per tenant, for GET /tenants. */
  readonly status?: Pick<TenantActivityBook, "record">;
  /** Idempotency-Keys and the answers they replay (sendOnce). */
  readonly idempotency?: IdempotencyStore<RecordedAnswer>;
  readonly work?: WorkTracker;
  readonly newId?: () => string;
}

/**
 * The send use case: who may send for which tenant, from which mailbox, how big, and then
 * one Graph sendMail from the tenant's configured sender. Every refusal is a RelayError.
 */
export class SendMail {
  private readonly newId: () => string;

  constructor(private readonly deps: SendMailDeps) {
    this.newId = deps.newId ?? randomUUID;
  }

  async send(cmd: SendCommand): Promise<SendReceipt> {
    const tenant = this.assertTenantAllowed(cmd.caller, cmd.draft.tenant);
    // From here on the outcome says something about the tenant: /tenants shows the last one.
    const status = this.deps.status;
    if (status === undefined) return this.sendFor(tenant, cmd);
    try {
      const receipt = await this.sendFor(tenant, cmd);
      status.record(tenant.key, receipt.status);
      return receipt;
    } catch (err) {
      const code = isRelayError(err) ? err.code : "internal_error";
      status.record(tenant.key, code, isRelayError(err) ? err.extras : {});
      throw err;
    }
  }

  private async sendFor(tenant: Tenant, cmd: SendCommand): Promise<SendReceipt> {
    const { draft } = cmd;
    const id = this.newId();
    const prepared = isMimeDraft(draft) ? prepareMime(draft, tenant, id) : prepareJson(draft, tenant, id);
    const { internetMessageId } = prepared;
    const deadline = cmd.receivedAt + this.deps.deadlineSeconds() * 1000;

    if (prepared.dryRun) {
      // "Resolves everything": a dry run proves the credential works (normally a cache hit).
      await this.deps.tokenProvider.getToken(tenant.target);
      return { status: "dry_run", id, internetMessageId, tenant, acceptedAt: new Date(this.deps.clock.now()), attempts: 0 };
    }

    const { inflight, work, limiter, clock } = this.deps;
    inflight.inc();
    work?.enter();
    let reservation: RecipientReservation | undefined;
    try {
      // A slot granted too close to the deadline could only end in a timeout, i.e. outcome_unknown.
      const admitted = await admit(
        () => this.deps.recipients.reserve(tenant.mailboxKey, prepared.recipients, tenant.limits.recipientsPerDay),
        (signal) => limiter.acquire(tenant.mailboxKey, { deadline: Math.max(clock.now(), deadline - SLOT_HEADROOM_MS), ...(signal !== undefined ? { signal } : {}) }),
      );
      reservation = admitted.reservation;
      const { permit } = admitted;
      try {
        const result = await this.deps.graphSender.send({
          ...prepared.form,
          target: tenant.target,
          sender: tenant.sender,
          deadline,
          requestId: cmd.requestId,
          accessModel: tenant.accessModel,
          // Graph's 429 holds the mailbox's whole line until its Retry-After, not just this send.
          onThrottled: (until) => limiter.noteThrottled(tenant.mailboxKey, until),
          // Exchange's own daily count ran out (it also counts what others sent from the mailbox).
          onSubmissionQuotaExceeded: (until) => this.deps.recipients.exhaust(tenant.mailboxKey, until),
        });
        return {
          status: "sent",
          id,
          internetMessageId,
          tenant,
          acceptedAt: new Date(clock.now()),
          ...(result.graphRequestId !== undefined ? { graphRequestId: result.graphRequestId } : {}),
          attempts: result.attempts,
        };
      } finally {
        permit.release();
      }
    } catch (err) {
      // Recipients of a message that may have gone out still count against the daily limit.
      if (!(isRelayError(err) && err.code === "outcome_unknown")) reservation?.release();
      throw err;
    } finally {
      inflight.dec();
      work?.leave();
    }
  }

  /**
   * The caller's allow-list is checked before the tenant's existence, so a caller limited
   * to some tenants learns nothing about others (403 either way); only callers allowed
   * everything ("*") can get 404 unknown_tenant. Unauthenticated callers never get here.
   */
  /**
   * Sends at most once per (caller, Idempotency-Key) within the key's TTL. A key seen before
   * with the same request gets the first answer back (a replay; nothing is sent, nothing checked
   * again); with another request, 409 idempotency_conflict. While the first request with the key
   * is still at work, this one waits for its answer until its own deadline, then 409. Answers
   * after which the message may exist (202, outcome_unknown, an unexpected 500) are remembered;
   * refusals that provably sent nothing free the key, so a retry after a fix can succeed.
   */
  async sendOnce(cmd: KeyedSendCommand): Promise<KeyedSendResult> {
    const claim = await this.claim(cmd);
    if (claim.kind === "replay") return { kind: "replay", answer: claim.response };
    try {
      const receipt = await this.send({ caller: cmd.caller, draft: cmd.draft(), requestId: cmd.requestId, receivedAt: cmd.receivedAt });
      if (idempotencyDisposition(receipt.status) === "complete") {
        await claim.complete({
          kind: "accepted",
          requestId: cmd.requestId,
          id: receipt.id,
          internetMessageId: receipt.internetMessageId,
          tenant: receipt.tenant.key,
          sender: receipt.tenant.sender,
          acceptedAt: receipt.acceptedAt.toISOString(),
        });
      }
      return { kind: "sent", receipt };
    } catch (err) {
      const relay = toRelayError(err);
      if (idempotencyDisposition(relay.code) === "complete") {
        await claim.complete({ kind: "problem", requestId: cmd.requestId, code: relay.code, detail: relay.message, extras: relay.extras });
      }
      throw err;
    } finally {
      // A no-op after complete(); otherwise nothing was sent and the key is free for a retry.
      await claim.abandon();
    }
  }

  private async claim(cmd: KeyedSendCommand): Promise<IdempotencyNew<RecordedAnswer> | IdempotencyReplay<RecordedAnswer>> {
    const store = this.deps.idempotency;
    if (store === undefined) throw new Error("SendMail.sendOnce needs an idempotency store");
    const first = await store.begin(cmd.caller.name, cmd.key, cmd.fingerprint, { requestId: cmd.requestId });
    const conflict = (): RelayError => new RelayError("idempotency_conflict", `Idempotency-Key "${cmd.key}" was used before with a different body`);
    if (first.kind === "conflict") throw conflict();
    if (first.kind !== "in_flight") return first;
    // The first request with this key is still at work: wait for its answer, at most until our deadline.
    const left = cmd.receivedAt + this.deps.deadlineSeconds() * 1000 - this.deps.clock.now();
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), Math.max(1, left));
    try {
      const settled = await first.wait(stop.signal);
      if (settled.kind === "conflict") throw conflict();
      return settled;
    } catch (err) {
      if (!stop.signal.aborted) throw err;
      throw new KeyInFlight();
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The tenant and sender rules alone, for a door that learns the sender before the message
   * (SMTP MAIL FROM): the same RelayError as send() would throw, before the client sends DATA.
   */
  checkSender(caller: Caller, tenantKey: string, sender: string): void {
    assertSenderAllowed(sender, this.assertTenantAllowed(caller, tenantKey));
  }

  private assertTenantAllowed(caller: Caller, key: string): Tenant {
    if (!callerMayUse(caller, key)) throw new RelayError("tenant_forbidden", `caller "${caller.name}" may not send for tenant "${key}"`);
    const tenant = this.deps.tenants().get(key);
    if (tenant === undefined) throw new RelayError("unknown_tenant", `no tenant "${key}" is configured`);
    return tenant;
  }
}

/**
 * idempotency_conflict because the first request with the key was still at work when this one's
 * deadline came, not because the request differs: a door may ask for a later retry (SMTP: 4xx).
 */
export class KeyInFlight extends RelayError {
  constructor() {
    super("idempotency_conflict", "the first request with this Idempotency-Key is still being processed; retry later");
  }
}

/**
 * The daily recipient count and a mailbox slot, asked for at the same time: with the shared
 * store both go to Redis in one round trip. Whichever refuses first wins; what the other got
 * is given back (a slot wait is cancelled).
 */
async function admit(
  reserve: () => RecipientReservation | Promise<RecipientReservation>,
  acquire: (signal?: AbortSignal) => Promise<MailboxPermit>,
): Promise<{ reservation: RecipientReservation; permit: MailboxPermit }> {
  // In-process ledger: it answers at once, so a refusal never starts a wait for a slot.
  const counted = reserve();
  if (!(counted instanceof Promise)) {
    try {
      return { reservation: counted, permit: await acquire() };
    } catch (err) {
      counted.release();
      throw err;
    }
  }
  const cancel = new AbortController();
  const reserving = counted;
  const acquiring = acquire(cancel.signal);
  let reservation: RecipientReservation;
  try {
    reservation = await reserving;
  } catch (err) {
    cancel.abort(err);
    acquiring.then((p) => p.release(), () => {});
    throw err;
  }
  try {
    return { reservation, permit: await acquiring };
  } catch (err) {
    reservation.release();
    throw err;
  }
}

/** A draft made ready for Graph: its Message-ID, what the recipient limit counts, and the sendMail body. */
interface PreparedSend {
  readonly internetMessageId: string;
  readonly recipients: number;
  readonly dryRun: boolean;
  readonly form: Pick<GraphJsonSendRequest, "message" | "saveToSentItems" | "body"> | Pick<GraphMimeSendRequest, "mime">;
}

function prepareJson(draft: MailDraft, tenant: Tenant, id: string): PreparedSend {
  assertSenderAllowed(draft.from, tenant);
  const internetMessageId = internetMessageIdFor(id, tenant.senderDomain);
  const saveToSentItems = draft.saveToSentItems ?? tenant.saveToSentItems;
  const message = buildGraphMessage(draft, internetMessageId);
  const body = serializeSendMail(message, saveToSentItems);
  assertGraphSize(body);
  return { internetMessageId, recipients: recipientCount(draft), dryRun: draft.dryRun, form: { message, saveToSentItems, body } };
}

/**
 * A client's own message (SMTP): the envelope sender and the header's From (and Sender, when
 * given) must all be the tenant's sender; To and Cc must be envelope recipients; the rest of the
 * envelope goes as Bcc. The client's Message-ID stays; one is added when there is none.
 */
function prepareMime(draft: MimeDraft, tenant: Tenant, id: string): PreparedSend {
  const { headers } = draft;
  assertSenderAllowed(draft.envelopeFrom, tenant);
  if (headers.fromFields !== 1 || headers.from.length !== 1) {
    throw new RelayError("sender_not_allowed", `the message needs exactly one From address, ${tenant.sender}, in exactly one From header`);
  }
  for (const [field, address] of [["From", headers.from[0]!], ...headers.sender.map((a) => ["Sender", a] as const)] as const) {
    if (!isSenderAddress(address, tenant.sender)) {
      throw new RelayError("sender_not_allowed", `the ${field} header must be ${tenant.sender}: tenant "${tenant.key}" sends only from it`);
    }
  }
  if (headers.repeated.length > 0) {
    throw new RelayError("validation_failed", `the message has more than one ${headers.repeated.join(", ")} header`, {
      errors: headers.repeated.map((name) => ({ path: `header.${name}`, message: "may appear at most once (RFC 5322 §3.6)" })),
    });
  }
  const { blind, count } = mimeRecipients(headers, draft.envelopeTo);
  const internetMessageId = headers.messageId ?? internetMessageIdFor(id, tenant.senderDomain);
  const mime = graphMimeBody(draft.raw, headers, blind, headers.messageId === undefined ? internetMessageId : undefined);
  if (mime.bytes > GRAPH_MAX_REQUEST_BYTES) {
    throw new RelayError("payload_too_large", `the message is ${mib(mime.bytes)} MB in base64, as Graph would receive it; Graph accepts at most 4 MB`);
  }
  return { internetMessageId, recipients: count, dryRun: false, form: { mime } };
}

function assertSenderAllowed(from: string | undefined, tenant: Tenant): void {
  if (from !== undefined && !isSenderAddress(from, tenant.sender)) {
    throw new RelayError("sender_not_allowed", `tenant "${tenant.key}" sends only from ${tenant.sender}`);
  }
}

/**
 * Whether `from` names the configured `sender`: the same text after NFC normalisation, the case
 * of A–Z ignored and nothing else. Not toLowerCase(): it maps U+212A KELVIN SIGN onto k and
 * U+0130 (İ) onto i plus a combining dot, so look-alikes would match. And `from` must be its own
 * NFKC form: a compatibility character or canonical singleton (Kelvin, fullwidth letters, ſ)
 * never matches, even where NFC alone would turn it into the sender's letter. The /send
 * schema refuses such a `from` first, with a field error; this is the rule itself, for every door.
 */
export function isSenderAddress(from: string, sender: string): boolean {
  if (from.normalize("NFKC") !== from) return false;
  return asciiLower(from.normalize("NFC")) === asciiLower(sender.normalize("NFC"));
}

function asciiLower(text: string): string {
  return text.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

function assertGraphSize(body: SendMailBody): void {
  if (body.bytes > GRAPH_MAX_REQUEST_BYTES) {
    throw new RelayError(
      "payload_too_large",
      `the message is ${mib(body.bytes)} MB as Graph would receive it (attachments count a third more in base64); Graph accepts at most 4 MB`,
    );
  }
}

function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(2);
}
