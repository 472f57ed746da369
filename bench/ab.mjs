// A/B of service builds by CPU per send: one emulator (Graph latency 1 ms), the lean baseline and
// each given build run side by side; closed-loop rounds (small text, 64 connections) alternate
// between them and the medians of CPU µs per send and req/s are printed. A build is a copy of
// dist/ inside the repository (so node_modules resolves), e.g. `cp -r dist dist-ab/before`.
// For judging one change to the hot path, or bisecting it (a copy with a route cut short), on a
// noisy machine where the full bench's single service cannot tell 10 % apart.
//
//   node bench/ab.mjs [--rounds 5] [--duration 4] [--connections 64] [--mix 0.2] [--gc]
//                     [--perf SECONDS] [--log-level info] [--node-options=...] [--lean-node-options=...]
//                     [--also stack-floor.mjs …] <build> [<build> …]
//
// --also SCRIPT[::ENV=value …]: one more reference from bench/ (e.g. stack-floor.mjs), in the rounds
// like the lean one.
// <build> is `dir`, `dir::node options` or `dir::node options::ENV=value …` (one process each).
// --gc: V8's --trace-gc-nvp in each build; prints scavenges, pauses and what survived them.
// --perf S: before the rounds, `perf record -g` of each target for S s under load (node runs with
// --perf-basic-prof so JavaScript frames have names); prints where the perf.data files are.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { APP_SECRET, benchTenants, buildConfig, buildRotation, SEND_HEADERS, writeJson } from "./lib/fixtures.mjs";
import { throughput } from "./lib/load.mjs";
import { cpuTimes, stop } from "./lib/procs.mjs";
import { startBaseline, startEmulator, startService } from "./lib/starters.mjs";

