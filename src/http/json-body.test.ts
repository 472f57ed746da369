import { Readable } from "node:stream";
import Fastify, { type FastifyError, type FastifyInstance, type InjectOptions } from "fastify";
import { describe, expect, it } from "vitest";
import { parseJsonBody, registerJsonBodyParser } from "./json-body.js";

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

describe("registerJsonBodyParser", () => {
  /** Answers with what the parser produced, or with the error Fastify got from it. */
  async function appWith(ours: boolean, bodyLimit = 64): Promise<FastifyInstance> {
    const app = Fastify({ bodyLimit });
    if (ours) registerJsonBodyParser(app);
    app.setErrorHandler((err: FastifyError, _request, reply) => reply.code(err.statusCode ?? 500).send({ error: err.code }));
    app.post("/", async (request) => ({ body: request.body }));
    await app.ready();
    return app;
  }

  function chunks(...parts: Buffer[]): Readable {
    return Readable.from(parts, { objectMode: false });
  }

  const euro = Buffer.from("€"); // three bytes
  const cases: [string, () => InjectOptions][] = [
    ["a small object", () => ({ payload: '{"a":"b"}' })],
    ["a multi-byte character split across chunks", () => ({ payload: chunks(Buffer.from('{"a":"'), euro.subarray(0, 1), euro.subarray(1), Buffer.from('"}')), headers: { "content-length": "11" } })],
    ["invalid UTF-8 split across chunks", () => ({ payload: chunks(Buffer.from('{"a":"'), Buffer.from([0xe2]), Buffer.from([0x41, 0x22, 0x7d])), headers: { "content-length": "10" } })],
    ["a byte-order mark", () => ({ payload: '\ufeff{"a":1}' })],
    ["an empty body", () => ({ payload: "" })],
    ["only a byte-order mark", () => ({ payload: "\ufeff" })],
    ["invalid JSON", () => ({ payload: '{"a":' })],
    ["a __proto__ key", () => ({ payload: '{"__proto__":{"x":1}}' })],
    ["a declared length over the limit", () => ({ payload: "{}", headers: { "content-length": "65" } })],
    ["more bytes than the limit without a declared length", () => ({ payload: chunks(Buffer.from(`{"a":"${"x".repeat(40)}`), Buffer.from(`${"x".repeat(40)}"}`)) })],
    ["fewer bytes than declared", () => ({ payload: chunks(Buffer.from('{"a":1}')), headers: { "content-length": "9" } })],
  ];

  it.each(cases)("when the body is %s, then the answer equals Fastify's default parser's", async (_, request) => {
    const [theirs, ours] = await Promise.all([appWith(false), appWith(true)]);
    try {
      const base: InjectOptions = { method: "POST", url: "/", headers: { "content-type": "application/json" } };
      const send = (app: FastifyInstance) => {
        const r = request();
        return app.inject({ ...base, ...r, headers: { ...base.headers, ...r.headers } });
      };
      const [expected, actual] = [await send(theirs), await send(ours)];
      expect({ status: actual.statusCode, body: actual.json() as unknown }).toEqual({ status: expected.statusCode, body: expected.json() as unknown });
    } finally {
      await Promise.all([theirs.close(), ours.close()]);
    }
  });

  it.each([
    ["a few chunks, larger than the first join buffer", 200 * 1024],
    ["many chunks, larger than the join buffer's limit", 1536 * 1024],
  ])("when a large body with multi-byte characters comes in %s, then it parses as Fastify's default parser parses it", async (_, size) => {
    const text = JSON.stringify({ a: "x€y😀z".repeat(Math.ceil(size / 12)).slice(0, size) });
    const bytes = Buffer.from(text);
    const parts: Buffer[] = [];
    // Odd chunk sizes, so characters are split across chunks.
    for (let at = 0, n = 0; at < bytes.length; at += 16_381 + (n++ % 7)) parts.push(bytes.subarray(at, at + 16_381 + (n % 7)));
    const [theirs, ours] = await Promise.all([appWith(false, 4 * 1024 * 1024), appWith(true, 4 * 1024 * 1024)]);
    try {
      const send = (app: FastifyInstance) =>
        app.inject({ method: "POST", url: "/", headers: { "content-type": "application/json", "content-length": String(bytes.length) }, payload: Readable.from(parts, { objectMode: false }) });
      const [expected, actual] = [await send(theirs), await send(ours)];
      expect(actual.statusCode).toBe(200);
      expect(actual.body).toBe(expected.body);
      expect((actual.json() as { body: unknown }).body).toEqual(JSON.parse(text));
    } finally {
      await Promise.all([theirs.close(), ours.close()]);
    }
  });
});
