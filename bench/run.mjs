// `npm run bench`: the relay against a minimal node:http pass-through (the baseline), both in
// front of the same local Graph/Entra emulator, driven by the same load. See BENCHMARKS.md.
//
// Processes: this one only generates load and measures; the emulator, the baseline and the
// service each run in their own child process, so none shares the load generator's event loop.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { clearTimeout, setTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";
import {
  APP_SECRET,
  SEND_HEADERS,
  benchTenants,
  buildConfig,
  buildRotation,
  buildScenario,
  htmlAttachmentBody,
  smallTextBody,
  writeJson,
} from "./lib/fixtures.mjs";
import { createPacer, poolPaced, throughput } from "./lib/load.mjs";
import { cpuTimes, firstJsonLine, freePort, machineBusyMs, memory, spawnNode, stop, waitFor200 } from "./lib/procs.mjs";
import { TARGETS, formatReport } from "./lib/report.mjs";
import { formatProfileDiff, formatProfileSummary, summariseProfile } from "./summarise-profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const DIST_SERVER = join(root, "dist", "server.js");
const RUNTIME_STATS = pathToFileURL(join(here, "lib", "runtime-stats.mjs")).href;
// BENCH_EMULATOR_CLI: another emulator entry point with the same CLI (for testing the harness).
const DIST_EMULATOR_CLI = process.env.BENCH_EMULATOR_CLI ? resolve(process.env.BENCH_EMULATOR_CLI) : join(root, "dist", "emulator", "cli.js");

class HarnessError extends Error {}

const { values: argv } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    duration: { type: "string" },
    warmup: { type: "string" },
    connections: { type: "string" },
    "latency-ms": { type: "string" },
    tenants: { type: "string" },
    rate: { type: "string" },
    "rate-duration": { type: "string" },
    "rate-slices": { type: "string" },
    "startup-tenants": { type: "string" },
    "startup-runs": { type: "string" },
    rounds: { type: "string" },
    "attachment-share": { type: "string" },
    nice: { type: "string" },
    "quiet-wait": { type: "string" },
    "runtime-stats": { type: "boolean", default: false },
    "json-only": { type: "boolean", default: false },
    "baseline-only": { type: "boolean", default: false },
    "skip-startup": { type: "boolean", default: false },
    "cpu-prof": { type: "boolean", default: false },
    "cpu-prof-dir": { type: "string" },
    "log-level": { type: "string" },
    "service-node-options": { type: "string" },
    "baseline-node-options": { type: "string" },
    out: { type: "string" },
    keep: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (argv.help) {
  console.log(`usage: npm run bench -- [options]
  --quick                 short phases (whole run < 60 s)
  --duration S            throughput run per target (default 20, quick 5)
  --warmup S              warm-up per target, excluded (default 5, quick 2)
  --connections N         autocannon connections (default 64)
  --latency-ms MS         emulated Graph latency (default 20)
  --tenants N             tenants for the throughput/latency runs (default 10)
  --attachment-share F    share of HTML + 100 KB attachment mails, 0..1 (default 0.2)
  --rate R                fixed-rate latency run, req/s (default 200)
  --rate-duration S       fixed-rate run per target (default 15, quick 6)
  --rate-slices N         alternate baseline/service in N slices of the fixed-rate run (default 3, quick 2)
  --rounds N              alternating baseline/service rounds, medians reported (default 3, quick 1)
  --quiet-wait S          before each round, wait up to S s for other processes to go quiet (default 20, quick 0)
  --nice=N                scheduling niceness of the bench, its children and its autogroup, e.g. -10
                          on a shared machine (negative values need root; default 0 = unchanged)
  --startup-tenants N     tenants of the start-up/RSS run (default 10000)
  --startup-runs N        start-up repetitions, median reported (default 3, quick 1)
  --skip-startup          skip the 10,000-tenant start-up run
  --baseline-only         measure only the baseline (e.g. before the service exists)
  --cpu-prof              run service and baseline under node --cpu-prof, summarise and diff the profiles
  --cpu-prof-dir DIR      where to write the .cpuprofile (default: a temp dir)
  --runtime-stats         event-loop delay and GC pauses of baseline and service during the fixed-rate phase
  --log-level L           service LOG_LEVEL (default info, as in production)
  --service-node-options "…"   extra node flags for the service (e.g. "--max-semi-space-size=32")
  --baseline-node-options "…"  extra node flags for the baseline (e.g. "--trace-gc")
  --out FILE              also write every measurement as JSON to FILE
  --json-only             print only the final JSON line on stdout
  --keep                  keep the temp dir (configs, child logs)`);
  process.exit(0);
}

