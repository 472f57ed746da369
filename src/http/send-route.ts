import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import type { MailAddress, MailDraft } from "../mail/mail-draft.js";
import type { SendMail, SendReceipt } from "../mail/send-mail.js";
import type { CallerDirectory } from "../tenants/caller-directory.js";
import type { TenantDirectory } from "../tenants/tenant-directory.js";
import type { Lifecycle } from "./lifecycle.js";
import { RelayError } from "./problems.js";
import { parseSendRequest, type SendRequest, type WireRecipient } from "./send-request-schema.js";

export interface SendRouteDeps {
  readonly sendMail: SendMail;
  readonly callers: () => CallerDirectory;
  readonly tenants: () => TenantDirectory;
  readonly lifecycle: Lifecycle;
}

/** The 202 (and dry-run 200) body: CONTRACT.md "202 Accepted". */
export interface SendResponseBody {
  id: string;
  internetMessageId: string;
  tenant: string;
  sender: string;
  acceptedAt: string;
}

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/** POST /send: authenticate, validate, hand to the use case, answer. */
export function registerSendRoute(app: FastifyInstance, deps: SendRouteDeps): void {
  const { lifecycle } = deps;

  /*
   * Runs before the body is read: a draining instance or an unknown key is refused without
   * accepting megabytes of JSON, and nothing about the body (not even whether it parses)
   * is revealed to a caller without a valid key.
   */
  function admit(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (lifecycle.isDraining) {
      // Connection: close moves the caller's keep-alive connection to another instance.
      reply.header("connection", "close");
      done(new RelayError("upstream_unavailable", "this instance is shutting down; retry", { retryAfterSeconds: 1 }));
      return;
    }
    lifecycle.enter();
    reply.raw.once("close", lifecycle.leave);
    const match = BEARER.exec(request.headers.authorization ?? "");
    const caller = match ? deps.callers().authenticate(match[1]!) : undefined;
    if (caller === undefined) {
      reply.header("www-authenticate", 'Bearer realm="noreply-relay"');
      done(new RelayError("unauthorized", match ? "the API key is not known" : "send the API key as Authorization: Bearer <key>"));
      return;
    }
    request.relay.caller = caller;
    done();
  }

  app.post("/send", { onRequest: admit }, async (request, reply) => {
    const ctx = request.relay;
    const parsed = parseSendRequest(request.body);
    if (!parsed.ok) {
      const n = parsed.errors.length;
      throw new RelayError("validation_failed", `the request has ${n} invalid field${n === 1 ? "" : "s"}`, { errors: parsed.errors });
    }
    const req = parsed.value;
    if (deps.tenants().has(req.tenant)) ctx.tenant = req.tenant;
    const receipt = await deps.sendMail.send({
      caller: ctx.caller!,
      draft: toDraft(req),
      requestId: request.id,
      receivedAt: ctx.receivedAt,
    });
    ctx.outcome = receipt.status;
    ctx.messageId = receipt.id;
    ctx.graphRequestId = receipt.graphRequestId;
    ctx.attempts = receipt.attempts;
    return reply
      .code(receipt.status === "sent" ? 202 : 200)
      .header("content-type", "application/json; charset=utf-8")
      .send(JSON.stringify(responseBody(receipt)));
  });
}

function responseBody(r: SendReceipt): SendResponseBody {
  return {
    id: r.id,
    internetMessageId: r.internetMessageId,
    tenant: r.tenant.key,
    sender: r.tenant.sender,
    acceptedAt: r.acceptedAt.toISOString(),
  };
}

const NONE: readonly MailAddress[] = [];

function addresses(list: readonly WireRecipient[] | undefined): readonly MailAddress[] {
  if (list === undefined || list.length === 0) return NONE;
  return list.map((r) => (typeof r === "string" ? { address: r } : r.name === undefined ? { address: r.address } : { address: r.address, name: r.name }));
}

/** Wire shape → the use case's draft (recipient forms unified, header map to a list). */
export function toDraft(req: SendRequest): MailDraft {
  return {
    tenant: req.tenant,
    ...(req.from !== undefined ? { from: req.from } : {}),
    to: addresses(req.to),
    cc: addresses(req.cc),
    bcc: addresses(req.bcc),
    replyTo: addresses(req.replyTo),
    subject: req.subject,
    ...(req.text !== undefined ? { text: req.text } : {}),
    ...(req.html !== undefined ? { html: req.html } : {}),
    attachments: (req.attachments ?? []).map((a) => ({
      filename: a.filename,
      contentType: a.contentType,
      contentBase64: a.content,
      ...(a.contentId !== undefined ? { contentId: a.contentId } : {}),
      inline: a.inline === true,
    })),
    headers: req.headers === undefined ? [] : Object.entries(req.headers).map(([name, value]) => ({ name, value })),
    ...(req.importance !== undefined ? { importance: req.importance } : {}),
    ...(req.saveToSentItems !== undefined ? { saveToSentItems: req.saveToSentItems } : {}),
    dryRun: req.dryRun === true,
  };
}
