import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/*
 * What `npm run build` puts in dist/ is what the image runs: the service and the CLI, never the
 * emulator or the demo, and nothing that needs a package the runtime stage does not install
 * (npm ci --omit=dev).
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

/** The source files tsconfig.build.json compiles, relative to the repository. */
function productSources(): string[] {
  const out = execFileSync(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, "-p", `${ROOT}tsconfig.build.json`, "--listFilesOnly"], { encoding: "utf8" });
  return out
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.includes("/node_modules/"))
    .map((l) => relative(ROOT, l));
}

/** Bare package names a source file imports (statically or dynamically). */
function packagesImported(file: string): string[] {
  const text = readFileSync(`${ROOT}${file}`, "utf8");
  const names = new Set<string>();
  const specs = [
    ...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']/gm),
    ...text.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
    ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
  ];
  for (const m of specs) {
    const spec = m[1]!;
    if (spec.startsWith(".")) continue;
    if (spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0]!)) continue;
    names.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
  }
  return [...names];
}

describe("the product build", () => {
  const sources = productSources();

  it("when dist/ is built, then it holds the service and the CLI, not the emulator or the demo", () => {
    expect(sources).toContain("src/server.ts");
    expect(sources).toContain("src/onboarding/cli.ts");
    expect(sources.filter((f) => f.startsWith("src/emulator/") || f === "src/demo.ts" || f.endsWith(".test.ts"))).toEqual([]);
  });

  it("when the image installs production dependencies only, then every package the product imports is one of them", () => {
    const missing = sources.flatMap((f) => packagesImported(f).filter((p) => !(p in pkg.dependencies)).map((p) => `${f} imports ${p}`));
    expect(missing).toEqual([]);
  });

  it("when the emulator's own packages are listed, then they are development dependencies only", () => {
    for (const name of ["mailparser", "@peculiar/x509", "reflect-metadata"]) {
      expect(pkg.dependencies).not.toHaveProperty(name);
      expect(pkg.devDependencies).toHaveProperty(name);
    }
  });
});
