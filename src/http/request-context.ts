import type { Caller } from "../tenants/caller-directory.js";

/**
 * What one request's log line and metrics need, filled in as the request goes along.
 * A class, so every request's object has the same shape.
 */
export class RequestContext {
  caller: Caller | undefined = undefined;
  /** A configured tenant key (a safe metrics label), once the request named one. */
  tenant: string | undefined = undefined;
  /** sent, dry_run, or a problem code. */
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

  constructor(readonly receivedAt: number) {}
}

declare module "fastify" {
  interface FastifyRequest {
    relay: RequestContext;
  }
}
