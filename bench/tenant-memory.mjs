// What a configured tenant, and a tenant that has sent, costs in the service's memory (issue 15):
//
//   npm run build && node bench/tenant-memory.mjs [--tenants 10000] [--used 1000] [--snapshots]
//
// Starts the emulator with `--tenants` tenants and the built service with all of them
// configured, reads RSS and the V8 heap idle, sends one small mail to each of `--used` tenants
// (spread over the directory), and reads them again. With --snapshots, the service also writes a
// heap snapshot at both points and the difference is printed by constructor: what each used
// tenant adds, object by object. Prints one JSON line.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { APP_SECRET, SEND_HEADERS, benchTenants, buildConfig, smallTextBody, writeJson } from "./lib/fixtures.mjs";
import { memory, stop } from "./lib/procs.mjs";
import { startEmulator, startService } from "./lib/starters.mjs";
const { values: argv } = parseArgs({
  options: {
    tenants: { type: "string", default: "10000" },
    used: { type: "string", default: "1000" },
    snapshots: { type: "boolean", default: false },
    top: { type: "string", default: "25" },
    "node-options": { type: "string", default: "" },
    keep: { type: "boolean", default: false },
    "settle-s": { type: "string", default: "0" },
    server: { type: "string" },
    sends: { type: "string" },
  },
});
const n = Number(argv.tenants);
const used = Math.min(n, Number(argv.used));
const tmp = mkdtempSync(join(os.tmpdir(), "noreply-relay-tenant-memory-"));
const procs = [];

function post(url, body) {
  return new Promise((res, rej) => {
    const buf = Buffer.from(JSON.stringify(body));
    http
      .request(new URL("/send", url), { method: "POST", agent: false, headers: { ...SEND_HEADERS, "content-length": buf.length } }, (r) => {
        r.resume();
        r.on("end", () => res(r.statusCode));
      })
      .on("error", rej)
      .end(buf);
  });
}

function getText(url) {
  return new Promise((res, rej) => {
    http
      .get(url, { agent: false }, (r) => {
        const chunks = [];
        r.on("data", (c) => chunks.push(c));
        r.on("end", () => res(Buffer.concat(chunks).toString("utf8")));
      })
      .on("error", rej);
  });
}

async function heap(url) {
  const text = await getText(new URL("/metrics", url));
  const v = (name) => +(Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN) / 2 ** 20).toFixed(1);
  const spaces = {};
  for (const m of text.matchAll(/^nodejs_heap_space_size_(total|used)_bytes\{space="(\w+)"\} (\S+)$/gm)) {
    if (Number(m[3]) >= 2 ** 20) spaces[`${m[2]}.${m[1]}`] = +(Number(m[3]) / 2 ** 20).toFixed(1);
  }
  return { heapUsedMb: v("nodejs_heap_size_used_bytes"), heapTotalMb: v("nodejs_heap_size_total_bytes"), externalMb: v("nodejs_external_memory_bytes"), spaces };
}

/** Self size and count per "type:name" of a .heapsnapshot. */
function aggregate(file) {
  const snap = JSON.parse(readFileSync(file, "utf8"));
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize] = ["type", "name", "self_size"].map((k) => f.indexOf(k));
  const out = new Map();
  const nodes = snap.nodes;
  for (let i = 0; i < nodes.length; i += f.length) {
    const type = types[nodes[i + iType]];
    const name = type === "string" || type === "concatenated string" || type === "sliced string" ? "(string)" : type === "code" ? "(code)" : type === "array" ? `(array) ${snap.strings[nodes[i + iName]]}` : snap.strings[nodes[i + iName]].slice(0, 60);
    const key = `${type}:${name}`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += nodes[i + iSize];
    out.set(key, e);
  }
  return out;
}

