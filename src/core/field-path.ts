/**
 * The longest `path` a field error quotes (characters). Paths carry the caller's own keys, and
 * a 100,000-character key must not make a 100,000-character answer; a longer path is cut and
 * ends with "…".
 */
export const MAX_FIELD_PATH = 200;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `to[1].address`, `headers["X-Order-Id"]`, `(body)` for the body itself; at most `maxLength`
 * characters (building stops once it is reached, so a deep path of long keys costs little).
 */
export function formatFieldPath(path: readonly PropertyKey[], maxLength = MAX_FIELD_PATH): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string" && IDENTIFIER.test(seg)) out += out === "" ? seg : `.${seg}`;
    // A key longer than the limit is cut before it is quoted: the path is shortened anyway.
    else out += `[${JSON.stringify(String(seg).slice(0, maxLength))}]`;
    if (out.length > maxLength) return shorten(out, maxLength);
  }
  return out === "" ? "(body)" : out;
}

/** `text` cut to `max` characters with "…" as the last one, or as it is when it fits. */
export function shorten(text: string, max: number): string {
  if (text.length <= max) return text;
  // Never cut a surrogate pair in half: the answer would carry a lone surrogate.
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}
