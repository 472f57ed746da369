// The latency a relay adds, request by request: what the caller waited minus what the emulator
// (Graph) took for the same mail, at a fixed rate (issue 15's p99 rows, seen without the
// emulator's own time in them).
//
//   npm run build && node bench/added-latency.mjs [--rate 200] [--slices 4] [--slice-s 5]
//       [--latency-ms 20] [--mix 0.2] [--server dist/server.js] [--emulator-gc]
//       [--emulator-node-options "..."]
//
// The full bench's p99 rows subtract two p99s of whole latencies (service minus lean baseline),
// and each of those carries everything on the path: the emulator's timers and GC, the load
// generator's event loop, both CPUs' other work. Here each answer's internetMessageId finds the
// emulator's record of that mail (its request id and its own duration, from arrival to the answer
// written), so every request gets its own "added" figure: the relay's work, the loopback hops,
// and whatever stalled the machine while the request was outside the emulator. The lean
// baseline, the stack floor and the service are measured in alternating slices against one
// emulator; --emulator-gc adds the emulator's GC pauses (from V8's --trace-gc) per target.
// Prints a table and one JSON line last.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { APP_SECRET, SEND_HEADERS, benchTenants, buildConfig, buildRotation, writeJson } from "./lib/fixtures.mjs";
import { createPacer, summarise } from "./lib/load.mjs";
import { httpsJson, stop } from "./lib/procs.mjs";
import { startBaseline, startEmulator, startService } from "./lib/starters.mjs";

const { values: argv } = parseArgs({
  options: {
    rate: { type: "string", default: "200" },
    slices: { type: "string", default: "4" },
    "slice-s": { type: "string", default: "5" },
    "latency-ms": { type: "string", default: "20" },
    mix: { type: "string", default: "0.2" },
    server: { type: "string" },
    "emulator-gc": { type: "boolean", default: false },
    "emulator-node-options": { type: "string", default: "" },
  },
});
const rate = Number(argv.rate);
const sliceS = Number(argv["slice-s"]);
const slices = Number(argv.slices);
// The emulator keeps the last 10,000 requests and messages; a slice is read and cleared after it.
if (!(rate > 0 && sliceS > 0 && slices > 0) || rate * sliceS > 9_000) {
  console.error("--rate, --slices and --slice-s must be positive, with rate × slice-s ≤ 9000 (the emulator's request log)");
  process.exit(2);
}

const tmp = mkdtempSync(join(os.tmpdir(), "noreply-relay-added-latency-"));
console.error(`logs in ${tmp}`);
const procs = [];
const track = (p) => procs.push(p);
const tenants = benchTenants(10);

const emulatorJson = (emu, method, path) => httpsJson(method, `${emu.url}${path}`, emu.ca);

/** V8 --trace-gc pause lines of the emulator's stdout log from byte `from` on. */
function gcPauses(file, from) {
  const text = readFileSync(file, "utf8").slice(from);
  const pauses = [...text.matchAll(/: (Scavenge|Mark-Compact)\S*(?: \(reduce\))? [^,]*, ([\d.]+) \/ [\d.]+ ms/g)].map((m) => ({ kind: m[1], ms: Number(m[2]) }));
  return { end: from + text.length, pauses };
}

const r2 = (x) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);
const pick = (s) => ({ p50: r2(s.p50), p90: r2(s.p90), p99: r2(s.p99), max: r2(s.max) });

