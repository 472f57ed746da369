import { describe, expect, it } from "vitest";
import { ConfigError, findDuplicateJsonKey, parseConfig } from "./load-config.js";

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
    expect(() => parseConfig(text)).toThrow(/duplicate key "tenants"/);
  });

  it("when the text is a YAML flow mapping, then the YAML parser still reads it", () => {
    expect(parseConfig("{ tenants: {}, callers: {}, app: { clientId: 11111111-2222-3333-4444-555555555555, credential: { type: secret, secretEnv: S } } }").tenants).toEqual({});
  });

  it.each([
    ['{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}', undefined],
    ['{"a":1,"b":2,"a":3}', "a"],
    ['{"t":{"x":"a\\"b,\\"x\\":","x":1}}', "x"],
    ['{"k\\u0041":1,"kA":2}', "kA"],
    ['{"arr":["a","a"],"s":"a,b"}', undefined],
    ['{"o":{"p":[1,{"q":1}],"q":2,"p":3}}', "p"],
  ])("when scanning %s, then the duplicate found is %s", (text, duplicate) => {
    expect(findDuplicateJsonKey(text)).toBe(duplicate);
  });
});
