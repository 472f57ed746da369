import type { Context, Middleware, MiddlewareOptions } from "@microsoft/microsoft-graph-client";
import type { Dispatcher } from "undici";
import type { SendMailBody, TokenProvider, TokenTarget } from "../core/ports.js";
import type { ResponseHeaders } from "../net/retry-after.js";

/** What one HTTP attempt to Graph ended with. */
export type AttemptResult =
  | {
      readonly kind: "response";
      readonly status: number;
      readonly headers: ResponseHeaders;
      /** The response body (Graph's error JSON); empty for 202. */
      readonly body: string;
      readonly seconds: number;
      /**
       * Whether the whole request had been written before the answer came. A 5xx after that may
       * come from a front end that gave up while Exchange went on and sent the mail.
       */
      readonly written: boolean;
    }
  | {
      readonly kind: "failure";
      /**
       * Whether the whole request had been handed to the socket. If not, Graph cannot have
       * acted on it (it never saw a complete body), so a retry cannot send the mail twice.
       */
      readonly written: boolean;
      /** timeout: the attempt's time ran out; aborted: the caller's signal fired; else a transport error code. */
      readonly reason: string;
      readonly seconds: number;
    };

/**
 * Per-attempt options carried through the Graph client's middleware chain
 * (`GraphRequest.middlewareOptions`), and where the middleware leaves the attempt's result:
 * the SDK turns every failure into its own GraphError, which would lose the distinctions the
 * retry policy needs (was the request written? did the token provider refuse?).
 */
export class SendAttempt implements MiddlewareOptions {
  result?: AttemptResult;
  /** What the token provider threw (credential_rejected, upstream_unavailable). */
  tokenError?: unknown;

  constructor(
    readonly target: TokenTarget,
    /** Longest this attempt may take from dispatch to the last byte of the response. */
    readonly timeoutMs: number,
    /**
     * Bounds the wait for a token; fires at the send's deadline or when the caller gives up.
     * Read only when a token has to be waited for (see lazyTimeoutSignal).
     */
    readonly tokenLimit: { readonly signal: AbortSignal } | undefined,
    /** The caller's own signal: aborts the HTTP exchange. */
    readonly signal: AbortSignal | undefined,
    /**
     * The request body, carried past the SDK: its post() would JSON-stringify anything but one
     * string or Buffer, and not joining the parts into one is the point (see SendMailBody).
     */
    readonly body?: SendMailBody,
  ) {}
}

function attemptOf(context: Context): SendAttempt {
  const attempt = context.middlewareControl?.getMiddlewareOptions(SendAttempt) as SendAttempt | undefined;
  if (attempt === undefined) throw new Error("Graph request sent without SendAttempt middleware options");
  return attempt;
}

/**
 * Puts the target's app-only token on the request. Replaces the SDK's AuthenticationHandler
 * because the token depends on the tenant of each request, not on one client-wide provider;
 * like it, it never sends a token to a host other than Graph's.
 */
export class TokenAuthMiddleware implements Middleware {
  private next?: Middleware;
  /** `origin/`: the only URLs the token may go to. */
  private readonly graphPrefix: string;

  constructor(
    private readonly tokens: TokenProvider,
    graphOrigin: string,
  ) {
    this.graphPrefix = `${graphOrigin}/`;
  }

  setNext(next: Middleware): void {
    this.next = next;
  }

  async execute(context: Context): Promise<void> {
    const attempt = attemptOf(context);
    if (typeof context.request !== "string" || !context.request.startsWith(this.graphPrefix)) {
      throw new Error("refusing to send a Graph token to another host");
    }
    // The usual case, a cached token, waits for nothing and needs no deadline signal.
    let token = this.tokens.cachedToken?.(attempt.target);
    if (token === undefined) {
      try {
        token = await this.tokens.getToken(attempt.target, attempt.tokenLimit?.signal);
      } catch (err) {
        attempt.tokenError = err;
        throw err;
      }
    }
    const options = context.options ?? {};
    options.headers = { ...(options.headers as Record<string, string> | undefined), Authorization: `Bearer ${token}` };
    context.options = options;
    if (this.next === undefined) throw new Error("TokenAuthMiddleware must not be last in the chain");
    await this.next.execute(context);
  }
}

/** Largest error body kept from Graph; its error JSON is a few hundred bytes. */
const MAX_BODY_BYTES = 64 * 1024;

/**
 * The end of the chain: one HTTP exchange on undici's keep-alive Agent, no retries (those are
 * the sender's decision). Replaces the SDK's HTTPMessageHandler, whose global fetch could
 * neither use our Agent (CA, pool) nor tell "not written" from "written, then reset".
 */