async function snapshot(proc, label) {
  const before = new Set(readdirSync(tmp).filter((f) => f.endsWith(".heapsnapshot")));
  proc.child.kill("SIGUSR2");
  for (let i = 0; i < 600; i++) {
    await sleep(500);
    const files = readdirSync(tmp).filter((f) => f.endsWith(".heapsnapshot") && !before.has(f));
    if (files.length > 0) {
      // Written when the size stops changing.
      const file = join(tmp, files[0]);
      let last = -1;
      for (;;) {
        const size = readFileSync(file).length;
        if (size === last && size > 0) break;
        last = size;
        await sleep(1000);
      }
      console.error(`[tenant-memory] ${label} snapshot: ${file}`);
      return file;
    }
  }
  throw new Error("no heap snapshot written");
}

try {
  const tenants = benchTenants(n);
  const emu = await startEmulator({ logDir: tmp, tenants, latencyMs: 1, timeoutMs: 60_000, track: (p) => procs.push(p) });
  const secretFile = join(tmp, "client-secret");
  writeFileSync(secretFile, APP_SECRET);
  const configFile = writeJson(tmp, "config.json", buildConfig(tenants, { emulatorUrl: emu.url, caFile: emu.caFile, secretFile, raiseLimits: false }));
  const { proc: svc, url, readyMs } = await startService({
    ...(argv.server ? { server: resolve(argv.server) } : {}),
    logDir: tmp,
    configFile,
    nodeOptions: [...argv["node-options"].split(/\s+/).filter(Boolean), ...(argv.snapshots ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${tmp}`] : [])],
    timeoutMs: 60_000,
    track: (p) => procs.push(p),
  });
  await sleep(1500);
  const idle = { ...memory(svc.pid), ...(await heap(url)) };
  const snapIdle = argv.snapshots ? await snapshot(svc, "idle") : undefined;
  const step = Math.max(1, Math.floor(n / used));
  const sends = argv.sends === undefined ? used : Number(argv.sends);
  const picked = Array.from({ length: sends }, (_, k) => tenants[(k % used) * step]);
  let failed = 0;
  for (let k = 0; k < picked.length; k += 16) {
    const codes = await Promise.all(picked.slice(k, k + 16).map((t, j) => post(url, smallTextBody(t, k + j))));
    failed += codes.filter((c) => c !== 202).length;
  }
  await sleep(1500);
  const after = { ...memory(svc.pid), ...(await heap(url)) };
  const settleS = Number(argv["settle-s"]);
  let settled;
  if (settleS > 0) {
    await sleep(settleS * 1000);
    settled = { ...memory(svc.pid), ...(await heap(url)) };
  }
  const snapAfter = argv.snapshots ? await snapshot(svc, "after sends") : undefined;
  let diff;
  if (snapIdle && snapAfter) {
    const a = aggregate(snapIdle);
    const b = aggregate(snapAfter);
    const rows = [];
    for (const [k, v] of b) {
      const o = a.get(k) ?? { count: 0, bytes: 0 };
      rows.push({ what: k, count: v.count - o.count, bytes: v.bytes - o.bytes });
    }
    for (const [k, o] of a) if (!b.has(k)) rows.push({ what: k, count: -o.count, bytes: -o.bytes });
    rows.sort((x, y) => y.bytes - x.bytes);
    const total = rows.reduce((s, r) => s + r.bytes, 0);
    diff = { totalBytes: total, perUsedTenant: Math.round(total / used), top: rows.slice(0, Number(argv.top)).map((r) => ({ ...r, perTenant: Math.round(r.bytes / used) })) };
    const idleAgg = [...a.entries()].map(([k, v]) => ({ what: k, ...v })).sort((x, y) => y.bytes - x.bytes);
    diff.idleTop = idleAgg.slice(0, Number(argv.top));
  }
  console.log(JSON.stringify({ tenants: n, used, failed, readyMs: Math.round(readyMs), idle, after, settled, perUsedTenantKb: +(((after.rssMb - idle.rssMb) * 1024) / used).toFixed(1), diff }));
} finally {
  for (const p of procs) await stop(p, 5000).catch(() => undefined);
  if (!argv.keep) rmSync(tmp, { recursive: true, force: true });
  else console.error(`[tenant-memory] kept ${tmp}`);
}
