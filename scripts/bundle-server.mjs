// Bundles the service (src/server.ts and everything it imports, dependencies included) into
// dist/server.js, with the parts it loads on demand (@azure/identity, the Graph client, the
// Redis store, the SMTP door) as chunks in dist/chunks/. `npm run build` runs it after tsc.
//
// Why: node's module loader resolved, read and compiled ~1,500 files before the service could
// answer /readyz; one file starts ~100 ms sooner with 10,000 tenants (BENCHMARKS.md). What the
// service does is unchanged: the same TypeScript, per file, as tsc compiles it (isolatedModules).
//
//   node scripts/bundle-server.mjs [--outdir dist]
//
// Kept out of the bundle, read from node_modules at run time: swagger-ui-dist (static files the
// docs page serves) and yaml (loaded only for a YAML config), both production dependencies.
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * CommonJS packages inside an ES module bundle call `require` for node's built-in modules; ESM
 * has none, so every output file starts with one made for its own URL.
 */
const BANNER = "import { createRequire as __noreplyRelayRequire } from 'node:module'; const require = __noreplyRelayRequire(import.meta.url);";

/**
 * Bundles the service into `outdir` (its server.js, server.js.map and chunks/). Fails on any
 * esbuild warning: a dependency esbuild cannot follow would otherwise fail only at run time.
 * @param {{ outdir?: string }} [options]
 * @returns {Promise<{ outdir: string, files: string[], packages: string[], packageDirs: string[], sources: string[] }>}
 *   the files written (relative to outdir), the npm packages, the installed copies they came from
 *   (lockfile keys, e.g. node_modules/accepts/node_modules/mime-db) and the files of src/ bundled in.
 */
export async function bundleServer({ outdir = join(ROOT, "dist") } = {}) {
  const result = await build({
    plugins: [installedPackages()],
    absWorkingDir: ROOT,
    entryPoints: { server: "src/server.ts" },
    tsconfig: "tsconfig.build.json",
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    splitting: true,
    outdir,
    entryNames: "[name]",
    chunkNames: "chunks/[name]-[hash]",
    allowOverwrite: true,
    banner: { js: BANNER },
    // Whitespace and syntax only: names stay, so stack traces read as in the source. Not
    // keepNames: it wraps every named closure in a call that sets its .name, ~15 % more CPU
    // per send (BENCHMARKS.md). Without it, the few classes esbuild renames to avoid a clash keep
    // the new name (the Graph client's GraphError2, in an error's type), nothing of src/.
    minifyWhitespace: true,
    minifySyntax: true,
    // Positions in stack traces map to src/ with node --enable-source-maps (docs/troubleshooting.md).
    sourcemap: "linked",
    sourcesContent: false,
    legalComments: "eof",
    logLevel: "silent",
    metafile: true,
    write: true,
  });
  if (result.warnings.length > 0) {
    const text = result.warnings.map((w) => `${w.location ? `${w.location.file}:${w.location.line}: ` : ""}${w.text}`).join("\n");
    throw new Error(`esbuild warned while bundling the service:\n${text}`);
  }
  const files = Object.keys(result.metafile.outputs).map((f) => relative(outdir, resolve(ROOT, f)));
  const packages = new Set();
  const packageDirs = new Set();
  const sources = [];
  for (const input of Object.keys(result.metafile.inputs)) {
    const m = PACKAGE_PATH.exec(input);
    if (m) {
      packages.add(m[2]);
      packageDirs.add(m[1]);
    } else if (input.startsWith("src/")) sources.push(input);
  }
  return { outdir, files, packages: [...packages].sort(), packageDirs: [...packageDirs].sort(), sources: sources.sort() };
}

/** A path inside an installed package: its folder as a lockfile key (node_modules/a/node_modules/b), then the file. */
const PACKAGE_PATH = /^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\/(.*)$/;

/**
 * Where each import of an installed package (a bare specifier, not node:) is taken from, decided
 * per installed copy as the lockfile lists them (node_modules/a and node_modules/b/node_modules/a
 * may differ):
 *
 * - A copy only development needs is not in the image (npm ci --omit=dev), so the bundle leaves
 *   it out too: an optional require of one (debug's of supports-color) fails at run time and
 *   falls back, as it does without the bundle.
 * - npm installs a package once per place its version cannot be shared: express 5's mime-types 3
 *   sits in four node_modules folders (express, accepts, send, type-is) because a development
 *   dependency holds the top-level slot with mime-types 2, and each copy brings mime-db's ~150 KB
 *   table. Node would load all four; the bundle keeps one. Copies count as the same when the
 *   lockfile gives them the same name, version and integrity, and each of their dependencies, as
 *   node would resolve it from either place, is the same again (recursively). Every import of
 *   such a copy is pointed at the one with the shortest path.
 * @returns {import("esbuild").Plugin}
 */
