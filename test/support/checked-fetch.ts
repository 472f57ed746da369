import { loadOpenApiValidator, type OpenApiValidator } from "./openapi-validator.js";

/*
 * fetch for talking to the relay in tests: every answer is checked against openapi.yaml (status,
 * headers, body) before the test sees it, and a mismatch fails the test that received it. The
 * shared harness's `http()` goes through here, so no service test can receive an answer the
 * description does not promise without failing.
 *
 *   const res = await checkedFetch(`${url}/send`, { method: "POST", headers, body });
 *   await checkedFetch(url, { offSpec: "why this answer may differ from openapi.yaml" });
 */

/** RequestInit plus the one way out of the check. */
export interface CheckedRequestInit extends RequestInit {
  /**
   * Why this answer is allowed to differ from openapi.yaml (a test of deliberately off-spec
   * behaviour); it is then not checked. Must say why: an empty reason throws.
   */
  readonly offSpec?: string;
}

let shared: OpenApiValidator | undefined;

/** The validator for the repository's openapi.yaml, compiled once per test worker. */
export function specValidator(): OpenApiValidator {
  return (shared ??= loadOpenApiValidator());
}

/** Like fetch; throws when the answer does not conform to openapi.yaml. The returned Response is unread. */
export async function checkedFetch(url: string | URL, init: CheckedRequestInit = {}): Promise<Response> {
  const { offSpec, ...requestInit } = init;
  if (offSpec !== undefined && offSpec.trim() === "") throw new Error("checkedFetch: offSpec needs a reason");
  const response = await fetch(url, requestInit);
  if (offSpec !== undefined) return response;
  const method = (requestInit.method ?? "GET").toUpperCase();
  const text = await response.clone().text();
  const errors = specValidator().validateAnyResponse({ method, path: String(url), status: response.status, headers: response.headers, body: text });
  errors.push(...requestIdMismatch(response.headers, text));
  if (errors.length > 0) {
    const excerpt = text.length > 600 ? `${text.slice(0, 600)}…` : text;
    throw new Error(`the relay's answer does not match openapi.yaml:\n  ${errors.join("\n  ")}\nbody: ${excerpt}`);
  }
  return response;
}

/** openapi.yaml: a problem's `requestId` is the same ID as the `X-Request-Id` header. */
export function requestIdMismatch(headers: Headers, text: string): string[] {
  if (!/^application\/problem\+json/i.test(headers.get("content-type") ?? "")) return [];
  let requestId: unknown;
  try {
    requestId = (JSON.parse(text) as { requestId?: unknown }).requestId;
  } catch {
    return []; // reported by the schema check
  }
  const header = headers.get("x-request-id");
  return header !== null && requestId !== header ? [`body/requestId ${JSON.stringify(requestId)} is not the X-Request-Id header ${header}`] : [];
}