export class UndiciTransport implements Middleware {
  private readonly prefix: string | undefined;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly userAgent: string,
    /** The origin requests normally go to (Graph's): its URLs are split without a URL parse. */
    private readonly origin?: string,
  ) {
    this.prefix = origin === undefined ? undefined : `${origin}/`;
  }

  async execute(context: Context): Promise<void> {
    const attempt = attemptOf(context);
    if (typeof context.request !== "string") throw new Error("UndiciTransport expects a URL string");
    const known = this.prefix !== undefined && context.request.startsWith(this.prefix);
    const url = known ? { origin: this.origin!, path: context.request.slice(this.origin!.length) } : pathOf(new URL(context.request));
    const init = context.options ?? {};
    const headers: Record<string, string> = { ...(init.headers as Record<string, string> | undefined), "user-agent": this.userAgent };
    let body: Dispatcher.DispatchOptions["body"] = typeof init.body === "string" || init.body instanceof Uint8Array ? init.body : null;
    if (attempt.body !== undefined) {
      const { parts, bytes } = attempt.body;
      if (parts.length === 1) body = parts[0]!;
      else {
        // Written part by part as strings: no Buffer copy of the attachments, whose memory
        // V8 would count against its heap limit until a GC (see src/http/json-body.ts).
        // undici's Dispatcher docs list Iterable bodies; its types do not (yet).
        body = parts as unknown as Dispatcher.DispatchOptions["body"];
        headers["content-length"] = String(bytes);
      }
    }
    const result = await exchange(
      this.dispatcher,
      { origin: url.origin, path: url.path, method: init.method ?? "GET", headers, body },
      attempt.timeoutMs,
      attempt.signal,
    );
    attempt.result = result;
    if (result.kind === "failure") throw new Error(`Graph request failed: ${result.reason}`);
    // No context.response: the sender asks for ResponseType.RAW, which hands it back untouched,
    // and reads attempt.result instead. A fetch Response per send would only be garbage.
  }
}

function pathOf(url: URL): { origin: string; path: string } {
  return { origin: url.origin, path: `${url.pathname}${url.search}` };
}

/**
 * One request with undici's handler API, which reports when the request has been written
 * (onRequestSent) — the line between "Graph cannot have seen it" and "Graph may have sent it".
 */
function exchange(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    let settled = false;
    let stopReason: string | undefined;
    let abortExchange: ((err: Error) => void) | undefined;

    const settle = (result: AttemptResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(result);
    };
    const stop = (reason: string): void => {
      if (settled) return;
      stopReason = reason;
      if (abortExchange !== undefined) abortExchange(new Error(reason));
      // Not on a socket yet: nothing was written. undici aborts it in onConnect if it gets there.
      else settle({ kind: "failure", written: false, reason, seconds: seconds() });
    };
    const onAbort = (): void => stop("aborted");
    const timer = setTimeout(() => stop("timeout"), Math.max(1, timeoutMs));
    if (signal?.aborted === true) {
      stop("aborted");
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });

    const handler = new ExchangeHandler({
      onConnect: (abort) => {
        if (settled) abort(new Error(stopReason ?? "abandoned"));
        else abortExchange = abort;
      },
      onDone: (status, headers, body, written) => {
        settle({ kind: "response", status, headers, body, seconds: seconds(), written });
      },
      onFailure: (err, written, status, headers, body) => {
        // Headers already in: Graph answered; the body may be cut short but the status stands.
        if (status !== 0 && stopReason === undefined) settle({ kind: "response", status, headers, body, seconds: seconds(), written });
        else settle({ kind: "failure", written, reason: stopReason ?? errorCode(err), seconds: seconds() });
      },
    });
    try {
      dispatcher.dispatch(options, handler);
    } catch (err) {
      settle({ kind: "failure", written: false, reason: errorCode(err), seconds: seconds() });
    }
  });
}

interface ExchangeCallbacks {
  onConnect(abort: (err: Error) => void): void;
  onDone(status: number, headers: ResponseHeaders, body: string, written: boolean): void;
  onFailure(err: Error, written: boolean, status: number, headers: ResponseHeaders, body: string): void;
}

/** undici's (legacy) dispatch handler: the one that reports onRequestSent. */
class ExchangeHandler implements Dispatcher.DispatchHandler {
  private written = false;
  private status = 0;
  private headers: Record<string, string> = {};
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly callbacks: ExchangeCallbacks) {}

  onConnect(abort: (err?: Error) => void): void {
    this.callbacks.onConnect((err) => abort(err));
  }

  /**
   * Not in undici's types but called by its HTTP/1.1 client once headers and the whole body are
   * on the socket (onBodySent comes after each part of a body in parts, so it cannot tell).
   */
  onRequestSent(): void {
    this.written = true;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    this.status = statusCode;
    const headers: Record<string, string> = {};
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toString("latin1").toLowerCase();
      const value = rawHeaders[i + 1]!.toString("latin1");
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    this.headers = headers;
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.size < MAX_BODY_BYTES) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    return true;
  }

  onComplete(): void {
    this.callbacks.onDone(this.status, this.headers, this.bodyText(), this.written);
  }

  onError(err: Error): void {
    this.callbacks.onFailure(err, this.written, this.status, this.headers, this.bodyText());
  }

  private bodyText(): string {
    if (this.chunks.length === 0) return "";
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === "string") return code;
  return err instanceof Error ? err.name : "error";
}

