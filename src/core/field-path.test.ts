import { describe, expect, it } from "vitest";
import { formatFieldPath, MAX_FIELD_PATH, shorten } from "./field-path.js";

describe("formatFieldPath", () => {
  it.each<[PropertyKey[], string]>([
    [[], "(body)"],
    [["to", 1, "address"], "to[1].address"],
    [["headers", "X-Order-Id"], 'headers["X-Order-Id"]'],
    [["__proto__"], "__proto__"],
    [[0, ""], '[0][""]'],
  ])("when the path is %j, then it reads %s", (path, expected) => {
    expect(formatFieldPath(path)).toBe(expected);
  });

  it("when a key is 100,000 characters long or the path 10,000 segments deep, then the path is cut to the limit and ends with …", () => {
    for (const path of [["n".repeat(100_000)], ["-".repeat(100_000)], Array.from({ length: 10_000 }, () => 0), ["a", "😀".repeat(500)]]) {
      const out = formatFieldPath(path);
      expect(out.length).toBeLessThanOrEqual(MAX_FIELD_PATH);
      expect(out.endsWith("…")).toBe(true);
      expect(out).not.toMatch(/\p{Cs}/u);
    }
  });
});

describe("shorten", () => {
  it("when text is cut inside a surrogate pair, then the pair is dropped whole", () => {
    expect(shorten("ab😀c", 4)).toBe("ab…");
    expect(shorten("abc", 3)).toBe("abc");
  });
});
