// Load generation: autocannon for closed-loop throughput (fixed connections), and a small
// open-loop paced generator for latency at a fixed rate.
//
// Why not autocannon's overallRate for the latency run: it gives each connection a quota per
// second that the connection spends back-to-back at the start of every second, so 200 req/s
// arrives as bursts, and its histogram has 1 ms resolution. The paced generator sends one
// request every 1000/rate ms and records each latency as a float from process.hrtime.
import autocannon from "autocannon";
import http from "node:http";
import { setTimeout } from "node:timers";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Closed-loop throughput with autocannon. Returns rps (2xx only), latency and status counts.
 * With `nextKey` (a function returning a fresh Idempotency-Key), every request carries one:
 * autocannon then rebuilds each request buffer (a copy of the body), so the bodies are
 * handed over as Buffers to spare it a UTF-8 encode as well.
 */
export function throughput({ url, connections, durationS, rotation, headers, timeoutS = 30, nextKey }) {
  return new Promise((resolve, reject) => {
    const statuses = {};
    const latencies = [];
    const requests = nextKey
      ? rotation.map((r) => ({
          method: "POST",
          path: "/send",
          headers,
          body: Buffer.from(r.body),
          setupRequest: (req) => ({ ...req, headers: { ...req.headers, "idempotency-key": nextKey() } }),
        }))
      : rotation.map((r) => ({ method: "POST", path: "/send", headers, body: r.body }));
    const instance = autocannon(
      {
        url,
        connections,
        duration: durationS,
        timeout: timeoutS,
        requests,
      },
      (err, result) => {
        if (err) return reject(err);
        const ok = result["2xx"];
        resolve({
          connections,
          durationS: result.duration,
          requests: result.requests.total,
          ok,
          rps: ok / result.duration,
          errors: result.errors,
          timeouts: result.timeouts,
          non2xx: result.non2xx,
          statuses,
          latency: summarise(latencies),
        });
      },
    );
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
}

/**
 * Open-loop fixed rate: within one `run`, request n is due at start + n * 1000/rate ms,
 * whatever happened to the previous ones. The keep-alive agent lives across runs, so a target
 * can be measured in several slices (alternating with another target) without reconnecting.
 */
export function createPacer({ url, rotation, headers, maxSockets = 128, timeoutMs = 30_000, nextKey, messageIds = false }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  const target = new URL("/send", url);
  const bodies = rotation.map((r) => Buffer.from(r.body));
  let cursor = 0; // position in the rotation, carried across runs

  /** Samples sent in the first `warmupS` seconds are discarded. Returns raw samples. */
  async function run({ rate, durationS, warmupS = 0 }) {
    const samples = []; // [ms, kind]
    const statuses = {};
    let errors = 0;
    let lateMsMax = 0;
    let inflight = 0;
    const t0 = process.hrtime.bigint();
    const elapsedMs = () => Number(process.hrtime.bigint() - t0) / 1e6;
    const total = Math.round(rate * durationS);
    const warmupCount = Math.round(rate * warmupS);
    let sent = 0;

    const fire = (n) => {
      const idx = cursor++ % bodies.length;
      const body = bodies[idx];
      const start = process.hrtime.bigint();
      inflight++;
      const h = { ...headers, "content-length": body.length };
      if (nextKey) h["idempotency-key"] = nextKey();
      const req = http.request(target, { method: "POST", agent, timeout: timeoutMs, headers: h }, (res) => {
        const chunks = [];
        if (messageIds) res.on("data", (c) => chunks.push(c));
        else res.resume();
        res.once("end", () => {
          inflight--;
          const ms = Number(process.hrtime.bigint() - start) / 1e6;
          if (n < warmupCount) return;
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode < 200 || res.statusCode >= 300) return;
          // With messageIds, the answer's internetMessageId: the emulator's record of the same mail.
          samples.push(messageIds ? [ms, rotation[idx].kind, messageIdOf(chunks)] : [ms, rotation[idx].kind]);
        });
      });
      req.once("timeout", () => req.destroy(new Error("timeout")));
      req.once("error", () => {
        inflight--;
        if (n >= warmupCount) errors++;
      });
      req.end(body);
    };

    await new Promise((resolve) => {
      const tick = () => {
        const now = elapsedMs();
        const due = Math.min(total, Math.floor((now * rate) / 1000) + 1);
        while (sent < due) {
          lateMsMax = Math.max(lateMsMax, now - (sent * 1000) / rate);
          fire(sent++);
        }
        if (sent >= total) return resolve();
        setTimeout(tick, Math.max(0, (sent * 1000) / rate - elapsedMs()));
      };
      tick();
    });
    // Bounded wait for the stragglers.
    for (let i = 0; i < timeoutMs / 10 && inflight > 0; i++) await sleep(10);
    return { sent: total, measured: total - warmupCount, samples, statuses, errors, lateMsMax };
  }

  return { run, close: () => agent.destroy() };
}

function messageIdOf(chunks) {
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")).internetMessageId;
  } catch {
    return undefined;
  }
}

