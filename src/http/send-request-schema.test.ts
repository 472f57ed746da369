import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MAX_RECIPIENTS, addressProblem, isStrictBase64, parseSendRequest, parseWithSchema, senderLookAlikeProblem, validSimpleRequest } from "./send-request-schema.js";

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

describe("validSimpleRequest (the shortcut past the schema)", () => {
  const random = rng(20261203);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const maybe = (p: number): boolean => random() < p;
  /** Mostly one of the first `valid` entries: bodies with one odd field among good ones find the edges. */
  const mostly = <T>(list: readonly T[], valid: number): T => (maybe(0.85) ? list[Math.floor(random() * valid)]! : pick(list));
  const ADDRESSES: readonly unknown[] = [
    "a@example.com",
    "Customer.1+tag@sub.example.org",
    "user@xn--bcher-kva.example",
    "user@m\u00fcnchen.de",
    // A valid recipient, refused as the sender (a compatibility character: senderLookAlikeProblem).
    "\ufb01le@example.com",
    "user@mu\u0308nchen.de",
    "\u212aelvin@example.com",
    "no-at-sign",
    "a@",
    "@example.com",
    "a b@example.com",
    "a@example..com",
    "a@exa\u200bmple.com",
    "a\n@example.com",
    `${"l".repeat(65)}@example.com`,
    `a@${"d".repeat(250)}.com`,
    "",
    5,
    null,
  ];
  const NAMES: readonly unknown[] = ["Ann", "", "x".repeat(255), "x".repeat(256), "A\nB", "A\tB", "A\u202eB", "A\u200bB", "\ud800", "Zo\u00eb", 7];
  const TEXTS: readonly unknown[] = ["Hello", "", "\ud800x", "ok \ud83d\ude00", "line\nbreaks\r\nare fine", 3, null];
  const SUBJECTS: readonly unknown[] = ["Hi", "", "x".repeat(255), "x".repeat(256), "a\tb", "a\nb", "a\u0007b", "\u202eevil", "caf\u00e9", 1];
  const recipient = (): unknown =>
    pick([
      () => mostly(ADDRESSES, 4),
      () => mostly(ADDRESSES, 4),
      () => ({ address: mostly(ADDRESSES, 4) }),
      () => ({ address: mostly(ADDRESSES, 4), name: mostly(NAMES, 3) }),
      () => ({ address: pick(ADDRESSES), name: "N", extra: 1 }),
      () => ({ name: "No address" }),
      () => [],
      () => null,
    ])();
  const list = (): unknown => {
    if (maybe(0.03)) return Array.from({ length: MAX_RECIPIENTS + 1 }, (_, i) => `r${i}@example.com`);
    if (maybe(0.05)) return "a@example.com";
    return Array.from({ length: Math.floor(random() * 3) }, () => (maybe(0.8) ? mostly(ADDRESSES, 4) : recipient()));
  };
  function body(): Record<string, unknown> {
    const b: Record<string, unknown> = {};
    if (maybe(0.95)) b.tenant = mostly(["acme", "a", "x".repeat(64), "ok.key_1", "x".repeat(65), "-bad", "", 5, "\u00fcml"], 4);
    if (maybe(0.9)) b.to = list();
    if (maybe(0.2)) b.cc = list();
    if (maybe(0.15)) b.bcc = list();
    if (maybe(0.15)) b.replyTo = list();
    if (maybe(0.95)) b.subject = mostly(SUBJECTS, 1);
    if (maybe(0.8)) b.text = mostly(TEXTS, 1);
    if (maybe(0.3)) b.html = mostly(TEXTS, 1);
    if (maybe(0.15)) b.importance = pick(["low", "normal", "high", "urgent", 1]);
    if (maybe(0.15)) b.saveToSentItems = pick([true, false, "true", 0]);
    if (maybe(0.1)) b.dryRun = pick([true, false, "yes"]);
    if (maybe(0.15)) b.from = mostly(ADDRESSES, 4);
    if (maybe(0.05)) b.headers = { "X-Order": "1" };
    if (maybe(0.05)) b.attachments = [];
    if (maybe(0.05)) b[pick(["unknown", "__proto__", "To"])] = 1;
    return b;
  }

  it("when 20,000 generated bodies are checked, then it accepts exactly the simple ones the schema accepts, as they are, and refuses none itself", () => {
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const b = JSON.parse(JSON.stringify(body())) as Record<string, unknown>;
      const fast = validSimpleRequest(b);
      const full = parseWithSchema(b);
      const simple = b.headers === undefined && b.attachments === undefined && Object.keys(b).every((k) => !["unknown", "__proto__", "To"].includes(k));
      const context = JSON.stringify(b).slice(0, 300);
      if (fast !== undefined) {
        expect(full, context).toMatchObject({ ok: true });
        expect((full as { value: unknown }).value, context).toEqual(b);
        expect(fast, context).toBe(b);
        accepted++;
      } else {
        if (simple) expect(full.ok, `the schema accepts this simple body: ${context}`).toBe(false);
        refused++;
      }
      // parseSendRequest answers as the schema does, shortcut or not.
      expect(parseSendRequest(b), context).toEqual(full);
    }
    // Neither side may be (nearly) empty, or the comparison proves nothing.
    expect(accepted).toBeGreaterThan(1_000);
    expect(refused).toBeGreaterThan(1_000);
  });

  it("when a body has attachments or headers, then the schema decides even when the rest is valid", () => {
    const base = { tenant: "acme", to: ["a@example.com"], subject: "Hi", text: "Hello" };
    expect(validSimpleRequest(base)).toBe(base);
    expect(validSimpleRequest({ ...base, headers: { "X-A": "1" } })).toBeUndefined();
    expect(validSimpleRequest({ ...base, attachments: [] })).toBeUndefined();
  });
});
