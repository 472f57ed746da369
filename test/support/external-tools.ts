import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";

/**
 * Programs some tests need that npm cannot install. On a bare machine (only Node and npm) their
 * tests are skipped, each suite saying which program is missing and how to install it; with
 * `CI=true` a missing program fails the run (.ci/run installs them from Debian's packages).
 */
export interface ExternalTool {
  readonly name: string;
  readonly available: boolean;
  /** How to get it on Debian. */
  readonly install: string;
}

export const inCi = process.env.CI === "true";

const TOOLS = {
  "redis-server": { probe: () => runs("redis-server", ["--version"]), install: "apt-get install redis-server" },
  promtool: { probe: () => runs("promtool", ["--version"]), install: "apt-get install prometheus" },
  chromium: { probe: () => existsSync("/usr/bin/chromium"), install: "apt-get install chromium" },
} as const;

export type ToolName = keyof typeof TOOLS;

const cache = new Map<ToolName, ExternalTool>();

export function externalTool(name: ToolName): ExternalTool {
  let tool = cache.get(name);
  if (tool === undefined) {
    const spec = TOOLS[name];
    tool = { name, available: spec.probe(), install: spec.install };
    cache.set(name, tool);
  }
  return tool;
}

/**
 * `describe` when the tool is there. Otherwise: in CI one failing test naming the tool; on a
 * bare machine a skipped suite whose title says what is missing and how to install it.
 */
export function describeWithTool(name: ToolName, title: string, body: () => void): void {
  const tool = externalTool(name);
  if (tool.available) {
    describe(title, body);
    return;
  }
  if (inCi) {
    describe(title, () => {
      it(`when the suite runs in CI, then ${tool.name} is installed (${tool.install})`, () => {
        expect.fail(`${tool.name} is not installed; .ci/run installs it (${tool.install})`);
      });
    });
    return;
  }
  describe.skip(`${title} [skipped: ${tool.name} is not installed; ${tool.install}]`, body);
}

function runs(command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 10_000 });
  return result.error === undefined && result.status === 0;
}
