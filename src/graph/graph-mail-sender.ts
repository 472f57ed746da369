import type * as GraphSdk from "@microsoft/microsoft-graph-client";
import type { Logger } from "pino";
import type { Dispatcher } from "undici";
import type { Config } from "../config/schema.js";
import { lazyTimeoutSignal } from "../core/abort.js";
import { RelayError, isRelayError } from "../core/problems.js";
import { systemClock, type Clock, type GraphSendRequest, type GraphSendResult, type GraphSender, type SendMailBody, type SendObserver, type TokenProvider, type TokenTarget } from "../core/ports.js";
import { NO_EXCHANGE_ONLINE, NO_PERMISSIONS, SUBMISSION_QUOTA, SUBMISSION_QUOTA_WINDOW_MS, mapGraphRefusal, parseGraphErrorBody } from "./graph-errors.js";
import { SendAttempt, TokenAuthMiddleware, UndiciTransport, type AttemptResult } from "./graph-middleware.js";
import { createHttpsAgent } from "../net/http-dispatcher.js";
import { headerValue, parseRetryAfter, type ResponseHeaders } from "../net/retry-after.js";
import { capRetryAfter, defaultRetryPolicy, toRetryAfterSeconds, waitFits, type RetryPolicy } from "./retry-policy.js";

/** Seconds callers are told to wait after Graph was unreachable or failed without saying. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;
/** Default for `permissionRecheckMs`. */
const PERMISSION_RECHECK_MS = 60_000;
/** Default for `maxRetryAfterMs` (`server.maxRetryAfterSeconds`). */
const MAX_RETRY_AFTER_MS = 600_000;

/** What the sender may ask of the token provider besides tokens. */
export interface RenewableTokenProvider extends TokenProvider {
  /** Drops the target's cached token (see EntraTokenProvider.invalidate). */
  invalidate?(target: TokenTarget, options?: { readonly olderThanMs?: number }): void;
}

export interface GraphMailSenderOptions {
  readonly config: Pick<Config, "cloud" | "tls">;
  /**
   * Tokens per tenant. `invalidate` (optional) lets a 401 be retried once with a fresh token, and
   * lets a `permission_missing` fetch a fresh token for a later send (consent may have been granted since).
   */
  readonly tokenProvider: RenewableTokenProvider;
  readonly observer: SendObserver;
  readonly logger: Logger;
  /** A shared keep-alive agent (see createHttpsAgent); when absent one is made and closed by close(). */
  readonly dispatcher?: Dispatcher;
  /** Longest single HTTP attempt (ms), capped by the send's deadline; default 30 s. */
  readonly attemptTimeoutMs?: number;
  readonly retryPolicy?: Partial<RetryPolicy>;
  /**
   * After `permission_missing`, a tenant's token older than this (ms) is dropped, so a send after
   * the admin granted consent gets a token with the role instead of the cached one without it
   * (which lives ~1 h). Younger tokens are kept: a tenant without consent costs at most one token
   * request per interval, not one per send. Default 60 s.
   */
  readonly permissionRecheckMs?: number;
  /**
   * Longest wait one Graph Retry-After may impose (ms): longer ones are clamped, for this send,
   * for the mailbox's throttle memory and for the caller's Retry-After. A function is read at
   * each answer, so a reloaded `server.maxRetryAfterSeconds` applies. Default 10 minutes.
   */
  readonly maxRetryAfterMs?: number | (() => number);
  /** The service's clock: deadlines (epoch ms) are on it. */
  readonly clock?: Clock;
}

/** The Graph adapter: the port plus closing its connections. */
export interface GraphMailSender extends GraphSender {
  close(): Promise<void>;
}

/**
 * Creates the GraphSender on the Microsoft Graph client with our own middleware chain:
 * TokenAuthMiddleware → UndiciTransport. The SDK's default chain is not used: its RetryHandler
 * repeats a POST after a 504, which may send the mail twice.
 */
export function createGraphMailSender(options: GraphMailSenderOptions): GraphMailSender {
  return new GraphMailSenderImpl(options);
}

