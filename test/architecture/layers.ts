import type { IRegularForbiddenRuleType } from "dependency-cruiser";

/**
 * The layers of src/, bottom to top (see docs/architecture.md). A module may import its own
 * folder and any folder of a lower layer, never a higher one; folders of one layer do not
 * import each other. src/emulator stands apart: only the demo may import it, and it imports
 * nothing of the service.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ["core"],
  ["config"],
  ["net"],
  ["metrics", "auth", "graph"],
  ["onboarding"],
  ["delivery"],
  ["tenants"],
  ["mail"],
  ["http", "smtp"],
];


/** Files directly under src/ (app, service, server, demo) sit above every folder. */
const TOP = "src/[^/]+\\.ts$";

type ForbiddenRule = IRegularForbiddenRuleType;

/** dependency-cruiser rules for `root` (a folder holding src/). */
export function layerRules(): ForbiddenRule[] {
  const rules: ForbiddenRule[] = [
    {
      name: "no-circular",
      comment: "A module must not reach itself through its imports (type-only imports count: they couple the code too).",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "no-emulator-in-product",
      comment: "The emulator is for the demo, tests and its CLI; the product never loads it.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(emulator/|demo\\.ts$)" },
      to: { path: "^src/emulator/" },
    },
    {
      name: "emulator-stands-apart",
      comment: "The emulator imports nothing of the service.",
      severity: "error",
      from: { path: "^src/emulator/" },
      to: { path: "^src/", pathNot: "^src/emulator/" },
    },
    {
      name: "top-files-are-top",
      comment: "Nothing in a folder imports app, service, server or demo.",
      severity: "error",
      from: { path: "^src/[^/]+/" },
      to: { path: TOP },
    },
  ];
  LAYERS.forEach((layer, i) => {
    const higher = LAYERS.slice(i + 1).flat();
    for (const folder of layer) {
      const peers = layer.filter((f) => f !== folder);
      const forbidden = [...higher, ...peers];
      if (forbidden.length === 0) continue;
      rules.push({
        name: `layer-${folder}`,
        comment: `src/${folder} may import only ${LAYERS.slice(0, i).flat().join(", ") || "nothing of ours"} (lower layers) and itself.`,
        severity: "error",
        from: { path: `^src/${folder}/` },
        to: { path: `^src/(${forbidden.join("|")})/` },
      });
    }
  });
  return rules;
}
