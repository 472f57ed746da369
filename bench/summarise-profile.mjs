// Summarises a V8 .cpuprofile (node --cpu-prof): top functions by self time, by inclusive
// time, and self time per package / area, as percentages of busy (non-idle) time.
//
//   node bench/summarise-profile.mjs <file.cpuprofile | dir> [--top 30] [--json] [--requests N]
// With --requests (requests the process served while profiled) every line also shows µs/request.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { SourceMap } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const SPECIAL = new Set(["(idle)", "(program)", "(garbage collector)", "(root)"]);

/** Short, machine-independent location of a script URL. */
export function shortUrl(url) {
  if (!url) return "";
  let u = url.replace(/^file:\/\//, "");
  const nm = u.lastIndexOf("/node_modules/");
  if (nm >= 0) return u.slice(nm + 1);
  const dist = u.lastIndexOf("/dist/");
  if (dist >= 0) return u.slice(dist + 1);
  const bench = u.lastIndexOf("/bench/");
  if (bench >= 0) return u.slice(bench + 1);
  const src = u.lastIndexOf("/src/");
  if (src >= 0) return u.slice(src + 1);
  return u;
}

const sourceMaps = new Map();

/** The source map next to a script (the service bundle's server.js.map), or null. */
function sourceMapOf(url) {
  if (!url.startsWith("file://")) return null;
  if (!sourceMaps.has(url)) {
    let map = null;
    try {
      const file = `${fileURLToPath(url)}.map`;
      if (existsSync(file)) {
        const payload = JSON.parse(readFileSync(file, "utf8"));
        map = { map: new SourceMap(payload), dir: dirname(file) };
      }
    } catch {
      map = null;
    }
    sourceMaps.set(url, map);
  }
  return sourceMaps.get(url);
}

/**
 * Frames of a bundle (dist/server.js and its chunks) moved to the file and line they come from
 * (src/… or node_modules/…) through the bundle's source map, so the summary names packages and
 * the app's layers as it did before the service was bundled. Changes the profile's nodes.
 */
export function mapToSources(profile) {
  for (const n of profile.nodes) {
    const cf = n.callFrame;
    const m = cf.url ? sourceMapOf(cf.url) : null;
    if (!m) continue;
    const e = m.map.findEntry(cf.lineNumber, cf.columnNumber);
    if (!e || !e.originalSource) continue;
    const source = e.originalSource.startsWith("file://") ? e.originalSource : pathToFileURL(resolve(m.dir, e.originalSource)).href;
    n.callFrame = { ...cf, url: source, lineNumber: e.originalLine, columnNumber: e.originalColumn };
  }
  return profile;
}

/** Which package or area a frame belongs to: a node_modules package, node: internals, the app. */
export function area(callFrame) {
  const name = callFrame.functionName;
  if (SPECIAL.has(name)) return name;
  const u = shortUrl(callFrame.url);
  if (u === "") return name.startsWith("RegExp:") ? "(regexp)" : "(native / V8 builtins)";
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1];
  if (u.startsWith("node:")) {
    const parts = u.slice(5).split("/");
    return `node:${parts[0] === "internal" ? parts.slice(0, Math.min(parts.length - 1, 2)).join("/") || parts[0] : parts[0]}`;
  }
  // What the source map gives no source for in the bundle: esbuild's module wrappers.
  if (u === "dist/server.js" || u.startsWith("dist/chunks/")) return "(bundle runtime)";
  if (u.startsWith("dist/") || u.startsWith("src/")) return `app: ${u.split("/").slice(0, -1).join("/") || "dist"}`;
  return u;
}

/**
 * @param {{nodes: any[], samples: number[], timeDeltas: number[], startTime: number, endTime: number}} profile
 */
