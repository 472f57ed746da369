import type { ClientSecretCredentialOptions } from "@azure/identity";
import { request, type Dispatcher } from "undici";
import { timeoutSignal } from "../core/abort.js";
import { systemClock, type Clock } from "../core/ports.js";
import { parseRetryAfter } from "../net/retry-after.js";
import { isTransientAadsts, parseAadsts } from "./aadsts.js";

/*
 * The core-rest-pipeline types, taken from @azure/identity's own option types so this file
 * does not import @azure/core-rest-pipeline (a transitive dependency) by name.
 */
type HttpClient = NonNullable<ClientSecretCredentialOptions["httpClient"]>;
type PipelineRequest = Parameters<HttpClient["sendRequest"]>[0];
type PipelineResponse = Awaited<ReturnType<HttpClient["sendRequest"]>>;
type HttpHeaders = PipelineResponse["headers"];

export type TokenRequestOutcome = "success" | "credential_rejected" | "upstream_unavailable";

/** What the last token request (POST …/oauth2/v2.0/token) of one credential ended with. */
export interface TokenExchange {
  readonly outcome: TokenRequestOutcome;
  readonly status?: number;
  /** Entra's error code from the response body (`error_codes[0]` or AADSTS… in the description). */
  readonly aadsts?: string;
  /** The OAuth `error` of the response body (`invalid_client`, `temporarily_unavailable` …). */
  readonly error?: string;
  /** Entra's Retry-After, in ms from when the answer came, when it sent one. */
  readonly retryAfterMs?: number;
  /** Transport error code (ECONNREFUSED, ETIMEDOUT, …) when no response came back. */
  readonly transportError?: string;
}

/**
 * The HTTP client @azure/identity (through MSAL) uses for discovery and token requests:
 * undici on the shared keep-alive Agent, so `tls.caFile` is trusted and connections are reused.
 * One instance per token provider entry (tenant), because it is also where real token requests
 * are seen and counted (MSAL cache hits never reach it); the app's shared credential reaches it
 * through IdentityHttpRouter.
 */
export class IdentityHttpClient implements HttpClient {
  /** The last token request's result; reset by the token provider before each acquisition. */
  lastExchange: TokenExchange | undefined;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly onTokenRequest: (exchange: TokenExchange) => void,
    private readonly timeoutMs: number,
    private readonly clock: Clock = systemClock,
  ) {}

  async sendRequest(req: PipelineRequest): Promise<PipelineResponse> {
    const isTokenRequest = req.method === "POST" && new URL(req.url).pathname.endsWith("/oauth2/v2.0/token");
    if (req.body !== undefined && req.body !== null && typeof req.body !== "string") {
      throw new Error("IdentityHttpClient: only string request bodies are supported");
    }
    const limit = timeoutSignal(req.timeout > 0 ? Math.min(req.timeout, this.timeoutMs) : this.timeoutMs, req.abortSignal as AbortSignal | undefined, "The operation was aborted due to timeout");

    let status: number;
    let headers: Record<string, string | string[] | undefined>;
    let text: string;
    try {
      const res = await request(req.url, {
        dispatcher: this.dispatcher,
        method: req.method,
        headers: req.headers.toJSON(),
        body: req.body ?? undefined,
        signal: limit.signal,
      });
      status = res.statusCode;
      headers = res.headers;
      text = await res.body.text();
    } catch (err) {
      const code = transportCode(err);
      if (isTokenRequest) this.record({ outcome: "upstream_unavailable", transportError: code });
      // core-rest-pipeline retries errors named RestError whose code is a system error code.
      const wrapped = new Error(`request to ${new URL(req.url).host} failed: ${code}`, { cause: err });
      wrapped.name = "RestError";
      Object.assign(wrapped, { code, request: req });
      throw wrapped;
    } finally {
      limit.dispose();
    }

    if (isTokenRequest) {
      if (status >= 200 && status < 300) this.record({ outcome: "success", status });
      else {
        const { error, aadsts } = entraErrorOf(text);
        const retryAfterMs = parseRetryAfter(headers, this.clock.now());
        this.record({
          outcome: tokenOutcome(status, error, aadsts),
          status,
          ...(aadsts !== undefined ? { aadsts } : {}),
          ...(error !== undefined ? { error } : {}),
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
        });
      }
    }
    return { request: req, status, headers: new PlainHttpHeaders(headers), bodyAsText: text };
  }

  private record(exchange: TokenExchange): void {
    this.lastExchange = exchange;
    this.onTokenRequest(exchange);
  }
}

/**
 * The HTTP client of the credentials shared by every tenant of an app: it hands each request
 * to the IdentityHttpClient of the tenant whose token is being asked for, so that outcomes are
 * still recorded and counted per tenant. `run` lets one tenant's acquisition at a time through
 * a shared credential (acquisitions of other tenants go on at the same time); the tenant is read
 * from the request path, `{authority}/{tenant}/…`. A request for no running tenant (MSAL's
 * instance discovery, `…/common/…`) goes through `fallback`, which records nothing.
 */
export class IdentityHttpRouter implements HttpClient {
  private readonly running = new Map<string, IdentityHttpClient>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly authorityPath: string;

