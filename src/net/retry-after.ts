/*
 * Reading HTTP response headers as Entra ID and Graph send them; shared by src/auth and
 * src/graph, both of which must honour Retry-After.
 */

/** Response headers as undici gives them; names may arrive in any case from other sources. */
export type ResponseHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** A header value, looked up case-insensitively (HTTP header names are case-insensitive). */
export function headerValue(headers: ResponseHeaders, name: string): string | undefined {
  const lower = name.toLowerCase();
  let value = headers[lower];
  if (value === undefined) {
    for (const key of Object.keys(headers)) {
      if (key.toLowerCase() === lower) {
        value = headers[key];
        break;
      }
    }
  }
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Retry-After as milliseconds from `now`: delta-seconds ("7"), seconds with decimals as Graph
 * sends them ("2.128" in https://learn.microsoft.com/en-us/graph/throttling, "0.249" seen in
 * the wild; rounded up to the next millisecond, never down), or an HTTP-date
 * ("Wed, 21 Oct 2026 07:28:00 GMT"), RFC 9110 §10.2.3. Undefined when absent or unreadable.
 */
export function parseRetryAfter(headers: ResponseHeaders, now: number): number | undefined {
  const raw = headerValue(headers, "retry-after")?.trim();
  if (raw === undefined || raw === "") return undefined;
  if (/^\d+(?:\.\d+)?$/.test(raw)) return Math.ceil(Number(raw) * 1000);
  // Only an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT"); Date.parse would also take "-5" as a year.
  if (!/^[A-Za-z]{3}, /.test(raw)) return undefined;
  const at = Date.parse(raw);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
