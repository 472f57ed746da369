// `npm run bench`: the relay against a minimal node:http pass-through (the baseline), both in
// front of the same local Graph/Entra emulator, driven by the same load. See BENCHMARKS.md.
//
// Processes: this one only generates load and measures; the emulator, the baseline and the
// service each run in their own child process, so none shares the load generator's event loop.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
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
  prng,
  smallTextBody,
  writeJson,
} from "./lib/fixtures.mjs";
import { createPacer, median, poolPaced, sequential, throughput } from "./lib/load.mjs";
import { cpuTimes, firstJsonLine, freePort, getMetrics, httpsJson as httpsJsonRequest, machineBusyMs, memory, spawnNode, stop, waitFor200 } from "./lib/procs.mjs";
import { findRedisServer, startRedis } from "./lib/redis.mjs";
import { DIST_SERVER, IMAGE_NODE_OPTIONS, startBaseline as startBaselineProcess, startEmulator as startEmulatorProcess, startService as startServiceProcess } from "./lib/starters.mjs";
import { TARGETS, formatReport, table, targetResults } from "./lib/report.mjs";
import { analyseTrace, formatStoreReport, keyGenerator, perSend, storeMeter, sumStoreDeltas } from "./lib/store-bench.mjs";
import { createSmtpClients, makeSmtpTls, smtpConfig, smtpPaced, smtpThroughput, summarise as summariseMs } from "./lib/smtp-bench.mjs";
import { formatProfileDiff, formatProfileSummary, summariseProfile } from "./summarise-profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const RUNTIME_STATS = pathToFileURL(join(here, "lib", "runtime-stats.mjs")).href;
const REDIS_TRACE = pathToFileURL(join(here, "lib", "redis-trace.mjs")).href;
// The emulator is not part of the product build (dist/): it runs from source through tsx, as
// `npm run emulator` does (bench/lib/starters.mjs).

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
    "throughput-mix": { type: "string" },
    "throughput-latency-ms": { type: "string" },
    "pod-memory-mib": { type: "string" },
    "rss-tenants-used": { type: "string" },
    "idem-keys": { type: "string" },
    "idem-max-bytes": { type: "string" },
    "skip-idempotency": { type: "boolean", default: false },
    store: { type: "string", default: "auto" },
    "skip-startup": { type: "boolean", default: false },
    smtp: { type: "string" },
    "smtp-only": { type: "boolean", default: false },
    "startup-only": { type: "boolean", default: false },
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
  --quick                 short phases (whole run ≈ 2 min, build included)
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
  --throughput-mix on|off also run the closed-loop rounds with the 80/20 mix (default on, quick off);
                          the targets use the small-text rounds either way
  --throughput-latency-ms MS  Graph latency during the closed-loop runs, so that they are CPU-bound
                          (default 1; the fixed-rate and one-at-a-time runs use --latency-ms)
  --startup-tenants N     tenants of the start-up/RSS run (default 10000)
  --startup-runs N        start-up repetitions, median reported (default 5, quick 3)
  --rss-tenants-used N    tenants of the start-up run that get a send before RSS is read (default 1000)
  --pod-memory-mib M      then the same sends in a pod with this memory limit: V8's old generation as
                          node sizes it there (M/2, measured up to 4096), the image's NODE_OPTIONS
                          (default 512, the chart's limit; 0: skip); then 10 s of the mix in closed
                          loop for the peak RSS (podRss.hwmMbUnderLoad: the chart's memory request)
  --skip-startup          skip the 10,000-tenant start-up run
  --smtp on|off           also compare the SMTP door with POST /send of the same service on the same
                          emulator: messages/s (closed loop) and the latency SMTP adds at --rate
                          (default on, quick off; adds ≈ 1 min, ≈ 25 s with --quick)
  --smtp-only             only the SMTP comparison (with --rounds/--duration/--rate-duration)
  --startup-only          only the start-up/RSS run (prints its JSON: startupMs10kTenants, rssMb10kTenants1kUsed, …)
  --idem-keys N           keys of the idempotency-store memory run (default 200000)
  --idem-max-bytes B      maxBytes of its second run, below what the keys need (default 33554432)
  --skip-idempotency      skip the idempotency-store memory run
  --baseline-only         measure only the references: lean, https.Agent, stack floor (e.g. before the service exists)
  --store MODE            auto (default): the normal run, then a short shared-store phase (the service
                          with store.type redis against the same service with the memory store) when
                          redis-server is on PATH (or BENCH_REDIS_SERVER); memory: no such phase;
                          redis: only the shared-store comparison, with --rounds/--duration/--rate-duration
  --cpu-prof              run service and baseline under node --cpu-prof, summarise and diff the profiles
  --cpu-prof-dir DIR      where to write the .cpuprofile (default: a temp dir)
  --runtime-stats         event-loop delay and GC pauses of baseline and service during the fixed-rate phase
  --log-level L           service LOG_LEVEL (default info, as in production)
  --service-node-options "…"   extra node flags for the service (e.g. "--max-semi-space-size=32")
  --baseline-node-options "…"  extra node flags for the references (e.g. "--trace-gc")
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
  startupRuns: Math.max(1, num(argv["startup-runs"], quick ? 3 : 5)),
  rssTenantsUsed: num(argv["rss-tenants-used"], 1000),
  podMemoryMib: num(argv["pod-memory-mib"], 512),
  throughputMix: (argv["throughput-mix"] ?? (quick ? "off" : "on")) === "on",
  smtp: argv["smtp-only"] || (argv.smtp ?? (quick ? "off" : "on")) === "on",
  // Closed-loop runs are CPU-bound (issue 15): with 20 ms per Graph call, 64 connections cap
  // any target at 64 / 22 ms ≈ 2,900 req/s, which the lean baseline reaches on a quiet machine.
  throughputLatencyMs: num(argv["throughput-latency-ms"], 1),
  idemKeys: num(argv["idem-keys"], 200_000),
  idemMaxBytes: num(argv["idem-max-bytes"], 32 * 1024 * 1024),
  rounds: Math.max(1, num(argv.rounds, quick ? 1 : 3)),
  attachmentShare: Math.min(1, num(argv["attachment-share"], 0.2)),
  quietWaitS: num(argv["quiet-wait"], quick ? 0 : 20),
  logLevel: argv["log-level"] ?? "info",
  store: argv.store,
  nice: argv.nice === undefined ? 0 : Number(argv.nice),
};
if (!["on", "off"].includes(argv.smtp ?? "on")) {
  console.error("bench: --smtp must be on or off");
  process.exit(1);
}
if (!["on", "off"].includes(argv["throughput-mix"] ?? "on")) {
  console.error("bench: --throughput-mix must be on or off");
  process.exit(1);
}
for (const [k, v] of Object.entries(opts)) {
  if (v !== undefined && typeof v === "number" && !(Number.isFinite(v) && (v >= 0 || k === "nice"))) {
    console.error(`bench: bad option ${k}: ${v}`);
    process.exit(1);
  }
}

if (!["auto", "memory", "redis"].includes(opts.store)) {
  console.error(`bench: --store must be auto, memory or redis, not ${opts.store}`);
  process.exit(1);
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

function startEmulator(name, tenants) {
  return startEmulatorProcess({ name, logDir: tmp, tenants, latencyMs: opts.latencyMs, nice: opts.nice, track: (p) => procs.push(p) }).catch((err) => {
    throw new HarnessError(err.message);
  });
}

function httpsGetJson(url, ca) {
  return httpsJson("GET", url, ca);
}

function httpsJson(method, url, ca, body) {
  return httpsJsonRequest(method, url, ca, body, { statusError: (message) => new HarnessError(message) });
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

/** The two pass-throughs the service is compared with; `lean` is the primary one (issue 15). */
const BASELINES = {
  lean: { script: "lean-baseline.mjs", name: "lean", label: "lean baseline (node:http + undici)" },
  httpsAgent: { script: "baseline.mjs", name: "https-agent", label: "https.Agent baseline" },
  // Not a pass-through to beat but the least the project's fixed stack costs (bench/stack-floor.mjs).
  stackFloor: { script: "stack-floor.mjs", name: "stack-floor", label: "stack floor (lean + express, zod, Graph client, pino, prom-client)" },
};
const BASELINE_KEYS = Object.keys(BASELINES);

async function startBaseline(kind, configFile, { cpuProfDir, stats = false } = {}) {
  const { script, name, label } = BASELINES[kind];
  const statsFile = join(tmp, `${name}.runtime.json`);
  const { proc, url } = await startBaselineProcess({
    name,
    script,
    logDir: tmp,
    configFile,
    nodeOptions: [
      ...(argv["baseline-node-options"] ?? "").split(/\s+/).filter(Boolean),
      ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : []),
      ...(stats ? ["--import", RUNTIME_STATS] : []),
    ],
    nice: opts.nice,
    env: stats ? { BENCH_RUNTIME_STATS_FILE: statsFile } : {},
    track: (p) => procs.push(p),
  });
  return { key: kind, name, label, proc, url, sent: 0, statsFile: stats ? statsFile : undefined };
}

async function startService(name, configFile, { cpuProfDir, stats = false, nodeOptions: more = [], env = {} } = {}) {
  if (!existsSync(DIST_SERVER)) {
    throw new HarnessError(
      "service not built: dist/server.js is missing — src/server.ts (the entry point reading NOREPLY_RELAY_CONFIG/PORT/HOST/LOG_LEVEL) has not landed yet, or `npm run build` failed. Run with --baseline-only to measure the baseline alone.",
    );
  }
  const extra = (argv["service-node-options"] ?? "").split(/\s+/).filter(Boolean);
  const nodeOptions = [...extra, ...more, ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : []), ...(stats ? ["--import", RUNTIME_STATS] : [])];
  const statsFile = join(tmp, `${name}.runtime.json`);
  const { proc, url, readyMs } = await startServiceProcess({
    name,
    logDir: tmp,
    configFile,
    logLevel: opts.logLevel,
    nodeOptions,
    nice: opts.nice,
    env: { ...(stats ? { BENCH_RUNTIME_STATS_FILE: statsFile } : {}), ...env },
    track: (p) => procs.push(p),
  });
  return { key: "service", name: "service", label: "service", proc, url, readyMs, sent: 0, statsFile: stats ? statsFile : undefined };
}

function postSend(url, bodyText, headers = {}) {
  return new Promise((resolvePromise, reject) => {
    const body = Buffer.from(bodyText);
    const req = http.request(new URL("/send", url), { method: "POST", agent: false, timeout: 30_000, headers: { ...SEND_HEADERS, ...headers, "content-length": body.length } }, (res) => {
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
        resolvePromise({ status: res.statusCode, text, json, headers: res.headers });
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

/**
 * `nextKey`: every request carries a fresh Idempotency-Key. `meter` (of the Redis-backed
 * service): started right before and stopped right after the measured run, outside its timing.
 */
async function throughputPhase(target, emu, rotation, warmupS, { durationS = opts.durationS, nextKey, meter, label = target.name } = {}) {
  say(`${label}: warm-up ${warmupS} s`);
  if (warmupS > 0) {
    const w = await throughput({ url: target.url, connections: opts.connections, durationS: warmupS, rotation, headers: SEND_HEADERS, nextKey });
    target.sent += w.requests;
  }
  say(`${label}: throughput ${opts.connections} connections × ${durationS} s`);
  await meter?.start();
  const before = snapshot(target, emu);
  const r = await throughput({ url: target.url, connections: opts.connections, durationS, rotation, headers: SEND_HEADERS, nextKey });
  target.sent += r.requests;
  r.cpu = cpuDelta(before, snapshot(target, emu), r.requests);
  if (meter) r.store = await meter.stop(r.requests);
  if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0) {
    warnings.push(`${label} throughput: ${r.non2xx} non-2xx (${JSON.stringify(r.statuses)}), ${r.errors} errors, ${r.timeouts} timeouts`);
  }
  if (r.cpu.emulatorPct > 85) warnings.push(`${label} throughput: emulator at ${r.cpu.emulatorPct.toFixed(0)}% of a core — it may be the bottleneck`);
  if (r.cpu.foreignPct > 15) warnings.push(`${label} throughput: other processes on this machine used ${r.cpu.foreignPct.toFixed(0)}% of a core during the run — numbers are noisy`);
  if (r.cpu.loadgenPct > 85) warnings.push(`${label} throughput: load generator at ${r.cpu.loadgenPct.toFixed(0)}% of a core — it may be the bottleneck`);
  return r;
}

/**
 * Latency at a fixed rate for both targets, in `opts.rateSlices` alternating slices each
 * (baseline, service, baseline, …) so that a burst of outside load lands on both alike. The
 * samples of each target are pooled; the first second of each target's first slice is warm-up.
 */
async function pacedPhase(targets, emu, rotation, { rateDurationS = opts.rateDurationS, rateSlices = opts.rateSlices, nextKey, meters = new Map(), label = "" } = {}) {
  const sliceS = rateDurationS / rateSlices;
  say(`${label}fixed rate ${opts.rate} req/s × ${rateDurationS} s per target, in ${rateSlices} alternating slice(s)`);
  const state = targets.map((t) => ({ t, pacer: createPacer({ url: t.url, rotation, headers: SEND_HEADERS, nextKey }), runs: [], cpu: [], store: [] }));
  for (let i = 0; i < rateSlices; i++) {
    for (const st of state) {
      const meter = meters.get(st.t);
      await meter?.start();
      const before = snapshot(st.t, emu);
      const r = await st.pacer.run({ rate: opts.rate, durationS: i === 0 ? sliceS + 1 : sliceS, warmupS: i === 0 ? 1 : 0 });
      st.t.sent += r.sent;
      st.cpu.push(cpuDelta(before, snapshot(st.t, emu), r.sent));
      if (meter) st.store.push(await meter.stop(r.sent));
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
    if (st.store.length > 0) r.store = sumStoreDeltas(st.store);
    const name = `${label}${st.t.name}`;
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

/** The start-up run's pod figures for the JSON line. */
function podRss(pod) {
  return pod ? { memoryMib: pod.memoryMib, rssMb10kTenants1kUsed: r2(pod.rssMb, 1), rssMb10kTenantsIdle: r2(pod.rssIdleMb, 1), hwmMbUnderLoad: r2(pod.hwmMbUnderLoad, 1) } : null;
}

async function startupPhase(emu) {
  const n = opts.startupTenants;
  const used = Math.min(opts.rssTenantsUsed, n);
  say(`start-up: ${n} tenants (${opts.startupRuns} run(s)), then a send to each of ${used} of them`);
  const tenants = benchTenants(n);
  // Reuse the running emulator: replace its scenario with the big directory (PUT, not PATCH,
  // since PATCH merges tenant lists pairwise).
  await httpsJson("PUT", `${emu.url}/_emulator/scenario`, emu.ca, buildScenario(tenants, { latencyMs: opts.latencyMs }));
  const secretFile = join(tmp, "client-secret");
  const configFile = writeJson(tmp, "config-startup.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile, raiseLimits: false }));
  const bare = [];
  for (let i = 0; i < 3; i++) bare.push(await bareNodeStartMs());
  const runsMs = [];
  let rssIdleMb = NaN;
  let rssMb = NaN;
  let hwmMb = NaN;
  let sendMs = NaN;
  let failed = 0;
  let heap;
  // `used` tenants spread evenly over the directory, sent to in a shuffled order (fixed seed),
  // 16 at a time: each gets its per-tenant state (token, mailbox limiter, recipient count,
  // status, metrics labels) as in production, where many tenants send a little.
  const step = Math.max(1, Math.floor(n / used));
  const picked = Array.from({ length: used }, (_, k) => tenants[k * step]);
  const rnd = prng(15);
  for (let k = picked.length - 1; k > 0; k--) {
    const j = Math.floor(rnd() * (k + 1));
    [picked[k], picked[j]] = [picked[j], picked[k]];
  }
  const sendToPicked = async (svc, label) => {
    const t0 = Date.now();
    for (let k = 0; k < picked.length; k += 16) {
      const rs = await Promise.all(picked.slice(k, k + 16).map((t, j) => postSend(svc.url, JSON.stringify(smallTextBody(t, k + j)))));
      for (const r of rs) {
        if (r.status === 202) continue;
        if (failed++ === 0) warnings.push(`${label}: a send answered ${r.status} ${r.text.slice(0, 200)}`);
      }
    }
    svc.sent += picked.length;
    return Date.now() - t0;
  };
  for (let i = 0; i < opts.startupRuns; i++) {
    const svc = await startService(`service-startup-${i}`, configFile);
    runsMs.push(svc.readyMs);
    if (i === opts.startupRuns - 1) {
      await sleep(1000);
      rssIdleMb = memory(svc.proc.pid).rssMb;
      sendMs = await sendToPicked(svc, "start-up run");
      await sleep(1000);
      ({ rssMb, hwmMb } = memory(svc.proc.pid));
      heap = await readHeapMetrics(svc.url).catch((err) => ({ error: err.message }));
    }
    await stop(svc.proc, 25_000);
  }
  // The same in the chart's pod: node sizes V8's old generation from the memory limit (half of
  // it), the image's NODE_OPTIONS keeps the young generation (docs/operations.md#heap).
  let pod;
  if (opts.podMemoryMib > 0) {
    const svc = await startService("service-pod", configFile, { nodeOptions: [`--max-old-space-size=${Math.floor(opts.podMemoryMib / 2)}`] });
    await sleep(1000);
    const idle = memory(svc.proc.pid).rssMb;
    await sendToPicked(svc, `pod of ${opts.podMemoryMib} MiB`);
    await sleep(1000);
    pod = { memoryMib: opts.podMemoryMib, rssIdleMb: idle, rssMb: memory(svc.proc.pid).rssMb };
    // Then load, for the chart's memory request: the peak RSS (VmHWM) under the closed loop of
    // the mix, over 100 of the tenants sent to (a mailbox rarely has two sends in flight).
    const load = await throughput({ url: svc.url, connections: opts.connections, durationS: 10, rotation: buildRotation(picked, { attachmentShare: opts.attachmentShare }), headers: SEND_HEADERS });
    pod.hwmMbUnderLoad = memory(svc.proc.pid).hwmMb;
    if (load.non2xx > load.requests / 100) warnings.push(`pod of ${opts.podMemoryMib} MiB under load: ${load.non2xx} of ${load.requests} sends were not accepted`);
    await stop(svc.proc, 25_000);
  }
  if (failed > 0) warnings.push(`start-up run: ${failed} sends were not accepted`);
  return { tenants: n, runsMs, startupMs: median(runsMs), bareNodeMs: median(bare), rssIdleMb, rssMb, hwmMb, heap, pod, touched: used, failed, sendMs, configBytes: readFileSync(configFile).length };
}

/** The service's V8 heap from its /metrics (prom-client's default metrics), in MB. */
async function readHeapMetrics(url) {
  const { status, text } = await getMetrics(url);
  if (status !== 200) throw new Error(`/metrics answered ${status}`);
  const v = (name) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN) / 2 ** 20;
  return { heapUsedMb: v("nodejs_heap_size_used_bytes"), heapTotalMb: v("nodejs_heap_size_total_bytes"), externalMb: v("nodejs_external_memory_bytes") };
}

/**
 * Bytes per remembered Idempotency-Key (bench/idempotency-memory.mjs, a process of its own with
 * --expose-gc): once with room for every key (per-key RSS and heap), once with maxBytes below
 * what the keys need (does the memory really stay within maxBytes?).
 */
async function idempotencyPhase() {
  const run = async (name, extra) => {
    const proc = spawnNode(name, [...IMAGE_NODE_OPTIONS, "--expose-gc", join(here, "idempotency-memory.mjs"), "--keys", String(opts.idemKeys), ...extra], { logDir: tmp, nice: opts.nice, stdoutPipe: true });
    procs.push(proc);
    const timeoutMs = 60_000 + opts.idemKeys * 0.5;
    try {
      return await firstJsonLine(proc, timeoutMs);
    } finally {
      await stop(proc, 2000);
    }
  };
  // The two runs share the machine's two cores (nothing else of the bench runs meanwhile): each
  // measures its own process's memory, which the other's CPU use does not change.
  say(`idempotency store: ${opts.idemKeys} keys with room for all, and ${opts.idemKeys} keys under maxBytes ${opts.idemMaxBytes}, in two processes`);
  try {
    const [unbounded, bounded] = await Promise.all([run("idem-unbounded", []), run("idem-bounded", ["--max-bytes", String(opts.idemMaxBytes)])]);
    return { unbounded, bounded };
  } catch (err) {
    warnings.push(`idempotency-store memory run failed: ${err.message.split("\n")[0]}`);
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Shared store (Redis)

/** A keyed send answered twice: first as a send, then as a replay, or the keyed numbers mean nothing. */
async function keyedSanity(target, tenant) {
  const body = JSON.stringify(smallTextBody(tenant, 7));
  const key = `bench-sanity-${randomBytes(6).toString("hex")}`;
  const first = await postSend(target.url, body, { "idempotency-key": key });
  const again = await postSend(target.url, body, { "idempotency-key": key });
  target.sent += 2;
  if (first.status !== 202 || first.headers["idempotent-replayed"] !== undefined || again.status !== 202 || again.headers["idempotent-replayed"] !== "true") {
    throw new HarnessError(`${target.name}: keyed sanity send answered ${first.status} then ${again.status} (replayed: ${again.headers["idempotent-replayed"]}) ${again.text.slice(0, 300)}\n${target.proc.tail(10)}`);
  }
}

/** What the shared-store comparison runs: its own options with --store redis, a short run otherwise. */
function redisParams() {
  if (opts.store === "redis") {
    return { rounds: opts.rounds, durationS: opts.durationS, warmupS: opts.warmupS, rateDurationS: opts.rateDurationS, rateSlices: opts.rateSlices, serialCount: quick ? 100 : 300, traceCount: 20 };
  }
  // Inside the normal run: one round, short (adds ≈ 35 s to --quick, ≈ 2 min to a full run).
  return quick
    ? { rounds: 1, durationS: Math.min(opts.durationS, 2), warmupS: 1, rateDurationS: Math.min(opts.rateDurationS, 2), rateSlices: 1, serialCount: 30, traceCount: 8 }
    : { rounds: 1, durationS: Math.min(opts.durationS, 10), warmupS: 2, rateDurationS: Math.min(opts.rateDurationS, 8), rateSlices: 2, serialCount: 100, traceCount: 20 };
}

/**
 * The service with `store.type: redis` (its own redis-server on loopback) against the same
 * service with the memory store and against the lean baseline (issue 15's table in Redis mode),
 * with the main bench's requests (keyless) and the same with a fresh Idempotency-Key each
 * (keyed). Per variant: sends one at a time (round trips with nothing to share them with),
 * throughput (small text, as the main targets) and fixed-rate latency (the 80/20 mix) in
 * alternating rounds (which target goes first rotates too); then a traced service shows which
 * commands travel in which round trip. The lean baseline has no idempotency: it answers keyed
 * requests as keyless ones, so keyed ratios compare a keyed send with a plain pass-through.
 */
async function redisPhase(emu, tenants, rotations) {
  const rotation = rotations.mix;
  const bin = findRedisServer();
  if (!bin) return { skipped: "redis-server not found (on PATH or BENCH_REDIS_SERVER)" };
  const p = { ...redisParams(), rate: opts.rate, connections: opts.connections, throughputLatencyMs: opts.throughputLatencyMs };
  const redis = await startRedis({ bin, logDir: tmp, nice: opts.nice });
  procs.push(redis);
  const redisVersion = /^redis_version:(\S+)/m.exec(await redis.client.info("server"))?.[1] ?? "?";
  say(`shared store: redis-server ${redisVersion} on port ${redis.port}`);
  const secretFile = join(tmp, "client-secret");
  const base = buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile, raiseLimits: true });
  const memoryConfig = writeJson(tmp, "config-store-memory.json", base);
  const redisConfig = writeJson(tmp, "config-store-redis.json", { ...base, store: { type: "redis", url: redis.url, keyPrefix: "bench:" } });
  const memSvc = await startService("store-memory", memoryConfig);
  memSvc.name = "memory";
  memSvc.key = "memory";
  const shared = await startService("store-redis", redisConfig);
  shared.name = "redis";
  shared.key = "redis";
  for (const t of [memSvc, shared]) {
    await sanity(t, tenants);
    await keyedSanity(t, tenants[0]);
  }
  const lean = await startBaseline("lean", memoryConfig);
  await sanity(lean, tenants);
  const meter = storeMeter({ url: shared.url, redis });
  const idle = await meter.calibrate();
  const rtt = await redisPing(redis.client);
  const nextKey = keyGenerator(randomBytes(4).toString("hex"));
  const variants = [
    ["keyless", undefined],
    ["keyed", nextKey],
  ];
  const out = { redisVersion, params: p, meteringRoundTrips: idle.roundTrips, rtt, serial: {}, rounds: [], trace: undefined, summary: undefined };

  say(`shared store: ${p.serialCount} sends one at a time per store and variant`);
  for (const [v, key] of variants) {
    out.serial[v] = {};
    for (const t of [memSvc, shared]) {
      const m = t === shared ? meter : undefined;
      await sequential({ url: t.url, rotation, headers: SEND_HEADERS, count: 5, nextKey: key });
      await m?.start();
      const cpu0 = cpuTimes(t.proc.pid).cpuMs;
      const s = await sequential({ url: t.url, rotation, headers: SEND_HEADERS, count: p.serialCount, nextKey: key, offset: 5 });
      s.cpuUsPerSend = ((cpuTimes(t.proc.pid).cpuMs - cpu0) * 1000) / s.sent;
      if (m) s.store = await m.stop(s.sent);
      t.sent += s.sent + 5;
      delete s.spans;
      const bad = Object.entries(s.statuses).filter(([code]) => Number(code) >= 300);
      if (bad.length > 0 || s.errors > 0) warnings.push(`${v} ${t.name} one at a time: statuses ${JSON.stringify(s.statuses)}, ${s.errors} errors`);
      out.serial[v][t.name] = s;
    }
  }

  // Rounds as in the main bench: all throughput rounds, then all fixed-rate rounds. The lean
  // baseline runs once per round in the throughput part (it has no keyed variant) and in both
  // variants of the fixed-rate part.
  const orderOf = (round, v) => rotate(v === "keyless" ? [lean, memSvc, shared] : [memSvc, shared], round - 1);
  await withThroughputLatency(emu, async () => {
    for (let round = 1; round <= p.rounds; round++) {
      await waitQuiet();
      const rr = { round };
      for (const [v, key] of variants) {
        rr[v] = { throughput: {}, paced: {} };
        for (const t of orderOf(round, v)) {
          const warmupS = round === 1 ? p.warmupS : Math.min(p.warmupS, 1);
          rr[v].throughput[t.name] = await throughputPhase(t, emu, rotations.small, warmupS, { durationS: p.durationS, nextKey: key, meter: t === shared ? meter : undefined, label: `${v} ${t.name}` });
        }
      }
      out.rounds.push(rr);
    }
  });
  for (const rr of out.rounds) {
    await waitQuiet();
    for (const [v, key] of variants) {
      // The lean baseline ignores Idempotency-Keys: measured once per round, with the keyless requests.
      const order = rotate(v === "keyless" ? [lean, memSvc, shared] : [memSvc, shared], rr.round - 1);
      const res = await pacedPhase(order, emu, rotation, { rateDurationS: p.rateDurationS, rateSlices: p.rateSlices, nextKey: key, meters: new Map([[shared, meter]]), label: `${v} ` });
      order.forEach((t, i) => (rr[v].paced[t.name] = res[i]));
    }
  }
  out.rssMb = { memory: memory(memSvc.proc.pid).rssMb, redis: memory(shared.proc.pid).rssMb };
  await stop(lean.proc);
  await stop(memSvc.proc, 25_000);
  await stop(shared.proc, 25_000);

  out.trace = await traceRoundTrips(redis, redisConfig, tenants, rotation, p.traceCount, variants);
  out.summary = summariseRedis(out);
  await redis.client.quit().catch(() => redis.client.disconnect());
  await stop(redis);
  return out;
}

/**
 * The bare round trip to this redis-server from a Node process (PING over the bench's own
 * client): back to back, and 10 ms apart, as a send's round trips are when the machine is
 * otherwise idle (waking a sleeping process costs more than the command itself). µs, p50/p90.
 */
async function redisPing(client, n = 50) {
  const out = {};
  for (const [name, gapMs] of [
    ["backToBackUs", 0],
    ["after10msUs", 10],
  ]) {
    const xs = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await client.ping();
      xs.push(Number(process.hrtime.bigint() - t0) / 1e3);
      if (gapMs > 0) await sleep(gapMs);
    }
    xs.sort((a, b) => a - b);
    out[name] = { p50: xs[Math.floor(n / 2)], p90: xs[Math.floor(n * 0.9)] };
  }
  return out;
}

/**
 * A fresh Redis-backed service with the redis-trace.mjs preload: `count` sends one at a time
 * per variant (20 ms apart, so that writes made after an answer are told apart from the next
 * send's), then its trace is matched to the requests.
 */
async function traceRoundTrips(redis, configFile, tenants, rotation, count, variants) {
  const file = join(tmp, "redis-trace.json");
  const svc = await startService("store-redis-trace", configFile, {
    nodeOptions: ["--import", REDIS_TRACE],
    env: { BENCH_REDIS_TRACE_FILE: file, BENCH_REDIS_TRACE_PORT: String(redis.port) },
  });
  try {
    await sanity(svc, tenants);
    await sleep(200); // the sanity sends' last writes (after their answers) stay out of the first traced send
    const spans = [];
    for (const [v, key] of variants) {
      const s = await sequential({ url: svc.url, rotation, headers: SEND_HEADERS, count, nextKey: key, gapMs: 20 });
      spans.push(...s.spans.map((x) => ({ ...x, variant: v })));
    }
    const exit = await stop(svc.proc, 25_000);
    if (!existsSync(file)) {
      warnings.push(`redis trace: no trace file (service exit ${JSON.stringify(exit)})`);
      return undefined;
    }
    const trace = JSON.parse(readFileSync(file, "utf8"));
    return { note: `${count} sends per variant, one at a time, 20 ms apart; one line per socket write of the command connection`, ...analyseTrace(trace, spans) };
  } finally {
    await stop(svc.proc, 5000);
  }
}

function summariseRedis(out) {
  const R = out.rounds;
  const S = {};
  for (const v of ["keyless", "keyed"]) {
    const tp = (store) => R.map((r) => r[v].throughput[store]);
    const pc = (store) => R.map((r) => r[v].paced[store]);
    const serial = out.serial[v];
    const leanPaced = (r) => r.keyless.paced.lean;
    const addedVsLean = (store, kind) =>
      median(R.map((r) => (kind === "all" ? r[v].paced[store].latency.p99 - leanPaced(r).latency.p99 : r[v].paced[store].latencyByKind[kind]?.p99 - leanPaced(r).latencyByKind[kind]?.p99)));
    S[v] = {
      ratioLean: median(R.map((r) => r[v].throughput.redis.rps / r.keyless.throughput.lean.rps)),
      ratioLeanMemory: median(R.map((r) => r[v].throughput.memory.rps / r.keyless.throughput.lean.rps)),
      leanRps: median(R.map((r) => r.keyless.throughput.lean.rps)),
      cpuUsLean: median(R.map((r) => r.keyless.throughput.lean.cpu.targetUsPerReq)),
      p99AddedMsSmall: addedVsLean("redis", "small"),
      p99AddedMsMix: addedVsLean("redis", "all"),
      p99AddedMsSmallMemory: addedVsLean("memory", "small"),
      p99AddedMsMixMemory: addedVsLean("memory", "all"),
      ratio: median(R.map((r) => r[v].throughput.redis.rps / r[v].throughput.memory.rps)),
      memoryRps: median(tp("memory").map((t) => t.rps)),
      redisRps: median(tp("redis").map((t) => t.rps)),
      cpuUsMemory: median(tp("memory").map((t) => t.cpu.targetUsPerReq)),
      cpuUsRedis: median(tp("redis").map((t) => t.cpu.targetUsPerReq)),
      redisCpuUs: median(tp("redis").map((t) => perSend(t.store)?.redisCpuUs)),
      p50OverheadMs: median(R.map((r) => r[v].paced.redis.latency.p50 - r[v].paced.memory.latency.p50)),
      p99OverheadMs: median(R.map((r) => r[v].paced.redis.latency.p99 - r[v].paced.memory.latency.p99)),
      pacedCpuUsMemory: median(pc("memory").map((t) => t.cpu.targetUsPerReq)),
      pacedCpuUsRedis: median(pc("redis").map((t) => t.cpu.targetUsPerReq)),
      serialP50OverheadMs: serial.redis.latency.p50 - serial.memory.latency.p50,
      serialCpuUsMemory: serial.memory.cpuUsPerSend,
      serialCpuUsRedis: serial.redis.cpuUsPerSend,
      roundTrips: perSend(serial.redis.store)?.roundTrips,
      roundTripsPaced: median(pc("redis").map((t) => perSend(t.store)?.roundTrips)),
      roundTripsLoaded: median(tp("redis").map((t) => perSend(t.store)?.roundTrips)),
      commands: perSend(serial.redis.store)?.commands,
    };
  }
  return S;
}

/** Round trips (before and after the answer) of the commonest traced send answered 202. */
function happyPath(a) {
  const p = a?.patterns?.find((x) => x.status === 202);
  return p ? p.during.length + p.after.length : null;
}

/** The `redis` object of the JSON line (null when the phase did not run). */
function redisResult(r) {
  if (!r || r.skipped) return null;
  const S = r.summary;
  return {
    // Against the lean baseline (issue 15's table in Redis mode), throughput with small text.
    ratio: r2(S.keyless.ratioLean, 3),
    ratioKeyed: r2(S.keyed.ratioLean, 3),
    p99AddedMsSmall: r2(S.keyless.p99AddedMsSmall),
    p99AddedMsMix: r2(S.keyless.p99AddedMsMix),
    p99AddedMsSmallKeyed: r2(S.keyed.p99AddedMsSmall),
    p99AddedMsMixKeyed: r2(S.keyed.p99AddedMsMix),
    cpuUsPerSendLean: r2(S.keyless.cpuUsLean, 0),
    // Against the same service with the memory store.
    ratioVsMemory: r2(S.keyless.ratio, 3),
    ratioKeyedVsMemory: r2(S.keyed.ratio, 3),
    p50OverheadMs: r2(S.keyless.p50OverheadMs),
    p99OverheadMs: r2(S.keyless.p99OverheadMs),
    p50OverheadMsKeyed: r2(S.keyed.p50OverheadMs),
    p99OverheadMsKeyed: r2(S.keyed.p99OverheadMs),
    cpuUsPerSend: r2(S.keyless.cpuUsRedis, 0),
    cpuUsPerSendMemory: r2(S.keyless.cpuUsMemory, 0),
    cpuUsPerSendKeyed: r2(S.keyed.cpuUsRedis, 0),
    cpuUsPerSendMemoryKeyed: r2(S.keyed.cpuUsMemory, 0),
    redisCpuUsPerSend: r2(S.keyless.redisCpuUs, 0),
    redisCpuUsPerSendKeyed: r2(S.keyed.redisCpuUs, 0),
    roundTripsPerSendKeyless: r2(S.keyless.roundTrips),
    roundTripsPerSendKeyed: r2(S.keyed.roundTrips),
    // From the trace: the round trips of the commonest accepted send (lease renewals aside).
    happyPathRoundTripsKeyless: happyPath(r.trace?.keyless),
    happyPathRoundTripsKeyed: happyPath(r.trace?.keyed),
    roundTripsPerSendKeylessLoaded: r2(S.keyless.roundTripsLoaded),
    roundTripsPerSendKeyedLoaded: r2(S.keyed.roundTripsLoaded),
    rounds: r.params.rounds,
  };
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
  say(`machine: ${m.cpus} × ${m.cpuModel}, Node ${m.node}; temp dir ${tmp}; load average ${fmtLoad(os.loadavg())}`);
  const tenants = benchTenants(opts.tenants);
  // The paced (latency) runs and the optional mix throughput rounds: 80/20 small text / HTML + 100 KB PDF.
  const rotation = buildRotation(tenants, { attachmentShare: opts.attachmentShare });
  // The closed-loop rounds the throughput and CPU targets are defined on (issue 15): small text only.
  const smallRotation = buildRotation(tenants, { attachmentShare: 0 });
  const attachShare = rotation.filter((r) => r.kind === "attachment").length / rotation.length;
  const mix = `${Math.round((1 - attachShare) * 100)}% small text / ${Math.round(attachShare * 100)}% HTML + 100 KB attachment, over ${new Set(rotation.map((r) => r.tenant)).size} tenants`;

  writeFileSync(join(tmp, "client-secret"), APP_SECRET);
  say(`emulator: ${opts.tenants} tenants, latency ${opts.latencyMs} ms, throttling off`);
  const emu = await startEmulator("emulator", tenants);
  if (opts.store === "redis") return redisMain(m, emu, tenants, { small: smallRotation, mix: rotation }, mix);
  if (argv["smtp-only"]) return smtpMain(m, emu, tenants, smallRotation);
  if (argv["startup-only"]) {
    const st = await startupPhase(emu);
    await stop(emu.proc);
    const { runsMs, startupMs, bareNodeMs, rssIdleMb, rssMb, hwmMb, heap, touched, failed } = st;
    console.log(JSON.stringify({ startupMs10kTenants: r2(startupMs, 0), runsMs: runsMs.map((x) => r2(x, 0)), bareNodeMs: r2(bareNodeMs, 0), rssMb10kTenants1kUsed: r2(rssMb, 1), rssMb10kTenantsIdle: r2(rssIdleMb, 1), hwmMb: r2(hwmMb, 1), heap, podRss: podRss(st.pod), touched, failed, tenants: st.tenants, warnings }));
    return 0;
  }
  const configFile = writeJson(tmp, "config.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile: join(tmp, "client-secret"), raiseLimits: true }));

  const cpuProfDir = argv["cpu-prof"] ? resolve(argv["cpu-prof-dir"] ?? join(tmp, "cpuprof")) : undefined;
  const tokens = watchTokens(emu);
  const stats = argv["runtime-stats"];
  const baselines = [];
  for (const kind of Object.keys(BASELINES)) {
    const b = await startBaseline(kind, configFile, { cpuProfDir: cpuProfDir && join(cpuProfDir, BASELINES[kind].name), stats });
    await sanity(b, tenants);
    baselines.push(b);
  }
  // The baselines fetch their tokens in their sanity passes; every later token request is the service's.
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
  const targets = service ? [...baselines, service] : baselines;

  const d = { machine: m, opts, mix, warnings, load: { start: os.loadavg() }, rounds: [], targets: targets.map((t) => ({ key: t.key, name: t.name, label: t.label })), service: service ? {} : undefined, startup: undefined, idempotency: undefined, redis: undefined, result: {} };
  const workloads = [["small", smallRotation], ...(opts.throughputMix ? [["mix", rotation]] : [])];
  // Rounds alternate the targets, and which goes first rotates by round, so that a noisy
  // neighbour hurts all alike; the reported figures are medians over rounds.
  await withThroughputLatency(emu, async () => {
    for (let round = 1; round <= opts.rounds; round++) {
      await waitQuiet();
      const order = rotate(targets, round - 1);
      const warmupS = round === 1 ? opts.warmupS : Math.min(opts.warmupS, 1);
      const r = { round, order: order.map((t) => t.key) };
      for (const [wl, rot] of workloads) {
        r[wl] = {};
        for (const t of order) r[wl][t.key] = await throughputPhase(t, emu, rot, warmupS, { label: `${t.name} (${wl})` });
      }
      d.rounds.push(r);
    }
  });
  // --runtime-stats: the preload starts its window afresh on SIGUSR2.
  if (stats) for (const t of targets) t.proc.child.kill("SIGUSR2");
  for (const r of d.rounds) {
    await waitQuiet();
    const order = rotate(targets, r.round - 1);
    const res = await pacedPhase(order, emu, rotation);
    r.paced = Object.fromEntries(order.map((t, i) => [t.key, res[i]]));
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

  d.baselineMem = Object.fromEntries(baselines.map((b) => [b.key, memory(b.proc.pid)]));
  d.sent = Object.fromEntries(targets.map((t) => [t.key, t.sent]));
  d.profiles = {};
  for (const t of targets) {
    const exit = await stop(t.proc, t === service ? 25_000 : 5000);
    if (cpuProfDir) d.profiles[t.key] = profileReport(t.name, join(cpuProfDir, t.name), exit, t.sent);
  }
  if (stats) {
    d.runtimeStats = {};
    for (const t of targets) {
      try {
        d.runtimeStats[t.name] = JSON.parse(readFileSync(t.statsFile, "utf8"));
      } catch (err) {
        warnings.push(`--runtime-stats: nothing from ${t.name} (${err.message})`);
      }
    }
  }
  if (opts.store === "auto" && service) {
    try {
      d.redis = await redisPhase(emu, tenants, { small: smallRotation, mix: rotation });
    } catch (err) {
      // The main numbers stand without it.
      d.redis = { skipped: `failed: ${err instanceof HarnessError ? err.message : (err?.stack ?? err)}` };
    }
    if (d.redis.skipped) warnings.push(`shared-store (Redis) phase not measured: ${d.redis.skipped}`);
  }
  if (opts.smtp && service) {
    try {
      d.smtp = await smtpPhase(emu, tenants, smallRotation);
    } catch (err) {
      d.smtp = { skipped: `failed: ${err instanceof HarnessError ? err.message : (err?.stack ?? err)}` };
      warnings.push(`SMTP phase not measured: ${d.smtp.skipped}`);
    }
  }
  if (!argv["skip-idempotency"] && existsSync(join(root, "dist", "delivery", "idempotency-store.js"))) d.idempotency = await idempotencyPhase();
  if (service && !argv["skip-startup"]) d.startup = await startupPhase(emu);
  d.load.end = os.loadavg();
  await stop(emu.proc);

  d.summary = summarise(d.rounds, service);
  d.result = result(d, tokenRequests);
  d.result.redis = opts.store === "auto" ? redisResult(d.redis) : undefined;
  if (d.smtp && !d.smtp.skipped) d.result.smtp = d.smtp.result;
  d.result.targets = targetResults(d.result);
  d.result.loadAvg = { start: d.load.start.map((x) => +x.toFixed(2)), end: d.load.end.map((x) => +x.toFixed(2)) };

  if (!jsonOnly) {
    console.log(formatReport(d));
    const p = d.profiles;
    if (p.service) console.log(`\n${p.service.text}`);
    if (p.lean) console.log(`\n${p.lean.text}`);
    if (p.service && p.lean) console.log(`\n${formatProfileDiff(p.service.summary, p.lean.summary, "lean")}`);
    if (p.service && p.httpsAgent) console.log(`\n${formatProfileDiff(p.service.summary, p.httpsAgent.summary, "https.Agent")}`);
    if (serviceError) console.log(`\nservice half not measured: ${serviceError.message}`);
    if (d.redis && !d.redis.skipped) console.log(`\n${formatStoreReport(d.redis)}`);
    if (d.smtp && !d.smtp.skipped) console.log(`\n${formatSmtpReport(d.smtp)}`);
    console.log(`\nload average (1/5/15 min) at start ${fmtLoad(d.load.start)}, at end ${fmtLoad(d.load.end)}`);
  }
  if (argv.out) {
    const { profiles, ...rest } = d;
    const slim = Object.fromEntries(Object.entries(profiles).map(([k, v]) => [k, v && { file: v.file, summary: v.summary }]));
    writeFileSync(resolve(argv.out), `${JSON.stringify({ ...rest, profiles: slim, targetDefinitions: TARGETS.map((t) => ({ key: t.key, want: t.want })) }, null, 2)}\n`);
  }
  if ((keepTmp() || serviceError) && !jsonOnly) console.error(`temp dir kept: ${tmp}`);
  console.log(JSON.stringify(d.result));
  return serviceError && !argv["baseline-only"] ? 2 : 0;
}

/** `xs` rotated left by `n`: round 1 lean, https-agent, service; round 2 https-agent, service, lean; … */
function rotate(xs, n) {
  const k = n % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** Runs `fn` with the emulator's Graph latency set to --throughput-latency-ms, when given. */
async function withThroughputLatency(emu, fn) {
  if (opts.throughputLatencyMs === opts.latencyMs) return fn();
  say(`closed-loop runs with Graph latency ${opts.throughputLatencyMs} ms`);
  await httpsJson("PUT", `${emu.url}/_emulator/latency`, emu.ca, { fixedMs: opts.throughputLatencyMs, jitterMs: 0 });
  try {
    return await fn();
  } finally {
    await httpsJson("PUT", `${emu.url}/_emulator/latency`, emu.ca, { fixedMs: opts.latencyMs, jitterMs: 0 });
  }
}

/** Medians over rounds; `x` of a target is read per round, ratios and differences are per round first. */
function summarise(R, service) {
  const keys = [...BASELINE_KEYS, ...(service ? ["service"] : [])];
  const S = { workloads: {}, paced: {}, added: {} };
  for (const wl of ["small", "mix"]) {
    if (!R[0]?.[wl]) continue;
    const W = (S.workloads[wl] = {});
    for (const k of keys) {
      W[k] = {
        rps: median(R.map((r) => r[wl][k].rps)),
        cpuUsPerSend: median(R.map((r) => r[wl][k].cpu.targetUsPerReq)),
        p50Ms: median(R.map((r) => r[wl][k].latency.p50)),
        p99Ms: median(R.map((r) => r[wl][k].latency.p99)),
      };
    }
    if (service) {
      for (const b of BASELINE_KEYS) {
        W[`ratio_${b}`] = median(R.map((r) => r[wl].service.rps / r[wl][b].rps));
        W[`cpuRatio_${b}`] = median(R.map((r) => r[wl].service.cpu.targetUsPerReq / r[wl][b].cpu.targetUsPerReq));
      }
    }
  }
  for (const k of keys) {
    const lat = (r, kind) => (kind === "all" ? r.paced[k].latency : r.paced[k].latencyByKind[kind]);
    S.paced[k] = {};
    for (const kind of ["all", "small", "attachment"]) {
      S.paced[k][kind] = { p50Ms: median(R.map((r) => lat(r, kind)?.p50)), p90Ms: median(R.map((r) => lat(r, kind)?.p90)), p99Ms: median(R.map((r) => lat(r, kind)?.p99)) };
    }
    S.paced[k].cpuUsPerSend = median(R.map((r) => r.paced[k].cpu.targetUsPerReq));
  }
  if (service) {
    for (const b of BASELINE_KEYS) {
      const added = (kind, q) => median(R.map((r) => (kind === "all" ? r.paced.service.latency[q] - r.paced[b].latency[q] : r.paced.service.latencyByKind[kind]?.[q] - r.paced[b].latencyByKind[kind]?.[q])));
      S.added[b] = {};
      for (const kind of ["all", "small", "attachment"]) S.added[b][kind] = { p50Ms: added(kind, "p50"), p90Ms: added(kind, "p90"), p99Ms: added(kind, "p99") };
    }
  }
  return S;
}

const r2 = (x, k = 2) => (x === null || x === undefined || Number.isNaN(x) ? null : Number(x.toFixed(k)));

/** The JSON line (without `redis` and `targets`). */
function result(d, tokenRequests) {
  const S = d.summary;
  const small = S.workloads.small;
  const svc = d.service !== undefined;
  const target = (k) => ({
    rps: r2(small[k]?.rps, 0),
    cpuUsPerSend: r2(small[k]?.cpuUsPerSend, 0),
    p50Ms: r2(S.paced[k]?.all.p50Ms),
    p99Ms: r2(S.paced[k]?.all.p99Ms),
    ...(svc && k !== "service" ? { ratio: r2(small[`ratio_${k}`], 3), cpuRatio: r2(small[`cpuRatio_${k}`], 3), p99AddedMsSmall: r2(S.added[k].small.p99Ms), p99AddedMsMix: r2(S.added[k].all.p99Ms) } : {}),
  });
  const idem = d.idempotency;
  return {
    ratioLean: svc ? r2(small.ratio_lean, 3) : null,
    ratioHttpsAgent: svc ? r2(small.ratio_httpsAgent, 3) : null,
    ratioStackFloor: svc ? r2(small.ratio_stackFloor, 3) : null,
    cpuUsPerSend: svc ? r2(small.service.cpuUsPerSend, 0) : null,
    cpuUsPerSendLean: r2(small.lean.cpuUsPerSend, 0),
    cpuUsPerSendHttpsAgent: r2(small.httpsAgent.cpuUsPerSend, 0),
    cpuUsPerSendStackFloor: r2(small.stackFloor.cpuUsPerSend, 0),
    cpuRatioStackFloor: svc ? r2(small.cpuRatio_stackFloor, 3) : null,
    cpuRatioLean: svc ? r2(small.cpuRatio_lean, 3) : null,
    p99AddedMsSmall: svc ? r2(S.added.lean.small.p99Ms) : null,
    p99AddedMsMix: svc ? r2(S.added.lean.all.p99Ms) : null,
    p50AddedMsMix: svc ? r2(S.added.lean.all.p50Ms) : null,
    rssMb10kTenants1kUsed: d.startup ? r2(d.startup.rssMb, 1) : null,
    podRss: d.startup ? podRss(d.startup.pod) : null,
    heapMb10kTenants1kUsed: d.startup ? r2(d.startup.heap?.heapUsedMb, 1) : null,
    bytesPerIdempotencyKey: idem?.unbounded ? r2(idem.unbounded.perKey.rss, 0) : null,
    heapBytesPerIdempotencyKey: idem?.unbounded ? r2(idem.unbounded.perKey.heapUsed, 0) : null,
    idempotencyMaxBytes: idem?.bounded
      ? { maxBytes: idem.bounded.maxBytes, keys: idem.bounded.keys, kept: idem.bounded.entries, rssGrowth: idem.bounded.growth.rss, heapGrowth: idem.bounded.growth.heapUsed, withinRss: idem.bounded.withinMaxBytes.rss, withinHeap: idem.bounded.withinMaxBytes.heapUsed }
      : null,
    startupMs10kTenants: d.startup ? r2(d.startup.startupMs, 0) : null,
    service: svc ? target("service") : null,
    lean: target("lean"),
    httpsAgent: target("httpsAgent"),
    stackFloor: target("stackFloor"),
    ...(S.workloads.mix && svc ? { mix: { ratioLean: r2(S.workloads.mix.ratio_lean, 3), ratioHttpsAgent: r2(S.workloads.mix.ratio_httpsAgent, 3), ratioStackFloor: r2(S.workloads.mix.ratio_stackFloor, 3), cpuUsPerSend: r2(S.workloads.mix.service.cpuUsPerSend, 0), cpuUsPerSendLean: r2(S.workloads.mix.lean.cpuUsPerSend, 0), cpuUsPerSendHttpsAgent: r2(S.workloads.mix.httpsAgent.cpuUsPerSend, 0) } } : {}),
    tokenRequests,
    tenants: opts.tenants,
    rssMb: svc ? r2(d.service.rssMb, 1) : null,
    rssMb10kTenantsIdle: d.startup ? r2(d.startup.rssIdleMb, 1) : null,
    rounds: opts.rounds,
    graphLatencyMs: { closedLoop: opts.throughputLatencyMs, fixedRate: opts.latencyMs },
  };
}

/** `--store redis`: only the shared-store comparison (its own lean baseline, no start-up run). */
async function redisMain(m, emu, tenants, rotations, mix) {
  if (!findRedisServer()) throw new HarnessError("--store redis: redis-server not found (install it, or set BENCH_REDIS_SERVER to its path)");
  const d = { machine: m, opts, mix, warnings, load: { start: os.loadavg() }, redis: undefined, result: {} };
  d.redis = await redisPhase(emu, tenants, rotations);
  await stop(emu.proc);
  d.load.end = os.loadavg();
  d.result = { store: "redis", tenants: opts.tenants, redis: redisResult(d.redis), graphLatencyMs: { closedLoop: opts.throughputLatencyMs, fixedRate: opts.latencyMs } };
  const t = targetResults(d.result);
  // Only the Redis-mode targets are measured here.
  d.result.targets = { met: t.met.filter((k) => k.startsWith("redis.")), missed: t.missed.filter((k) => k.startsWith("redis.")), notMeasured: t.notMeasured.filter((k) => k.startsWith("redis.")) };
  d.result.loadAvg = { start: d.load.start.map((x) => +x.toFixed(2)), end: d.load.end.map((x) => +x.toFixed(2)) };
  if (!jsonOnly) {
    console.log(`noreply-relay bench, shared store — ${m.cpus} × ${m.cpuModel}, Node ${m.node}; ${opts.tenants} tenants, Graph latency ${opts.latencyMs} ms, ${opts.connections} connections, mix ${mix}\n`);
    console.log(formatStoreReport(d.redis));
    for (const w of warnings) console.log(`warning: ${w}`);
    console.log(`\nload average (1/5/15 min) at start ${fmtLoad(d.load.start)}, at end ${fmtLoad(d.load.end)}`);
  }
  if (argv.out) writeFileSync(resolve(argv.out), `${JSON.stringify(d, null, 2)}\n`);
  if (keepTmp() && !jsonOnly) console.error(`temp dir kept: ${tmp}`);
  console.log(JSON.stringify(d.result));
  return 0;
}

// ---------------------------------------------------------------------------------------------
// SMTP door against POST /send (bench/lib/smtp-bench.mjs)

function smtpParams() {
  if (argv["smtp-only"]) return { rounds: opts.rounds, durationS: opts.durationS, warmupS: opts.warmupS, rateDurationS: opts.rateDurationS };
  return quick ? { rounds: 1, durationS: Math.min(opts.durationS, 4), warmupS: 1, rateDurationS: Math.min(opts.rateDurationS, 4) } : { rounds: 2, durationS: Math.min(opts.durationS, 8), warmupS: 2, rateDurationS: Math.min(opts.rateDurationS, 8) };
}

/**
 * One service process with the SMTP door on; per round, closed loop (Graph latency
 * --throughput-latency-ms) SMTP, /send with an Idempotency-Key and /send without (order rotating),
 * then fixed rate (--rate, Graph latency --latency-ms) SMTP and keyed /send in alternation.
 */
async function smtpPhase(emu, tenants, rotation) {
  const p = { ...smtpParams(), connections: opts.connections, rate: opts.rate };
  const tls = makeSmtpTls(root, tmp);
  const port = await freePort();
  const base = buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile: join(tmp, "client-secret"), raiseLimits: true });
  const svc = await startService("service-smtp", writeJson(tmp, "config-smtp.json", { ...base, smtp: smtpConfig(port, tls) }));
  say(`SMTP door: service with smtp on port ${port}, ${p.connections} SMTP connections over ${tenants.length} tenants (STARTTLS + AUTH once per connection)`);
  const runId = randomBytes(4).toString("hex");
  const clients = createSmtpClients({ port, ca: readFileSync(tls.caFile, "utf8"), tenants, connectionsPerTenant: Math.ceil(p.connections / tenants.length), prefix: runId });
  const nextKey = keyGenerator(runId);
  try {
    await sanity(svc, tenants);
    for (const t of tenants) {
      const r = await clients.send(t);
      if (r.code !== 250) throw new HarnessError(`SMTP sanity send for tenant ${t.key} answered ${r.code} ${r.error}\n${svc.proc.tail(10)}`);
    }
    const cpuOf = async (fn) => {
      const c0 = cpuTimes(svc.proc.pid).cpuMs;
      const l0 = process.cpuUsage();
      const t0 = Date.now();
      const r = await fn();
      const l = process.cpuUsage(l0);
      r.cpuUsPerMsg = ((cpuTimes(svc.proc.pid).cpuMs - c0) * 1000) / Math.max(1, r.ok);
      r.loadgenPct = ((l.user + l.system) / 1000 / (Date.now() - t0)) * 100;
      return r;
    };
    const sides = {
      smtp: (durationS) => cpuOf(() => smtpThroughput(clients, tenants, { connections: p.connections, durationS })),
      sendKeyed: (durationS) => cpuOf(() => throughput({ url: svc.url, connections: p.connections, durationS, rotation, headers: SEND_HEADERS, nextKey })),
      send: (durationS) => cpuOf(() => throughput({ url: svc.url, connections: p.connections, durationS, rotation, headers: SEND_HEADERS })),
    };
    const rounds = [];
    await withThroughputLatency(emu, async () => {
      for (let round = 1; round <= p.rounds; round++) {
        await waitQuiet();
        const order = rotate(Object.keys(sides), round - 1);
        const r = { round, order };
        for (const k of order) {
          say(`SMTP phase: ${k} closed loop, warm-up ${p.warmupS} s, ${p.durationS} s`);
          if (p.warmupS > 0) await sides[k](p.warmupS);
          r[k] = await sides[k](p.durationS);
          const bad = k === "smtp" ? Object.keys(r[k].codes).filter((c) => c !== "250") : r[k].non2xx + r[k].errors > 0 ? ["non-2xx"] : [];
          if (bad.length > 0) warnings.push(`SMTP phase ${k}: ${JSON.stringify(r[k].codes ?? r[k].statuses)} ${r[k].firstError ?? ""}`);
        }
        rounds.push(r);
      }
    });
    say(`SMTP phase: fixed rate ${p.rate} msg/s × ${p.rateDurationS} s per side, alternating, Graph latency ${opts.latencyMs} ms`);
    const pacer = createPacer({ url: svc.url, rotation, headers: SEND_HEADERS, nextKey });
    const smtpSamples = [];
    const sendRuns = [];
    for (let round = 1; round <= p.rounds; round++) {
      await waitQuiet();
      const warmupS = round === 1 ? 1 : 0;
      const s = await smtpPaced(clients, tenants, { rate: p.rate, durationS: p.rateDurationS + warmupS, warmupS });
      smtpSamples.push(...s.samples);
      if (s.samples.length !== s.measured) warnings.push(`SMTP phase fixed rate: replies ${JSON.stringify(s.codes)}`);
      if (s.lateMsMax > 20) warnings.push(`SMTP phase fixed rate: the generator fell up to ${s.lateMsMax.toFixed(0)} ms behind schedule`);
      sendRuns.push(await pacer.run({ rate: p.rate, durationS: p.rateDurationS + warmupS, warmupS }));
    }
    pacer.close();
    const paced = { smtp: summariseMs(smtpSamples), sendKeyed: poolPaced(sendRuns, { rate: p.rate }).latency };
    const med = (k, f) => median(rounds.map((r) => f(r[k])));
    const closed = Object.fromEntries(Object.keys(sides).map((k) => [k, { rps: med(k, (x) => x.rps), cpuUsPerMsg: med(k, (x) => x.cpuUsPerMsg), p50Ms: med(k, (x) => x.latency.p50), p99Ms: med(k, (x) => x.latency.p99), loadgenPct: med(k, (x) => x.loadgenPct) }]));
    const result = {
      msgsPerS: { smtp: r2(closed.smtp.rps, 0), sendKeyed: r2(closed.sendKeyed.rps, 0), send: r2(closed.send.rps, 0) },
      ratioSmtpToSendKeyed: r2(median(rounds.map((r) => r.smtp.rps / r.sendKeyed.rps)), 3),
      cpuUsPerMsg: { smtp: r2(closed.smtp.cpuUsPerMsg, 0), sendKeyed: r2(closed.sendKeyed.cpuUsPerMsg, 0), send: r2(closed.send.cpuUsPerMsg, 0) },
      paced: { rate: p.rate, smtp: { p50Ms: r2(paced.smtp.p50), p99Ms: r2(paced.smtp.p99) }, sendKeyed: { p50Ms: r2(paced.sendKeyed.p50), p99Ms: r2(paced.sendKeyed.p99) } },
      p50AddedMs: r2(paced.smtp.p50 - paced.sendKeyed.p50),
      p99AddedMs: r2(paced.smtp.p99 - paced.sendKeyed.p99),
      rounds: p.rounds,
      connections: p.connections,
    };
    return { params: p, rounds, closed, paced, result };
  } finally {
    clients.close();
    await stop(svc.proc, 25_000);
  }
}

function formatSmtpReport(s) {
  const { closed, paced, params: p, result: res } = s;
  const names = { smtp: "SMTP (STARTTLS, Message-ID)", sendKeyed: "/send + Idempotency-Key", send: "/send, no key" };
  const rows = [[`SMTP door vs /send, same service and emulator, closed loop, ${p.connections} connections, median of ${p.rounds} round(s)`, "msg/s", "p50 ms", "p99 ms", "service CPU µs/msg", "loadgen CPU %"]];
  for (const k of ["smtp", "sendKeyed", "send"]) rows.push([names[k], f0(closed[k].rps), f1(closed[k].p50Ms), f1(closed[k].p99Ms), f0(closed[k].cpuUsPerMsg), f0(closed[k].loadgenPct)]);
  const lat = [[`fixed rate ${p.rate} msg/s, Graph latency ${opts.latencyMs} ms`, "p50 ms", "p99 ms", "samples"]];
  lat.push([names.smtp, f1(paced.smtp.p50), f1(paced.smtp.p99), paced.smtp.count], [names.sendKeyed, f1(paced.sendKeyed.p50), f1(paced.sendKeyed.p99), paced.sendKeyed.count]);
  lat.push(["SMTP adds", f1(res.p50AddedMs), f1(res.p99AddedMs), ""]);
  return `${table(rows)}\n\n${table(lat)}\nSMTP / keyed /send msg/s: ${res.ratioSmtpToSendKeyed}`;
}

const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : "-");
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");

/** `--smtp-only`: just the SMTP comparison. */
async function smtpMain(m, emu, tenants, rotation) {
  const d = { machine: m, opts, warnings, load: { start: os.loadavg() } };
  d.smtp = await smtpPhase(emu, tenants, rotation);
  await stop(emu.proc);
  d.load.end = os.loadavg();
  d.result = { smtp: d.smtp.result, tenants: opts.tenants, graphLatencyMs: { closedLoop: opts.throughputLatencyMs, fixedRate: opts.latencyMs }, loadAvg: { start: d.load.start.map((x) => +x.toFixed(2)), end: d.load.end.map((x) => +x.toFixed(2)) } };
  if (!jsonOnly) {
    console.log(`noreply-relay bench, SMTP door — ${m.cpus} × ${m.cpuModel}, Node ${m.node}; ${opts.tenants} tenants\n`);
    console.log(formatSmtpReport(d.smtp));
    for (const w of warnings) console.log(`warning: ${w}`);
    console.log(`\nload average (1/5/15 min) at start ${fmtLoad(d.load.start)}, at end ${fmtLoad(d.load.end)}`);
  }
  if (argv.out) writeFileSync(resolve(argv.out), `${JSON.stringify(d, null, 2)}\n`);
  console.log(JSON.stringify(d.result));
  return 0;
}

function fmtLoad(l) {
  return l ? l.map((x) => x.toFixed(2)).join(" / ") : "-";
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

