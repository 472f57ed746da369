// What the chart's CPU limit (resources.limits.cpu, "1" by default) does to the service: Linux
// CFS gives a process in a cgroup with a quota that many CPU-seconds per 100 ms period, for all
// its threads together (the main thread and V8's GC and compiler threads), and stops every one
// of them until the next period once the quota is spent ("throttling").
//
//   npm run build && node bench/cpu-quota.mjs [--cpus 1] [--rounds 6] [--slice-s 6]
//       [--rates 200,600] [--connections 64] [--latency-ms 20]
//
// One service process, moved into a cgroup with the quota and out again between slices, so the
// same process (same JIT state, same heap) is measured with and without the limit in alternating
// slices: at fixed rates (open loop: latency p50 / p99 / max) and closed loop (throughput, CPU
// per send). Reports the throttled periods the kernel counted in each quota slice. Needs root
// and a cgroup cpu controller it may write to (cgroup v1 /sys/fs/cgroup/cpu, or v2 cpu.max);
// exits 2 without. Prints one JSON line last.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { APP_SECRET, SEND_HEADERS, benchTenants, buildConfig, buildRotation, writeJson } from "./lib/fixtures.mjs";
import { createPacer, median, poolPaced, throughput } from "./lib/load.mjs";
import { cpuTimes, stop } from "./lib/procs.mjs";
import { startEmulator, startService } from "./lib/starters.mjs";

