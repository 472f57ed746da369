import { readFileSync, statSync } from "node:fs";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { PROBLEMS, PROBLEM_CODES } from "../../src/core/problems.js";
import { ROOT, readDoc } from "./markdown.js";

const readme = readDoc("README.md");

/** The README must stay short enough that a newcomer reads it to the end; the rest lives in docs/. */
const MAX_README_BYTES = 12_288;

describe("README", () => {
  it("when the README is measured, then it is at most 12 KB", () => {
    expect(statSync(`${ROOT}README.md`).size).toBeLessThanOrEqual(MAX_README_BYTES);
  });

  it("when a reader runs the two commands, then the README names them exactly", () => {
    expect(readme).toContain("npm ci && npm run demo");
    expect(readme).toContain("npm ci && npm test");
  });

  it("when a problem code exists, then the README explains it with its status", () => {
    for (const code of PROBLEM_CODES) {
      expect(readme).toMatch(new RegExp(`\\| \`${code}\` \\| ${PROBLEMS[code].status} \\|`));
    }
  });

  it("when openapi.yaml describes an operation, then the README's API table lists it", () => {
    const spec = parse(readFileSync(`${ROOT}openapi.yaml`, "utf8")) as { paths: Record<string, Record<string, unknown>> };
    const methods = ["get", "post", "put", "patch", "delete"];
    const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((m) => methods.includes(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(operations.length).toBeGreaterThan(0);
    for (const op of operations) expect(readme, op).toContain(`| \`${op}\` |`);
  });
});
