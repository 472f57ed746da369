import { fileURLToPath } from "node:url";
import { cruise, type IReporterOutput } from "dependency-cruiser";
import { describe, expect, it } from "vitest";
import { layerRules } from "./layers.js";

/*
 * The shape of src/ (docs/architecture.md), checked on every test run: no import cycles, and
 * no import from a lower layer to a higher one. The fixtures prove the check bites.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));

async function violations(baseDir: string): Promise<string[]> {
  const cwd = process.cwd();
  process.chdir(baseDir);
  let result: IReporterOutput;
  try {
    result = await cruise(["src"], {
      ruleSet: { forbidden: layerRules() },
      tsPreCompilationDeps: true,
      exclude: { path: "\\.test\\.ts$" },
      doNotFollow: { path: "node_modules" },
      validate: true,
    });
  } finally {
    process.chdir(cwd);
  }
  const output = result.output as { summary: { violations: { rule: { name: string }; from: string; to: string }[] } };
  return output.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`);
}

describe("the layers of src/", () => {
  it("when src/ is cruised, then there is no cycle and no import from a lower layer to a higher one", async () => {
    expect(await violations(ROOT)).toEqual([]);
  }, 60_000);

  it("when two modules import each other, then the check reports the cycle", async () => {
    const found = await violations(`${FIXTURES}cycle`);
    expect(found.some((v) => v.startsWith("no-circular:"))).toBe(true);
  }, 60_000);

  it("when core imports the web layer, then the check reports the upward import", async () => {
    expect(await violations(`${FIXTURES}upward`)).toContain("layer-core: src/core/problems.ts → src/http/render.ts");
  }, 60_000);
});
