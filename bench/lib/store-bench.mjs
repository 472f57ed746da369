// The shared-store (Redis) comparison: what one measured run costs in Redis round trips,
// Redis CPU and Redis commands, which commands travel in which round trip (from the
// redis-trace.mjs preload), and the report.
import { setTimeout as sleep } from "node:timers/promises";
import { getMetrics } from "./procs.mjs";
import { redisInfo, redisInfoDelta } from "./redis.mjs";

/**
 * From a service's /metrics: noreply_relay_store_round_trips_total and the Graph requests it
 * made (noreply_relay_graph_requests_total, all series): on the happy path one per send, and
 * counted by the service, so sends whose client went away (autocannon stopping) still count.
 */
export async function readStoreMetrics(url) {
  const { text } = await getMetrics(url);
  const m = /^noreply_relay_store_round_trips_total (\S+)$/m.exec(text);
  if (!m) throw new Error(`${url}/metrics: no noreply_relay_store_round_trips_total (is the service running with store.type redis?)`);
  let graphRequests = 0;
  for (const g of text.matchAll(/^noreply_relay_graph_requests_total(?:\{[^}]*\})? (\S+)$/gm)) graphRequests += Number(g[1]);
  return { roundTrips: Number(m[1]), graphRequests };
}

/**
 * Meters one Redis-backed service over measured runs: start() and stop(clientSends) read its
 * counters (a /metrics scrape) and Redis's INFO, each after `drainMs` so that sends still in
 * flight (autocannon stops with 64 of them) finish on the side of the window they belong to.
 * A scrape costs round trips of its own (the recipients gauge asks Redis) and INFO shows up in
 * Redis's command counts, so calibrate() measures empty windows and later ones have that
 * subtracted. Per-send figures divide by the sends the service made (Graph requests).
 */
export function storeMeter({ url, redis, drainMs = 250 }) {
  let before;
  let idle = { roundTrips: 0, commands: {} };
  const meter = {
    async start() {
      await sleep(drainMs);
      const m = await readStoreMetrics(url);
      before = { ...m, info: await redisInfo(redis.client), t: process.hrtime.bigint() };
    },
    async stop(clientSends) {
      await sleep(drainMs);
      const m = await readStoreMetrics(url);
      const info = await redisInfo(redis.client);
      const d = redisInfoDelta(before.info, info);
      const commands = {};
      for (const [name, c] of Object.entries(d.commands)) {
        const calls = c.calls - (idle.commands[name]?.calls ?? 0);
        if (name !== "info" && calls > 0) commands[name] = { calls, usec: Math.max(0, c.usec - (idle.commands[name]?.usec ?? 0)) };
      }
      return {
        sends: m.graphRequests - before.graphRequests,
        clientSends,
        roundTrips: m.roundTrips - before.roundTrips - idle.roundTrips,
        redisCpuMs: d.cpuMs,
        wallMs: Number(process.hrtime.bigint() - before.t) / 1e6,
        commands,
      };
    },
    /** Median of `n` empty windows: what the metering itself costs. */
    async calibrate(n = 3) {
      const windows = [];
      const drain = drainMs;
      drainMs = 20; // nothing in flight
      for (let i = 0; i < n; i++) {
        await meter.start();
        windows.push(await meter.stop(0));
      }
      drainMs = drain;
      const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      const names = new Set(windows.flatMap((w) => Object.keys(w.commands)));
      idle = {
        roundTrips: med(windows.map((w) => w.roundTrips)),
        commands: Object.fromEntries([...names].map((k) => [k, { calls: med(windows.map((w) => w.commands[k]?.calls ?? 0)), usec: med(windows.map((w) => w.commands[k]?.usec ?? 0)) }])),
      };
      return idle;
    },
  };
  return meter;
}

