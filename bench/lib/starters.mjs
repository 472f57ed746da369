// The bench's three kinds of process, started one way for every script (run.mjs, ab.mjs,
// tenant-memory.mjs): the emulator, a pass-through baseline, and a build of the service.
// Each returns the process (see procs.mjs) and where it answers; the caller stops it. `track`
// gets the process as soon as it is spawned, so a caller can stop it even when it never gets ready.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildScenario, writeJson } from "./fixtures.mjs";
import { firstJsonLine, freePort, spawnNode, waitFor200 } from "./procs.mjs";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** The emulator's CLI, as `npm run emulator` runs it. BENCH_EMULATOR_CLI: another entry point with the same CLI. */
export const EMULATOR_CLI = process.env.BENCH_EMULATOR_CLI ? resolve(process.env.BENCH_EMULATOR_CLI) : join(root, "src", "emulator", "cli.ts");
/** The built service. */
export const DIST_SERVER = join(root, "dist", "server.js");

/**
 * The node options of the image's runtime stage (its `NODE_OPTIONS`, read from the Dockerfile):
 * every baseline and service process runs with them, before any given for one run, so the bench
 * measures the heap users run with (docs/operations.md#heap), on any machine's memory.
 */
export const IMAGE_NODE_OPTIONS = (() => {
  const m = /^\s*(?:ENV\s+)?NODE_OPTIONS=(?:"([^"]*)"|(\S+))/m.exec(readFileSync(join(root, "Dockerfile"), "utf8"));
  if (!m) throw new Error("Dockerfile: no NODE_OPTIONS in an ENV of the runtime stage");
  return (m[1] ?? m[2]).split(/\s+/).filter(Boolean);
})();

/**
 * The emulator with `tenants` (bench/lib/fixtures.mjs benchTenants), throttling off and a fixed
 * Graph latency; its scenario and CA are written to `logDir` under `name`.
 * Resolves `{ proc, url, caFile, ca }`.
 */
export async function startEmulator({ name = "emulator", logDir, tenants, latencyMs, nice = 0, nodeOptions = [], timeoutMs = 30_000, track = () => {} }) {
  if (!existsSync(EMULATOR_CLI)) throw new Error(`emulator entry point ${EMULATOR_CLI.slice(root.length + 1)} is missing`);
  const scenarioFile = writeJson(logDir, `${name}.scenario.json`, buildScenario(tenants, { latencyMs }));
  const caOut = join(logDir, `${name}.ca.pem`);
  const args = ["--port", "0", "--host", "127.0.0.1", "--ca-out", caOut, "--scenario", scenarioFile, "--no-throttling", "--latency-ms", String(latencyMs), "--no-raw"];
  const proc = spawnNode(name, [...(EMULATOR_CLI.endsWith(".ts") ? ["--import", "tsx"] : []), EMULATOR_CLI, ...args], {
    logDir,
    nodeOptions,
    nice,
    stdoutPipe: true,
    env: { NODE_ENV: "production" },
  });
  track(proc);
  const info = await firstJsonLine(proc, timeoutMs);
  const caFile = info.caFile ?? caOut;
  return { proc, url: String(info.url).replace(/\/+$/, ""), caFile, ca: readFileSync(caFile, "utf8") };
}

/**
 * A pass-through baseline (bench/lean-baseline.mjs or bench/baseline.mjs) on the service's
 * config file, on a free loopback port. Resolves `{ proc, url }`.
 */
export async function startBaseline({ name, script, logDir, configFile, nodeOptions = [], env = {}, nice = 0, track = () => {} }) {
  const port = await freePort();
  const proc = spawnNode(name, [join(root, "bench", script)], {
    logDir,
    nodeOptions: [...IMAGE_NODE_OPTIONS, ...nodeOptions],
    nice,
    stdoutPipe: true,
    env: { BENCH_CONFIG: configFile, PORT: String(port), HOST: "127.0.0.1", NODE_ENV: "production", ...env },
  });
  track(proc);
  const info = await firstJsonLine(proc, 10_000);
  return { proc, url: info.url };
}

/**
 * The service (`server`: a server.js, by default the build in dist/) with `configFile`, on a free
 * loopback port, once its /readyz answers 200. Resolves `{ proc, url, readyMs }`, readyMs from
 * spawn to that answer.
 */
export async function startService({ name = "service", server = DIST_SERVER, logDir, configFile, logLevel = "info", nodeOptions = [], env = {}, nice = 0, timeoutMs = 30_000, track = () => {} }) {
  if (!existsSync(server)) throw new Error(`service not built: ${server.startsWith(root) ? server.slice(root.length + 1) : server} is missing (npm run build)`);
  const port = await freePort();
  const startNs = process.hrtime.bigint();
  const proc = spawnNode(name, [server], {
    logDir,
    nice,
    nodeOptions: [...IMAGE_NODE_OPTIONS, ...nodeOptions],
    env: { NOREPLY_RELAY_CONFIG: configFile, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: logLevel, NODE_ENV: "production", ...env },
  });
  track(proc);
  const url = `http://127.0.0.1:${port}`;
  const readyMs = await waitFor200(proc, `${url}/readyz`, { startNs, timeoutMs });
  return { proc, url, readyMs };
}
