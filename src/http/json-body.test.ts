import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RelayError } from "../core/problems.js";
import fc from "fast-check";
import { JsonBodyError, parseJsonBody, readJsonBody, scanJsonText } from "./json-body.js";

describe("parseJsonBody", () => {
  it.each([
    ['{"__proto__":{"isAdmin":true}}'],
    ['{"\\u005f_proto__":{"isAdmin":true}}'],
    ['{"__proto__":1}'],
    ['{"a":{"b":[1,{"__proto__":{"isAdmin":true}}]}}'],
    ['{"headers":{"__proto__":"v"}}'],
    ['[{"constructor":{"prototype":{"isAdmin":true}}}]'],
    ['{"to":[{"constructor":{"prototype":1}}]}'],
    ['{"c":{"\\u0063onstructor":{"\\u0070rototype":{}}}}'],
  ])("when the body is %s, then it is refused and nothing is polluted", (text) => {
    expect(() => parseJsonBody(text)).toThrow(SyntaxError);
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });

  it.each([
    ['{"a":1}', { a: 1 }],
    ['"__proto__"', "__proto__"],
    ['{"subject":"\\"__proto__\\": {}","text":"constructor prototype"}', { subject: '"__proto__": {}', text: "constructor prototype" }],
    ['{"constructor":"x"}', { constructor: "x" }],
    ['{"constructor":{"name":"x"}}', { constructor: { name: "x" } }],
    ['{"prototype":{}}', { prototype: {} }],
    ["\ufeff{\"a\":[null,true]}", { a: [null, true] }],
    ["null", null],
  ])("when the body is %s, then it parses as JSON.parse would", (text, expected) => {
    expect(parseJsonBody(text)).toEqual(expected);
  });

  it("when the body is not JSON, then JSON.parse's error is thrown", () => {
    expect(() => parseJsonBody('{"a":')).toThrow(SyntaxError);
    expect(() => parseJsonBody("\ufeff")).toThrow(SyntaxError);
  });
});

describe("parseJsonBody: shape limits and keys", () => {
  const nest = (levels: number): string => `${"[".repeat(levels)}${"]".repeat(levels)}`;
  const refusal = (text: string, limits?: Parameters<typeof parseJsonBody>[1]): JsonBodyError => {
    try {
      parseJsonBody(text, limits);
    } catch (err) {
      if (err instanceof JsonBodyError) return err;
      throw err;
    }
    throw new Error(`not refused: ${text.slice(0, 80)}`);
  };

  it("when a body nests 64 levels, then it parses; 65 or 100,000 levels are refused with the path of the first one too deep", () => {
    expect(parseJsonBody(nest(64))).toBeDefined();
    for (const levels of [65, 100_000]) {
      const err = refusal(nest(levels));
      expect(err.kind).toBe("limit");
      expect(err.reason).toMatch(/nests deeper than 64 levels/);
      expect(err.path).toBe(`[0]`.repeat(64));
    }
    expect(refusal(`{"a":{"b":${nest(63)}}}`).path).toBe(`a.b${"[0]".repeat(62)}`);
  });

  it("when an object has more members or an array more items than the limits, then it is refused where it is, before JSON.parse", () => {
    const limits = { maxDepth: 8, maxMembers: 3, maxItems: 3 };
    expect(parseJsonBody('{"a":1,"b":[1,2,3],"c":{"x":1,"y":2,"z":3}}', limits)).toEqual({ a: 1, b: [1, 2, 3], c: { x: 1, y: 2, z: 3 } });
    expect(refusal('{"a":1,"b":2,"c":3,"d":4}', limits)).toMatchObject({ kind: "limit", path: "(body)", reason: expect.stringMatching(/more than 3 members/) as string });
    expect(refusal('{"a":[{"x":[1,2,3,4]}]}', limits)).toMatchObject({ kind: "limit", path: "a[0].x", reason: expect.stringMatching(/more than 3 items/) as string });
    // The limits hold even in text that is not valid JSON further on: the refusal comes first.
    expect(refusal('{"a":1,"b":2,"c":3,"d":4,', limits).kind).toBe("limit");
  });

  it.each([
    ['{"a":1,"a":2}', "a"],
    ['{"a":{"b":1,"c":2,"b":3}}', "a.b"],
    ['{"to":[{"address":"x"},{"address":"y","\\u0061ddress":"z"}]}', "to[1].address"],
    ['{"x-y":1,"x-y":1}', '["x-y"]'],
    ['[{"":1,"":2}]', '[0][""]'],
  ])("when %s repeats a key, then it is refused at %s", (text, path) => {
    expect(refusal(text)).toMatchObject({ kind: "key", path, reason: expect.stringMatching(/duplicate key/) as string });
  });

  it.each([
    ['{"a":1,"A":2,"b":{"a":1},"c":[{"a":1},{"a":2}]}'],
    ['{"a":"a","b":"a","c":["a","a"]}'],
    ['{"s":"}{\\"\\\\","s\\\\":1,"t":"\\"a\\":1,\\"a\\":2"}'],
    ['{"a":{},"b":{},"c":[[],[]]}'],
  ])("when %s has no key twice in one object, then it parses as JSON.parse does", (text) => {
    expect(parseJsonBody(text)).toEqual(JSON.parse(text));
  });

  it("when a repeated key sits in text that is not JSON, then JSON.parse's SyntaxError wins", () => {
    expect(() => parseJsonBody('{"a":1,"a":2')).toThrow(SyntaxError);
    expect(() => parseJsonBody('{"a":1,"a":2')).not.toThrow(JsonBodyError);
  });

  it("when any JSON value is written by JSON.stringify, then it parses to the same value (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value);
        fc.pre(!text.includes('"__proto__"'));
        expect(parseJsonBody(text)).toEqual(JSON.parse(text));
      }),
      { seed: 20_14, numRuns: 300 },
    );
  });

  it("when a key is written twice into any object of any JSON value, then the repeat is found (property)", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { minKeys: 1, maxKeys: 6 }), fc.nat(), (record, pick) => {
        const keys = Object.keys(record);
        fc.pre(!keys.includes("__proto__"));
        const key = keys[pick % keys.length]!;
        const text = `{"wrap":[${JSON.stringify(record).slice(0, -1)},${JSON.stringify(key)}:null}]}`;
        expect(scanJsonText(text)?.reason).toMatch(/duplicate key/);
      }),
      { seed: 20_14, numRuns: 300 },
    );
  });
});

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
