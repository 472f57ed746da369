import { StringDecoder } from "node:string_decoder";
import { errorCodes, type FastifyInstance } from "fastify";

const hasOwn = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

/**
 * Throws when a parsed JSON value has a `__proto__` key, or a `constructor` key holding an
 * object with a `prototype` key, at any depth: the refusal rules of secure-json-parse
 * (Fastify's default JSON parser), applied to the parsed objects. They are never merged into
 * other objects here, but a record such as `headers` would silently drop such a key instead of
 * refusing it, and a caller must learn that its body is not what it thinks.
 */
export function assertNoPrototypeKeys(value: unknown): void {
  if (value === null || typeof value !== "object") return;
  const pending: object[] = [value];
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    if (hasOwn(node, "__proto__")) throw new SyntaxError("Object contains forbidden prototype property");
    if (hasOwn(node, "constructor")) {
      const ctor = (node as { constructor: unknown }).constructor;
      if (ctor !== null && typeof ctor === "object" && hasOwn(ctor, "prototype")) throw new SyntaxError("Object contains forbidden prototype property");
    }
    for (const key in node) {
      const child = (node as Record<string, unknown>)[key];
      if (child !== null && typeof child === "object") pending.push(child);
    }
  }
}

/** JSON.parse with a leading byte-order mark ignored and prototype-poisoning keys refused. */
export function parseJsonBody(text: string): unknown {
  const value: unknown = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  assertNoPrototypeKeys(value);
  return value;
}

/** Fastify's body-size refusals carry a status; a stream error without one is the caller's (400). */
interface StreamError extends Error {
  statusCode?: number;
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

/**
 * Replaces Fastify's default JSON body parser with one that refuses the same bodies with the
 * same errors, and is lighter on the garbage collector and the CPU:
 *
 * - the body's chunks are read as text without first being copied into a new Buffer (see
 *   bodyText);
 * - prototype-poisoning keys are looked for in the parsed objects (a few dozen nodes) instead
 *   of by two regular expressions over the whole text (≈ 70 µs on a 137 KB body).
 *
 * The size checks are Fastify's (content-length above the route's bodyLimit, more bytes than
 * the limit, fewer or more bytes than content-length), with its errors.
 */
export function registerJsonBodyParser(app: FastifyInstance): void {
  app.addContentTypeParser("application/json", (request, payload, done) => {
    const limit = request.routeOptions.bodyLimit;
    const declared = Number(request.headers["content-length"]);
    if (declared > limit) {
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    const stopListening = (): void => {
      payload.removeListener("data", onData);
      payload.removeListener("end", onEnd);
      payload.removeListener("error", onEnd);
    };
    function onData(chunk: Buffer): void {
      received += chunk.length;
      if (received > limit) {
        stopListening();
        done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), undefined);
        return;
      }
      chunks.push(chunk);
    }
    function onEnd(err?: StreamError): void {
      stopListening();
      if (err !== undefined) {
        if (!(typeof err.statusCode === "number" && err.statusCode >= 400)) err.statusCode = 400;
        done(err, undefined);
        return;
      }
      if (!Number.isNaN(declared) && received !== declared) {
        done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), undefined);
        return;
      }
      const text = bodyText(chunks, received);
      if (text.length === 0) {
        done(new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), undefined);
        return;
      }
      let value: unknown;
      try {
        value = parseJsonBody(text);
      } catch {
        done(new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), undefined);
        return;
      }
      done(null, value);
    }
    payload.on("data", onData);
    payload.on("end", onEnd);
    payload.on("error", onEnd);
    payload.resume();
  });
}