class GraphMailSenderImpl implements GraphMailSender {
  /** The Graph client and its ResponseType.RAW, once the package is loaded (see loadGraphClient). */
  private graph: { readonly client: GraphSdk.Client; readonly raw: GraphSdk.ResponseType } | undefined;
  /** What the client is made with once the package is loaded: our middleware chain on Graph's origin. */
  private readonly clientOptions: GraphSdk.ClientOptions;
  private readonly graphHost: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly policy: RetryPolicy;
  private readonly attemptTimeoutMs: number;
  private readonly permissionRecheckMs: number;
  private readonly maxRetryAfterMs: () => number;
  private readonly tokens: RenewableTokenProvider;
  private readonly observer: SendObserver;
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(options: GraphMailSenderOptions) {
    this.clock = options.clock ?? systemClock;
    const base = new URL(options.config.cloud.graphBaseUrl);
    this.graphHost = base.host;
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher = options.dispatcher ?? createHttpsAgent(options.config.tls);
    this.policy = { ...defaultRetryPolicy, ...options.retryPolicy };
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 30_000;
    this.permissionRecheckMs = options.permissionRecheckMs ?? PERMISSION_RECHECK_MS;
    const max = options.maxRetryAfterMs ?? MAX_RETRY_AFTER_MS;
    this.maxRetryAfterMs = typeof max === "function" ? max : () => max;
    this.tokens = options.tokenProvider;
    this.observer = options.observer;
    this.logger = options.logger;
    this.clientOptions = {
      baseUrl: base.origin,
      defaultVersion: "v1.0",
      // Hostname only: the SDK compares it with URL.hostname when deciding where tokens may go.
      customHosts: new Set([base.hostname]),
      middleware: [new TokenAuthMiddleware(options.tokenProvider, base.origin), new UndiciTransport(this.dispatcher, "noreply-relay", base.origin)],
    };
  }

  async send(request: GraphSendRequest): Promise<GraphSendResult> {
    const deadline = lazyTimeoutSignal(() => request.deadline - this.clock.now(), request.signal, "deadline passed");
    try {
      return await this.attempts(request, deadline);
    } finally {
      deadline.dispose();
    }
  }

