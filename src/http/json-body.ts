import { StringDecoder } from "node:string_decoder";
import type { IncomingMessage } from "node:http";
import { RelayError } from "../core/problems.js";

import { shorten } from "../core/field-path.js";
import { DEFAULT_JSON_SHAPE, JsonTextError, parseJsonText, type JsonShapeLimits } from "../core/json-text.js";

/** Bodies up to this size are joined in one reused buffer; larger ones (rare) through a StringDecoder. */
const JOIN_LIMIT = 1024 * 1024;
let joinBuffer: Buffer | undefined;

/**
 * The body's text: exactly `Buffer.concat(chunks).toString("utf8")`, without a new Buffer. A
 * Buffer's memory counts against V8's old-generation limit until a GC frees it, and with 137 KB
 * bodies that one copy made full mark-compacts start several times a second; decoding chunk by
 * chunk instead makes a string per chunk plus a flat copy of their concatenation for
 * JSON.parse, more young garbage and so more scavenges. The reused buffer is filled and read
 * synchronously, so concurrent requests cannot mix.
 */
function bodyText(chunks: readonly Buffer[], length: number): string {
  if (chunks.length === 0) return "";
  if (chunks.length === 1) return chunks[0]!.toString("utf8");
  if (length > JOIN_LIMIT) {
    const decoder = new StringDecoder("utf8");
    let text = "";
    for (const chunk of chunks) text += decoder.write(chunk);
    return text + decoder.end();
  }
  if (joinBuffer === undefined || joinBuffer.length < length) joinBuffer = Buffer.allocUnsafeSlow(Math.min(JOIN_LIMIT, Math.max(length, 2 * (joinBuffer?.length ?? 64 * 1024))));
  let offset = 0;
  for (const chunk of chunks) offset += chunk.copy(joinBuffer, offset);
  return joinBuffer.toString("utf8", 0, length);
}

const JSON_TYPE = /^application\/json\s*(?:;|$)/i;

/** validation_failed about the body as a whole. */
function badBody(message: string): RelayError {
  return new RelayError("validation_failed", message, { errors: [{ path: "(body)", message }] });
}

/** validation_failed naming the field a JsonTextError is about. */
function refusedBody(err: JsonTextError): RelayError {
  const detail = err.kind === "limit" ? `the body is beyond this service's limits: ${err.path} ${err.reason}` : `the body cannot be read unambiguously: ${err.path}: ${err.reason}`;
  return new RelayError("validation_failed", shorten(detail, 400), { errors: [{ path: err.path, message: err.reason }] });
}

function tooLarge(): RelayError {
  return new RelayError("payload_too_large", "the request body is larger than this service accepts (server.maxBodyBytes)");
}

/**
 * The JSON body of a request, read only when a route asks for it (after its API key was
 * checked), and refused with a RelayError when it is too large, not JSON, empty or malformed:
 *
 * - a request without a body (no Transfer-Encoding, no or zero Content-Length, no JSON type)
 *   gives undefined, and validation says what is missing;
 * - a body that is not `application/json` is refused unread;
 * - Content-Length above `limit` is refused before a byte is read; a body that grows past it
 *   is refused as soon as it does;
 * - the chunks are read as text without first being copied into a new Buffer (see bodyText),
 *   scanned against `shape` (depth, members, items) before they are parsed, and refused for a
 *   key repeated in one object or a prototype-poisoning key (see parseJsonText).
 */
export function readJsonBody(
  request: IncomingMessage,
  limit: number,
  timeoutMs = Number.POSITIVE_INFINITY,
  shape: JsonShapeLimits = DEFAULT_JSON_SHAPE,
): Promise<unknown> {
  const type = request.headers["content-type"];
  const lengthHeader = request.headers["content-length"];
  const declared = lengthHeader === undefined ? Number.NaN : Number(lengthHeader);
  const chunked = request.headers["transfer-encoding"] !== undefined;
  const isJson = type !== undefined && JSON_TYPE.test(type);
  if (!chunked && (lengthHeader === undefined || declared === 0)) {
    return isJson && declared === 0 ? Promise.reject(badBody("the body is empty")) : Promise.resolve(undefined);
  }
  if (!isJson) {
    return Promise.reject(
      new RelayError("validation_failed", "the body must be JSON (Content-Type: application/json)", {
        errors: [{ path: "(body)", message: "Content-Type must be application/json" }],
      }),
    );
  }
  if (declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    // A body that dribbles in is cut off (408) when the request's time is up.
    const timer = Number.isFinite(timeoutMs)
      ? setTimeout(() => {
          stopListening();
          reject(new RelayError("request_timeout", "the request body did not arrive in time (server.http.requestTimeoutSeconds); send it again, faster"));
        }, Math.max(1, timeoutMs))
      : undefined;
    const stopListening = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      request.removeListener("data", onData);
      request.removeListener("end", onEnd);
      request.removeListener("error", onError);
      request.removeListener("aborted", onAborted);
    };
    function onData(chunk: Buffer): void {
      received += chunk.length;
      if (received > limit) {
        stopListening();
        // The rest is not wanted; the answer closes the connection (see the app's sendProblem).
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    }
    function onError(): void {
      stopListening();
      reject(badBody("the request body could not be read"));
    }
    function onAborted(): void {
      stopListening();
      reject(badBody("the client stopped sending the body"));
    }
    function onEnd(): void {
      stopListening();
      if (!Number.isNaN(declared) && received !== declared) {
        reject(badBody("the body's length does not match Content-Length"));
        return;
      }
      const text = bodyText(chunks, received);
      if (text.length === 0) {
        reject(badBody("the body is empty"));
        return;
      }
      try {
        resolve(parseJsonText(text, shape));
      } catch (err) {
        if (err instanceof JsonTextError) {
          reject(refusedBody(err));
          return;
        }
        // The parser's own message quotes the body; only its position is passed on.
        const at = /position (\d+)/.exec((err as Error).message ?? "");
        reject(badBody(at ? `the body is not valid JSON (at position ${at[1]})` : "the body is not valid JSON"));
      }
    }
    request.on("data", onData);
    request.on("end", onEnd);
    request.on("error", onError);
    request.on("aborted", onAborted);
    request.resume();
  });
}
