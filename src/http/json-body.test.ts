import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RelayError } from "../core/problems.js";
import { readJsonBody } from "./json-body.js";

describe("readJsonBody", () => {
  /** A server that answers with what readJsonBody gave, or with the RelayError it refused with. */
  let server: Server;
  let port = 0;
  let limit = 64;
  beforeAll(async () => {
    server = createServer((req, res) => {
      readJsonBody(req, limit).then(
        (body) => res.end(JSON.stringify({ body: body === undefined ? "(none)" : body })),
        (err: unknown) => {
          // As the app does: a body left unread is not drained, the connection closes instead.
          if (!req.complete) res.setHeader("connection", "close");
          res.end(JSON.stringify({ code: (err as RelayError).code, detail: (err as RelayError).message }));
        },
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** POSTs `parts` one write at a time (chunked unless a Content-Length is given). */
  function post(parts: (string | Buffer)[], headers: Record<string, string> = { "content-type": "application/json" }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = request({ port, host: "127.0.0.1", method: "POST", path: "/", headers }, (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (d: string) => (text += d));
        res.on("end", () => {
          try {
            resolve(JSON.parse(text));
          } catch (err) {
            reject(err instanceof Error ? err : new Error("not JSON"));
          }
        });
      });
      req.on("error", reject);
      for (const part of parts) req.write(part);
      req.end();
    });
  }

  const euro = Buffer.from("€"); // three bytes
  const json = { "content-type": "application/json" };

  it.each<[string, (string | Buffer)[], Record<string, string>, unknown]>([
    ["a small object", ['{"a":"b"}'], json, { body: { a: "b" } }],
    ["a multi-byte character split across chunks", [Buffer.from('{"a":"'), euro.subarray(0, 1), euro.subarray(1), Buffer.from('"}')], json, { body: { a: "€" } }],
    ["invalid UTF-8 split across chunks", [Buffer.from('{"a":"'), Buffer.from([0xe2]), Buffer.from([0x41, 0x22, 0x7d])], json, { body: { a: "\ufffdA" } }],
    ["a byte-order mark", ['\ufeff{"a":1}'], json, { body: { a: 1 } }],
    ["a JSON type with a charset", ['{"a":1}'], { "content-type": "application/json; charset=utf-8" }, { body: { a: 1 } }],
    ["no body and no type", [], {}, { body: "(none)" }],
  ])("when the body is %s, then it reads as JSON.parse reads the whole", async (_, parts, headers, expected) => {
    expect(await post(parts, headers)).toEqual(expected);
  });

  it.each<[string, (string | Buffer)[], Record<string, string>, string, RegExp]>([
    ["an empty body of type JSON", [], { ...json, "content-length": "0" }, "validation_failed", /empty/],
    ["only a byte-order mark", ["\ufeff"], json, "validation_failed", /not valid JSON/],
    ["invalid JSON", ['{"a":'], json, "validation_failed", /not valid JSON \(at position 5\)|not valid JSON/],
    ["a __proto__ key", ['{"__proto__":{"x":1}}'], json, "validation_failed", /"__proto__" is not accepted as a key/],
    ["a repeated key", ['{"a":1,"a":2}'], json, "validation_failed", /a: duplicate key/],
    ["nested deeper than the limit", [`${"[".repeat(33)}${"]".repeat(31)}`], json, "validation_failed", /not valid JSON/],
    ["text/plain", ["hello"], { "content-type": "text/plain" }, "validation_failed", /must be JSON/],
    ["a declared length over the limit", ["{}"], { ...json, "content-length": "65" }, "payload_too_large", /server.maxBodyBytes/],
    ["more bytes than the limit, chunked", [`{"a":"${"x".repeat(40)}`, `${"x".repeat(40)}"}`], json, "payload_too_large", /server.maxBodyBytes/],
  ])("when the body is %s, then it is refused as %s", async (_, parts, headers, code, detail) => {
    const answer = (await post(parts, headers)) as { code: string; detail: string };
    expect(answer.code).toBe(code);
    expect(answer.detail).toMatch(detail);
  });

  it.each([
    ["a few chunks, larger than the first join buffer", 200 * 1024],
    ["many chunks, larger than the join buffer's limit", 1536 * 1024],
  ])("when a large body with multi-byte characters comes in %s, then it parses as JSON.parse parses it whole", async (_, size) => {
    const text = JSON.stringify({ a: "x€y😀z".repeat(Math.ceil(size / 12)).slice(0, size) });
    const bytes = Buffer.from(text);
    const parts: Buffer[] = [];
    // Odd chunk sizes, so characters are split across chunks.
    for (let at = 0, n = 0; at < bytes.length; at += 16_381 + (n++ % 7)) parts.push(bytes.subarray(at, at + 16_381 + (n % 7)));
    limit = 4 * 1024 * 1024;
    try {
      expect(await post(parts, { ...json, "content-length": String(bytes.length) })).toEqual({ body: JSON.parse(text) as unknown });
    } finally {
      limit = 64;
    }
  });
});