const { values: argv } = parseArgs({
  options: {
    cpus: { type: "string", default: "1" },
    rounds: { type: "string", default: "6" },
    "slice-s": { type: "string", default: "6" },
    rates: { type: "string", default: "200,600" },
    connections: { type: "string", default: "64" },
    "latency-ms": { type: "string", default: "20" },
    tenants: { type: "string", default: "10" },
    help: { type: "boolean", default: false },
  },
});
if (argv.help) {
  console.log(readFileSync(new URL(import.meta.url), "utf8").split("\n").filter((l) => l.startsWith("//")).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}
const cpus = Number(argv.cpus);
const rounds = Number(argv.rounds);
const sliceS = Number(argv["slice-s"]);
const rates = argv.rates.split(",").map(Number).filter((r) => r > 0);
const connections = Number(argv.connections);
const PERIOD_US = 100_000;
const say = (msg) => console.error(`[cpu-quota ${new Date().toISOString().slice(11, 19)}] ${msg}`);

/** The cpu controller this process may write to: v2 (unified) or v1, or a reason why not. */
function cpuController() {
  const v2 = "/sys/fs/cgroup";
  if (existsSync(join(v2, "cgroup.controllers"))) {
    if (!readFileSync(join(v2, "cgroup.controllers"), "utf8").split(/\s+/).includes("cpu")) return { error: "cgroup v2 without the cpu controller" };
    return { version: 2, root: v2 };
  }
  const v1 = "/sys/fs/cgroup/cpu";
  if (existsSync(join(v1, "cpu.cfs_quota_us"))) return { version: 1, root: v1 };
  return { error: "no cgroup cpu controller under /sys/fs/cgroup" };
}

/** The cgroup a pid is in now, under the controller's root (from /proc/<pid>/cgroup). */
function cgroupOf(ctl, pid) {
  const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n");
  const line = ctl.version === 2 ? lines.find((l) => l.startsWith("0::")) : lines.find((l) => l.split(":")[1]?.split(",").includes("cpu"));
  return join(ctl.root, line?.split(":").slice(2).join(":") ?? "/");
}

/** Throttling counters of a cgroup: periods, throttled periods, throttled time (ms). */
function cpuStat(ctl, dir) {
  const kv = Object.fromEntries(readFileSync(join(dir, "cpu.stat"), "utf8").trim().split("\n").map((l) => l.split(" ")).map(([k, v]) => [k, Number(v)]));
  return { periods: kv.nr_periods ?? 0, throttled: kv.nr_throttled ?? 0, throttledMs: ctl.version === 2 ? (kv.throttled_usec ?? 0) / 1000 : (kv.throttled_time ?? 0) / 1e6 };
}

const ctl = cpuController();
if (ctl.error || process.getuid?.() !== 0) {
  console.error(`cpu-quota: needs root and a writable cgroup cpu controller (${ctl.error ?? "not root"})`);
  process.exit(2);
}

const tmp = mkdtempSync(join(os.tmpdir(), "noreply-relay-cpu-quota-"));
const group = join(ctl.root, `noreply-relay-bench-${process.pid}`);
const procs = [];
let svc;
let free;

try {
  mkdirSync(group);
  if (ctl.version === 2) writeFileSync(join(group, "cpu.max"), `${Math.round(cpus * PERIOD_US)} ${PERIOD_US}`);
  else {
    writeFileSync(join(group, "cpu.cfs_period_us"), String(PERIOD_US));
    writeFileSync(join(group, "cpu.cfs_quota_us"), String(Math.round(cpus * PERIOD_US)));
  }
  const tenants = benchTenants(Number(argv.tenants));
  writeFileSync(join(tmp, "client-secret"), APP_SECRET);
  const emu = await startEmulator({ logDir: tmp, tenants, latencyMs: Number(argv["latency-ms"]), track: (p) => procs.push(p) });
  const configFile = writeJson(tmp, "config.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile: join(tmp, "client-secret"), raiseLimits: true }));
  svc = await startService({ logDir: tmp, configFile, logLevel: "warn", track: (p) => procs.push(p) });
  free = cgroupOf(ctl, svc.proc.pid);
  const move = (dir) => writeFileSync(join(dir, "cgroup.procs"), String(svc.proc.pid));
  const mix = buildRotation(tenants, { attachmentShare: 0.2 });
  const small = buildRotation(tenants, { attachmentShare: 0 });
  say(`service pid ${svc.proc.pid}; quota ${cpus} CPU per ${PERIOD_US / 1000} ms period (cgroup v${ctl.version}); ${os.cpus().length} CPUs here`);

  // Warm-up outside the quota: JIT and connections.
  await throughput({ url: svc.url, connections, durationS: 3, rotation: small, headers: SEND_HEADERS });

  const modes = ["free", "quota"];
  const paced = Object.fromEntries(rates.map((r) => [r, { free: [], quota: [], throttled: [] }]));
  const closed = { free: [], quota: [], throttled: [] };
  const pacer = createPacer({ url: svc.url, rotation: mix, headers: SEND_HEADERS });
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? modes : [...modes].reverse();
    for (const mode of order) {
      move(mode === "quota" ? group : free);
      await sleep(200);
      for (const rate of rates) {
        const s0 = cpuStat(ctl, group);
        const r = await pacer.run({ rate, durationS: sliceS });
        const s1 = cpuStat(ctl, group);
        paced[rate][mode].push(r);
        if (mode === "quota") paced[rate].throttled.push({ periods: s1.periods - s0.periods, throttled: s1.throttled - s0.throttled, throttledMs: s1.throttledMs - s0.throttledMs });
      }
      const s0 = cpuStat(ctl, group);
      const c0 = cpuTimes(svc.proc.pid).cpuMs;
      const r = await throughput({ url: svc.url, connections, durationS: sliceS, rotation: small, headers: SEND_HEADERS });
      const cpuMs = cpuTimes(svc.proc.pid).cpuMs - c0;
      const s1 = cpuStat(ctl, group);
      closed[mode].push({ rps: r.rps, cpuUsPerSend: (cpuMs * 1000) / Math.max(1, r.requests), p99: r.latency.p99, non2xx: r.non2xx });
      if (mode === "quota") closed.throttled.push({ periods: s1.periods - s0.periods, throttled: s1.throttled - s0.throttled, throttledMs: s1.throttledMs - s0.throttledMs });
      say(`round ${round + 1} ${mode}: closed loop ${r.rps.toFixed(0)} req/s`);
    }
  }
  move(free);
  pacer.close();

  const r1 = (x) => Math.round(x * 10) / 10;
  const sumThrottle = (xs) => ({ periods: xs.reduce((a, x) => a + x.periods, 0), throttled: xs.reduce((a, x) => a + x.throttled, 0), throttledMs: r1(xs.reduce((a, x) => a + x.throttledMs, 0)) });
  const result = {
    cpus,
    machineCpus: os.cpus().length,
    rounds,
    sliceS,
    latencyMs: Number(argv["latency-ms"]),
    paced: Object.fromEntries(
      rates.map((rate) => {
        const p = paced[rate];
        const pool = (mode) => {
          const all = poolPaced(p[mode], { rate });
          // p99 per slice, median over slices: one slow slice (a neighbour's burst) moves it less.
          return { p50: r1(all.latency.p50), p99: r1(all.latency.p99), p99Slices: r1(median(p[mode].map((x) => poolPaced([x], { rate }).latency.p99))), max: r1(all.latency.max), errors: all.errors, statuses: all.statuses };
        };
        return [rate, { free: pool("free"), quota: pool("quota"), throttling: sumThrottle(p.throttled) }];
      }),
    ),
    closed: {
      connections,
      free: { rps: Math.round(median(closed.free.map((x) => x.rps))), cpuUsPerSend: Math.round(median(closed.free.map((x) => x.cpuUsPerSend))), p99: r1(median(closed.free.map((x) => x.p99))) },
      quota: { rps: Math.round(median(closed.quota.map((x) => x.rps))), cpuUsPerSend: Math.round(median(closed.quota.map((x) => x.cpuUsPerSend))), p99: r1(median(closed.quota.map((x) => x.p99))) },
      throttling: sumThrottle(closed.throttled),
    },
  };
  for (const rate of rates) {
    const p = result.paced[rate];
    say(`${rate} req/s: p50 ${p.free.p50} / ${p.quota.p50} ms, p99 ${p.free.p99} / ${p.quota.p99} ms, max ${p.free.max} / ${p.quota.max} ms (free / quota); throttled ${p.throttling.throttled} of ${p.throttling.periods} periods, ${p.throttling.throttledMs} ms`);
  }
  say(`closed loop: ${result.closed.free.rps} / ${result.closed.quota.rps} req/s, ${result.closed.free.cpuUsPerSend} / ${result.closed.quota.cpuUsPerSend} µs CPU per send, p99 ${result.closed.free.p99} / ${result.closed.quota.p99} ms; throttled ${result.closed.throttling.throttled} of ${result.closed.throttling.periods} periods`);
  console.log(JSON.stringify(result));
} finally {
  if (svc && free) {
    try {
      writeFileSync(join(free, "cgroup.procs"), String(svc.proc.pid));
    } catch {
      /* gone */
    }
  }
  for (const p of procs.reverse()) await stop(p, 5000).catch(() => undefined);
  try {
    rmdirSync(group);
  } catch {
    /* not made, or still busy */
  }
  rmSync(tmp, { recursive: true, force: true });
}