export function summariseProfile(profile, { top = 30, requests } = {}) {
  mapToSources(profile);
  const byId = new Map();
  const parent = new Map();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Time of sample i = interval until the next sample (what DevTools shows).
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const sampleUs = samples.map((_, i) => (i + 1 < deltas.length ? deltas[i + 1] : 0));
  const selfUsByNode = new Map();
  samples.forEach((id, i) => selfUsByNode.set(id, (selfUsByNode.get(id) ?? 0) + Math.max(0, sampleUs[i])));

  const fnKey = (n) => {
    const cf = n.callFrame;
    const name = cf.functionName || "(anonymous)";
    if (SPECIAL.has(name)) return name;
    const u = shortUrl(cf.url);
    return u ? `${name} ${u}:${cf.lineNumber + 1}` : name;
  };

  let totalUs = 0;
  let idleUs = 0;
  const selfByFn = new Map();
  const selfByArea = new Map();
  for (const [id, us] of selfUsByNode) {
    const n = byId.get(id);
    if (!n) continue;
    totalUs += us;
    if (n.callFrame.functionName === "(idle)") idleUs += us;
    const k = fnKey(n);
    selfByFn.set(k, (selfByFn.get(k) ?? 0) + us);
    const a = area(n.callFrame);
    selfByArea.set(a, (selfByArea.get(a) ?? 0) + us);
  }

  // Inclusive time per function: every distinct function on a sample's stack gets the sample once.
  const inclByFn = new Map();
  const stackKeys = new Map();
  const keysOf = (id) => {
    let keys = stackKeys.get(id);
    if (keys) return keys;
    const set = new Set();
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (n && n.callFrame.functionName !== "(root)") set.add(fnKey(n));
    }
    keys = [...set];
    stackKeys.set(id, keys);
    return keys;
  };
  samples.forEach((id, i) => {
    const us = Math.max(0, sampleUs[i]);
    for (const k of keysOf(id)) inclByFn.set(k, (inclByFn.get(k) ?? 0) + us);
  });

  const busyUs = Math.max(1, totalUs - idleUs);
  const rank = (m) =>
    [...m.entries()]
      .filter(([k]) => k !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: us / 1000, pctBusy: (us / busyUs) * 100, ...(requests ? { usPerReq: us / requests } : {}) }));
  return {
    wallMs: (profile.endTime - profile.startTime) / 1000,
    sampledMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    busyMs: busyUs / 1000,
    samples: samples.length,
    requests,
    busyUsPerReq: requests ? busyUs / requests : undefined,
    selfByFunction: rank(selfByFn).slice(0, top),
    inclusiveByFunction: rank(inclByFn).slice(0, top),
    selfByArea: rank(selfByArea).slice(0, top),
    allAreas: rank(selfByArea),
  };
}

export function formatProfileSummary(s) {
  const lines = [];
  const perReq = s.requests ? `; ${s.requests} requests, ${s.busyUsPerReq.toFixed(0)} µs busy per request` : "";
  lines.push(`profile: ${s.wallMs.toFixed(0)} ms wall, ${s.busyMs.toFixed(0)} ms busy, ${s.idleMs.toFixed(0)} ms idle, ${s.samples} samples${perReq}; % of busy time`);
  const block = (title, rows) => {
    lines.push("", title);
    for (const r of rows) {
      const us = r.usPerReq !== undefined ? `  ${r.usPerReq.toFixed(1).padStart(6)} µs/req` : "";
      lines.push(`  ${r.pctBusy.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms${us}  ${r.name}`);
    }
  };
  block("self time by package / area:", s.selfByArea);
  block("top functions by self time:", s.selfByFunction);
  block("top functions by inclusive time:", s.inclusiveByFunction);
  return lines.join("\n");
}

/**
 * Self time per area of two profiles side by side, in µs per request (both need `requests`):
 * where the service spends more than the baseline (named `baselineName`) per request.
 */
export function formatProfileDiff(service, baseline, baselineName = "baseline") {
  if (!service.requests || !baseline.requests) return "";
  const areas = new Map();
  for (const a of service.allAreas) areas.set(a.name, { s: a.usPerReq, b: 0 });
  for (const a of baseline.allAreas) areas.set(a.name, { s: areas.get(a.name)?.s ?? 0, b: a.usPerReq });
  areas.delete("(program)");
  const rows = [...areas].map(([name, v]) => ({ name, ...v, d: v.s - v.b })).sort((x, y) => y.d - x.d);
  const lines = [
    `busy CPU per request: service ${service.busyUsPerReq.toFixed(0)} µs, ${baselineName} baseline ${baseline.busyUsPerReq.toFixed(0)} µs, difference ${(service.busyUsPerReq - baseline.busyUsPerReq).toFixed(0)} µs`,
    "",
    `self time per request by area (µs):   service  ${baselineName.slice(0, 8).padStart(8)}     extra`,
  ];
  for (const r of rows.filter((x) => Math.abs(x.d) >= 1).slice(0, 25)) {
    lines.push(`  ${r.name.padEnd(34).slice(0, 34)}  ${r.s.toFixed(1).padStart(7)}  ${r.b.toFixed(1).padStart(8)}  ${r.d.toFixed(1).padStart(8)}`);
  }
  return lines.join("\n");
}

function latestProfile(path) {
  const p = resolve(path);
  if (!statSync(p).isDirectory()) return p;
  const files = readdirSync(p)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join(p, f))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
  if (files.length === 0) throw new Error(`no .cpuprofile in ${p}`);
  return files.at(-1);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: "string", default: "30" }, json: { type: "boolean", default: false }, requests: { type: "string" } },
  });
  if (positionals.length !== 1) {
    console.error("usage: node bench/summarise-profile.mjs <file.cpuprofile | dir> [--top N] [--json] [--requests N]");
    process.exit(1);
  }
  const file = latestProfile(positionals[0]);
  const requests = values.requests === undefined ? undefined : Number(values.requests);
  const summary = summariseProfile(JSON.parse(readFileSync(file, "utf8")), { top: Number(values.top), requests });
  console.log(values.json ? JSON.stringify(summary, null, 2) : `${file}\n${formatProfileSummary(summary)}`);
}
