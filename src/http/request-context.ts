import type { IncomingMessage } from "node:http";
import type { Caller } from "../tenants/caller-directory.js";

/**
 * What one request's log line and metrics need, filled in as the request goes along.
 * A class, so every request's object has the same shape.
 */
export class RequestContext {
  caller: Caller | undefined = undefined;
  /** A configured tenant key (a safe metrics label), once the request named one. */
  tenant: string | undefined = undefined;
  /** sent, dry_run, duplicate, or a problem code. */
  outcome: string | undefined = undefined;
  messageId: string | undefined = undefined;
  graphRequestId: string | undefined = undefined;
  attempts: number | undefined = undefined;
  /** For an Idempotency-Key replay: the id of the request whose answer it repeats. */
  replayOf: string | undefined = undefined;
  /** Why a 5xx happened (logged at error level); never a request body. */
  detail: string | undefined = undefined;
  aadsts: string | undefined = undefined;
  graphCode: string | undefined = undefined;
  /** An unexpected error (a bug), logged with its stack. */
  bug: unknown = undefined;

  constructor(
    /** The request's id (a UUID): X-Request-Id, the problem's requestId, Graph's client-request-id. */
    readonly requestId: string,
    /** When it arrived (epoch ms, from the service's clock); deadlines count from here. */
    readonly receivedAt: number,
  ) {}
}

const contexts = new WeakMap<IncomingMessage, RequestContext>();

/** Gives a request its context (the app's first middleware). */
export function attachContext(request: IncomingMessage, context: RequestContext): void {
  contexts.set(request, context);
}

/**
 * The request's context, or undefined for a request that did not come through the app's
 * pipeline (a route module mounted on a bare express app in a test).
 */
export function contextOf(request: IncomingMessage): RequestContext | undefined {
  return contexts.get(request);
}

/** The request's context; the app's own routes always have one. */
export function requireContext(request: IncomingMessage): RequestContext {
  const context = contexts.get(request);
  if (context === undefined) throw new Error("request without a RequestContext: route used outside createApp");
  return context;
}
