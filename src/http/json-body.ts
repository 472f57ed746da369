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

/**
 * Replaces Fastify's default JSON body parser with one that refuses the same bodies with the
 * same errors, and is lighter on the garbage collector and the CPU:
 *
 * - the body's chunks are decoded to text as they arrive (a StringDecoder, which gives the same
 *   text as decoding them joined) instead of being copied into one Buffer first. A Buffer's
 *   memory counts against V8's old-generation limit until a GC frees it, and with bodies of
 *   137 KB that extra copy made full mark-compacts start several times a second;
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
    const decoder = new StringDecoder("utf8");
    let text = "";
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
      text += decoder.write(chunk);
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
      text += decoder.end();
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