/** Adds up several stop() results. */
export function sumStoreDeltas(list) {
  const out = { sends: 0, clientSends: 0, roundTrips: 0, redisCpuMs: 0, wallMs: 0, commands: {} };
  for (const d of list) {
    out.sends += d.sends;
    out.clientSends += d.clientSends;
    out.roundTrips += d.roundTrips;
    out.redisCpuMs += d.redisCpuMs;
    out.wallMs += d.wallMs;
    for (const [k, c] of Object.entries(d.commands)) {
      const o = (out.commands[k] ??= { calls: 0, usec: 0 });
      o.calls += c.calls;
      o.usec += c.usec;
    }
  }
  return out;
}

/** Per send: round trips, redis-server CPU µs, commands (calls and µs inside Redis). */
export function perSend(d) {
  if (!d || d.sends === 0) return undefined;
  const commands = Object.fromEntries(
    Object.entries(d.commands)
      .sort((a, b) => b[1].calls - a[1].calls)
      .map(([k, c]) => [k, { calls: c.calls / d.sends, usec: c.usec / d.sends }]),
  );
  return { sends: d.sends, roundTrips: d.roundTrips / d.sends, redisCpuUs: (d.redisCpuMs * 1000) / d.sends, commands };
}

/** Fresh Idempotency-Keys: unique within the run (the id is random per run). */
export function keyGenerator(runId) {
  let n = 0;
  return () => `bench-${runId}-${(n++).toString(36)}`;
}

/**
 * Attributes the traced writes of the command connection to the sequential requests (by
 * CLOCK_MONOTONIC time): a write between a request's start and its answer belongs to it, one
 * after the answer and before the next request starts is its "after the answer" part. Spans
 * carry a `variant`; returns per variant the distinct patterns and how many requests showed each.
 */
export function analyseTrace(trace, spans, { lastGapMs = 20 } = {}) {
  const subscriber = new Set(trace.writes.filter((w) => w.commands.some((c) => c.startsWith("SUBSCRIBE"))).map((w) => w.socket));
  const writes = trace.writes.filter((w) => !subscriber.has(w.socket)).map((w) => ({ t: BigInt(w.t), commands: w.commands }));
  const sorted = [...spans].sort((a, b) => (a.start < b.start ? -1 : 1));
  const out = {};
  let wi = 0;
  while (wi < writes.length && sorted.length > 0 && writes[wi].t < sorted[0].start) wi++;
  for (let i = 0; i < sorted.length; i++) {
    const s = sorted[i];
    const next = sorted[i + 1]?.start ?? s.end + BigInt(Math.round(lastGapMs * 1e6));
    const during = [];
    const after = [];
    const offsets = []; // ms from the request's start to each write
    for (; wi < writes.length && writes[wi].t < next; wi++) {
      (writes[wi].t <= s.end ? during : after).push(writes[wi].commands.join(" + "));
      offsets.push(Number(writes[wi].t - s.start) / 1e6);
    }
    const v = (out[s.variant] ??= { requests: 0, patterns: new Map() });
    v.requests++;
    const key = JSON.stringify({ kind: s.kind, status: s.status, during, after });
    const p = v.patterns.get(key) ?? { kind: s.kind, status: s.status, during, after, count: 0, offsets: [], answers: [] };
    p.count++;
    p.offsets.push(offsets);
    p.answers.push(Number(s.end - s.start) / 1e6);
    v.patterns.set(key, p);
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const v of Object.values(out)) {
    v.patterns = [...v.patterns.values()]
      .sort((a, b) => b.count - a.count)
      .map(({ offsets, answers, ...p }) => ({ ...p, atMs: offsets[0].map((_, i) => med(offsets.map((o) => o[i]))), answerMs: med(answers) }));
  }
  return out;
}

