import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/*
 * `npm ci` on the oldest Node the project supports installs only packages that declare they run
 * there. npm installs a package whose `engines.node` excludes the running Node anyway, with an
 * EBADENGINE warning nobody reads, so an upgrade can bring in a package written for Node 22
 * (as openapi-backend 5.21 did through @apidevtools/json-schema-ref-parser 16).
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(`${ROOT}package-lock.json`, "utf8")) as { packages: Record<string, { version?: string; engines?: { node?: string } | string[] }> };

type Version = [number, number, number];

/** "20", "20.19", "20.*", "v20.19.0" → [20, 19, 0] with the missing parts as 0; null for "*" / "x". */
function parseVersion(text: string): { v: Version; given: number } | null {
  const parts = text.replace(/^v/, "").split(".");
  if (parts[0] === "*" || parts[0] === "x" || parts[0] === "") return null;
  const nums = parts.map((p) => (p === "*" || p === "x" ? NaN : Number.parseInt(p, 10)));
  const given = nums.findIndex((n) => Number.isNaN(n));
  const count = given === -1 ? nums.length : given;
  const v: Version = [nums[0] ?? 0, count > 1 ? nums[1]! : 0, count > 2 ? nums[2]! : 0];
  return { v, given: count };
}

function compare(a: Version, b: Version): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** The subset of npm's range syntax that package.json `engines.node` fields use. */
function satisfies(version: Version, range: string): boolean {
  return range.split("||").some((alternative) => {
    const comparators = alternative.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, "$1").split(/\s+/).filter(Boolean);
    return comparators.every((c) => {
      const m = /^(>=|<=|>|<|=|\^|~)?(.*)$/.exec(c)!;
      const op = m[1] ?? "";
      const parsed = parseVersion(m[2]!);
      if (parsed === null) return true;
      const { v, given } = parsed;
      const cmp = compare(version, v);
      switch (op) {
        case ">=":
          return cmp >= 0;
        case ">":
          return cmp > 0;
        case "<=":
          return cmp <= 0;
        case "<":
          return cmp < 0;
        case "^":
          return cmp >= 0 && (v[0] !== 0 ? version[0] === v[0] : version[0] === 0 && version[1] === v[1]);
        case "~":
          return cmp >= 0 && version[0] === v[0] && (given < 2 || version[1] === v[1]);
        default:
          // "20", "20.19", "20.*" match that prefix; "20.19.1" that version.
          return version.slice(0, given).every((n, i) => n === v[i]);
      }
    });
  });
}

describe("the lockfile and the oldest Node the project supports", () => {
  const oldest = parseVersion(/\d+(\.\d+){0,2}/.exec(pkg.engines.node)![0])!.v;

  it("reads engines ranges as npm does", () => {
    const cases: [range: string, on20_19: boolean][] = [
      [">=22.19.0", false],
      ["^18.18.0 || ^20.9.0 || >=21.1.0", true],
      ["^20.19.0 || ^22.13.0 || >=24", true],
      ["^20.20.0 || >=22", false],
      [">=22.12.0 || >=20.19.0 <21.0.0", true],
      [">=22.12.0 || >=20.19.0 <20.19.0", false],
      ["18 || 20 || >=22", true],
      ["18 || >=22", false],
      ["10.* || >= 12.*", true],
      [">= 0.4", true],
      ["*", true],
      ["~20.18.0", false],
    ];
    for (const [range, want] of cases) expect(satisfies([20, 19, 0], range), range).toBe(want);
  });

  it(`when npm ci installs on Node ${oldest.join(".")} (package.json engines "${pkg.engines.node}"), then every package it installs declares it runs there`, () => {
    const refusing = Object.entries(lock.packages)
      .filter(([path, e]) => path !== "" && !Array.isArray(e.engines) && typeof e.engines?.node === "string" && !satisfies(oldest, e.engines.node))
      .map(([path, e]) => `${path.replace(/^.*node_modules\//, "")}@${e.version}: node ${(e.engines as { node: string }).node}`);
    expect(refusing).toEqual([]);
  });
});
