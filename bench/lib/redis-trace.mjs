// Preload (`node --import ./bench/lib/redis-trace.mjs`): records every socket write the
// process makes to Redis (BENCH_REDIS_TRACE_PORT on loopback) with the commands it carries,
// and writes them as JSON to BENCH_REDIS_TRACE_FILE when the process exits. One write is one
// round trip (what noreply_relay_store_round_trips_total counts), so this shows which
// commands travel together. EVALSHA is named by the script (read from the built service's
// script lists); keys are shown without the prefix and with the hash tag elided.
//
// Timestamps are process.hrtime (CLOCK_MONOTONIC, shared by every process on the machine), so
// the harness can attribute each write to the request that was in flight.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import net from "node:net";

const file = process.env.BENCH_REDIS_TRACE_FILE;
const port = Number(process.env.BENCH_REDIS_TRACE_PORT);
if (file && port > 0) {
  const scripts = new Map(); // sha → name
  for (const [mod, exported] of [
    ["redis-idempotency-store.js", "IDEMPOTENCY_SCRIPTS"],
    ["redis-mailbox-limiter.js", "MAILBOX_SCRIPTS"],
    ["redis-recipient-guard.js", "RECIPIENT_SCRIPTS"],
  ]) {
    try {
      const m = await import(new URL(`../../dist/delivery/redis/${mod}`, import.meta.url).href);
      for (const s of m[exported] ?? []) scripts.set(s.sha, s.name);
    } catch {
      /* names fall back to the SHA */
    }
  }
  const writes = [];
  const MAX = 200_000;
  let sockets = 0;

  const keyShape = (key) => key.replace(/^[A-Za-z0-9._:-]*?(idem:|mb:|rcpt:|status|cred)/, "$1").replace(/\{[^}]*\}/, "{…}");
  const describe = (args) => {
    const name = args[0]?.toUpperCase() ?? "?";
    if (name === "EVALSHA" || name === "EVAL") {
      const sha = name === "EVAL" ? createHash("sha1").update(args[1] ?? "").digest("hex") : args[1];
      const n = Number(args[2]);
      return `${name} ${scripts.get(sha) ?? sha?.slice(0, 10)}${n > 0 ? ` ${keyShape(args[3] ?? "")}` : ""}`;
    }
    if (name === "SCRIPT" || name === "CLIENT" || name === "SUBSCRIBE" || name === "INFO") return `${name} ${args[1] ?? ""}`.trim();
    return args.length > 1 ? `${name} ${keyShape(args[1])}` : name;
  };
  // RESP arrays of bulk strings, as clients send commands. Long arguments are not decoded.
  const parse = (buf) => {
    const out = [];
    let i = 0;
    const line = () => {
      const end = buf.indexOf("\r\n", i);
      if (end < 0) throw new Error("partial");
      const s = buf.toString("latin1", i, end);
      i = end + 2;
      return s;
    };
    try {
      while (i < buf.length) {
        const head = line();
        if (head[0] !== "*") throw new Error("not an array");
        const n = Number(head.slice(1));
        const args = [];
        for (let k = 0; k < n; k++) {
          const len = Number(line().slice(1));
          args.push(k < 4 || len <= 200 ? buf.toString("utf8", i, i + len) : "");
          i += len + 2;
        }
        out.push(describe(args));
      }
    } catch {
      out.push("(unparsed)");
    }
    return out;
  };

  const wrap = (socket) => {
    const id = ++sockets;
    const write = socket.write;
    socket.write = function (chunk, ...rest) {
      if (writes.length < MAX) {
        const t = process.hrtime.bigint();
        const buf = typeof chunk === "string" ? Buffer.from(chunk, typeof rest[0] === "string" ? rest[0] : "utf8") : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        writes.push({ socket: id, t: String(t), commands: parse(buf) });
      }
      return write.call(this, chunk, ...rest);
    };
  };
  const original = net.createConnection;
  net.createConnection = function (...args) {
    const socket = original.apply(this, args);
    const o = args[0];
    if (o && typeof o === "object" && Number(o.port) === port) wrap(socket);
    return socket;
  };
  process.once("exit", () => writeFileSync(file, JSON.stringify({ sockets, writes })));
}
