import { RelayError } from "../core/problems.js";

/** Redis could not be reached or refused the command. A 503 `upstream_unavailable` for the caller. */
export class StoreUnavailableError extends RelayError {
  constructor(operation: string, cause: unknown) {
    super("upstream_unavailable", `the shared store (Redis) is unavailable (${operation}); nothing was sent, retry`, { retryAfterSeconds: 2 });
    this.name = "StoreUnavailableError";
    this.cause = cause;
  }
}

export function isStoreUnavailable(err: unknown): err is StoreUnavailableError {
  return err instanceof StoreUnavailableError;
}
