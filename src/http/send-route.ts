import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from "fastify";
import {
  checkIdempotencyKey,
  idempotencyDisposition,
  requestFingerprint,
  type IdempotencyNew,
  type IdempotencySettled,
  type IdempotencyStore,
  type StoredResponse,
} from "../delivery/idempotency-store.js";
import type { MailAddress, MailDraft } from "../mail/mail-draft.js";
import type { SendMail, SendReceipt } from "../mail/send-mail.js";
import type { CallerDirectory } from "../tenants/caller-directory.js";
import type { TenantDirectory } from "../tenants/tenant-directory.js";
import { authenticateCaller } from "./api-key.js";
import type { Lifecycle } from "./lifecycle.js";
import { asRelayError, PROBLEM_CONTENT_TYPE, toProblemResponse } from "./problem-response.js";
import { RelayError } from "../core/problems.js";
import type { RequestContext } from "./request-context.js";
import { parseSendRequest, type SendRequest, type WireRecipient } from "./send-request-schema.js";

export interface SendRouteDeps {
  readonly sendMail: SendMail;
  readonly callers: () => CallerDirectory;
  readonly tenants: () => TenantDirectory;
  readonly lifecycle: Lifecycle;
  /** Where Idempotency-Keys are remembered (per caller). */
  readonly idempotency: IdempotencyStore;
  /** `server.requestDeadlineSeconds` of the current config: how long a replay waits for the first request. */
  readonly deadlineSeconds: () => number;
}

/** The 202 (and dry-run 200) body: CONTRACT.md "202 Accepted". */
export interface SendResponseBody {
  id: string;
  internetMessageId: string;
  tenant: string;
  sender: string;
  acceptedAt: string;
}

const JSON_CONTENT_TYPE = "application/json; charset=utf-8";

/** POST /send: authenticate, claim the Idempotency-Key, validate, hand to the use case, answer. */
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
    try {
      request.relay.caller = authenticateCaller(request.headers.authorization, deps.callers());
    } catch (err) {
      done(err as RelayError);
      return;
    }
    done();
  }

  app.post("/send", { onRequest: admit }, async (request, reply) => {
    const ctx = request.relay;
    const rawKey = request.headers["idempotency-key"];
    if (rawKey === undefined) return send(request, reply, ctx);

    // Right after authentication: a replay passes no validation, limit or guard again and sends nothing.
    const claim = await claimKey(request, ctx, rawKey);
    if (claim.kind === "conflict") throw new RelayError("idempotency_conflict", `Idempotency-Key "${rawKey as string}" was used before with a different body`);
    if (claim.kind === "replay") {
      ctx.outcome = "duplicate";
      const tenant = (request.body as { tenant?: unknown } | null)?.tenant;
      if (typeof tenant === "string" && deps.tenants().has(tenant)) ctx.tenant = tenant;
      // The first response as it was, its X-Request-Id included (a problem's requestId equals it):
      // the id a caller quotes leads to the log line of the request that did the work.
      const first = claim.response;
      ctx.replayOf = first.headers["x-request-id"];
      return reply
        .code(first.status)
        .headers({ ...first.headers, "idempotent-replayed": "true" })
        .send(JSON.stringify(first.body));
    }
    try {
      return await send(request, reply, ctx, claim);
    } catch (err) {
      const relay = asRelayError(err);
      if (idempotencyDisposition(relay.code) === "complete") {
        const problem = toProblemResponse(relay, request.id);
        await claim.complete({
          status: problem.status,
          headers: {
            "content-type": PROBLEM_CONTENT_TYPE,
            "x-request-id": request.id,
            ...(problem.retryAfterSeconds !== undefined ? { "retry-after": String(problem.retryAfterSeconds) } : {}),
          },
          body: problem.body,
        });
      }
      throw err; // the error handler renders the same problem
    } finally {
      // A no-op after complete(); otherwise nothing was sent and the key is free for a retry.
      await claim.abandon();
    }
  });

  async function claimKey(request: FastifyRequest, ctx: RequestContext, raw: string | string[]): Promise<IdempotencySettled> {
    const bad = Array.isArray(raw) ? { path: "Idempotency-Key", message: "send the header once" } : checkIdempotencyKey(raw);
    if (bad !== undefined) throw new RelayError("validation_failed", "the Idempotency-Key header is invalid", { errors: [bad] });
    const claim = await deps.idempotency.begin(ctx.caller!.name, raw as string, requestFingerprint(request.body), { requestId: request.id });
    if (claim.kind !== "in_flight") return claim;
    // The first request with this key is still sending: wait for its answer, at most until our deadline.
    const left = ctx.receivedAt + deps.deadlineSeconds() * 1000 - Date.now();
    return claim.wait(AbortSignal.timeout(Math.max(1, left))).catch(() => {
      throw new RelayError("idempotency_conflict", "the first request with this Idempotency-Key is still being processed; retry later");
    });
  }

  async function send(request: FastifyRequest, reply: FastifyReply, ctx: RequestContext, claim?: IdempotencyNew): Promise<FastifyReply> {
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
    const status = receipt.status === "sent" ? 202 : 200;
    const body = responseBody(receipt);
    if (claim !== undefined && idempotencyDisposition(receipt.status) === "complete") {
      await claim.complete({ status, headers: { "content-type": JSON_CONTENT_TYPE, "x-request-id": request.id }, body });
    }
    return reply.code(status).header("content-type", JSON_CONTENT_TYPE).send(JSON.stringify(body));
  }
}

/**
 * What a replay gets when the first request with its Idempotency-Key was being sent by a pod
 * that stopped (killed, or cut off from the shared store) before it answered: the message may
 * have gone out, so 504 outcome_unknown, with the first request's id to look it up by.
 */
export function lapsedLeaseResponse(firstRequestId: string): StoredResponse {
  const problem = toProblemResponse(
    new RelayError(
      "outcome_unknown",
      "the instance that handled the first request with this Idempotency-Key stopped before it answered; the message may have been sent",
    ),
    firstRequestId,
  );
  return { status: problem.status, headers: { "content-type": PROBLEM_CONTENT_TYPE, "x-request-id": firstRequestId }, body: problem.body };
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
