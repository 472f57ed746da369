import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { plainTextProblem } from "./plain-text.js";

describe("plainTextProblem", () => {
  it.each([
    ["Invoice 2024-0042"],
    ["Ihre Bestellung — Заказ — 注文 — طلب — הזמנה"],
    ["Emoji ❤️ 👍🏽 👩‍👩‍👧 🧑🏿‍💻 🏳️‍🌈 🇩🇪 1️⃣ #️⃣"],
    ["Persian می‌خواهم, Devanagari क्‍ष, Malayalam ന്‍"],
    ["Flag of Scotland 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}"],
    ["Mongolian ᠮᠣᠩᠭᠣᠯ\u180b"],
    ["Han with a variation selector 葛\u{E0100}"],
  ])("when the text is %s, then it is plain text", (text) => {
    expect(plainTextProblem(text)).toBeUndefined();
  });

  it.each([
    ["a NUL", "a\u0000b", /control character \(U\+0000 at character 2\)/],
    ["DEL", "a\u007fb", /control character \(U\+007F/],
    ["a C1 control", "a\u0085b", /control character \(U\+0085/],
    ["a tab by default", "a\tb", /U\+0009/],
    ["a line feed by default", "a\nb", /U\+000A/],
    ["a line separator", "a\u2028b", /line or paragraph separator/],
    ["a right-to-left override", "Invoice_\u202Efdp.exe", /bidirectional formatting character \(U\+202E at character 9\)/],
    ["a left-to-right isolate", "a\u2066b", /bidirectional/],
    ["a right-to-left mark", "a\u200fb", /bidirectional/],
    ["an Arabic letter mark", "a\u061cb", /bidirectional/],
    ["a zero-width space", "pay\u200bpal", /invisible character \(U\+200B/],
    ["a zero-width joiner between Latin letters", "pay\u200dpal", /U\+200D/],
    ["a zero-width non-joiner between Latin letters", "pay\u200cpal", /U\+200C/],
    ["a zero-width joiner between Cyrillic letters", "па\u200dра", /U\+200D/],
    ["a zero-width joiner at the end", "👍\u200d", /U\+200D/],
    ["a byte-order mark", "\ufeffhello", /U\+FEFF/],
    ["a word joiner", "a\u2060b", /U\+2060/],
    ["a soft hyphen", "ad\u00admin", /U\+00AD/],
    ["a Hangul filler", "a\u3164b", /U\+3164/],
    ["a variation selector after ASCII", "pay\ufe0fpal", /U\+FE0F/],
    ["two variation selectors", "❤\ufe0f\ufe0f", /U\+FE0F/],
    ["tag characters without a black flag", "a\u{E0067}\u{E007F}", /U\+E0067/],
    ["a tag sequence without its cancel tag", "🏴\u{E0067}\u{E0062}", /U\+E0067/],
    ["an unpaired high surrogate", "a\ud800b", /unpaired surrogate \(U\+D800/],
    ["an unpaired low surrogate", "a\udc00", /unpaired surrogate/],
    ["an interlinear annotation", "a\ufff9b", /U\+FFF9/],
    ["a noncharacter", "a\uffffb", /U\+FFFF/],
  ])("when the text has %s, then it is refused, naming the character", (_, text, message) => {
    expect(plainTextProblem(text)).toMatch(message);
  });

  it("when tabs or line breaks are allowed, then only they pass", () => {
    expect(plainTextProblem("a\tb", { tab: true })).toBeUndefined();
    expect(plainTextProblem("a\r\nb", { lineBreaks: true })).toBeUndefined();
    expect(plainTextProblem("a\tb\u0000", { tab: true })).toMatch(/U\+0000/);
  });

  it("when the text is long and full of characters worth a second look, then it is checked in linear time", () => {
    const flags = `🏴${"\u{E0067}".repeat(50_000)}`;
    const started = performance.now();
    expect(plainTextProblem(flags)).toMatch(/U\+E0067/);
    expect(plainTextProblem("❤\ufe0f".repeat(100_000))).toBeUndefined();
    expect(plainTextProblem("👍\u200d👍".repeat(50_000))).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("when any string without the refused characters is checked, then it passes; with one inserted, it is refused (property)", () => {
    const refused = fc.constantFrom("\u0000", "\u0007", "\u001b", "\u007f", "\u0085", "\u2028", "\u2029", "\u202a", "\u202e", "\u2066", "\u2069", "\u200b", "\u2060", "\ufeff", "\u00ad");
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 30 }), refused, fc.nat(), (text, bad, at) => {
        const clean = [...text].filter((ch) => plainTextProblem(ch) === undefined).join("");
        const i = at % (clean.length + 1);
        // Inserted next to a letter it is always refused (a ZWJ/ZWNJ is not in the list).
        expect(plainTextProblem(`${clean.slice(0, i)}${bad}${clean.slice(i)}`)).toBeDefined();
      }),
      { seed: 20_14, numRuns: 300 },
    );
  });
});