function installedPackages() {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  const packages = lock.packages ?? {};
  const canonicalOf = identicalCopies(packages);
  return {
    name: "installed-packages",
    setup(b) {
      // Bare specifiers only (esbuild's filters are Go regular expressions: no lookahead).
      b.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === "resolving" || args.path.startsWith("node:")) return undefined;
        const found = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: "resolving" });
        if (found.errors.length > 0 || found.external) return undefined;
        const m = PACKAGE_PATH.exec(relative(ROOT, found.path).split(sep).join("/"));
        if (m === null || packages[m[1]] === undefined) return undefined;
        if (packages[m[1]].dev === true) return { path: args.path, external: true };
        const target = canonicalOf(m[1]);
        return target === m[1] ? undefined : { path: join(ROOT, target, m[3]) };
      });
    },
  };
}

/**
 * For the lockfile's `packages`, a function from an installed copy's folder to the folder of the
 * identical copy every import of it should use (itself when it has none): see installedPackages.
 * @param {Record<string, { version?: string, integrity?: string, link?: boolean, dependencies?: object, optionalDependencies?: object, peerDependencies?: object }>} packages
 * @returns {(dir: string) => string}
 */
function identicalCopies(packages) {
  const nameOf = (dir) => dir.slice(dir.lastIndexOf("node_modules/") + "node_modules/".length);
  /** Where node would find `name` from inside the package at `dir`, as a lockfile key. */
  const resolveFrom = (dir, name) => {
    for (let d = dir; ; ) {
      const candidate = `${d === "" ? "" : `${d}/`}node_modules/${name}`;
      if (packages[candidate] !== undefined) return candidate;
      if (d === "") return undefined;
      const i = d.lastIndexOf("/node_modules/");
      d = i === -1 ? "" : d.slice(0, i);
    }
  };
  /** @type {Map<string, boolean>} */
  const same = new Map();
  const equivalent = (a, b) => {
    if (a === b) return true;
    if (a === undefined || b === undefined) return false;
    const key = a < b ? `${a}\n${b}` : `${b}\n${a}`;
    const known = same.get(key);
    if (known !== undefined) return known;
    same.set(key, true); // a cycle counts as the same while it is being checked
    const pa = packages[a];
    const pb = packages[b];
    const deps = (p) => Object.keys({ ...p.dependencies, ...p.optionalDependencies, ...p.peerDependencies });
    const result =
      nameOf(a) === nameOf(b) &&
      pa.version === pb.version &&
      pa.integrity !== undefined &&
      pa.integrity === pb.integrity &&
      pa.link !== true &&
      pb.link !== true &&
      deps(pa).every((name) => equivalent(resolveFrom(a, name), resolveFrom(b, name)));
    same.set(key, result);
    return result;
  };
  /** @type {Map<string, string[]>} */
  const copies = new Map();
  for (const [dir, p] of Object.entries(packages)) {
    if (!dir.includes("node_modules/") || p.version === undefined) continue;
    const id = `${nameOf(dir)}@${p.version}`;
    copies.set(id, [...(copies.get(id) ?? []), dir]);
  }
  /** @type {Map<string, string>} */
  const canonical = new Map();
  return (dir) => {
    let c = canonical.get(dir);
    if (c === undefined) {
      const candidates = (copies.get(`${nameOf(dir)}@${packages[dir].version}`) ?? []).filter((other) => equivalent(dir, other));
      c = candidates.sort((x, y) => x.length - y.length || (x < y ? -1 : 1))[0] ?? dir;
      canonical.set(dir, c);
    }
    return c;
  };
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { outdir: { type: "string" } } });
  const outdir = values.outdir === undefined ? undefined : resolve(values.outdir);
  try {
    const { files } = await bundleServer({ outdir });
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    console.log(`${pkg.name}: bundled the service into ${relative(ROOT, outdir ?? join(ROOT, "dist")) || "."}/server.js (${files.filter((f) => f.endsWith(".js")).length} files)`);
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  }
}
