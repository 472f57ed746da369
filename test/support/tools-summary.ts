import { inCi, missingTools } from "./external-tools.js";

/**
 * vitest globalSetup: after the run, one line naming the programs whose tests were skipped
 * because they are not installed here, and how to install them (nothing when all are there).
 */
export function setup(): () => void {
  return () => {
    const missing = missingTools().filter((t) => !(inCi && t.requiredInCi));
    if (missing.length === 0) return;
    const list = missing.map((t) => `${t.name} (${t.install})`).join(", ");
    process.stdout.write(`\nSkipped tests that need programs not installed here: ${list}. CI installs the Debian ones (.ci/run).\n`);
  };
}
