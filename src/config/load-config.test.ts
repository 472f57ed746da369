import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "./load-config.js";

const minimal = {
  app: { clientId: "11111111-2222-3333-4444-555555555555", credential: { type: "secret", secretEnv: "SECRET" } },
  tenants: { contoso: { tenantId: "contoso.com", sender: "noreply@contoso.com" } },
  callers: {},
};

describe("parseConfig: JSON texts", () => {
  it("when the text is JSON, then it parses like the same YAML would", () => {
    const yaml = "app: { clientId: 11111111-2222-3333-4444-555555555555, credential: { type: secret, secretEnv: SECRET } }\ntenants: { contoso: { tenantId: contoso.com, sender: noreply@contoso.com } }\ncallers: {}\n";
    expect(parseConfig(JSON.stringify(minimal))).toEqual(parseConfig(yaml));
  });

  it("when a JSON object repeats a key, then it is refused like YAML's duplicate keys", () => {
    const text = JSON.stringify(minimal).replace('"callers":{}', '"callers":{},"tenants":{}');
    expect(() => parseConfig(text)).toThrow(ConfigError);
    expect(() => parseConfig(text)).toThrow(/tenants: duplicate key/);
  });

  it("when the text is a YAML flow mapping, then the YAML parser still reads it", () => {
    expect(parseConfig("{ tenants: {}, callers: {}, app: { clientId: 11111111-2222-3333-4444-555555555555, credential: { type: secret, secretEnv: S } } }").tenants).toEqual({});
  });

  it.each([
    ['{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}', undefined],
    ['{"a":1,"b":2,"a":3}', "a: duplicate key"],
    ['{"t":{"x":"a\\"b,\\"x\\":","x":1}}', "t.x: duplicate key"],
    ['{"k\\u0041":1,"kA":2}', "kA: duplicate key"],
    ['{"arr":["a","a"],"s":"a,b"}', undefined],
    ['{"o":{"p":[1,{"q":1}],"q":2,"p":3}}', "o.p: duplicate key"],
    ['{"tenants":{"__proto__":{"tenantId":"x"}}}', 'tenants.__proto__: "__proto__" is not accepted'],
  ])("when the JSON text is %s, then the refusal is %s", (text, refusal) => {
    // Texts that pass the key rules reach the schema, which refuses them for other reasons.
    const problems = (() => {
      try {
        parseConfig(text);
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    })();
    if (refusal === undefined) expect(problems.join("\n")).not.toMatch(/duplicate key|not accepted/);
    else expect(problems).toEqual([expect.stringContaining(refusal)]);
  });

  it("when the JSON text has more tenants than a request body may have members, then all are read", () => {
    const tenants = Object.fromEntries(Array.from({ length: 1_500 }, (_, i) => [`t${i}`, { tenantId: `t${i}.example`, sender: `noreply@t${i}.example` }]));
    expect(Object.keys(parseConfig(JSON.stringify({ ...minimal, tenants })).tenants)).toHaveLength(1_500);
  });
});
