// Preload (`node --import ./bench/lib/alloc-profile.mjs`): samples every allocation site,
// including objects that the GC has already collected, and writes a .heapprofile when the
// process exits. `node --heap-prof` only reports objects still alive at exit, which hides
// the short-lived garbage a request handler makes.
//
// Env: BENCH_ALLOC_PROFILE_DIR (required), BENCH_ALLOC_SAMPLING_BYTES (default 32768),
// BENCH_ALLOC_SURVIVORS=1: leave out what scavenges collected, i.e. keep only what survived
// into the old generation (promoted, then freed by a mark-compact, or still alive): the
// allocation sites behind old-generation growth and so behind mark-compacts.
import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

const dir = process.env.BENCH_ALLOC_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("HeapProfiler.enable");
  session.post("HeapProfiler.startSampling", {
    samplingInterval: Number(process.env.BENCH_ALLOC_SAMPLING_BYTES ?? 32768),
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_SURVIVORS !== "1",
  });
  process.once("exit", () => {
    // Same-thread inspector sessions answer synchronously, so this works in an exit handler.
    session.post("HeapProfiler.stopSampling", (err, result) => {
      if (err) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `alloc-${process.pid}.heapprofile`), JSON.stringify(result.profile));
    });
  });
}
