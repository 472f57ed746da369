// Preload (`node --import ./bench/lib/runtime-stats.mjs`): event-loop delay and GC pauses of
// the process it is loaded into, written as JSON to BENCH_RUNTIME_STATS_FILE when it exits.
// SIGUSR2 starts the window afresh (the harness sends it right before the fixed-rate phase).
import { writeFileSync } from "node:fs";
import { PerformanceObserver, constants, monitorEventLoopDelay } from "node:perf_hooks";

const file = process.env.BENCH_RUNTIME_STATS_FILE;
if (file) {
  const KINDS = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: "scavenge",
    [constants.NODE_PERFORMANCE_GC_MAJOR]: "markCompact",
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incrementalMarking",
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakCallbacks",
  };
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  let gc = {};
  let pauses = [];
  let since = Date.now();
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = KINDS[e.detail?.kind ?? e.kind] ?? "other";
      const g = (gc[kind] ??= { count: 0, totalMs: 0, maxMs: 0 });
      g.count++;
      g.totalMs += e.duration;
      g.maxMs = Math.max(g.maxMs, e.duration);
      pauses.push(e.duration);
    }
  });
  obs.observe({ entryTypes: ["gc"] });
  process.on("SIGUSR2", () => {
    loop.reset();
    gc = {};
    pauses = [];
    since = Date.now();
  });
  process.once("exit", () => {
    const ms = (ns) => ns / 1e6;
    const sorted = pauses.sort((a, b) => a - b);
    writeFileSync(
      file,
      JSON.stringify({
        windowMs: Date.now() - since,
        eventLoopDelayMs: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max), mean: ms(loop.mean) },
        gc,
        gcPauses: { count: sorted.length, totalMs: sorted.reduce((a, b) => a + b, 0), p99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0, over5Ms: sorted.filter((x) => x > 5).length },
      }),
    );
  });
}