  constructor(
    authorityHost: string,
    private readonly fallback: HttpClient,
  ) {
    this.authorityPath = new URL(authorityHost).pathname.replace(/\/+$/, "");
  }

  /** Runs `work` with the requests of `tenantId` going to `recorder`, after that tenant's earlier runs. */
  run<T>(tenantId: string, recorder: IdentityHttpClient, work: () => Promise<T>): Promise<T> {
    const key = tenantId.toLowerCase();
    const turn = async (): Promise<T> => {
      this.running.set(key, recorder);
      try {
        return await work();
      } finally {
        this.running.delete(key);
      }
    };
    const before = this.queues.get(key);
    const mine = before === undefined ? turn() : before.then(turn, turn);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, settled);
    void settled.then(() => {
      if (this.queues.get(key) === settled) this.queues.delete(key);
    });
    return mine;
  }

  sendRequest(req: PipelineRequest): Promise<PipelineResponse> {
    return (this.running.get(this.tenantOf(req.url)) ?? this.fallback).sendRequest(req);
  }

  private tenantOf(url: string): string {
    const path = new URL(url).pathname;
    const rest = path.startsWith(`${this.authorityPath}/`) ? path.slice(this.authorityPath.length + 1) : path.slice(1);
    const slash = rest.indexOf("/");
    const segment = slash < 0 ? rest : rest.slice(0, slash);
    try {
      return decodeURIComponent(segment).toLowerCase();
    } catch {
      return segment.toLowerCase();
    }
  }
}

/**
 * What a failed token request means. The HTTP status and the OAuth `error` decide first: Entra
 * answers an outage with 503 `temporarily_unavailable` and an AADSTS code (90033), so an AADSTS
 * code alone never makes a rejection. A rejection is a 4xx with a refusal such as
 * `invalid_client` or `unauthorized_client`; a transient AADSTS code on a 4xx counts as an outage.
 */
export function tokenOutcome(status: number, error: string | undefined, aadsts: string | undefined): TokenRequestOutcome {
  if (status >= 200 && status < 300) return "success";
  if (status === 408 || status === 429 || status >= 500) return "upstream_unavailable";
  if (error === "temporarily_unavailable" || isTransientAadsts(aadsts)) return "upstream_unavailable";
  return "credential_rejected";
}

/** Entra error bodies carry `error_codes: [7000215]` and "AADSTS7000215: …" in `error_description`. */
export function aadstsFromBody(text: string): string | undefined {
  return entraErrorOf(text).aadsts;
}

/** The OAuth `error` and the AADSTS code of an Entra error body; either may be missing. */
export function entraErrorOf(text: string): { error?: string; aadsts?: string } {
  try {
    const body = JSON.parse(text) as { error?: unknown; error_codes?: unknown; error_description?: unknown };
    const error = typeof body.error === "string" ? body.error : undefined;
    let aadsts: string | undefined;
    if (Array.isArray(body.error_codes) && body.error_codes.length > 0) aadsts = String(body.error_codes[0]);
    else if (typeof body.error_description === "string") aadsts = parseAadsts(body.error_description);
    return { ...(error !== undefined ? { error } : {}), ...(aadsts !== undefined ? { aadsts } : {}) };
  } catch {
    // Not JSON (an HTML error page from a proxy, say): no Entra code, unless the text names one.
  }
  const aadsts = parseAadsts(text);
  return aadsts !== undefined ? { aadsts } : {};
}

/** A short, secret-free code for a transport failure. */
export function transportCode(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === "TimeoutError") return "ETIMEDOUT";
    if (err.name === "AbortError") return "ABORTED";
    const code = (err as { code?: unknown }).code;
    if (typeof code === "string") {
      // undici's connect timeout maps to the code core-rest-pipeline knows as retryable.
      if (code === "UND_ERR_CONNECT_TIMEOUT" || code === "UND_ERR_HEADERS_TIMEOUT") return "ETIMEDOUT";
      if (code === "UND_ERR_SOCKET") return "ECONNRESET";
      return code;
    }
    const cause = (err as { cause?: unknown }).cause;
    if (cause !== undefined) return transportCode(cause);
  }
  return "ERROR";
}

/** core-rest-pipeline's HttpHeaders over undici's lower-cased response headers. */
class PlainHttpHeaders implements HttpHeaders {
  private readonly map = new Map<string, string>();

  constructor(raw: Record<string, string | string[] | undefined>) {
    for (const [name, value] of Object.entries(raw)) {
      if (value !== undefined) this.map.set(name.toLowerCase(), Array.isArray(value) ? value.join(", ") : value);
    }
  }

  get(name: string): string | undefined {
    return this.map.get(name.toLowerCase());
  }

  has(name: string): boolean {
    return this.map.has(name.toLowerCase());
  }

  set(name: string, value: string | number | boolean): void {
    this.map.set(name.toLowerCase(), String(value));
  }

  delete(name: string): void {
    this.map.delete(name.toLowerCase());
  }

  toJSON(): Record<string, string> {
    return Object.fromEntries(this.map);
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.map.entries();
  }
}
