/**
 * The reason an AbortSignal was aborted with, as an Error (a promise should reject with one):
 * the reason itself when it is one (AbortSignal.timeout's TimeoutError, a caller's own Error),
 * else an AbortError naming it.
 */
export function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  const err = new Error(reason === undefined ? "aborted" : `aborted: ${typeof reason === "string" ? reason : JSON.stringify(reason)}`);
  err.name = "AbortError";
  return err;
}
