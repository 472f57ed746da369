import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { addressProblem, isStrictBase64, senderLookAlikeProblem } from "./send-request-schema.js";

/** The definition isStrictBase64 must match: Node's decoder gives the string back unchanged. */
function roundTrips(value: string): boolean {
  return value.length % 4 === 0 && Buffer.from(value, "base64").toString("base64") === value;
}

/** Deterministic pseudo-random numbers, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ODD_CHARACTERS = ["-", "_", "=", " ", "\n", "\r", "\t", "\0", ".", "\u00c1", "\u00ff", "\u0100", "\u0141", "\u2b2b", "\ud83d\ude00", "\uff21"];

describe("isStrictBase64", () => {
  it.each([
    ["", true],
    ["QQ==", true],
    ["QUE=", true],
    ["QUFB", true],
    ["QR==", false],
    ["QUF=", false],
    ["QQ", false],
    ["QQ=", false],
    ["Q===", false],
    ["====", false],
    ["QQ==QUFB", false],
    ["QU=B", false],
    ["QUFB====", false],
    ["QUF-", false],
    ["QUF_", false],
    ["QU B", false],
    ["QUFB\n", false],
    ["QUF\u0141", false],
    ["QUF\u00c1", false],
  ])("when the value is %j, then %s", (value, expected) => {
    expect(isStrictBase64(value)).toBe(expected);
    expect(roundTrips(value)).toBe(expected);
  });

  it("when real data of many sizes is encoded, then every encoding is accepted", () => {
    for (const size of [1, 2, 3, 47, 48, 49, 49151, 49152, 49153, 98303, 98304, 98305, 102_400, 250_000]) {
      expect(isStrictBase64(randomBytes(size).toString("base64")), `size ${size}`).toBe(true);
    }
  });

  it("when one character of valid base64 is changed, removed or added anywhere, then the answer equals the round-trip check", () => {
    const random = rng(7);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    // Around the 64 K-character slice boundary and at the padded end.
    const sources = [1, 2, 3, 10, 11, 49151, 49152, 49153, 49154].map((size) => randomBytes(size).toString("base64"));
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let checked = 0;
    for (const source of sources) {
      const spots = [0, 1, source.length - 4, source.length - 3, source.length - 2, source.length - 1, 65535, 65536, 65537];
      for (let i = 0; i < 40; i++) spots.push(Math.floor(random() * source.length));
      for (const at of spots.filter((s) => s >= 0 && s < source.length)) {
        const variants = [
          source.slice(0, at) + pick(ODD_CHARACTERS) + source.slice(at + 1),
          source.slice(0, at) + pick([...alphabet]) + source.slice(at + 1),
          source.slice(0, at) + source.slice(at + 1),
          source.slice(0, at) + pick(ODD_CHARACTERS) + source.slice(at),
          source.slice(0, at) + "=" + source.slice(at + 1, -1) + pick([...alphabet]),
        ];
        for (const v of variants) {
          expect(isStrictBase64(v), `${JSON.stringify(v.length > 40 ? `${v.slice(0, 20)}…${v.slice(-20)}` : v)} at ${at}`).toBe(roundTrips(v));
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });

  it("when every four-character quantum is tried, then the answer equals the round-trip check", () => {
    const chars = [..."AQgw+/=", "-", "_", " ", "\u0141"];
    for (const a of chars) for (const b of chars) for (const c of chars) for (const d of chars) {
      const v = `QUFB${a}${b}${c}${d}`;
      expect(isStrictBase64(v), JSON.stringify(v)).toBe(roundTrips(v));
    }
  });
});

describe("addressProblem", () => {
  it.each([
    ["someone@example.com"],
    ["Some.One+tag@Example.COM"],
    ["zoë@example.com"],
    ["kunde@bücher.de"],
    ["kunde@xn--bcher-kva.de"],
    ["info@例え.jp"],
    ["info@xn--r8jz45g.jp"],
    ["user@пример.рф"],
    ["user@ドメイン名例.jp"],
    ["user@東京abc.jp"],
  ])("when the address is %s, then it is accepted", (address) => {
    expect(addressProblem(address)).toBeUndefined();
  });

  it.each([
    ["someone@exa\u200bmple.com", /U\+200B/],
    ["someone@\u212Aontoso.com", /U\+212A.*"K"/],
    ["someone@\uff45xample.com", /U\+FF45/],
    ["someone@example\uff0ecom", /U\+FF0E/],
    ["someone@ex\u0430mple.com", /mixes scripts \(Latin, Cyrillic\)/],
    ["someone@\u03bfffice.com", /mixes scripts \(Latin, Greek\)/],
    ["someone@xn--exmple-4nf.com", /mixes scripts/],
    ["someone@bu\u0308cher.de", /normalization form C/],
    ["someone@BÜCHER.de", /IDNA/],
    ["someone@xn--zz.com", /not a valid A-label/],
    ["someone@fabr\u0130kam.com", /U\+0130/],
    ["some\u200bone@example.com", /part before @.*U\+200B/],
    ["some\u202eone@example.com", /part before @.*bidirectional/],
    ["zoe\u0308@example.com", /part before @ must be in Unicode normalization form C/],
  ])("when the address is %s, then it is refused (%s)", (address, message) => {
    expect(addressProblem(address)).toMatch(message);
  });
});

describe("senderLookAlikeProblem", () => {
  it("when from holds a compatibility character or canonical singleton, then it is refused naming it; plain addresses pass", () => {
    expect(senderLookAlikeProblem("noreply@fabri\u212Aam.com")).toMatch(/U\+212A.*"K"/);
    expect(senderLookAlikeProblem("\uff4eoreply@contoso.com")).toMatch(/U\+FF4E.*"n"/);
    expect(senderLookAlikeProblem("noreply@conto\u017fo.com")).toMatch(/U\+017F.*"s"/);
    expect(senderLookAlikeProblem("NoReply@Contoso.com")).toBeUndefined();
    expect(senderLookAlikeProblem("zoë@bücher.de")).toBeUndefined();
  });
});
