import type { IncomingMessage, ServerResponse } from "node:http";

/** Raised by `readBody` when the body exceeds the limit; the rest of the body is drained, not buffered. */
export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
}

/**
 * Buffers a request body up to `limit` bytes. Past the limit it keeps consuming (so the
 * connection stays usable for keep-alive) but stops buffering, then rejects.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new BodyTooLargeError(`body of ${declared} bytes exceeds ${limit}`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on("end", () => {
      if (tooLarge) reject(new BodyTooLargeError(`body of ${size} bytes exceeds ${limit}`));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    req.on("error", reject);
  });
}

/** Writes a complete response. A body that is not a string or Buffer is sent as JSON. */
export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = "application/json",
): void {
  if (res.headersSent || res.destroyed) return;
  let payload: string | Buffer | undefined;
  if (body === undefined || body === null) payload = undefined;
  else if (typeof body === "string" || Buffer.isBuffer(body)) payload = body;
  else payload = JSON.stringify(body);
  const h: Record<string, string | number> = { ...headers };
  if (payload !== undefined) {
    if (!Object.keys(h).some((k) => k.toLowerCase() === "content-type")) h["Content-Type"] = contentType;
    h["Content-Length"] = Buffer.byteLength(payload);
  } else {
    h["Content-Length"] = 0;
  }
  res.writeHead(status, h);
  res.end(payload);
}

/** Resolves after `ms` milliseconds (immediately for 0, without a timer). */
export function sleep(ms: number): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, ms));
}
