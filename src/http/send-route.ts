import type { Response } from "express";
import type { Clock } from "../core/ports.js";
import { RelayError } from "../core/problems.js";
import type { Lifecycle } from "../core/lifecycle.js";
import { checkIdempotencyKey, requestFingerprint } from "../delivery/idempotency-store.js";
import type { MailAddress, MailDraft } from "../mail/mail-draft.js";
import { problemOf, type RecordedAnswer } from "../mail/send-answer.js";
import type { SendMail, SendReceipt } from "../mail/send-mail.js";
import type { CallerDirectory } from "../tenants/caller-directory.js";
import type { TenantDirectory } from "../tenants/tenant-directory.js";
import { authenticateCaller } from "./api-key.js";
import { readJsonBody } from "./json-body.js";
import { PROBLEM_CONTENT_TYPE, toProblemResponse } from "./problem-response.js";
import { requireContext, type RequestContext } from "./request-context.js";
import type { RouteTable } from "./route-table.js";
import { parseSendRequest, SEND_BODY_SHAPE, type SendRequest, type WireRecipient } from "./send-request-schema.js";

export interface SendRouteDeps {
  readonly sendMail: SendMail;
  readonly callers: () => CallerDirectory;
  readonly tenants: () => TenantDirectory;
  readonly lifecycle: Lifecycle;
  /** `server.maxBodyBytes` of the config in force. */
  readonly maxBodyBytes: () => number;
  /** `server.http.requestTimeoutSeconds` (read at start-up). */
  readonly requestTimeoutSeconds: () => number;
  readonly clock: Clock;
}

/** The 202 (and dry-run 200) body: openapi.yaml `SendAccepted`. */
export interface SendResponseBody {
  id: string;
  internetMessageId: string;
  tenant: string;
  sender: string;
  acceptedAt: string;
}

const JSON_CONTENT_TYPE = "application/json; charset=utf-8";

/**
 * POST /send: refuse a draining instance and an unknown API key before a byte of the body is
 * read; read and parse the body; hand it to the use case (with its Idempotency-Key when there is
 * one: the use case answers a replay from the store); answer.
 */
export function registerSendRoute(routes: RouteTable, deps: SendRouteDeps): void {
  const { lifecycle } = deps;

  routes.post("/send", async (req, res) => {
    const ctx = requireContext(req);
    if (lifecycle.isDraining) {
      // Connection: close moves the caller's keep-alive connection to another instance.
      res.setHeader("connection", "close");
      throw new RelayError("upstream_unavailable", "this instance is shutting down; retry", { retryAfterSeconds: 1 });
    }
    ctx.caller = authenticateCaller(req.headers.authorization, deps.callers());

    // Node joins a repeated header it does not know into one "a, b" value; headersDistinct keeps
    // the values apart, so a second Idempotency-Key is refused instead of read as another key.
    // (headersDistinct builds an object of every header: only asked when there is a key at all.)
    const rawKey = req.headers["idempotency-key"] === undefined ? undefined : req.headersDistinct["idempotency-key"];
    const key = rawKey === undefined ? undefined : checkedKey(rawKey);
    // The whole request within server.http.requestTimeoutSeconds of its arrival, body included.
    const body = await readJsonBody(req, deps.maxBodyBytes(), ctx.receivedAt + deps.requestTimeoutSeconds() * 1000 - deps.clock.now(), SEND_BODY_SHAPE);
    const draft = (): MailDraft => toDraft(validated(body, ctx, deps.tenants()));

    if (key === undefined) {
      const receipt = await deps.sendMail.send({ caller: ctx.caller, draft: draft(), requestId: ctx.requestId, receivedAt: ctx.receivedAt });
      answerReceipt(res, ctx, receipt);
      return;
    }
    // No body at all has no fingerprint, and validation refuses it; a 400 is never remembered, so no replay is lost.
    if (body === undefined) validated(body, ctx, deps.tenants());
    const result = await deps.sendMail.sendOnce({
      caller: ctx.caller,
      key,
      fingerprint: requestFingerprint(body),
      requestId: ctx.requestId,
      receivedAt: ctx.receivedAt,
      draft,
    });
    if (result.kind === "sent") {
      answerReceipt(res, ctx, result.receipt);
      return;
    }
    ctx.outcome = "duplicate";
    const tenant = (body as { tenant?: unknown } | null | undefined)?.tenant;
    if (typeof tenant === "string" && deps.tenants().has(tenant)) ctx.tenant = tenant;
    answerReplay(res, ctx, result.answer);
  });
}

function checkedKey(values: readonly string[]): string {
  const [first] = values;
  const bad =
    values.length !== 1 || first === undefined
      ? { path: "Idempotency-Key", message: `send the header once (it came ${values.length} times)` }
      : checkIdempotencyKey(first);
  if (bad !== undefined) throw new RelayError("validation_failed", "the Idempotency-Key header is invalid", { errors: [bad] });
  return first as string;
}

function validated(body: unknown, ctx: RequestContext, tenants: TenantDirectory): SendRequest {
  const parsed = parseSendRequest(body);
  if (!parsed.ok) {
    const { errors, omitted } = parsed;
    if (omitted !== undefined) {
      throw new RelayError("validation_failed", `the request has ${errors.length + omitted} unknown fields; nothing else was checked`, { errors, errorsOmitted: omitted });
    }
    const n = errors.length;
    throw new RelayError("validation_failed", `the request has ${n} invalid field${n === 1 ? "" : "s"}`, { errors });
  }
  if (tenants.has(parsed.value.tenant)) ctx.tenant = parsed.value.tenant;
  return parsed.value;
}

function answerReceipt(res: Response, ctx: RequestContext, receipt: SendReceipt): void {
  ctx.outcome = receipt.status;
  ctx.messageId = receipt.id;
  ctx.graphRequestId = receipt.graphRequestId;
  ctx.attempts = receipt.attempts;
  writeJson(res, receipt.status === "sent" ? 202 : 200, { "content-type": JSON_CONTENT_TYPE }, responseBody(receipt));
}

/**
 * The first answer as it was, its X-Request-Id included (a problem's requestId equals it): the
 * id a caller quotes leads to the log line of the request that did the work.
 */
function answerReplay(res: Response, ctx: RequestContext, answer: RecordedAnswer): void {
  ctx.replayOf = answer.requestId;
  const replayed = { "x-request-id": answer.requestId, "idempotent-replayed": "true" };
  if (answer.kind === "accepted") {
    const { id, internetMessageId, tenant, sender, acceptedAt } = answer;
    writeJson(res, 202, { "content-type": JSON_CONTENT_TYPE, ...replayed }, { id, internetMessageId, tenant, sender, acceptedAt });
    return;
  }
  const problem = toProblemResponse(problemOf(answer), answer.requestId);
  writeJson(
    res,
    problem.status,
    { "content-type": PROBLEM_CONTENT_TYPE, ...replayed, ...(problem.retryAfterSeconds !== undefined ? { "retry-after": String(problem.retryAfterSeconds) } : {}) },
    problem.body,
  );
}

/** `headers` is the caller's own fresh object: Content-Length is added to it (no copy per answer). */
function writeJson(res: Response, status: number, headers: Record<string, string | number>, body: unknown): void {
  const text = JSON.stringify(body);
  headers["content-length"] = Buffer.byteLength(text);
  res.writeHead(status, headers);
  res.end(text);
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
