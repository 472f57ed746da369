/**
 * `npm run abuse`: the attacks of a hostile or careless client, replayed against the built
 * service (dist/server.js in its own process, on the local emulator), each reported as held or
 * not, with the service's RSS and the /healthz latency while it ran. Exits 1 when one did not hold.
 *
 *   npm run abuse                 # everything
 *   npm run abuse -- --only slow  # attacks whose name contains "slow"
 *
 * What "held" means is written next to each attack. The numbers vary with the machine; the
 * verdicts should not.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startEmulator } from "../src/emulator/start-emulator.js";
import { apiKeyDigest } from "../src/tenants/caller-directory.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const { values: argv } = parseArgs({ options: { only: { type: "string" } } });

interface Verdict {
  readonly attack: string;
  readonly held: boolean;
  readonly what: string;
  readonly rssMbBefore: number;
  readonly rssMbPeak: number;
  readonly healthzMsP50: number;
  readonly healthzMsMax: number;
  readonly details: Record<string, unknown>;
}

async function main(): Promise<void> {
  const server = join(ROOT, "dist", "server.js");
  if (!existsSync(server)) throw new Error("dist/server.js is missing: run npm run build (npm run abuse does)");
  const dir = await mkdtemp(join(tmpdir(), "noreply-relay-abuse-"));
  const secret = randomBytes(24).toString("base64url");
  const apiKey = `abuse-${randomBytes(16).toString("hex")}`;
  const APP = "abcdabcd-0000-4000-8000-000000000001";
  const TENANT = "c0a70500-0000-4000-8000-000000000001";
  const emulator = await startEmulator({
    scenario: {
      apps: [{ clientId: APP, homeTenant: TENANT, secrets: [{ value: secret }] }],
      tenants: [{ id: TENANT, domains: ["contoso.com"], mailboxes: [{ address: "noreply@contoso.com" }], consents: [{ appId: APP, roles: ["Mail.Send"] }] }],
      throttling: false,
    },
  });
  await writeFile(join(dir, "ca.pem"), emulator.caPem);
  await writeFile(join(dir, "secret"), secret, { mode: 0o600 });
  const config = {
    cloud: { authorityHost: emulator.url, graphBaseUrl: emulator.url },
    tls: { caFile: join(dir, "ca.pem") },
    app: { clientId: APP, credential: { type: "secret", secretFile: join(dir, "secret") } },
    tenants: { contoso: { tenantId: TENANT, sender: "noreply@contoso.com" } },
    callers: { app: { keySha256: apiKeyDigest(apiKey), tenants: ["*"] } },
  };
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  const child = spawn(process.execPath, [server], {
    env: { PATH: process.env.PATH ?? "", NOREPLY_RELAY_CONFIG: join(dir, "config.json"), PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await listeningPort(child);
  const verdicts: Verdict[] = [];
  try {
    const ctx: AttackContext = { port, apiKey, pid: child.pid! };
    for (const attack of ATTACKS) {
      if (argv.only !== undefined && !attack.name.includes(argv.only)) continue;
      const verdict = await observe(ctx, attack);
      verdicts.push(verdict);
      console.log(JSON.stringify(verdict));
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    await emulator.close();
    await rm(dir, { recursive: true, force: true });
  }
  const failed = verdicts.filter((v) => !v.held);
  console.log(JSON.stringify({ attacks: verdicts.length, held: verdicts.length - failed.length, notHeld: failed.map((v) => v.attack) }));
  process.exitCode = failed.length > 0 ? 1 : 0;
}

interface AttackContext {
  readonly port: number;
  readonly apiKey: string;
  readonly pid: number;
}

interface Attack {
  readonly name: string;
  /** What must be true for the attack to count as held. */
  readonly what: string;
  /** The most the service's RSS may grow while it runs (MB); default 200. */
  readonly maxRssGrowthMb?: number;
  run(ctx: AttackContext): Promise<{ held: boolean; details: Record<string, unknown> }>;
}

