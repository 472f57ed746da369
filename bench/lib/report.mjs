// Readable table and target checks for the bench result.

export const TARGETS = [
  { key: "ratio", label: "throughput ratio service/baseline", ok: (r) => r.ratio >= 0.5, want: ">= 0.5" },
  { key: "p99OverheadMs", label: "p99 overhead at fixed rate", ok: (r) => r.p99OverheadMs <= 5, want: "<= 5 ms" },
  { key: "tokenRequests", label: "token requests", ok: (r) => r.tokenRequests === r.tenants, want: "= tenants" },
  { key: "startupMs10kTenants", label: "start-up, 10,000 tenants", ok: (r) => r.startupMs10kTenants <= 1000, want: "<= 1000 ms" },
  { key: "rssMb10kTenants", label: "RSS, 10,000 tenants", ok: (r) => r.rssMb10kTenants <= 150, want: "<= 150 MB" },
];

const f = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "-" : typeof v === "number" ? v.toFixed(digits) : String(v));

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  const line = (r) => r.map((cell, c) => (c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

/** Multi-line human-readable report. */
export function formatReport(d) {
  const out = [];
  out.push(`noreply-relay bench — ${d.machine.cpus} × ${d.machine.cpuModel}, Node ${d.machine.node}; ` +
    `${d.opts.tenants} tenants, Graph latency ${d.opts.latencyMs} ms, ${d.opts.connections} connections × ${d.opts.durationS} s (warm-up ${d.opts.warmupS} s excluded), ${d.opts.rounds} round(s), ` +
    `mix ${d.mix}`);
  out.push("");
  const R = d.rounds;
  const tag = (name, r) => (R.length > 1 ? `${name} #${r.round}` : name);
  const rows = [["throughput (closed loop)", "req/s", "p50 ms", "p99 ms", "non-2xx", "errors", "CPU µs/req", "emulator CPU %", "loadgen CPU %", "other procs CPU %"]];
  for (const r of R) {
    for (const [name, t] of [["baseline", r.baseline], ["service", r.service]]) {
      if (!t) continue;
      rows.push([tag(name, r), f(t.rps, 0), f(t.latency.p50, 1), f(t.latency.p99, 1), t.non2xx, t.errors + t.timeouts, f(t.cpu?.targetUsPerReq, 0), f(t.cpu?.emulatorPct, 0), f(t.cpu?.loadgenPct, 0), f(t.cpu?.foreignPct, 0)]);
    }
  }
  if (d.service) rows.push([`ratio service/baseline${R.length > 1 ? " (median)" : ""}`, f(d.summary.ratio, 3), "", "", "", "", "", "", "", ""]);
  out.push(table(rows));
  out.push("");
  const prow = [[`fixed rate ${d.opts.rate} req/s (open loop)`, "ok", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx+err", "CPU µs/req", "other procs CPU %"]];
  for (const r of R) {
    for (const [name, p] of [["baseline", r.baselinePaced], ["service", r.servicePaced]]) {
      if (!p) continue;
      const bad = Object.entries(p.statuses).filter(([s]) => Number(s) >= 300).reduce((a, [, n]) => a + n, 0) + p.errors;
      prow.push([tag(name, r), p.ok, f(p.latency.p50, 2), f(p.latency.p90, 2), f(p.latency.p99, 2), f(p.latency.max, 1), bad, f(p.cpu?.targetUsPerReq, 0), f(p.cpu?.foreignPct, 0)]);
    }
  }
  for (const r of R) {
    for (const [name, p] of [["baseline", r.baselinePaced], ["service", r.servicePaced]]) {
      for (const [kind, l] of Object.entries(p?.latencyByKind ?? {})) {
        prow.push([`  ${tag(name, r)}, ${kind} mails`, l.count, f(l.p50, 2), f(l.p90, 2), f(l.p99, 2), f(l.max, 1), "", "", ""]);
      }
    }
  }
  if (d.service) {
    prow.push([`overhead service − baseline${R.length > 1 ? " (median)" : ""}`, "", f(d.summary.p50Overhead, 2), f(d.summary.p90Overhead, 2), f(d.summary.p99Overhead, 2), "", "", "", ""]);
  }
  out.push(table(prow));
  out.push("");
  if (d.runtimeStats) {
    const rows = [["runtime during the fixed-rate phase", "loop delay p50 ms", "p99 ms", "max ms", "GC pauses", "GC ms total", "GC µs per req", "pauses > 5 ms", "scavenge n/ms", "mark-compact n/ms", "incremental n/ms"]];
    const reqs = (name) => d.rounds.reduce((a, r) => a + (r[`${name}Paced`]?.measured ?? 0), 0) + d.rounds.length * d.opts.rate;
    for (const [name, st] of Object.entries(d.runtimeStats)) {
      const g = (k) => (st.gc[k] ? `${st.gc[k].count}/${st.gc[k].totalMs.toFixed(0)}` : "0/0");
      rows.push([name, f(st.eventLoopDelayMs.p50, 2), f(st.eventLoopDelayMs.p99, 2), f(st.eventLoopDelayMs.max, 1), st.gcPauses.count, f(st.gcPauses.totalMs, 0), f((st.gcPauses.totalMs * 1000) / reqs(name), 0), st.gcPauses.over5Ms, g("scavenge"), g("markCompact"), g("incrementalMarking")]);
    }
    out.push(table(rows));
    out.push("");
  }
  const r = d.result;
  const other = [["other", "value"]];
  if (d.sent) other.push(["requests sent in all phases (baseline / service)", `${d.sent.baseline} / ${d.sent.service ?? "-"}`]);
  other.push(["token requests (service) / tenants", `${f(r.tokenRequests, 0)} / ${r.tenants}`]);
  other.push(["service RSS after load (peak)", d.service ? `${f(r.rssMb)} MB (${f(d.service.hwmMb)} MB)` : "-"]);
  if (d.baselineMem) other.push(["baseline RSS after load (peak)", `${f(d.baselineMem.rssMb)} MB (${f(d.baselineMem.hwmMb)} MB)`]);
  if (d.service?.readyMs !== undefined) other.push([`service start-up, ${d.opts.tenants} tenants`, `${f(d.service.readyMs, 0)} ms`]);
  const cap = (t) => (t?.cpu?.targetUsPerReq ? 1e6 / t.cpu.targetUsPerReq : NaN);
  const capRatio = d.rounds.map((x) => cap(x.service) / cap(x.baseline)).filter((x) => !Number.isNaN(x));
  if (capRatio.length > 0) {
    const m = [...capRatio].sort((a, b) => a - b)[Math.floor(capRatio.length / 2)];
    other.push(["CPU-bound capacity ratio (baseline CPU µs/req ÷ service CPU µs/req)", f(m, 3)]);
  }
  if (d.startup) {
    other.push(["bare node http start-up", `${f(d.startup.bareNodeMs, 0)} ms`]);
    other.push([`service start-up, ${d.startup.tenants} tenants (spawn → /readyz 200)`, `${f(r.startupMs10kTenants, 0)} ms (runs: ${d.startup.runsMs.map((x) => x.toFixed(0)).join(", ")})`]);
    other.push([`service RSS, ${d.startup.tenants} tenants (idle → after ${d.startup.touched} tenants sent)`, `${f(d.startup.rssIdleMb)} → ${f(r.rssMb10kTenants)} MB`]);
  }
  out.push(table(other));
  out.push("");
  out.push("targets:");
  for (const t of TARGETS) {
    const v = r[t.key];
    const known = v !== null && v !== undefined && !Number.isNaN(v);
    out.push(`  ${known ? (t.ok(r) ? "✓" : "✗") : "?"} ${t.label}: ${known ? v : "not measured"} (want ${t.want})`);
  }
  for (const w of d.warnings) out.push(`warning: ${w}`);
  return out.join("\n");
}