try {
  const emulatorNodeOptions = [...argv["emulator-node-options"].split(/\s+/).filter(Boolean), ...(argv["emulator-gc"] ? ["--trace-gc"] : [])];
  const emu = await startEmulator({ logDir: tmp, tenants, latencyMs: Number(argv["latency-ms"]), nodeOptions: emulatorNodeOptions, track });
  const secretFile = join(tmp, "client-secret");
  writeFileSync(secretFile, APP_SECRET, { mode: 0o600 });
  const configFile = writeJson(tmp, "config.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile, raiseLimits: true }));
  const lean = await startBaseline({ name: "lean", script: "lean-baseline.mjs", logDir: tmp, configFile, track });
  const floor = await startBaseline({ name: "stack-floor", script: "stack-floor.mjs", logDir: tmp, configFile, track });
  const svc = await startService({ name: "service", ...(argv.server ? { server: argv.server } : {}), logDir: tmp, configFile, track });
  const rotation = buildRotation(tenants, { attachmentShare: Number(argv.mix) });
  const targets = [
    { name: "lean baseline", url: lean.url },
    { name: "stack floor", url: floor.url },
    { name: "service", url: svc.url },
  ].map((t) => ({ ...t, pacer: createPacer({ url: t.url, rotation, headers: SEND_HEADERS, messageIds: true }), client: [], emulator: [], added: [], addedSmall: [], unmatched: 0, lateMsMax: 0, gc: [] }));

  // Warm-up, not measured: first tokens, JIT tiers, the connection pools.
  for (const t of targets) await t.pacer.run({ rate, durationS: 3, warmupS: 3 });
  let logAt = 0;
  for (let s = 0; s < slices; s++) {
    const order = s % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      await emulatorJson(emu, "DELETE", "/_emulator/requests");
      await emulatorJson(emu, "DELETE", "/_emulator/messages");
      if (argv["emulator-gc"]) logAt = gcPauses(emu.proc.outFile, logAt).end;
      const run = await t.pacer.run({ rate, durationS: sliceS });
      const requests = (await emulatorJson(emu, "GET", "/_emulator/requests?kind=sendMail")).value;
      const messages = (await emulatorJson(emu, "GET", "/_emulator/messages?raw=false")).value;
      if (argv["emulator-gc"]) {
        const g = gcPauses(emu.proc.outFile, logAt);
        logAt = g.end;
        t.gc.push(...g.pauses);
      }
      const durationById = new Map(requests.map((r) => [r.id, r.durationMs]));
      const requestIdByMessageId = new Map(messages.map((m) => [m.internetMessageId, m.requestId]));
      t.lateMsMax = Math.max(t.lateMsMax, run.lateMsMax);
      for (const [ms, kind, messageId] of run.samples) {
        const emulatorMs = durationById.get(requestIdByMessageId.get(messageId));
        if (emulatorMs === undefined) {
          t.unmatched++;
          continue;
        }
        t.client.push(ms);
        t.emulator.push(emulatorMs);
        t.added.push(ms - emulatorMs);
        if (kind === "small") t.addedSmall.push(ms - emulatorMs);
      }
    }
  }
  for (const t of targets) t.pacer.close();

  const rows = targets.map((t) => {
    const gcMs = t.gc.map((p) => p.ms);
    return {
      target: t.name,
      requests: t.client.length,
      unmatched: t.unmatched,
      clientMs: pick(summarise(t.client)),
      emulatorMs: pick(summarise(t.emulator)),
      addedMs: pick(summarise(t.added)),
      addedMsSmall: pick(summarise(t.addedSmall)),
      generatorLateMsMax: r2(t.lateMsMax),
      ...(argv["emulator-gc"] ? { emulatorGc: { pauses: t.gc.length, totalMs: r2(gcMs.reduce((a, b) => a + b, 0)), maxMs: r2(Math.max(0, ...gcMs)), markCompacts: t.gc.filter((p) => p.kind === "Mark-Compact").length } } : {}),
    };
  });
  const leanRow = rows[0];
  const f = (x) => (x === null ? "—" : x.toFixed(2).padStart(7));
  console.log(`${rate} req/s, ${slices} alternating slices of ${sliceS} s, Graph latency ${argv["latency-ms"]} ms, attachment share ${argv.mix}`);
  console.log("target          requests  client p50    p99 | emulator p50    p99 | added p50    p90    p99    max | added p99 small | generator late");
  for (const r of rows) {
    console.log(
      `${r.target.padEnd(15)} ${String(r.requests).padStart(8)}     ${f(r.clientMs.p50)} ${f(r.clientMs.p99)} |      ${f(r.emulatorMs.p50)} ${f(r.emulatorMs.p99)} |  ${f(r.addedMs.p50)} ${f(r.addedMs.p90)} ${f(r.addedMs.p99)} ${f(r.addedMs.max)} |         ${f(r.addedMsSmall.p99)} | ${f(r.generatorLateMsMax)}`,
    );
  }
  const versusLean = (r) => ({ p99AddedMs: r2(r.addedMs.p99 - leanRow.addedMs.p99), p99AddedMsSmall: r2(r.addedMsSmall.p99 - leanRow.addedMsSmall.p99), p99ClientMs: r2(r.clientMs.p99 - leanRow.clientMs.p99) });
  console.log(JSON.stringify({ rate, slices, sliceS, graphLatencyMs: Number(argv["latency-ms"]), attachmentShare: Number(argv.mix), targets: rows, serviceVsLean: versusLean(rows[2]), stackFloorVsLean: versusLean(rows[1]) }));
} finally {
  for (const p of procs) await stop(p);
}
