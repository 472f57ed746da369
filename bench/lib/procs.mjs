// Child processes of the bench (emulator, baseline, service): spawn, readiness, CPU and memory
// from /proc, and a bounded shutdown.
import { spawn } from "node:child_process";
import { closeSync, createWriteStream, openSync, readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { clearTimeout, setTimeout } from "node:timers";

const CLK_TCK = 100; // Linux USER_HZ; /proc/<pid>/stat times are in these ticks.

/** A free loopback port (tiny race between close and the child's listen; fine on loopback). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Spawns `node <args>` with stdout/stderr going to files in `logDir` (files, not pipes, so
 * the load generator's event loop never has to drain a busy child's output).
 */
export function spawnNode(name, args, { nodeOptions = [], ...options }) {
  return spawnProcess(name, process.execPath, [...nodeOptions, ...args], options);
}

/** Spawns any program the same way (e.g. redis-server); see spawnNode. */
export function spawnProcess(name, command, args, { env = {}, logDir, stdoutPipe = false, nice = 0 }) {
  const outFile = join(logDir, `${name}.out.log`);
  const errFile = join(logDir, `${name}.err.log`);
  const out = openSync(outFile, "w");
  const err = openSync(errFile, "w");
  const child = spawn(command, args, {
    env: { ...process.env, NODE_OPTIONS: "", ...env },
    stdio: ["ignore", stdoutPipe ? "pipe" : out, err],
  });
  closeSync(out);
  closeSync(err);
  // A piped stdout is also copied to the log file (the pipe is only read for the JSON line).
  if (stdoutPipe) child.stdout.pipe(createWriteStream(outFile));
  if (nice !== 0 && child.pid !== undefined) os.setPriority(child.pid, nice);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    // e.g. ENOENT: without a listener the error event would end the bench.
    child.once("error", (e) => resolve({ code: null, signal: null, error: e.message }));
  });
  let exitInfo;
  exited.then((e) => (exitInfo = e));
  return {
    name,
    child,
    pid: child.pid,
    outFile,
    errFile,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    tail(n = 20) {
      const lines = [];
      for (const f of [errFile, outFile]) {
        try {
          lines.push(...readFileSync(f, "utf8").trimEnd().split("\n").slice(-n));
        } catch {
          /* not written */
        }
      }
      return lines.filter(Boolean).join("\n");
    },
  };
}

/** Reads the first stdout line of a child that announces itself with one JSON line. */
export function firstJsonLine(proc, timeoutMs) {
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => done(new Error(`${proc.name}: no JSON line on stdout within ${timeoutMs} ms\n${proc.tail()}`)), timeoutMs);
    const onData = (chunk) => {
      buf += chunk.toString("utf8");
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.startsWith("{")) {
          try {
            return done(null, JSON.parse(line));
          } catch {
            /* not our line */
          }
        }
      }
    };
    const onExit = (code) => done(new Error(`${proc.name} exited with ${code} before announcing itself\n${proc.tail()}`));
    function done(err, value) {
      clearTimeout(timer);
      proc.child.stdout.off("data", onData);
      proc.child.off("exit", onExit);
      if (err) reject(err);
      else resolve(value);
    }
    proc.child.stdout.on("data", onData);
    proc.child.once("exit", onExit);
  });
}

/** GET that resolves to the status code, or 0 when the connection fails. */
export function probe(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(0));
  });
}

/** GET /metrics of a service: its status and text (no agent, 10 s timeout). */
export function getMetrics(url) {
  return new Promise((resolve, reject) => {
    http
      .get(new URL("/metrics", url), { agent: false, timeout: 10_000 }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString("utf8") }));
      })
      .once("timeout", function () {
        this.destroy(new Error("timeout"));
      })
      .once("error", reject);
  });
}

/**
 * A JSON request to an HTTPS endpoint with its own CA (the emulator's control API): resolves the
 * parsed answer of a 200, rejects with `statusError(message)` for any other status.
 */
export function httpsJson(method, url, ca, body, { statusError = (message) => new Error(message) } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = payload ? { "content-type": "application/json", "content-length": payload.length } : {};
    https
      .request(url, { method, ca, agent: false, headers }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200) return reject(statusError(`${method} ${url}: ${res.statusCode} ${text.slice(0, 300)}`));
          try {
            resolve(JSON.parse(text));
          } catch (err) {
            reject(err);
          }
        });
      })
      .on("error", reject)
      .end(payload);
  });
}

/**
 * Polls `url` every `intervalMs` until it answers 200; returns milliseconds since `startNs`
 * (a process.hrtime.bigint() taken just before spawn). Fails if the child exits first.
 */
export async function waitFor200(proc, url, { startNs, timeoutMs, intervalMs = 2 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitInfo) throw new Error(`${proc.name} exited (${JSON.stringify(proc.exitInfo)}) before ${url} answered 200\n${proc.tail()}`);
    const status = await probe(url, 500);
    if (status === 200) return Number(process.hrtime.bigint() - startNs) / 1e6;
    if (Date.now() > deadline) throw new Error(`${proc.name}: ${url} not 200 within ${timeoutMs} ms (last status ${status})\n${proc.tail()}`);
    await sleep(intervalMs);
  }
}

/** { utimeMs, stimeMs, cpuMs } of a live process from /proc/<pid>/stat. */
export function cpuTimes(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return { utimeMs: (utime * 1000) / CLK_TCK, stimeMs: (stime * 1000) / CLK_TCK, cpuMs: ((utime + stime) * 1000) / CLK_TCK };
}

/** Busy CPU time of the whole machine, all cores, in ms (from the first line of /proc/stat). */
export function machineBusyMs() {
  const [, ...f] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0].trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = f.map(Number);
  return ((user + nice + system + irq + softirq + (steal || 0)) * 1000) / CLK_TCK;
}

/** { rssMb, hwmMb } of a live process from /proc/<pid>/status (VmRSS, VmHWM). */
export function memory(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status);
    return m ? Number(m[1]) : NaN;
  };
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

/** SIGTERM, then SIGKILL after `graceMs`. Only ever signals the child's own pid. */
export async function stop(proc, graceMs = 5000) {
  if (!proc || proc.exitInfo || proc.child.exitCode !== null) return proc?.exitInfo;
  proc.child.kill("SIGTERM");
  const timer = sleep(graceMs).then(() => "timeout");
  const r = await Promise.race([proc.exited, timer]);
  if (r === "timeout") {
    proc.child.kill("SIGKILL");
    return proc.exited;
  }
  return r;
}