const num = (v, d) => (v === undefined ? d : Number(v));
const quick = argv.quick;
const opts = {
  quick,
  durationS: num(argv.duration, quick ? 5 : 20),
  warmupS: num(argv.warmup, quick ? 2 : 5),
  connections: num(argv.connections, 64),
  latencyMs: num(argv["latency-ms"], 20),
  tenants: num(argv.tenants, 10),
  rate: num(argv.rate, 200),
  rateDurationS: num(argv["rate-duration"], quick ? 6 : 15),
  rateSlices: Math.max(1, num(argv["rate-slices"], quick ? 2 : 3)),
  startupTenants: num(argv["startup-tenants"], 10_000),
  startupRuns: num(argv["startup-runs"], quick ? 1 : 3),
  rounds: Math.max(1, num(argv.rounds, quick ? 1 : 3)),
  attachmentShare: Math.min(1, num(argv["attachment-share"], 0.2)),
  quietWaitS: num(argv["quiet-wait"], quick ? 0 : 20),
  logLevel: argv["log-level"] ?? "info",
  nice: argv.nice === undefined ? 0 : Number(argv.nice),
};
for (const [k, v] of Object.entries(opts)) {
  if (typeof v === "number" && !(Number.isFinite(v) && (v >= 0 || k === "nice"))) {
    console.error(`bench: bad option ${k}: ${v}`);
    process.exit(1);
  }
}

const jsonOnly = argv["json-only"];
const say = (...a) => {
  if (!jsonOnly) console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
};

const tmp = mkdtempSync(join(os.tmpdir(), "noreply-relay-bench-"));
const procs = [];
const warnings = [];

function machine() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown";
  return { cpus: os.availableParallelism(), cpuModel: model, node: process.versions.node, kernel: os.release(), memGb: +(os.totalmem() / 2 ** 30).toFixed(1) };
}

// ---------------------------------------------------------------------------------------------
// Emulator

async function startEmulator(name, tenants) {
  if (!existsSync(DIST_EMULATOR_CLI)) {
    throw new HarnessError(`emulator not built: ${DIST_EMULATOR_CLI.slice(root.length + 1)} is missing (src/emulator/cli.ts has not landed, or npm run build failed)`);
  }
  const scenarioFile = writeJson(tmp, `${name}.scenario.json`, buildScenario(tenants, { latencyMs: opts.latencyMs }));
  const caOut = join(tmp, `${name}.ca.pem`);
  const args = ["--port", "0", "--host", "127.0.0.1", "--ca-out", caOut, "--scenario", scenarioFile, "--no-throttling", "--latency-ms", String(opts.latencyMs), "--no-raw"];
  const proc = spawnNode(name, [DIST_EMULATOR_CLI, ...args], {
    logDir: tmp,
    nice: opts.nice,
    stdoutPipe: true,
    env: { NODE_ENV: "production" },
  });
  procs.push(proc);
  const info = await firstJsonLine(proc, 30_000);
  const caFile = info.caFile ?? caOut;
  return { proc, url: String(info.url).replace(/\/+$/, ""), caFile, ca: readFileSync(caFile, "utf8") };
}

function httpsGetJson(url, ca) {
  return httpsJson("GET", url, ca);
}

function httpsJson(method, url, ca, body) {
  return new Promise((resolvePromise, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = payload ? { "content-type": "application/json", "content-length": payload.length } : {};
    https
      .request(url, { method, ca, agent: false, headers }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200) return reject(new HarnessError(`${method} ${url}: ${res.statusCode} ${text.slice(0, 300)}`));
          try {
            resolvePromise(JSON.parse(text));
          } catch (err) {
            reject(err);
          }
        });
      })
      .on("error", reject)
      .end(payload);
  });
}

