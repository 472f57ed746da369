import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./free-port.js";

/**
 * A real redis-server (Debian's package) on an ephemeral loopback port, for the shared-store
 * tests: no persistence, its own temp dir, stopped and started again on the same port to
 * play "Redis went away and came back".
 */
export interface TestRedis {
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** A client for checks (FLUSHALL between tests, reading keys). */
  readonly client: Redis;
  /** Kills the server (SIGKILL): connections drop at once, as when a node dies. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: nothing was persisted). */
  start(): Promise<void>;
  /** Kills it and removes its directory. */
  stop(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), "noreply-relay-redis-"));
  let port = 0;
  let child: ChildProcess | undefined;
  for (let attempt = 0; attempt < 5 && child === undefined; attempt += 1) {
    port = await freePort();
    try {
      child = await launch(port, dir);
    } catch (err) {
      if (attempt === 4) throw err;
    }
  }
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 100, lazyConnect: true });
  client.on("error", () => {});
  await client.connect();
  return {
    url,
    port,
    client,
    async kill() {
      const c = child;
      child = undefined;
      if (c) await killed(c);
    },
    async start() {
      if (child) return;
      child = await launch(port, dir);
    },
    async stop() {
      client.disconnect();
      const c = child;
      child = undefined;
      if (c) await killed(c);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function launch(port: number, dir: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes", "--loglevel", "warning"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`redis-server did not start on port ${port}: ${output}`));
    }, 10_000);
    const probe = setInterval(() => {
      const c = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      c.on("error", () => {});
      c.connect()
        .then(() => c.ping())
        .then(() => {
          clearInterval(probe);
          clearTimeout(timer);
          c.disconnect();
          resolve(child);
        })
        .catch(() => c.disconnect());
    }, 50);
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    child.once("exit", (code) => {
      clearInterval(probe);
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${output}`));
    });
  });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}