/**
 * One request at a time (the next leaves `gapMs` after the previous answer), over one
 * keep-alive connection: what a single send costs with nothing to share a round trip with.
 * Returns latencies and each request's [start, end] in process.hrtime nanoseconds (a clock
 * every process on the machine shares, so a child's timestamps can be matched to requests).
 */
export async function sequential({ url, rotation, headers, count, nextKey, gapMs = 0, offset = 0, timeoutMs = 30_000 }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL("/send", url);
  const bodies = rotation.map((r) => Buffer.from(r.body));
  const statuses = {};
  const latencies = [];
  const spans = [];
  let errors = 0;
  try {
    for (let n = 0; n < count; n++) {
      const idx = (offset + n) % bodies.length;
      const body = bodies[idx];
      const h = { ...headers, "content-length": body.length };
      if (nextKey) h["idempotency-key"] = nextKey();
      const start = process.hrtime.bigint();
      const status = await new Promise((resolve) => {
        const req = http.request(target, { method: "POST", agent, timeout: timeoutMs, headers: h }, (res) => {
          res.resume();
          res.once("end", () => resolve(res.statusCode));
        });
        req.once("timeout", () => req.destroy(new Error("timeout")));
        req.once("error", () => resolve(0));
        req.end(body);
      });
      const end = process.hrtime.bigint();
      if (status === 0) errors++;
      else statuses[status] = (statuses[status] ?? 0) + 1;
      if (status >= 200 && status < 300) latencies.push(Number(end - start) / 1e6);
      spans.push({ start, end, kind: rotation[idx].kind, status });
      if (gapMs > 0) await sleep(gapMs);
    }
  } finally {
    agent.destroy();
  }
  return { sent: count, statuses, errors, latency: summarise(latencies), spans };
}

/** Pools the raw results of several pacer runs into one summary. */
export function poolPaced(runs, { rate }) {
  const statuses = {};
  const all = [];
  const byKind = {};
  let errors = 0;
  let lateMsMax = 0;
  let measured = 0;
  for (const r of runs) {
    for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
    for (const [ms, kind] of r.samples) {
      all.push(ms);
      (byKind[kind] ??= []).push(ms);
    }
    errors += r.errors;
    lateMsMax = Math.max(lateMsMax, r.lateMsMax);
    measured += r.measured;
  }
  return {
    rate,
    measured,
    ok: all.length,
    errors,
    statuses,
    lateMsMax,
    latency: summarise(all),
    latencyByKind: Object.fromEntries(Object.entries(byKind).map(([k, v]) => [k, summarise(v)])),
  };
}

/** The median of the numbers in `xs` (NaN and non-numbers ignored; NaN when none is left). */
export function median(xs) {
  const v = xs.filter((x) => typeof x === "number" && !Number.isNaN(x)).sort((a, b) => a - b);
  return v.length === 0 ? NaN : v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** Percentiles of a list of latencies in ms (nearest-rank). */
export function summarise(values) {
  if (values.length === 0) return { count: 0, mean: NaN, p50: NaN, p90: NaN, p99: NaN, max: NaN };
  const v = Float64Array.from(values).sort();
  const at = (q) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
  let sum = 0;
  for (const x of v) sum += x;
  return { count: v.length, mean: sum / v.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: v[v.length - 1] };
}
