import { StringDecoder } from "node:string_decoder";
import type { IncomingMessage } from "node:http";
import { RelayError } from "../core/problems.js";

import { formatFieldPath, shorten } from "./field-path.js";

/**
 * What the reader accepts in a JSON body's shape, checked while it scans the text and before
 * JSON.parse builds a single object: an absurd body (600,000 members, 100,000 levels) is
 * refused in microseconds and never reaches validation, the fingerprint or anything recursive.
 */
export interface JsonShapeLimits {
  /** Deepest nesting of objects and arrays; the body itself is level 1. */
  readonly maxDepth: number;
  /** Most members in one object. */
  readonly maxMembers: number;
  /** Most items in one array. */
  readonly maxItems: number;
}

/** Limits for a route that names none. */
export const DEFAULT_JSON_SHAPE: JsonShapeLimits = Object.freeze({ maxDepth: 64, maxMembers: 1000, maxItems: 10_000 });

/**
 * A body refused for its shape (`limit`: too deep, too many members or items) or for one of its
 * keys (`key`: repeated in one object, or a prototype-poisoning key), with the field it is about.
 * A SyntaxError, as JSON.parse's own refusals are.
 */
export class JsonBodyError extends SyntaxError {
  constructor(
    readonly kind: "limit" | "key",
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = "JsonBodyError";
  }
}

/** One open object (with the keys seen so far) or array while scanning. */
interface Frame {
  /** The keys of an object; undefined for an array. */
  readonly keys: Set<string> | undefined;
  /** Members of an object so far; commas so far for an array (the index of its current item). */
  count: number;
  /** An object's current key. */
  key: string;
  /** This object is the value of a "constructor" member (so "prototype" in it is refused). */
  readonly inConstructor: boolean;
}

/** The index of the quote that closes the string opening at `open`, or -1. */
function stringEnd(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at !== -1) {
    // A quote is escaped when an odd number of backslashes precede it.
    let slashes = 0;
    while (text.charCodeAt(at - 1 - slashes) === 0x5c) slashes++;
    if (slashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}

function pathTo(stack: readonly Frame[], frames: number): string {
  const segments: (string | number)[] = [];
  for (let i = 0; i < frames; i++) {
    const f = stack[i]!;
    segments.push(f.keys === undefined ? f.count : f.key);
  }
  return formatFieldPath(segments);
}

/**
 * One pass over JSON text without building values: throws a JsonBodyError (`limit`) as soon as
 * the text nests deeper, or holds an object or array larger, than `limits`; returns the first
 * repeated or prototype-poisoning key (`key`), which the caller reports only when the text
 * turns out to be valid JSON. Strings are skipped with indexOf, so a body of base64 attachments
 * costs a few structural characters, not a loop over every byte. Malformed text ends the scan
 * quietly: JSON.parse says what is wrong with it.
 */
export function scanJsonText(text: string, limits: JsonShapeLimits = DEFAULT_JSON_SHAPE): JsonBodyError | undefined {
  const stack: Frame[] = [];
  let top: Frame | undefined;
  let expectKey = false;
  let found: JsonBodyError | undefined;
  // A loop over char codes, not a regex: no match object per token (5–10 times faster on bodies of many short keys).
  for (let at = 0, n = text.length; at < n; at++) {
    const c = text.charCodeAt(at);
    if (c === 0x22 /* " */) {
      const end = stringEnd(text, at);
      if (end === -1) return found;
      const open = at;
      at = end;
      if (!expectKey || top?.keys === undefined) continue;
      expectKey = false;
      let key = text.slice(open + 1, end);
      if (key.includes("\\")) {
        try {
          key = JSON.parse(text.slice(open, end + 1)) as string;
        } catch {
          return found;
        }
      }
      if (++top.count > limits.maxMembers) {
        throw new JsonBodyError("limit", pathTo(stack, stack.length - 1), `has more than ${limits.maxMembers} members (the most this service reads in one object)`);
      }
      top.key = key;
      if (found === undefined) {
        if (top.keys.has(key)) found = new JsonBodyError("key", pathTo(stack, stack.length), "duplicate key: each key may appear once in an object");
        else if (key === "__proto__" || (key === "prototype" && top.inConstructor)) {
          found = new JsonBodyError("key", pathTo(stack, stack.length), `"${key}" is not accepted as a key here (prototype pollution)`);
        }
      }
      top.keys.add(key);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= limits.maxDepth) {
        throw new JsonBodyError("limit", pathTo(stack, stack.length), `nests deeper than ${limits.maxDepth} levels (the most this service reads)`);
      }
      const inConstructor = top?.keys !== undefined && top.key === "constructor";
      top = { keys: c === 0x7b ? new Set() : undefined, count: 0, key: "", inConstructor };
      stack.push(top);
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      top = stack[stack.length - 1];
      expectKey = false;
    } else if (c === 0x2c /* , */ && top !== undefined) {
      // The next string of an object is a key; an array has one more item.
      if (top.keys !== undefined) expectKey = true;
      else if (++top.count >= limits.maxItems) {
        throw new JsonBodyError("limit", pathTo(stack, stack.length - 1), `has more than ${limits.maxItems} items (the most this service reads in one list)`);
      }
    }
  }
  return found;
}

/**
 * JSON.parse with a leading byte-order mark ignored, after a scan of the text (scanJsonText):
 * a body beyond `limits` is refused before it is parsed; a key repeated within one object
 * (JSON.parse would silently keep the last) and prototype-poisoning keys (`__proto__`, or
 * `prototype` inside a `constructor` member: the rules of secure-json-parse) are refused when
 * the text is otherwise valid JSON. Every refusal is a SyntaxError; a JsonBodyError names the field.
 */
export function parseJsonBody(text: string, limits: JsonShapeLimits = DEFAULT_JSON_SHAPE): unknown {
  const json = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const keyProblem = scanJsonText(json, limits);
  const value: unknown = JSON.parse(json);
  if (keyProblem !== undefined) throw keyProblem;
  return value;
}

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

/** validation_failed naming the field a JsonBodyError is about. */
function refusedBody(err: JsonBodyError): RelayError {
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
 *   key repeated in one object or a prototype-poisoning key (see parseJsonBody).
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
        resolve(parseJsonBody(text, shape));
      } catch (err) {
        if (err instanceof JsonBodyError) {
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
