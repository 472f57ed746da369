// The bench's own redis-server for the shared-store comparison: a free loopback port, no
// persistence, its own directory under the bench's temp dir; and what Redis says about itself
// (INFO: CPU time, commands by name with their calls and time).
import { existsSync, mkdirSync } from "node:fs";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { freePort, spawnProcess, stop } from "./procs.mjs";

/** The redis-server to use: BENCH_REDIS_SERVER, else the first on PATH; undefined when none. */
export function findRedisServer(env = process.env) {
  if (env.BENCH_REDIS_SERVER) return existsSync(env.BENCH_REDIS_SERVER) ? env.BENCH_REDIS_SERVER : undefined;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, "redis-server");
    if (existsSync(file)) return file;
  }
  return undefined;
}

/**
 * Starts redis-server on 127.0.0.1 and waits until it answers PING. Returns a proc (as
 * procs.mjs's spawn helpers do, so stop() and the CPU snapshots work on it) plus `url`,
 * `port` and `client` (an ioredis client of the bench itself, for INFO; idle while measuring).
 */
export async function startRedis({ bin, logDir, nice = 0, name = "redis" }) {
  const dir = join(logDir, `${name}-data`);
  mkdirSync(dir, { recursive: true });
  let lastError;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const proc = spawnProcess(
      `${name}-${attempt}`,
      bin,
      // No RDB snapshots, no AOF: nothing touches the disk while measuring.
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes", "--loglevel", "warning"],
      { logDir, nice },
    );
    try {
      const client = await waitForPong(proc, port, 10_000);
      return Object.assign(proc, { url: `redis://127.0.0.1:${port}`, port, client });
    } catch (err) {
      lastError = err;
      await stop(proc, 1000);
    }
  }
  throw lastError;
}

async function waitForPong(proc, port, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitInfo) throw new Error(`redis-server exited (${JSON.stringify(proc.exitInfo)}) on port ${port}\n${proc.tail()}`);
    const client = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableAutoPipelining: false });
    client.on("error", () => {});
    try {
      await client.connect();
      if ((await client.ping()) === "PONG") return client;
    } catch {
      /* not yet */
    }
    client.disconnect();
    if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on port ${port} within ${timeoutMs} ms\n${proc.tail()}`);
    await sleep(50);
  }
}

/**
 * What Redis reports about itself: CPU seconds (user + sys, all its threads, from getrusage,
 * so µs resolution unlike /proc's 10 ms ticks), commands processed, and per command the calls
 * and µs spent (commands run by Lua scripts are counted too, under their own names).
 */
export async function redisInfo(client) {
  const text = await client.info("all");
  const field = (k) => {
    const m = new RegExp(`^${k}:(.*)$`, "m").exec(text);
    return m ? m[1].trim() : undefined;
  };
  const commands = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) commands[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  return {
    cpuMs: (Number(field("used_cpu_user")) + Number(field("used_cpu_sys"))) * 1000,
    commandsProcessed: Number(field("total_commands_processed")),
    connectionsReceived: Number(field("total_connections_received")),
    usedMemoryMb: Number(field("used_memory")) / 2 ** 20,
    keys: Number(/^db0:keys=(\d+)/m.exec(text)?.[1] ?? 0),
    commands,
  };
}

/** after − before of two redisInfo() results; `commands` only lists those that ran meanwhile. */
export function redisInfoDelta(before, after) {
  const commands = {};
  for (const [name, a] of Object.entries(after.commands)) {
    const b = before.commands[name] ?? { calls: 0, usec: 0 };
    if (a.calls > b.calls) commands[name] = { calls: a.calls - b.calls, usec: a.usec - b.usec };
  }
  return {
    cpuMs: after.cpuMs - before.cpuMs,
    // The bench's own INFO is one of them.
    commandsProcessed: after.commandsProcessed - before.commandsProcessed,
    commands,
  };
}
