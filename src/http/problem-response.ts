import { isRelayError, PROBLEM_TYPE_BASE, PROBLEMS, RelayError, toRelayError, type FieldError } from "../core/problems.js";
import { MAX_FIELD_PATH, shorten } from "../core/field-path.js";

/** The RFC 9457 body of every refusal the service gives. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  retryable: boolean;
  requestId: string;
  errors?: readonly FieldError[];
  /** How many field errors were left out of `errors` (see MAX_FIELD_ERRORS). */
  errorsOmitted?: number;
  aadsts?: string;
  retryAfterSeconds?: number;
  graphCode?: string;
  graphRequestId?: string;
}

export interface ProblemResponse {
  readonly status: number;
  /** Seconds for the `Retry-After` header, when the code asks the caller to come back. */
  readonly retryAfterSeconds?: number;
  readonly body: ProblemBody;
}

export const PROBLEM_CONTENT_TYPE = "application/problem+json; charset=utf-8";

/**
 * The most field errors one answer lists; `errorsOmitted` counts the rest. A body with
 * 600,000 unknown fields once got a 26.9 MB answer: one error per field.
 */
export const MAX_FIELD_ERRORS = 20;
/** The longest field error `message` (characters); paths are bounded where they are made (MAX_FIELD_PATH). */
const MAX_FIELD_MESSAGE = 300;

/** The first MAX_FIELD_ERRORS errors, each path and message cut to its bound. */
function boundedErrors(errors: readonly FieldError[]): FieldError[] {
  return errors.slice(0, MAX_FIELD_ERRORS).map((e) => {
    const path = shorten(e.path, MAX_FIELD_PATH);
    const message = shorten(e.message, MAX_FIELD_MESSAGE);
    return path === e.path && message === e.message ? e : { path, message };
  });
}

/*
 * 429 and 503 always carry Retry-After (openapi.yaml), even when the cause (a local limit,
 * an unreachable Entra) gave no hint: callers and proxies need a number to back off by.
 */
const DEFAULT_RETRY_AFTER: Partial<Record<string, number>> = { rate_limited: 1, upstream_unavailable: 5 };

/** The one mapping from a RelayError to the problem+json answer. */
export function toProblemResponse(err: RelayError, requestId: string): ProblemResponse {
  const spec = PROBLEMS[err.code];
  const body: ProblemBody = {
    type: PROBLEM_TYPE_BASE + err.code,
    title: spec.title,
    status: spec.status,
    detail: err.message,
    code: err.code,
    retryable: spec.retryable,
    requestId,
  };
  const { errors, aadsts, graphCode, graphRequestId } = err.extras;
  if (errors !== undefined) {
    body.errors = boundedErrors(errors);
    const omitted = Math.max(0, errors.length - MAX_FIELD_ERRORS) + (err.extras.errorsOmitted ?? 0);
    if (omitted > 0) body.errorsOmitted = omitted;
  }
  if (aadsts !== undefined) body.aadsts = aadsts;
  if (graphCode !== undefined) body.graphCode = graphCode;
  if (graphRequestId !== undefined) body.graphRequestId = graphRequestId;
  let retryAfterSeconds: number | undefined;
  const hinted = err.extras.retryAfterSeconds ?? DEFAULT_RETRY_AFTER[err.code];
  if (hinted !== undefined && (spec.status === 429 || spec.status === 503)) {
    // Retry-After takes whole seconds; rounding down could tell the caller to come back too early.
    retryAfterSeconds = Math.max(1, Math.ceil(hinted));
    body.retryAfterSeconds = retryAfterSeconds;
  }
  return retryAfterSeconds === undefined ? { status: spec.status, body } : { status: spec.status, retryAfterSeconds, body };
}

/**
 * Any error reaching the edge as a RelayError: ours pass through; an error express or Node
 * raised with a 4xx status (a URL that does not decode, say) is the caller's: validation_failed
 * with its own short text; anything else is a bug and becomes `internal_error`.
 */
export function asRelayError(err: unknown): RelayError {
  if (isRelayError(err)) return err;
  const e = (err ?? {}) as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown };
  const status = typeof e.status === "number" ? e.status : typeof e.statusCode === "number" ? e.statusCode : 500;
  if (status === 413) return new RelayError("payload_too_large", "the request body is larger than this service accepts (server.maxBodyBytes)");
  if (status >= 400 && status < 500) {
    const message = e.expose === true && typeof e.message === "string" ? e.message.slice(0, 200) : "bad request";
    return new RelayError("validation_failed", message, { errors: [{ path: "(request)", message }] });
  }
  return toRelayError(err);
}