const { values: o, positionals: builds } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: "string", default: "5" }, duration: { type: "string", default: "4" }, connections: { type: "string", default: "64" }, mix: { type: "string", default: "0" }, "log-level": { type: "string", default: "info" }, perf: { type: "string" }, gc: { type: "boolean", default: false }, "node-options": { type: "string", default: "" }, "lean-node-options": { type: "string", default: "" }, also: { type: "string", multiple: true, default: [] } },
});
if (builds.length === 0) builds.push("dist");
const tmp = mkdtempSync(join(os.tmpdir(), "noreply-relay-ab-"));
const procs = [];
console.error(`logs in ${tmp}`);
const tenants = benchTenants(10);
try {
  const emu = await startEmulator({ logDir: tmp, tenants, latencyMs: 1, track: (p) => procs.push(p) });
  const secretFile = join(tmp, "secret");
  writeFileSync(secretFile, APP_SECRET, { mode: 0o600 });
  const configFile = writeJson(tmp, "config.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile, raiseLimits: true }));
  const targets = [];
  const lean = await startBaseline({ name: "lean", script: "lean-baseline.mjs", logDir: tmp, configFile, nodeOptions: o["lean-node-options"].split(/\s+/).filter(Boolean), track: (p) => procs.push(p) });
  targets.push({ name: "lean", proc: lean.proc, url: lean.url });
  for (const spec of o.also) {
    const [script, envText = ""] = spec.split("::");
    const name = spec.replace(/\.mjs/, "").replace(/\W+/g, "_");
    const env = Object.fromEntries(envText.split(/\s+/).filter(Boolean).map((kv) => kv.split("=")));
    const other = await startBaseline({ name, script, logDir: tmp, configFile, env, track: (p) => procs.push(p) });
    targets.push({ name: spec, proc: other.proc, url: other.url });
  }
  for (const spec of builds) {
    // "dir" or "dir::node options for this one"
    const [build, own = "", envText = ""] = spec.split("::");
    const ownEnv = Object.fromEntries(envText.split(/\s+/).filter(Boolean).map((kv) => kv.split("=")));
    const nodeOptions = [...o["node-options"].split(/\s+/).filter(Boolean), ...own.split(/\s+/).filter(Boolean), ...(o.perf ? ["--perf-basic-prof"] : []), ...(o.gc ? ["--trace-gc-nvp"] : [])];
    const svc = await startService({ name: `svc-${spec.replace(/\W+/g, "_")}`, server: join(resolve(build), "server.js"), logDir: tmp, configFile, logLevel: o["log-level"], nodeOptions, env: ownEnv, track: (p) => procs.push(p) });
    targets.push({ name: spec, proc: svc.proc, url: svc.url, service: true });
  }
  const rotation = buildRotation(tenants, { attachmentShare: Number(o.mix) });
  const runs = new Map(targets.map((t) => [t.name, []]));
  const conns = Number(o.connections);
  for (const t of targets) await throughput({ url: t.url, connections: conns, durationS: 2, rotation, headers: SEND_HEADERS });
  if (o.perf) {
    const { spawn } = await import("node:child_process");
    for (const t of targets) {
      const out = join(tmp, `${t.name.replace(/\W+/g, "_")}.perf.data`);
      const rec = spawn("perf", ["record", "-F", "1999", "-g", "-o", out, "-p", String(t.proc.child.pid), "--", "sleep", o.perf], { stdio: "ignore" });
      const before = cpuTimes(t.proc.child.pid).cpuMs;
      const res = await throughput({ url: t.url, connections: conns, durationS: Number(o.perf) + 1, rotation, headers: SEND_HEADERS });
      await new Promise((r) => rec.on("exit", r));
      console.log(`${t.name}: ${((cpuTimes(t.proc.child.pid).cpuMs - before) * 1000 / res.ok).toFixed(0)} µs/send, ${res.ok} sends; perf data ${out}`);
    }
  }
  for (let r = 0; r < Number(o.rounds); r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const before = cpuTimes(t.proc.child.pid).cpuMs;
      const res = await throughput({ url: t.url, connections: conns, durationS: Number(o.duration), rotation, headers: SEND_HEADERS });
      const cpu = cpuTimes(t.proc.child.pid).cpuMs - before;
      if (res.non2xx > 0 || res.errors > 0) console.error(`${t.name}: ${res.non2xx} non-2xx, ${res.errors} errors`);
      runs.get(t.name).push({ rps: res.rps, us: (cpu * 1000) / Math.max(1, res.ok) });
      await sleep(300);
    }
  }
  if (o.gc) {
    for (const t of targets.filter((x) => x.service)) {
      const lines = readFileSync(t.proc.outFile, "utf8").split("\n").filter((l) => l.includes(" gc=s "));
      const f = (l, k) => Number(new RegExp(` ${k}=([\\d.]+)`).exec(l)?.[1] ?? NaN);
      const n = lines.length;
      const sum = (k) => lines.reduce((a, l) => a + f(l, k), 0);
      const mc = readFileSync(t.proc.outFile, "utf8").split("\n").filter((l) => / gc=(mc|ms|mmc) /.test(l)).length;
      console.log(`${t.name}: ${n} scavenges, pause mean ${(sum("pause") / n).toFixed(2)} ms, allocated mean ${(sum("allocated") / n / 1e6).toFixed(1)} MB, survived ${(sum("new_space_survived") / n / 1e6).toFixed(2)} MB + promoted ${(sum("promoted") / n / 1e6).toFixed(2)} MB per scavenge; ${mc} mark-compacts`);
    }
  }
  const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
  const leanUs = med(runs.get("lean").map((x) => x.us));
  const leanRps = med(runs.get("lean").map((x) => x.rps));
  for (const [name, list] of runs) {
    const us = med(list.map((x) => x.us)), rps = med(list.map((x) => x.rps));
    console.log(`${name.padEnd(40)} rps ${rps.toFixed(0).padStart(5)}  cpu µs/send ${us.toFixed(0).padStart(4)}  ÷ lean: rps ${(rps / leanRps).toFixed(3)} cpu ${(us / leanUs).toFixed(2)}   rounds µs: ${list.map((x) => x.us.toFixed(0)).join(" ")}`);
  }
} finally {
  for (const p of procs.reverse()) await stop(p);
}