/** Runs an attack while sampling the service's RSS and timing /healthz every 100 ms. */
async function observe(ctx: AttackContext, attack: Attack): Promise<Verdict> {
  const rssBefore = rssMb(ctx.pid);
  let peak = rssBefore;
  const latencies: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, rssMb(ctx.pid));
      const started = performance.now();
      await get(ctx.port, "/healthz").catch(() => undefined);
      latencies.push(performance.now() - started);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  let outcome: { held: boolean; details: Record<string, unknown> };
  try {
    outcome = await attack.run(ctx);
  } catch (err) {
    outcome = { held: false, details: { error: err instanceof Error ? err.message : String(err) } };
  }
  sampling = false;
  await sampler;
  latencies.sort((a, b) => a - b);
  const healthzMsMax = Math.round(latencies.at(-1) ?? 0);
  // No attack may stall the probes: a healthy pod keeps answering /healthz within a second.
  const held = outcome.held && healthzMsMax < 1000 && peak - rssBefore < (attack.maxRssGrowthMb ?? 200);
  return {
    attack: attack.name,
    held,
    what: attack.what,
    rssMbBefore: rssBefore,
    rssMbPeak: peak,
    healthzMsP50: Math.round(latencies[Math.floor(latencies.length / 2)] ?? 0),
    healthzMsMax,
    details: outcome.details,
  };
}

const ATTACKS: readonly Attack[] = [
  {
    name: "unread-bodies",
    what: "20 clients push 8 MB each at paths that refuse them (unknown path, wrong method, bad key): each gets its 404/405/401 problem, RSS grows < 100 MB",
    maxRssGrowthMb: 100,
    async run(ctx) {
      const targets = ["POST /nope", "POST /healthz", "POST /metrics", "POST /tenants", "POST /consent/callback", "POST /send"];
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => pushBody(ctx.port, targets[i % targets.length]!, 8 * 1024 * 1024, { Authorization: "Bearer wrong" })),
      );
      const statuses = count(results.map((r) => r.status));
      const ok = results.every((r) => [401, 404, 405].includes(r.status) && r.problem);
      return { held: ok, details: { statuses } };
    },
  },
  {
    name: "slow-bodies",
    what: "300 clients with a valid key send /send bodies one byte every second: each is cut off with 408 (or refused with 503 over the per-client cap) within the request timeout + 5 s",
    async run(ctx) {
      const started = Date.now();
      const results = await Promise.all(Array.from({ length: 300 }, () => dribble(ctx.port, ctx.apiKey, 70_000)));
      const statuses = count(results.map((r) => r.status));
      const slowest = Math.max(...results.map((r) => r.ms));
      const ok = results.every((r) => r.status === 408 || r.status === 503) && slowest < 65_000 + 5_000;
      return { held: ok, details: { statuses, slowestMs: slowest, totalMs: Date.now() - started } };
    },
  },
  {
    name: "slow-headers",
    what: "200 clients send headers without ever finishing them: each gets 408 within the headers timeout + 5 s",
    async run(ctx) {
      const results = await Promise.all(Array.from({ length: 200 }, () => rawAnswer(ctx.port, "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ", 30_000)));
      const statuses = count(results.map((r) => r.status));
      return { held: results.every((r) => r.status === 408 && r.problem), details: { statuses } };
    },
  },
  {
    name: "huge-error-list",
    what: "10 authenticated bodies with 600,000 unknown fields: each answer is a 400 of at most 64 KB",
    async run(ctx) {
      const body = `{"tenant":"contoso","to":["a@example.com"],"subject":"s","text":"t",${Array.from({ length: 600_000 }, (_, i) => `"f${i}":1`).join(",")}}`;
      const started = Date.now();
      const results = await Promise.all(Array.from({ length: 10 }, () => postJson(ctx.port, ctx.apiKey, body)));
      const biggest = Math.max(...results.map((r) => r.bytes));
      return { held: results.every((r) => r.status === 400) && biggest <= 64 * 1024, details: { statuses: count(results.map((r) => r.status)), biggestAnswerBytes: biggest, totalMs: Date.now() - started } };
    },
  },
  {
    name: "deep-nesting",
    what: "a body nested 100,000 levels deep, with an Idempotency-Key: 400, never 500",
    async run(ctx) {
      const depth = 100_000;
      const body = `{"tenant":"contoso","x":${"[".repeat(depth)}${"]".repeat(depth)}}`;
      const r = await postJson(ctx.port, ctx.apiKey, body, { "Idempotency-Key": `deep-${Date.now()}` });
      return { held: r.status === 400, details: { status: r.status } };
    },
  },
  {
    name: "node-refusals",
    what: "missing Host, an unknown Expect, oversized headers, a request line that is not HTTP: each a problem+json (400/417/400/400); 100-continue with a wrong key gets no 100",
    async run(ctx) {
      const noHost = await rawAnswer(ctx.port, "GET /healthz HTTP/1.1\r\n\r\n");
      const expect = await rawAnswer(ctx.port, "GET /healthz HTTP/1.1\r\nHost: relay\r\nExpect: magic\r\n\r\n");
      const overflow = await rawAnswer(ctx.port, `GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Big: ${"x".repeat(20_000)}\r\n\r\n`);
      const notHttp = await rawAnswer(ctx.port, "NOT HTTP AT ALL\r\n\r\n");
      const cont = await rawAnswer(ctx.port, "POST /send HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer wrong\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n");
      const held =
        noHost.status === 400 && noHost.problem && expect.status === 417 && expect.problem && overflow.status === 400 && overflow.problem && notHttp.status === 400 && notHttp.problem && cont.status === 401 && !cont.sawContinue;
      return { held, details: { noHost: noHost.status, expect: expect.status, overflow: overflow.status, notHttp: notHttp.status, continueWithWrongKey: cont.status, sawContinue: cont.sawContinue } };
    },
  },
];