  private async attempts(request: GraphSendRequest, tokenLimit: { readonly signal: AbortSignal }): Promise<GraphSendResult> {
    const { target } = request;
    const path = `/users/${encodeSender(request.sender)}/sendMail`;
    const body = sendMailBody(request);
    // Graph tells its two request forms apart by Content-Type alone.
    const contentType = request.mime !== undefined ? "text/plain" : "application/json";
    let attempts = 0;
    let notSentRetries = 0;
    let tokenRenewed = false;

    for (;;) {
      const remaining = request.deadline - this.clock.now();
      if (remaining <= 0) throw unavailable("The request's deadline passed before Microsoft Graph could be asked.");
      attempts++;
      const attempt = new SendAttempt(target, Math.min(this.attemptTimeoutMs, remaining), tokenLimit, request.signal, body);
      try {
        // The body travels in the attempt (see SendAttempt.body); the SDK still sets its Content-Type.
        const graph = this.graph ?? (await this.graphClient());
        await graph.client
          .api(path)
          .header("client-request-id", request.requestId)
          .header("Content-Type", contentType)
          .responseType(graph.raw)
          .middlewareOptions([attempt])
          .post(undefined);
      } catch (err) {
        if (attempt.result === undefined) throw this.beforeGraph(attempt.tokenError ?? err);
      }
      const result = attempt.result as AttemptResult;
      this.observer.graphResponse(target.tenantKey, result.kind === "response" ? result.status : "error", result.seconds);
      const log = { tenant: target.tenantKey, requestId: request.requestId, attempt: attempts };

      if (result.kind === "failure") {
        if (result.written) {
          this.logger.warn({ ...log, reason: result.reason }, "Graph connection lost after the message was sent; outcome unknown");
          throw new RelayError(
            "outcome_unknown",
            `The connection to Microsoft Graph ended (${result.reason}) after the message was sent, before Graph answered. It may have been sent: check the recipient's mailbox or the sender's Sent Items before sending again.`,
          );
        }
        const delay = this.policy.notSentRetryDelayMs;
        if (result.reason !== "aborted" && notSentRetries < this.policy.maxNotSentRetries && this.canRetry(attempts, delay, request)) {
          notSentRetries++;
          this.logger.debug({ ...log, reason: result.reason }, "Graph request not sent; retrying");
          if (await sleep(delay, request.signal)) continue;
        }
        if (result.reason === "aborted") throw unavailable("The send was cancelled before the message reached Microsoft Graph. Nothing was sent.");
        throw unavailable(`Microsoft Graph (${this.graphHost}) cannot be reached: ${result.reason}. Nothing was sent; retry later.`);
      }

      const { status, headers } = result;
      const graphRequestId = headerValue(headers, "request-id");
      if (status === 202) return graphRequestId !== undefined ? { graphRequestId, attempts } : { attempts };
      const refusal = parseGraphErrorBody(result.body);

      if (refusal.code === SUBMISSION_QUOTA) {
        // Exchange's daily recipient limit, whatever the status (429 or not): waiting seconds and
        // retrying would only repeat it. The mailbox's recipient guard learns it for the window.
        request.onSubmissionQuotaExceeded?.(this.clock.now() + SUBMISSION_QUOTA_WINDOW_MS);
      } else if (status === 429) {
        this.observer.graphThrottled(target.tenantKey);
        const wait = this.retryAfter(headers, log) ?? this.policy.throttledDefaultWaitMs;
        // Before sleeping: the mailbox's other sends hold back too instead of earning their own 429.
        request.onThrottled?.(this.clock.now() + wait);
        if (this.canRetry(attempts, wait, request)) {
          this.logger.debug({ ...log, waitMs: wait }, "Graph throttled the mailbox; waiting as told");
          if (await sleep(wait, request.signal)) continue;
        }
        throw new RelayError(
          "rate_limited",
          `Microsoft Graph is throttling mailbox ${request.sender}; nothing was sent. Retry after the time given.`,
          { retryAfterSeconds: toRetryAfterSeconds(wait), ...graphIds(result) },
        );
      }

      if (status === 503 && refusal.code !== SUBMISSION_QUOTA) {
        const wait = this.retryAfter(headers, log);
        if (wait !== undefined && this.canRetry(attempts, wait, request)) {
          this.logger.debug({ ...log, waitMs: wait }, "Graph unavailable with Retry-After; waiting as told");
          if (await sleep(wait, request.signal)) continue;
        }
        throw new RelayError("upstream_unavailable", "Microsoft Graph is unavailable (HTTP 503); nothing was sent. Retry later.", {
          retryAfterSeconds: wait !== undefined ? toRetryAfterSeconds(wait) : UNAVAILABLE_RETRY_AFTER_SECONDS,
          ...graphIds(result),
        });
      }

      if (status >= 500 && status !== 503 && refusal.code !== SUBMISSION_QUOTA) {
        if (result.written) {
          // 500, 502, 504 … after the whole message reached Graph: a front end that failed or gave
          // up while Exchange may have gone on and sent it (copies delivered after 5xx retries:
          // https://learn.microsoft.com/en-us/answers/questions/2286986/sending-emails-with-the-graph-java-sdk-fails-with).
          // Only 429 and 503 say "nothing was taken"; this is outcome_unknown, never retried.
          this.logger.warn({ ...log, status, graphRequestId }, "Graph failed after the message was sent; outcome unknown");
          throw new RelayError(
            "outcome_unknown",
            `Microsoft Graph answered HTTP ${status} after the message was sent: it may have been sent. Check the recipient's mailbox or the sender's Sent Items before sending again.`,
            graphIds(result),
          );
        }
        this.logger.error({ ...log, status, graphRequestId }, "Graph failed before the message was sent");
        throw new RelayError("upstream_unavailable", `Microsoft Graph failed with HTTP ${status} before the message was sent; nothing was sent. Retry later.`, {
          retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS,
          ...graphIds(result),
        });
      }

      if (status >= 200 && status < 400) {
        this.logger.warn({ ...log, status, graphRequestId }, "Graph did not confirm the message; outcome unknown");
        throw new RelayError(
          "outcome_unknown",
          `Microsoft Graph answered HTTP ${status} instead of 202: the message may have been sent. Check the recipient's mailbox or the sender's Sent Items before sending again.`,
          graphIds(result),
        );
      }

      if (status === 401 && refusal.code !== NO_PERMISSIONS && refusal.code !== NO_EXCHANGE_ONLINE && !tokenRenewed && this.tokens.invalidate !== undefined && this.canRetry(attempts, 0, request)) {
        // Graph read no further than the token: nothing was sent. One fresh token, one more try.
        // (Not for a token without roles: a new one would have none either until consent is granted;
        // nor for a tenant without Exchange Online, which no token changes.)
        tokenRenewed = true;
        this.tokens.invalidate(target);
        this.logger.info({ ...log, graphRequestId }, "Graph refused the token; retrying once with a fresh one");
        continue;
      }

      const mapped = mapGraphRefusal(status, refusal, headers, {
        sender: request.sender,
        tenantId: target.tenantId,
        clientId: target.app.clientId,
        ...(request.accessModel !== undefined ? { accessModel: request.accessModel } : {}),
      });
      this.logger[mapped.level]({ ...log, status, code: mapped.error.code, ...mapped.error.extras }, "Graph refused the message");
      if (mapped.error.code === "permission_missing") this.tokens.invalidate?.(target, { olderThanMs: this.permissionRecheckMs });
      throw mapped.error;
    }
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  /** The client over our middleware chain, made the first time a send needs it. */
  private async graphClient(): Promise<{ readonly client: GraphSdk.Client; readonly raw: GraphSdk.ResponseType }> {
    const sdk = await loadGraphClient();
    this.graph ??= {
      client: sdk.Client.initWithMiddleware(this.clientOptions),
      // The response as the middleware left it (none: the sender reads the attempt's result).
      raw: sdk.ResponseType.RAW,
    };
    return this.graph;
  }

  /** Graph's Retry-After (ms), capped at maxRetryAfterMs; undefined when absent or unreadable. */
  private retryAfter(headers: ResponseHeaders, log: Record<string, unknown>): number | undefined {
    const given = parseRetryAfter(headers, this.clock.now());
    if (given === undefined) return undefined;
    const max = this.maxRetryAfterMs();
    if (given > max) this.logger.warn({ ...log, retryAfterMs: given, maxRetryAfterMs: max }, "Graph's Retry-After is longer than server.maxRetryAfterSeconds; clamped");
    return capRetryAfter(given, max);
  }

  private canRetry(attempts: number, waitMs: number, request: GraphSendRequest): boolean {
    return attempts < this.policy.maxAttempts && request.signal?.aborted !== true && waitFits(this.clock.now(), waitMs, request.deadline, this.policy);
  }

  /** A failure before any HTTP exchange with Graph: the token provider's problem, or a bug. */
  private beforeGraph(err: unknown): Error {
    if (isRelayError(err)) return err;
    this.logger.error({ err }, "Graph request failed before it was sent");
    return unavailable("The request to Microsoft Graph could not be prepared; nothing was sent.");
  }
}

let graphModule: Promise<typeof GraphSdk> | undefined;

/**
 * Loads @microsoft/microsoft-graph-client (~30 ms of start-up), once. server.ts starts it as
 * soon as the service listens, so readiness does not wait for it; a send that comes first
 * waits for it itself.
 */
export function loadGraphClient(): Promise<typeof GraphSdk> {
  graphModule ??= import("@microsoft/microsoft-graph-client").then(commonJsExports);
  return graphModule;
}

/**
 * The package is CommonJS. node's import() lists its exports by name; the bundle of the service
 * (scripts/bundle-server.mjs) gives them only as `default`, as bundlers do for CommonJS.
 */
function commonJsExports(m: typeof GraphSdk): typeof GraphSdk {
  return "Client" in m ? m : (m as { default?: typeof GraphSdk }).default ?? m;
}

/** The request body: the MIME form's base64, or the JSON form as the use case made it (or made here). */
function sendMailBody(request: GraphSendRequest): SendMailBody {
  if (request.mime !== undefined) return request.mime;
  const given = request.body ?? JSON.stringify({ message: request.message, saveToSentItems: request.saveToSentItems });
  return typeof given === "string" ? { parts: [given], bytes: Buffer.byteLength(given, "utf8") } : given;
}

/** The sender in the URL path; '@' stays readable (it is legal in a path segment). */
function encodeSender(sender: string): string {
  return encodeURIComponent(sender).replace(/%40/g, "@");
}

function graphIds(result: Extract<AttemptResult, { kind: "response" }>): { graphCode?: string; graphRequestId?: string } {
  const body = parseGraphErrorBody(result.body);
  const graphRequestId = headerValue(result.headers, "request-id") ?? body.requestId;
  return {
    ...(body.code !== undefined ? { graphCode: body.code } : {}),
    ...(graphRequestId !== undefined ? { graphRequestId } : {}),
  };
}

function unavailable(detail: string): RelayError {
  return new RelayError("upstream_unavailable", detail, { retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS });
}

/** Resolves true after `ms`, or false as soon as the signal fires. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal?.aborted === true) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