/**
 * Collects the emulator's token requests. Its request log is a ring of the last 10,000
 * requests, so a long run would push early token requests out: poll it every second and keep
 * every token entry by id.
 */
function watchTokens(emu) {
  const seen = new Map();
  let timer;
  let stopped = false;
  const poll = async () => {
    const log = await httpsGetJson(`${emu.url}/_emulator/requests?kind=token`, emu.ca);
    const entries = Array.isArray(log) ? log : (log.value ?? []);
    for (const e of entries) if (e.kind === "token" && !seen.has(e.id)) seen.set(e.id, e);
  };
  const loop = async () => {
    try {
      await poll();
    } catch (err) {
      warnings.push(`token watcher: ${err.message}`);
    }
    if (!stopped) timer = setTimeout(loop, 1000);
  };
  void loop();
  return {
    /** Polls once more and returns the token entries seen so far, oldest first. */
    async entries() {
      await poll();
      return [...seen.values()];
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Targets: baseline and service

async function startBaseline(configFile, { cpuProfDir, stats = false } = {}) {
  const port = await freePort();
  const proc = spawnNode("baseline", [join(here, "baseline.mjs")], {
    logDir: tmp,
    nodeOptions: [
      ...(argv["baseline-node-options"] ?? "").split(/\s+/).filter(Boolean),
      ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : []),
      ...(stats ? ["--import", RUNTIME_STATS] : []),
    ],
    nice: opts.nice,
    stdoutPipe: true,
    env: {
      BENCH_CONFIG: configFile,
      PORT: String(port),
      HOST: "127.0.0.1",
      NODE_ENV: "production",
      ...(stats ? { BENCH_RUNTIME_STATS_FILE: join(tmp, "baseline.runtime.json") } : {}),
    },
  });
  procs.push(proc);
  const info = await firstJsonLine(proc, 10_000);
  return { name: "baseline", proc, url: info.url, sent: 0, statsFile: stats ? join(tmp, "baseline.runtime.json") : undefined };
}

async function startService(name, configFile, { cpuProfDir, stats = false } = {}) {
  if (!existsSync(DIST_SERVER)) {
    throw new HarnessError(
      "service not built: dist/server.js is missing — src/server.ts (the entry point reading NOREPLY_RELAY_CONFIG/PORT/HOST/LOG_LEVEL) has not landed yet, or `npm run build` failed. Run with --baseline-only to measure the baseline alone.",
    );
  }
  const port = await freePort();
  const extra = (argv["service-node-options"] ?? "").split(/\s+/).filter(Boolean);
  const nodeOptions = [...extra, ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : []), ...(stats ? ["--import", RUNTIME_STATS] : [])];
  const statsFile = join(tmp, `${name}.runtime.json`);
  const startNs = process.hrtime.bigint();
  const proc = spawnNode(name, [DIST_SERVER], {
    logDir: tmp,
    nice: opts.nice,
    nodeOptions,
    env: {
      NOREPLY_RELAY_CONFIG: configFile,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: opts.logLevel,
      NODE_ENV: "production",
      ...(stats ? { BENCH_RUNTIME_STATS_FILE: statsFile } : {}),
    },
  });
  procs.push(proc);
  const url = `http://127.0.0.1:${port}`;
  const readyMs = await waitFor200(proc, `${url}/readyz`, { startNs, timeoutMs: 30_000 });
  return { name: "service", proc, url, readyMs, sent: 0, statsFile: stats ? statsFile : undefined };
}

function postSend(url, bodyText) {
  return new Promise((resolvePromise, reject) => {
    const body = Buffer.from(bodyText);
    const req = http.request(new URL("/send", url), { method: "POST", agent: false, timeout: 30_000, headers: { ...SEND_HEADERS, "content-length": body.length } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolvePromise({ status: res.statusCode, text, json });
      });
    });
    req.once("timeout", () => req.destroy(new Error("timeout after 30 s")));
    req.once("error", reject);
    req.end(body);
  });
}

