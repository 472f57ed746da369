import type { components, operations } from "../generated/api.js";
import type { OpenApiValidator } from "./openapi-validator.js";

/*
 * A small typed client for component tests, on plain fetch, with types generated from
 * openapi.yaml (test/generated/api.d.ts). Each call resolves to one of the operation's documented
 * answers, discriminated by status:
 *
 *   const relay = createApiClient({ baseUrl, apiKey, validator: loadOpenApiValidator() });
 *   const res = await relay.send({ tenant: "contoso", to: ["a@example.com"], subject: "Hi", text: "…" });
 *   if (res.status === 202) res.body.internetMessageId;   // typed
 *   else if (res.status === 403) res.body.code;           // "tenant_forbidden" | …
 *
 * With a validator, every response is checked against openapi.yaml and a mismatch throws.
 */

export type SendRequest = components["schemas"]["SendRequest"];
export type SendAccepted = components["schemas"]["SendAccepted"];
export type Problem = components["schemas"]["Problem"];
export type ProblemCode = components["schemas"]["ProblemCode"];
export type TenantsResponse = components["schemas"]["TenantsResponse"];

type ResponsesOf<Op> = Op extends { responses: infer R } ? R : never;
type BodyOf<R> = R extends { content: infer C } ? C[keyof C] : undefined;

/** One documented answer of an operation: `status` narrows `body`. */
export type ApiResult<Op> = {
  [S in keyof ResponsesOf<Op>]: {
    readonly status: S;
    readonly headers: Headers;
    readonly body: BodyOf<ResponsesOf<Op>[S]>;
  };
}[keyof ResponsesOf<Op>];

export interface ApiClientOptions {
  /** The relay's base URL, e.g. what `app.listen({ port: 0 })` returned. */
  readonly baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` unless a call says otherwise. */
  readonly apiKey?: string;
  /** When given, every response must match openapi.yaml or the call throws. */
  readonly validator?: OpenApiValidator;
}

export interface CallOptions {
  /** Overrides the client's key for one call; null sends no Authorization header. */
  readonly apiKey?: string | null;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

export interface SendOptions extends CallOptions {
  readonly idempotencyKey?: string;
}

export interface ConsentCallbackQuery {
  readonly admin_consent?: string;
  readonly tenant?: string;
  readonly state?: string;
  readonly error?: string;
  readonly error_description?: string;
}

export interface ApiClient {
  /** POST /send with a body of the documented shape. */
  send(body: SendRequest, options?: SendOptions): Promise<ApiResult<operations["sendMail"]>>;
  /** POST /send with any body, or raw text, to test how the relay refuses bad input. */
  sendUnchecked(body: unknown, options?: SendOptions & { readonly contentType?: string }): Promise<ApiResult<operations["sendMail"]>>;
  listTenants(options?: CallOptions): Promise<ApiResult<operations["listTenants"]>>;
  consentCallback(query: ConsentCallbackQuery, options?: CallOptions): Promise<ApiResult<operations["consentCallback"]>>;
  healthz(options?: CallOptions): Promise<ApiResult<operations["getHealth"]>>;
  readyz(options?: CallOptions): Promise<ApiResult<operations["getReadiness"]>>;
  metrics(options?: CallOptions): Promise<ApiResult<operations["getMetrics"]>>;
  openApi(options?: CallOptions): Promise<ApiResult<operations["getOpenApiDescription"]>>;
  docs(options?: CallOptions): Promise<ApiResult<operations["getDocs"]>>;
}

export function createApiClient(options: ApiClientOptions): ApiClient {
  const base = options.baseUrl.replace(/\/+$/, "");

  async function call<Op>(
    method: "GET" | "POST",
    path: string,
    call: CallOptions & { body?: string; contentType?: string; idempotencyKey?: string },
  ): Promise<ApiResult<Op>> {
    const headers: Record<string, string> = { ...call.headers };
    const key = call.apiKey === undefined ? options.apiKey : call.apiKey;
    if (key !== undefined && key !== null) headers.authorization = `Bearer ${key}`;
    if (call.idempotencyKey !== undefined) headers["idempotency-key"] = call.idempotencyKey;
    if (call.body !== undefined) headers["content-type"] = call.contentType ?? "application/json";
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(call.body !== undefined ? { body: call.body } : {}),
      ...(call.signal !== undefined ? { signal: call.signal } : {}),
    });
    const text = await response.text();
    if (options.validator !== undefined) {
      options.validator.assertResponse({ method, path, status: response.status, headers: response.headers, body: text });
    }
    return { status: response.status, headers: response.headers, body: parseBody(response.headers.get("content-type"), text) } as ApiResult<Op>;
  }

  return {
    send: (body, opts = {}) => call<operations["sendMail"]>("POST", "/send", { ...opts, body: JSON.stringify(body) }),
    sendUnchecked: (body, opts = {}) => call<operations["sendMail"]>("POST", "/send", { ...opts, body: typeof body === "string" ? body : JSON.stringify(body) }),
    listTenants: (opts = {}) => call<operations["listTenants"]>("GET", "/tenants", opts),
    consentCallback: (query, opts = {}) => {
      const params = new URLSearchParams(Object.entries(query).filter((e): e is [string, string] => e[1] !== undefined));
      return call<operations["consentCallback"]>("GET", `/consent/callback?${params.toString()}`, opts);
    },
    healthz: (opts = {}) => call<operations["getHealth"]>("GET", "/healthz", opts),
    readyz: (opts = {}) => call<operations["getReadiness"]>("GET", "/readyz", opts),
    metrics: (opts = {}) => call<operations["getMetrics"]>("GET", "/metrics", opts),
    openApi: (opts = {}) => call<operations["getOpenApiDescription"]>("GET", "/openapi.yaml", opts),
    docs: (opts = {}) => call<operations["getDocs"]>("GET", "/docs", opts),
  };
}

/** JSON media types (`application/json`, `application/problem+json`) parsed; anything else as text. */
function parseBody(contentType: string | null, text: string): unknown {
  if (text === "") return undefined;
  const essence = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (essence === "application/json" || essence.endsWith("+json")) return JSON.parse(text) as unknown;
  return text;
}