function count(values: readonly (number | string)[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[String(v)] = (out[String(v)] ?? 0) + 1;
  return out;
}

function rssMb(pid: number): number {
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    return Math.round(kb / 1024);
  } catch {
    return 0;
  }
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.setTimeout(5000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

interface RawResult {
  status: number;
  problem: boolean;
  sawContinue: boolean;
  ms: number;
  bytes: number;
}

/** Writes `head`, then reads until the first non-100 answer (or the socket closes). */
function rawAnswer(port: number, head: string, waitMs = 10_000, then?: (socket: Socket) => void): Promise<RawResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    let data = "";
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(head);
      then?.(socket);
    });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      const sawContinue = data.startsWith("HTTP/1.1 100");
      const start = sawContinue ? data.indexOf("\r\n\r\n") + 4 : 0;
      const status = Number(data.slice(start).split(" ")[1] ?? 0);
      resolve({ status, problem: /content-type: application\/problem\+json/i.test(data), sawContinue, ms: Date.now() - started, bytes: data.length });
    };
    const timer = setTimeout(done, waitMs);
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      data += d;
      const start = data.startsWith("HTTP/1.1 100") ? data.indexOf("\r\n\r\n") + 4 : 0;
      if (start > 0 && data.length === start) return;
      const end = data.indexOf("\r\n\r\n", start);
      const length = /content-length:\s*(\d+)/i.exec(data.slice(start, end))?.[1];
      if (end >= 0 && length !== undefined && data.length >= end + 4 + Number(length)) done();
    });
    socket.on("close", done);
    socket.on("error", () => {});
  });
}

/** Sends a request line and headers announcing `bytes`, then pushes the body as fast as the socket takes it. */
function pushBody(port: number, line: string, bytes: number, headers: Record<string, string>): Promise<RawResult> {
  const head = `${line} HTTP/1.1\r\nHost: relay\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}Content-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n`;
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  return rawAnswer(port, head, 30_000, (socket) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes && !socket.destroyed) {
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
}

/** A /send body that arrives one byte a second. */
function dribble(port: number, apiKey: string, waitMs: number): Promise<RawResult> {
  const head = `POST /send HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`;
  return rawAnswer(port, head, waitMs, (socket) => {
    const timer = setInterval(() => {
      if (socket.destroyed) clearInterval(timer);
      else socket.write(" ");
    }, 1000);
    socket.on("close", () => clearInterval(timer));
  });
}

function postJson(port: number, apiKey: string, body: string, extra: Record<string, string> = {}): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/send", method: "POST", agent: false, headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}`, ...extra } },
      (res) => {
        let bytes = 0;
        res.on("data", (d: Buffer) => (bytes += d.length));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      buffer += d;
      for (const line of buffer.split("\n")) {
        try {
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === "noreply-relay listening" && rec.url) resolve(Number(new URL(rec.url).port));
        } catch {
          // not a complete JSON line yet
        }
      }
    });
    child.once("exit", (code) => reject(new Error(`the service exited with ${code} before listening`)));
  });
}

main().catch((err: unknown) => {
  console.error("abuse:", err instanceof Error ? err.message : err);
  process.exit(1);
});