/** One small and one attachment mail per tenant must be accepted, or the numbers mean nothing. */
async function sanity(target, tenants) {
  const jobs = [];
  for (const t of tenants) jobs.push([t, smallTextBody(t, 0)], [t, htmlAttachmentBody(t, 0)]);
  const width = 8;
  target.sent += jobs.length;
  for (let i = 0; i < jobs.length; i += width) {
    const batch = jobs.slice(i, i + width);
    const results = await Promise.all(batch.map(([, body]) => postSend(target.url, JSON.stringify(body))));
    results.forEach((r, k) => {
      const [t] = batch[k];
      if (r.status !== 202 || r.json?.tenant !== t.key || r.json?.sender?.toLowerCase() !== t.sender) {
        throw new HarnessError(`${target.name}: sanity send for tenant ${t.key} answered ${r.status} ${r.text.slice(0, 400)}\n${target.proc.tail(10)}`);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

function snapshot(target, emu) {
  const others = procs.filter((p) => p !== target.proc && p !== emu.proc && !p.exitInfo).map((p) => p.pid);
  return {
    t: process.hrtime.bigint(),
    target: cpuTimes(target.proc.pid).cpuMs,
    emulator: cpuTimes(emu.proc.pid).cpuMs,
    ours: others.reduce((a, pid) => {
      try {
        return a + cpuTimes(pid).cpuMs;
      } catch {
        return a; // exited meanwhile
      }
    }, 0),
    others,
    machine: machineBusyMs(),
    self: process.cpuUsage(),
  };
}
function cpuDelta(before, after, requests) {
  const wallMs = Number(after.t - before.t) / 1e6;
  const self = process.cpuUsage(before.self);
  const selfMs = (self.user + self.system) / 1000;
  const oursMs = after.target - before.target + (after.emulator - before.emulator) + selfMs + (after.ours - before.ours);
  return {
    wallMs,
    targetCpuMs: after.target - before.target,
    targetUsPerReq: ((after.target - before.target) * 1000) / Math.max(1, requests),
    targetPct: ((after.target - before.target) / wallMs) * 100,
    emulatorPct: ((after.emulator - before.emulator) / wallMs) * 100,
    loadgenPct: (selfMs / wallMs) * 100,
    // CPU used on this machine by processes other than the bench's own (noisy neighbours).
    foreignPct: Math.max(0, ((after.machine - before.machine - oursMs) / wallMs) * 100),
  };
}

async function throughputPhase(target, emu, rotation, warmupS) {
  say(`${target.name}: warm-up ${warmupS} s`);
  if (warmupS > 0) {
    const w = await throughput({ url: target.url, connections: opts.connections, durationS: warmupS, rotation, headers: SEND_HEADERS });
    target.sent += w.requests;
  }
  say(`${target.name}: throughput ${opts.connections} connections × ${opts.durationS} s`);
  const before = snapshot(target, emu);
  const r = await throughput({ url: target.url, connections: opts.connections, durationS: opts.durationS, rotation, headers: SEND_HEADERS });
  target.sent += r.requests;
  r.cpu = cpuDelta(before, snapshot(target, emu), r.requests);
  if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0) {
    warnings.push(`${target.name} throughput: ${r.non2xx} non-2xx (${JSON.stringify(r.statuses)}), ${r.errors} errors, ${r.timeouts} timeouts`);
  }
  if (r.cpu.emulatorPct > 85) warnings.push(`${target.name} throughput: emulator at ${r.cpu.emulatorPct.toFixed(0)}% of a core — it may be the bottleneck`);
  if (r.cpu.foreignPct > 15) warnings.push(`${target.name} throughput: other processes on this machine used ${r.cpu.foreignPct.toFixed(0)}% of a core during the run — numbers are noisy`);
  if (r.cpu.loadgenPct > 85) warnings.push(`${target.name} throughput: load generator at ${r.cpu.loadgenPct.toFixed(0)}% of a core — it may be the bottleneck`);
  return r;
}

/**
 * Latency at a fixed rate for both targets, in `opts.rateSlices` alternating slices each
 * (baseline, service, baseline, …) so that a burst of outside load lands on both alike. The
 * samples of each target are pooled; the first second of each target's first slice is warm-up.
 */
async function pacedPhase(targets, emu, rotation) {
  const sliceS = opts.rateDurationS / opts.rateSlices;
  say(`fixed rate ${opts.rate} req/s × ${opts.rateDurationS} s per target, in ${opts.rateSlices} alternating slice(s)`);
  const state = targets.map((t) => ({ t, pacer: createPacer({ url: t.url, rotation, headers: SEND_HEADERS }), runs: [], cpu: [] }));
  for (let i = 0; i < opts.rateSlices; i++) {
    for (const st of state) {
      const before = snapshot(st.t, emu);
      const r = await st.pacer.run({ rate: opts.rate, durationS: i === 0 ? sliceS + 1 : sliceS, warmupS: i === 0 ? 1 : 0 });
      st.t.sent += r.sent;
      st.cpu.push(cpuDelta(before, snapshot(st.t, emu), r.sent));
      st.runs.push(r);
    }
  }
  return state.map((st) => {
    st.pacer.close();
    const r = poolPaced(st.runs, { rate: opts.rate });
    const wallMs = st.cpu.reduce((a, c) => a + c.wallMs, 0);
    const sent = st.runs.reduce((a, x) => a + x.sent, 0);
    r.cpu = {
      wallMs,
      targetUsPerReq: (st.cpu.reduce((a, c) => a + c.targetCpuMs, 0) * 1000) / sent,
      foreignPct: st.cpu.reduce((a, c) => a + c.foreignPct * c.wallMs, 0) / wallMs,
      emulatorPct: st.cpu.reduce((a, c) => a + c.emulatorPct * c.wallMs, 0) / wallMs,
    };
    const name = st.t.name;
    const bad = Object.entries(r.statuses).filter(([s]) => Number(s) >= 300);
    if (bad.length > 0 || r.errors > 0) warnings.push(`${name} fixed rate: statuses ${JSON.stringify(r.statuses)}, ${r.errors} errors`);
    if (r.cpu.foreignPct > 15) warnings.push(`${name} fixed rate: other processes on this machine used ${r.cpu.foreignPct.toFixed(0)}% of a core during the run — numbers are noisy`);
    if (r.lateMsMax > 20) warnings.push(`${name} fixed rate: the generator fell up to ${r.lateMsMax.toFixed(0)} ms behind schedule`);
    return r;
  });
}

/**
 * Waits (bounded) until processes other than the bench's own use under half a core, so a
 * neighbour's compile or test run does not land in the middle of a measurement.
 */
async function waitQuiet() {
  const deadline = Date.now() + opts.quietWaitS * 1000;
  let foreignPct = NaN;
  let waited = 0;
  while (Date.now() < deadline) {
    const ours = () => procs.filter((p) => !p.exitInfo).reduce((a, p) => {
      try {
        return a + cpuTimes(p.pid).cpuMs;
      } catch {
        return a;
      }
    }, 0);
    const m0 = machineBusyMs();
    const o0 = ours();
    const s0 = process.cpuUsage();
    await sleep(1000);
    const self = process.cpuUsage(s0);
    foreignPct = (machineBusyMs() - m0 - (ours() - o0) - (self.user + self.system) / 1000) / 10;
    if (foreignPct < 50) {
      if (waited > 0) say(`quiet after ${waited} s`);
      return;
    }
    if (waited++ === 0) say(`waiting up to ${opts.quietWaitS} s for other processes to go quiet (${foreignPct.toFixed(0)}% of a core busy)`);
  }
  if (opts.quietWaitS > 0) warnings.push(`machine not quiet after ${opts.quietWaitS} s (${foreignPct.toFixed(0)}% of a core used by other processes)`);
}

async function bareNodeStartMs() {
  const port = await freePort();
  const startNs = process.hrtime.bigint();
  const proc = spawnNode("bare-node", ["-e", `require("node:http").createServer((q,s)=>s.end("ok")).listen(${port},"127.0.0.1")`], { logDir: tmp, nice: opts.nice });
  try {
    return await waitFor200(proc, `http://127.0.0.1:${port}/`, { startNs, timeoutMs: 10_000 });
  } finally {
    await stop(proc);
  }
}

async function startupPhase(emu) {
  const n = opts.startupTenants;
  say(`start-up: ${n} tenants (${opts.startupRuns} run(s))`);
  const tenants = benchTenants(n);
  // Reuse the running emulator: replace its scenario with the big directory (PUT, not PATCH,
  // since PATCH merges tenant lists pairwise).
  await httpsJson("PUT", `${emu.url}/_emulator/scenario`, emu.ca, buildScenario(tenants, { latencyMs: opts.latencyMs }));
  const secretFile = join(tmp, "client-secret");
  const configFile = writeJson(tmp, "config-startup.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile, raiseLimits: false }));
  const bare = [];
  for (let i = 0; i < (opts.quick ? 1 : 3); i++) bare.push(await bareNodeStartMs());
  const runsMs = [];
  let rssIdleMb = NaN;
  let rssMb = NaN;
  const touched = Math.min(100, n);
  for (let i = 0; i < opts.startupRuns; i++) {
    const svc = await startService(`service-startup-${i}`, configFile);
    runsMs.push(svc.readyMs);
    if (i === opts.startupRuns - 1) {
      await sleep(1000);
      rssIdleMb = memory(svc.proc.pid).rssMb;
      // Touch some tenants so that per-tenant state (token cache, limiter, metrics labels) exists.
      const step = Math.max(1, Math.floor(n / touched));
      const picked = Array.from({ length: touched }, (_, k) => tenants[k * step]);
      for (let k = 0; k < picked.length; k += 10) {
        const rs = await Promise.all(picked.slice(k, k + 10).map((t) => postSend(svc.url, JSON.stringify(smallTextBody(t, k)))));
        const bad = rs.find((r) => r.status !== 202);
        if (bad) warnings.push(`start-up run: a send answered ${bad.status} ${bad.text.slice(0, 200)}`);
      }
      await sleep(500);
      rssMb = memory(svc.proc.pid).rssMb;
    }
    await stop(svc.proc, 25_000);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return { tenants: n, runsMs, startupMs: median(runsMs), bareNodeMs: median(bare), rssIdleMb, rssMb, touched, configBytes: readFileSync(configFile).length };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const m = machine();
  if (opts.nice !== 0) {
    os.setPriority(opts.nice);
    // With autogroup scheduling (Linux default on desktops and many VMs) niceness only ranks
    // processes within their session's group; the group's own niceness ranks the sessions.
    // The bench's children stay in its session, so this covers all of them.
    try {
      writeFileSync("/proc/self/autogroup", String(opts.nice));
    } catch {
      /* no autogroup */
    }
  }
  say(`machine: ${m.cpus} × ${m.cpuModel}, Node ${m.node}; temp dir ${tmp}`);
  const tenants = benchTenants(opts.tenants);
  const rotation = buildRotation(tenants, { attachmentShare: opts.attachmentShare });
  const attachShare = rotation.filter((r) => r.kind === "attachment").length / rotation.length;
  const mix = `${Math.round((1 - attachShare) * 100)}% small text / ${Math.round(attachShare * 100)}% HTML + 100 KB attachment, over ${new Set(rotation.map((r) => r.tenant)).size} tenants`;

  writeFileSync(join(tmp, "client-secret"), APP_SECRET);
  say(`emulator: ${opts.tenants} tenants, latency ${opts.latencyMs} ms, throttling off`);
  const emu = await startEmulator("emulator", tenants);
  const configFile = writeJson(tmp, "config.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile: join(tmp, "client-secret"), raiseLimits: true }));

  const cpuProfDir = argv["cpu-prof"] ? resolve(argv["cpu-prof-dir"] ?? join(tmp, "cpuprof")) : undefined;
  const tokens = watchTokens(emu);
  const stats = argv["runtime-stats"];
  const baseline = await startBaseline(configFile, { cpuProfDir: cpuProfDir && join(cpuProfDir, "baseline"), stats });
  await sanity(baseline, tenants);
  // The baseline fetches its tokens in its sanity pass; every later token request is the service's.
  const baselineTokenIds = new Set((await tokens.entries()).map((e) => e.id));

  let service;
  let serviceError;
  if (!argv["baseline-only"]) {
    try {
      service = await startService("service", configFile, { cpuProfDir: cpuProfDir && join(cpuProfDir, "service"), stats });
      await sanity(service, tenants);
    } catch (err) {
      if (!(err instanceof HarnessError)) throw err;
      serviceError = err;
      if (service) await stop(service.proc);
      service = undefined;
    }
  }

  const d = { machine: m, opts, mix, warnings, rounds: [], service: service ? {} : undefined, startup: undefined, result: {} };
  // Rounds alternate baseline and service so that a noisy neighbour hurts both alike; the
  // reported figures are medians over rounds.
  for (let round = 1; round <= opts.rounds; round++) {
    await waitQuiet();
    const warmupS = round === 1 ? opts.warmupS : Math.min(opts.warmupS, 1);
    d.rounds.push({
      round,
      baseline: await throughputPhase(baseline, emu, rotation, warmupS),
      service: service ? await throughputPhase(service, emu, rotation, warmupS) : undefined,
    });
  }
  // --runtime-stats: the preload starts its window afresh on SIGUSR2.
  if (stats) for (const t of [baseline, service]) if (t) t.proc.child.kill("SIGUSR2");
  for (const r of d.rounds) {
    await waitQuiet();
    [r.baselinePaced, r.servicePaced] = await pacedPhase(service ? [baseline, service] : [baseline], emu, rotation);
  }

  const serviceTokens = (await tokens.entries()).filter((e) => !baselineTokenIds.has(e.id));
  tokens.stop();
  if (service) {
    const mem = memory(service.proc.pid);
    d.service.rssMb = mem.rssMb;
    d.service.hwmMb = mem.hwmMb;
    d.service.readyMs = service.readyMs;
    const perTenant = new Map();
    for (const e of serviceTokens) perTenant.set(e.tenant, (perTenant.get(e.tenant) ?? 0) + 1);
    d.service.tokenRequestsPerTenant = Object.fromEntries(perTenant);
    d.service.tokenRequestStatuses = serviceTokens.reduce((a, e) => ({ ...a, [e.status]: (a[e.status] ?? 0) + 1 }), {});
    if ([...perTenant.values()].some((n) => n !== 1) || perTenant.size !== opts.tenants) {
      warnings.push(`token requests per tenant: ${JSON.stringify(d.service.tokenRequestsPerTenant)}`);
    }
  }
  const tokenRequests = service ? serviceTokens.length : null;

  d.baselineMem = memory(baseline.proc.pid);
  d.sent = { baseline: baseline.sent, service: service?.sent };
  const baselineExit = await stop(baseline.proc);
  if (cpuProfDir) d.baselineProfile = profileReport("baseline", join(cpuProfDir, "baseline"), baselineExit, baseline.sent);
  if (service) {
    const exit = await stop(service.proc, 25_000);
    if (cpuProfDir) d.profile = profileReport("service", join(cpuProfDir, "service"), exit, service.sent);
  }
  if (stats) {
    d.runtimeStats = {};
    for (const t of [baseline, service]) {
      if (!t) continue;
      try {
        d.runtimeStats[t.name] = JSON.parse(readFileSync(t.statsFile, "utf8"));
      } catch (err) {
        warnings.push(`--runtime-stats: nothing from ${t.name} (${err.message})`);
      }
    }
  }
  if (service && !argv["skip-startup"]) d.startup = await startupPhase(emu);
  await stop(emu.proc);

  const med = (xs) => {
    const v = xs.filter((x) => typeof x === "number" && !Number.isNaN(x)).sort((a, b) => a - b);
    return v.length === 0 ? NaN : v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  };
  const R = d.rounds;
  d.summary = {
    baselineRps: med(R.map((r) => r.baseline.rps)),
    serviceRps: service ? med(R.map((r) => r.service.rps)) : NaN,
    ratio: service ? med(R.map((r) => r.service.rps / r.baseline.rps)) : NaN,
    baselineP50: med(R.map((r) => r.baselinePaced.latency.p50)),
    baselineP99: med(R.map((r) => r.baselinePaced.latency.p99)),
    serviceP50: service ? med(R.map((r) => r.servicePaced.latency.p50)) : NaN,
    serviceP99: service ? med(R.map((r) => r.servicePaced.latency.p99)) : NaN,
    p50Overhead: service ? med(R.map((r) => r.servicePaced.latency.p50 - r.baselinePaced.latency.p50)) : NaN,
    p90Overhead: service ? med(R.map((r) => r.servicePaced.latency.p90 - r.baselinePaced.latency.p90)) : NaN,
    p99Overhead: service ? med(R.map((r) => r.servicePaced.latency.p99 - r.baselinePaced.latency.p99)) : NaN,
    // What the ratio would be if the relay process alone were the bottleneck.
    cpuCapacityRatio: service ? med(R.map((r) => r.baseline.cpu.targetUsPerReq / r.service.cpu.targetUsPerReq)) : NaN,
  };
  const S = d.summary;
  const r2 = (x, k = 2) => (x === null || x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(k)));
  d.result = {
    rps: r2(S.serviceRps, 0),
    baselineRps: r2(S.baselineRps, 0),
    ratio: r2(S.ratio, 3),
    p50OverheadMs: r2(S.p50Overhead),
    p99OverheadMs: r2(S.p99Overhead),
    tokenRequests,
    tenants: opts.tenants,
    rssMb: service ? r2(d.service.rssMb, 1) : null,
    startupMs10kTenants: d.startup ? r2(d.startup.startupMs, 0) : null,
    rssMb10kTenants: d.startup ? r2(Math.max(d.startup.rssMb, d.startup.rssIdleMb), 1) : null,
  };

  if (!jsonOnly) {
    console.log(formatReport(d));
    if (d.profile) console.log(`\n${d.profile.text}`);
    if (d.baselineProfile) console.log(`\n${d.baselineProfile.text}`);
    if (d.profile && d.baselineProfile) console.log(`\n${formatProfileDiff(d.profile.summary, d.baselineProfile.summary)}`);
    if (serviceError) console.log(`\nservice half not measured: ${serviceError.message}`);
  }
  if (argv.out) writeFileSync(resolve(argv.out), `${JSON.stringify({ ...d, targets: TARGETS.map((t) => ({ key: t.key, want: t.want })) }, null, 2)}\n`);
  if ((keepTmp() || serviceError) && !jsonOnly) console.error(`temp dir kept: ${tmp}`);
  console.log(JSON.stringify(d.result));
  return serviceError && !argv["baseline-only"] ? 2 : 0;
}

function profileReport(name, dir, exit, requests) {
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")) : [];
  if (files.length === 0) {
    warnings.push(`--cpu-prof: no .cpuprofile in ${dir} (${name} exit ${JSON.stringify(exit)}; the profile is written only when the process exits by itself on SIGTERM)`);
    return undefined;
  }
  const file = join(dir, files.sort().at(-1));
  const summary = summariseProfile(JSON.parse(readFileSync(file, "utf8")), { top: 30, requests });
  return { file, summary, text: `CPU profile of the ${name}: ${file}\n${formatProfileSummary(summary)}` };
}

/** A profile in the temp dir is the point of --cpu-prof: keep it. */
function keepTmp() {
  return argv.keep || (argv["cpu-prof"] && argv["cpu-prof-dir"] === undefined);
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench failed: ${err instanceof HarnessError ? err.message : err?.stack ?? err}`);
  code = 1;
} finally {
  await Promise.all(procs.map((p) => stop(p, 3000).catch(() => undefined)));
  if (code === 1 && !jsonOnly) console.error(`temp dir kept: ${tmp}`);
  if (!keepTmp() && code === 0) {
    rmSync(tmp, { recursive: true, force: true });
  }
}
process.exit(code);