const f = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "-" : typeof v === "number" ? v.toFixed(digits) : String(v));

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  const line = (r) => r.map((cell, c) => (c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}

/** Multi-line report of the Redis phase (see redisPhase in run.mjs for the shape of `r`). */
export function formatStoreReport(r) {
  const out = [];
  out.push(
    `shared store: the service with store.type redis (redis-server ${r.redisVersion}, loopback, no persistence) against the lean baseline and the same service with the memory store; ` +
      `${r.params.rounds} round(s), throughput (small text, Graph latency ${r.params.throughputLatencyMs} ms) ${r.params.durationS} s, fixed rate (80/20 mix) ${r.params.rateDurationS} s per target and variant; keyless = the main bench's requests, keyed = the same with a fresh Idempotency-Key each (the lean baseline ignores it)`,
  );
  out.push("");
  const rows = [["throughput (closed loop)", "req/s", "p50 ms", "p99 ms", "non-2xx+err", "service CPU µs/send", "redis-server CPU µs/send", "round trips/send", "other procs CPU %"]];
  for (const round of r.rounds) {
    for (const v of ["keyless", "keyed"]) {
      for (const store of ["lean", "memory", "redis"]) {
        const t = round[v]?.throughput?.[store];
        if (!t) continue;
        const ps = perSend(t.store);
        rows.push([`#${round.round} ${v} ${store}`, f(t.rps, 0), f(t.latency.p50, 1), f(t.latency.p99, 1), t.non2xx + t.errors + t.timeouts, f(t.cpu.targetUsPerReq, 0), f(ps?.redisCpuUs, 0), f(ps?.roundTrips, 2), f(t.cpu.foreignPct, 0)]);
      }
    }
  }
  out.push(table(rows));
  out.push("");
  const prow = [[`fixed rate ${r.params.rate} req/s (open loop)`, "ok", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx+err", "service CPU µs/send", "redis-server CPU µs/send", "round trips/send"]];
  for (const round of r.rounds) {
    for (const v of ["keyless", "keyed"]) {
      for (const store of ["lean", "memory", "redis"]) {
        const p = round[v]?.paced?.[store];
        if (!p) continue;
        const bad = Object.entries(p.statuses).filter(([s]) => Number(s) >= 300).reduce((a, [, n]) => a + n, 0) + p.errors;
        const ps = perSend(p.store);
        prow.push([`#${round.round} ${v} ${store}`, p.ok, f(p.latency.p50, 2), f(p.latency.p90, 2), f(p.latency.p99, 2), f(p.latency.max, 1), bad, f(p.cpu.targetUsPerReq, 0), f(ps?.redisCpuUs, 0), f(ps?.roundTrips, 2)]);
      }
    }
  }
  out.push(table(prow));
  out.push("");
  const srow = [["one send at a time", "sends", "p50 ms", "p99 ms", "service CPU µs/send", "round trips/send", "redis-server CPU µs/send", "Redis commands/send (calls)"]];
  for (const v of ["keyless", "keyed"]) {
    for (const store of ["memory", "redis"]) {
      const s = r.serial[v]?.[store];
      if (!s) continue;
      const ps = perSend(s.store);
      const cmds = ps ? Object.entries(ps.commands).map(([k, c]) => `${k} ${f(c.calls, 2)}`).join(", ") : "";
      srow.push([`${v} ${store}`, s.sent, f(s.latency.p50, 2), f(s.latency.p99, 2), f(s.cpuUsPerSend, 0), f(ps?.roundTrips, 2), f(ps?.redisCpuUs, 0), cmds]);
    }
  }
  out.push(table(srow));
  if (r.trace) {
    out.push("");
    out.push(`round trips of single sends, from a traced service (${r.trace.note}):`);
    for (const v of ["keyless", "keyed"]) {
      const a = r.trace[v];
      if (!a) continue;
      for (const p of a.patterns) {
        out.push(`  ${v}, ${p.kind} mail, answer ${p.status}: ${p.count}/${a.requests} sends, ${p.during.length} round trip(s) before the answer${p.after.length ? `, ${p.after.length} after it` : ""} (median ms from the request's start)`);
        p.during.forEach((w, i) => out.push(`    ${i + 1}. +${f(p.atMs[i], 2)} ${w}`));
        out.push(`       +${f(p.answerMs, 2)} answer`);
        p.after.forEach((w, i) => out.push(`    after the answer: +${f(p.atMs[p.during.length + i], 2)} ${w}`));
      }
    }
  }
  out.push("");
  const S = r.summary;
  if (r.rtt) {
    out.push(`a bare PING to this redis-server from Node: p50 ${f(r.rtt.backToBackUs.p50, 0)} µs back to back, ${f(r.rtt.after10msUs.p50, 0)} µs 10 ms apart (p90 ${f(r.rtt.backToBackUs.p90, 0)} / ${f(r.rtt.after10msUs.p90, 0)} µs)`);
    out.push("");
  }
  const sum = [["summary (medians over rounds)", "keyless", "keyed"]];
  const both = (k, d = 2) => [f(S.keyless[k], d), f(S.keyed[k], d)];
  sum.push(["throughput ratio redis ÷ lean baseline (small text)", ...both("ratioLean", 3)]);
  sum.push(["throughput ratio memory ÷ lean baseline (small text)", ...both("ratioLeanMemory", 3)]);
  sum.push([`p99 added vs lean at ${r.params.rate} req/s, small mails, redis / memory, ms`, `${f(S.keyless.p99AddedMsSmall, 2)} / ${f(S.keyless.p99AddedMsSmallMemory, 2)}`, `${f(S.keyed.p99AddedMsSmall, 2)} / ${f(S.keyed.p99AddedMsSmallMemory, 2)}`]);
  sum.push([`p99 added vs lean at ${r.params.rate} req/s, whole mix, redis / memory, ms`, `${f(S.keyless.p99AddedMsMix, 2)} / ${f(S.keyless.p99AddedMsMixMemory, 2)}`, `${f(S.keyed.p99AddedMsMix, 2)} / ${f(S.keyed.p99AddedMsMixMemory, 2)}`]);
  sum.push(["throughput ratio redis/memory", ...both("ratio", 3)]);
  sum.push(["req/s memory → redis", `${f(S.keyless.memoryRps, 0)} → ${f(S.keyless.redisRps, 0)}`, `${f(S.keyed.memoryRps, 0)} → ${f(S.keyed.redisRps, 0)}`]);
  sum.push(["service CPU µs/send memory → redis (throughput run)", `${f(S.keyless.cpuUsMemory, 0)} → ${f(S.keyless.cpuUsRedis, 0)}`, `${f(S.keyed.cpuUsMemory, 0)} → ${f(S.keyed.cpuUsRedis, 0)}`]);
  sum.push(["redis-server CPU µs/send (throughput run)", ...both("redisCpuUs", 0)]);
  sum.push([`p50 added by redis (vs memory) at ${r.params.rate} req/s, ms`, ...both("p50OverheadMs")]);
  sum.push([`p99 added by redis (vs memory) at ${r.params.rate} req/s, ms`, ...both("p99OverheadMs")]);
  sum.push(["p50 added, one send at a time, ms", ...both("serialP50OverheadMs")]);
  sum.push(["service CPU µs/send memory → redis, one at a time", `${f(S.keyless.serialCpuUsMemory, 0)} → ${f(S.keyless.serialCpuUsRedis, 0)}`, `${f(S.keyed.serialCpuUsMemory, 0)} → ${f(S.keyed.serialCpuUsRedis, 0)}`]);
  sum.push(["round trips/send, one at a time", ...both("roundTrips")]);
  sum.push([`round trips/send at ${r.params.rate} req/s`, ...both("roundTripsPaced")]);
  sum.push([`round trips/send, ${r.params.connections} connections`, ...both("roundTripsLoaded")]);
  out.push(table(sum));
  out.push("");
  out.push("design targets (happy path, one send at a time; lease renewals every leaseSeconds/3 add ≈ 0.01):");
  for (const [v, want] of [
    ["keyed", 3],
    ["keyless", 2],
  ]) {
    const x = S[v].roundTrips;
    const known = typeof x === "number" && !Number.isNaN(x);
    out.push(`  ${known ? (Math.round(x * 10) / 10 <= want ? "✓" : "✗") : "?"} Redis round trips per ${v} send: ${f(x, 2)} (want ≤ ${want})`);
  }
  return out.join("\n");
}
