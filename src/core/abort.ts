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

/**
 * A signal that fires after `timeoutMs` with a TimeoutError carrying `message`, or when `outer`
 * does (with its reason), whichever is first; `dispose()` once the work is over. A plain timer,
 * cleared by dispose, rather than AbortSignal.timeout + AbortSignal.any: those cost ~10 µs per
 * use and keep the signal, and whatever listens to it, reachable until the timeout passes, so
 * each request's garbage was promoted to the old generation.
 */
export function timeoutSignal(timeoutMs: number, outer: AbortSignal | undefined, message: string): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException(message, "TimeoutError")), Math.max(1, timeoutMs));
  const onAbort = (): void => controller.abort(outer?.reason);
  if (outer?.aborted === true) onAbort();
  else outer?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}

/**
 * timeoutSignal made only if somebody asks for the signal: most sends never wait for anything
 * the signal could cut short (the token is cached), and an AbortController with its timer and
 * listener costs a few µs and some garbage per send. `dispose()` is a no-op when none was made.
 */
export function lazyTimeoutSignal(timeoutMs: () => number, outer: AbortSignal | undefined, message: string): { readonly signal: AbortSignal; dispose(): void } {
  return new LazyTimeoutSignal(timeoutMs, outer, message);
}

/** A class, not an object literal with a getter: defining an accessor per call is a slow runtime path. */
class LazyTimeoutSignal {
  #made: { signal: AbortSignal; dispose(): void } | undefined;

  constructor(
    private readonly timeoutMs: () => number,
    private readonly outer: AbortSignal | undefined,
    private readonly message: string,
  ) {}

  get signal(): AbortSignal {
    this.#made ??= timeoutSignal(this.timeoutMs(), this.outer, this.message);
    return this.#made.signal;
  }

  dispose(): void {
    this.#made?.dispose();
  }
}
