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
  /** Whether CI must have it (.ci/run installs it). */
  readonly requiredInCi: boolean;
}

export const inCi = process.env.CI === "true";

const TOOLS = {
  "redis-server": { probe: () => runs("redis-server", ["--version"]), install: "apt-get install redis-server", requiredInCi: true },
  promtool: { probe: () => runs("promtool", ["--version"]), install: "apt-get install prometheus", requiredInCi: true },
  chromium: { probe: () => existsSync("/usr/bin/chromium"), install: "apt-get install chromium", requiredInCi: true },
  // Not in Debian's packages (Microsoft publishes it in its own repository), so CI cannot install it:
  // the generated scripts are checked by our PowerShell lexer there, and parsed by pwsh where it exists.
  pwsh: {
    probe: () => runs("pwsh", ["-NoProfile", "-Command", "exit 0"]),
    install: "install PowerShell from Microsoft's package repository",
    requiredInCi: false,
  },
} as const;

export type ToolName = keyof typeof TOOLS;

const cache = new Map<ToolName, ExternalTool>();

export function externalTool(name: ToolName): ExternalTool {
  let tool = cache.get(name);
  if (tool === undefined) {
    const spec = TOOLS[name];
    tool = { name, available: spec.probe(), install: spec.install, requiredInCi: spec.requiredInCi };
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
  if (inCi && tool.requiredInCi) {
    describe(title, () => {
      it(`when the suite runs in CI, then ${tool.name} is installed (${tool.install})`, () => {
        expect.fail(`${tool.name} is not installed; .ci/run installs it (${tool.install})`);
      });
    });
    return;
  }
  describe.skip(`${title} [skipped: ${tool.name} is not installed; ${tool.install}]`, body);
}

/** `it` when the tool is there; otherwise as describeWithTool says. */
export function itWithTool(name: ToolName, title: string, body: () => unknown): void {
  const tool = externalTool(name);
  if (tool.available) it(title, body);
  else if (inCi && tool.requiredInCi) it(`${title} [${tool.name} is required in CI]`, () => expect.fail(`${tool.name} is not installed; .ci/run installs it (${tool.install})`));
  else it.skip(`${title} [skipped: ${tool.name} is not installed; ${tool.install}]`, body);
}

/** Every known tool that is missing here, for the run's one summary line. */
export function missingTools(): ExternalTool[] {
  return (Object.keys(TOOLS) as ToolName[]).map(externalTool).filter((t) => !t.available);
}

function runs(command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 10_000 });
  return result.error === undefined && result.status === 0;
}
