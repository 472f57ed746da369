import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { JsonTextError, parseJsonText, scanJsonText } from "./json-text.js";

describe("parseJsonText", () => {
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
    expect(() => parseJsonText(text)).toThrow(SyntaxError);
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
    expect(parseJsonText(text)).toEqual(expected);
  });

  it("when the body is not JSON, then JSON.parse's error is thrown", () => {
    expect(() => parseJsonText('{"a":')).toThrow(SyntaxError);
    expect(() => parseJsonText("\ufeff")).toThrow(SyntaxError);
  });
});

describe("parseJsonText: shape limits and keys", () => {
  const nest = (levels: number): string => `${"[".repeat(levels)}${"]".repeat(levels)}`;
  const refusal = (text: string, limits?: Parameters<typeof parseJsonText>[1]): JsonTextError => {
    try {
      parseJsonText(text, limits);
    } catch (err) {
      if (err instanceof JsonTextError) return err;
      throw err;
    }
    throw new Error(`not refused: ${text.slice(0, 80)}`);
  };

  it("when a body nests 64 levels, then it parses; 65 or 100,000 levels are refused with the path of the first one too deep", () => {
    expect(parseJsonText(nest(64))).toBeDefined();
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
    expect(parseJsonText('{"a":1,"b":[1,2,3],"c":{"x":1,"y":2,"z":3}}', limits)).toEqual({ a: 1, b: [1, 2, 3], c: { x: 1, y: 2, z: 3 } });
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
    expect(parseJsonText(text)).toEqual(JSON.parse(text));
  });

  it("when a repeated key sits in text that is not JSON, then JSON.parse's SyntaxError wins", () => {
    expect(() => parseJsonText('{"a":1,"a":2')).toThrow(SyntaxError);
    expect(() => parseJsonText('{"a":1,"a":2')).not.toThrow(JsonTextError);
  });

  it("when any JSON value is written by JSON.stringify, then it parses to the same value (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value);
        fc.pre(!text.includes('"__proto__"'));
        expect(parseJsonText(text)).toEqual(JSON.parse(text));
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
