// What one remembered Idempotency-Key costs in memory (issue 15), measured on the built
// service's own store (dist/delivery/idempotency-store.js) in a process of its own:
//
//   node --expose-gc bench/idempotency-memory.mjs --keys 200000 [--max-bytes N] [--max-entries N]
//
// Fills a MemoryIdempotencyStore the way POST /send does for keyed sends that Graph accepted:
// begin(caller, key, fingerprint) then complete(answer), where the key is a UUID (what most
// clients send), the fingerprint is requestFingerprint() of a small text mail's body, and the
// answer is a RecordedAcceptance (dist/mail/send-answer.js: kind "accepted", requestId and id
// UUIDs, internetMessageId, tenant, sender, acceptedAt) over 1,000 tenants. Forces full GCs
// before and after and reports the growth of RSS and of the V8 heap (used, and external +
// array buffers), per key, against the store's own byte count (stats().bytes) and maxBytes.
// Measured from a warm process (see the warm-up below), as in a service that has been running.
// Prints one JSON line.
//
// Over HTTP, 200,000 keyed sends would take minutes at this machine's 1–2k req/s, and the
// service's other state and garbage would blur the figure; the store is the part that grows
// with keys, so it is measured alone. What a key costs in the service is at least this.
import { randomUUID } from "node:crypto";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = process.env.BENCH_DIST ? resolve(process.env.BENCH_DIST) : join(root, "dist");
const { values: argv } = parseArgs({
  options: {
    keys: { type: "string", default: "200000" },
    "max-bytes": { type: "string" },
    "max-entries": { type: "string" },
    tenants: { type: "string", default: "1000" },
    "no-warm-up": { type: "boolean", default: false },
  },
});
if (typeof globalThis.gc !== "function") {
  console.error("run with node --expose-gc");
  process.exit(1);
}
const { MemoryIdempotencyStore, requestFingerprint } = await import(pathToFileURL(join(dist, "delivery", "idempotency-store.js")).href);
// The answer's type lives there; importing it checks the build has the module this mirrors.
await import(pathToFileURL(join(dist, "mail", "send-answer.js")).href);

const keys = Number(argv.keys);
const tenantCount = Number(argv.tenants);
const maxBytes = argv["max-bytes"] === undefined ? 4 * 1024 ** 3 : Number(argv["max-bytes"]);
const maxEntries = argv["max-entries"] === undefined ? 10_000_000 : Number(argv["max-entries"]);

async function settle() {
  // Several full GCs with turns of the event loop between them (finalizers, freed pages).
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await sleep(20);
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external + m.arrayBuffers };
}

// Everything the fill needs that is not per key is made before the first measurement.
const tenants = Array.from({ length: tenantCount }, (_, i) => ({ key: `t${i}`, sender: `noreply@t${i}.bench.example` }));
const cold = await settle();

// Warm-up: a running service's young generation has long grown to its working size (V8's
// semi-spaces, ~32 MiB here, reached after a few seconds of any traffic) and stays there; in a
// fresh process, that growth would land in the first fill and be charged to the keys. So the
// same fill runs once into a throwaway store first, and the keys are measured from there.
// perKey.rssFromCold keeps the figure that includes it (--no-warm-up measures from cold).
const warmKeys = Math.min(50_000, Math.ceil(keys / 4));
if (warmKeys > 0 && !argv["no-warm-up"]) {
  const throwaway = new MemoryIdempotencyStore({ ttlSeconds: 86_400, maxEntries: 1000, maxBytes });
  await fill(throwaway, warmKeys, () => {});
}
const store = new MemoryIdempotencyStore({ ttlSeconds: 86_400, maxEntries, maxBytes });
const before = await settle();

let peakRss = before.rss;
const t0 = process.hrtime.bigint();
await fill(store, keys, (n) => {
  if ((n & 0x3fff) === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
});
const fillMs = Number(process.hrtime.bigint() - t0) / 1e6;

async function fill(store, keys, each) {
  for (let n = 0; n < keys; n++) {
    const t = tenants[n % tenants.length];
    // As the route has it: the header's value, the body's fingerprint, the use case's answer.
    const key = randomUUID();
    const fingerprint = requestFingerprint({
      tenant: t.key,
      to: [`customer${n}@example.com`],
      subject: `Your sign-in code ${100000 + (n % 900000)}`,
      text: `Hello,\n\nyour sign-in code is ${100000 + (n % 900000)}. It expires in 10 minutes.\n`,
    });
    const claim = await store.begin("bench", key, fingerprint, { requestId: randomUUID() });
    if (claim.kind !== "new") throw new Error(`key ${n}: ${claim.kind}`);
    const id = randomUUID();
    await claim.complete({
      kind: "accepted",
      requestId: randomUUID(),
      id,
      internetMessageId: `<${id}@${t.sender.slice(t.sender.indexOf("@") + 1)}>`,
      tenant: t.key,
      sender: t.sender,
      acceptedAt: new Date().toISOString(),
    });
    each(n);
  }
}
const after = await settle();
const stats = store.stats();
peakRss = Math.max(peakRss, after.rss);

const growth = { rss: after.rss - before.rss, heapUsed: after.heapUsed - before.heapUsed, external: after.external - before.external };
const per = (x) => (stats.entries > 0 ? x / stats.entries : NaN);
console.log(
  JSON.stringify({
    keys,
    maxBytes: argv["max-bytes"] === undefined ? null : maxBytes,
    maxEntries: argv["max-entries"] === undefined ? null : maxEntries,
    entries: stats.entries,
    inFlight: stats.inFlight,
    storeBytes: stats.bytes,
    fillMs,
    cold,
    before,
    after,
    warmKeys: argv["no-warm-up"] ? 0 : warmKeys,
    peakRssGrowth: peakRss - before.rss,
    growth,
    perKey: { rss: per(growth.rss), heapUsed: per(growth.heapUsed), storeBytes: per(stats.bytes), rssFromCold: per(after.rss - cold.rss) },
    // maxBytes is honest when what the remembered keys really take stays within it.
    withinMaxBytes: argv["max-bytes"] === undefined ? null : { rss: growth.rss <= maxBytes, heapUsed: growth.heapUsed <= maxBytes },
  }),
);
// Keep the store alive until after the last measurement.
if (store.stats().entries < 0) console.log("unreachable");
