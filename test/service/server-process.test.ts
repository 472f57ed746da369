import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/config/load-config.js";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { SEMI_SPACE_FLAG, v8Flags, youngGenerationWarning } from "../../src/server.js";
import { spawnServer } from "../support/child-server.js";
import { CONTOSO, message, standardScenario } from "../support/fixtures.js";
import { http, metricValue, standardConfig, writeStandardFiles } from "../support/harness.js";

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("v8Flags (NOREPLY_RELAY_V8_PRETENURING)", () => {
  it("when the variable is unset, empty or off, then allocation-site pretenuring is turned off; when on, no flag is set", () => {
    expect(v8Flags({})).toEqual(["--no-allocation-site-pretenuring"]);
    expect(v8Flags({ NOREPLY_RELAY_V8_PRETENURING: "" })).toEqual(["--no-allocation-site-pretenuring"]);
    expect(v8Flags({ NOREPLY_RELAY_V8_PRETENURING: "off" })).toEqual(["--no-allocation-site-pretenuring"]);
    expect(v8Flags({ NOREPLY_RELAY_V8_PRETENURING: "on" })).toEqual([]);
  });

  it("when the variable has another value, then it is a ConfigError naming it", () => {
    expect(() => v8Flags({ NOREPLY_RELAY_V8_PRETENURING: "ON" })).toThrow(ConfigError);
    expect(() => v8Flags({ NOREPLY_RELAY_V8_PRETENURING: "false" })).toThrow(/NOREPLY_RELAY_V8_PRETENURING: must be on or off, got "false"/);
  });
});

describe("youngGenerationWarning (node started without --max-semi-space-size)", () => {
  const GiB = 1024 ** 3;
  const bare = { execArgv: [], nodeOptions: undefined, constrainedMemory: 0, totalMemory: 23 * GiB };

  it("when the pod's limit is 512 MiB and no flag is given, then it warns with the memory and the flag to set", () => {
    const w = youngGenerationWarning({ ...bare, constrainedMemory: 512 * 1024 ** 2 });
    expect(w?.memoryMiB).toBe(512);
    expect(w?.msg).toContain(`NODE_OPTIONS=${SEMI_SPACE_FLAG}`);
    expect(w?.msg).toContain("docs/operations.md#heap");
  });

  it("when there is no container limit, then the machine's memory decides (cgroup v1 reports no limit as a huge number)", () => {
    expect(youngGenerationWarning({ ...bare, constrainedMemory: 2 ** 64 })).toBeUndefined();
    expect(youngGenerationWarning({ ...bare, constrainedMemory: 2 ** 64, totalMemory: 2 * GiB })?.memoryMiB).toBe(2048);
    expect(youngGenerationWarning({ ...bare, totalMemory: 2 * GiB })?.memoryMiB).toBe(2048);
  });

  it("when the memory is 4 GiB or more, then V8's own young generation is the full one and nothing is said", () => {
    expect(youngGenerationWarning({ ...bare, constrainedMemory: 4 * GiB })).toBeUndefined();
    expect(youngGenerationWarning({ ...bare, constrainedMemory: 4 * GiB - 1 })).toBeDefined();
  });

  it.each([
    { where: "NODE_OPTIONS", setup: { nodeOptions: "--max-old-space-size=200 --max-semi-space-size=8" } },
    { where: "NODE_OPTIONS, V8's underscore spelling", setup: { nodeOptions: "--max_semi_space_size=4" } },
    { where: "NODE_OPTIONS, value after a space", setup: { nodeOptions: "--max-semi-space-size 4" } },
    { where: "node's command line", setup: { execArgv: ["--max-semi-space-size=2"] } },
  ])("when the size is chosen in $where, then it is left to the operator", ({ setup }) => {
    expect(youngGenerationWarning({ ...bare, constrainedMemory: 512 * 1024 ** 2, ...setup })).toBeUndefined();
  });

  it("when another flag only resembles it, then it still warns", () => {
    expect(youngGenerationWarning({ ...bare, constrainedMemory: GiB, nodeOptions: "--min-semi-space-size=16 --max-semi-space-sizes" })).toBeDefined();
  });
});

describe("the server process (src/server.ts)", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "noreply-relay-proc-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.concurrent("when the config is invalid, then it exits 1 and names each bad key by its path", async () => {
    const path = join(dir, "bad.yaml");
    await writeFile(
      path,
      [
        "colour: blue",
        "app: { clientId: 11111111-2222-3333-4444-555555555555, credential: { type: secret, secretEnv: SOME_SECRET } }",
        "tenants:",
        "  contoso: { tenantId: contoso.com, sender: not-an-email }",
        "callers:",
        "  billing: { keySha256: abc, tenants: [contoso] }",
      ].join("\n"),
    );
    const server = spawnServer({ NOREPLY_RELAY_CONFIG: path, SOME_SECRET: "x" });
    expect(await server.exited).toBe(1);
    const stderr = server.stderr.join("");
    expect(stderr).toContain("tenants.contoso.sender: invalid email");
    expect(stderr).toContain("callers.billing.keySha256: must be the hex SHA-256");
    expect(stderr).toContain("colour: unknown key");
  });

  it.concurrent("when NOREPLY_RELAY_CONFIG is not set, then it exits 1 and says so", async () => {
    const server = spawnServer({});
    expect(await server.exited).toBe(1);
    expect(server.stderr.join("")).toContain("NOREPLY_RELAY_CONFIG");
  });

  it.concurrent("when NOREPLY_RELAY_V8_PRETENURING is neither on nor off, then it exits 1 and names the variable", async () => {
    const server = spawnServer({ NOREPLY_RELAY_CONFIG: join(dir, "never-read.yaml"), NOREPLY_RELAY_V8_PRETENURING: "yes" });
    expect(await server.exited).toBe(1);
    expect(server.stderr.join("")).toContain('NOREPLY_RELAY_V8_PRETENURING: must be on or off, got "yes"');
  });

  describe("graceful shutdown", () => {
    let emulator: Emulator;

    beforeAll(async () => {
      emulator = await startEmulator({ scenario: standardScenario() });
    });
    afterAll(async () => {
      await emulator?.close();
    });

    it("when SIGTERM arrives during 50 sends, then none is lost, /readyz turns 503, new sends get 503 and the exit code is 0", async () => {
      const keys = { ops: `ops-${randomBytes(16).toString("hex")}`, billing: `billing-${randomBytes(16).toString("hex")}` };
      const secrets = await writeStandardFiles(dir, emulator.caPem);
      const config = standardConfig(emulator.url, dir, keys);
      config.tenants.contoso!.limits = { maxConcurrency: 64 };
      const configPath = join(dir, "config.json");
      await writeFile(configPath, JSON.stringify(config));
      // Graph takes 1.5 s per message, so the sends are surely in flight when the signal comes.
      emulator.state.inject({ kind: "sendMail", action: "latency", fixedMs: 1500 });

      const server = spawnServer({ NOREPLY_RELAY_CONFIG: configPath });
      const url = await server.listening();
      const send = (i: number) =>
        http(`${url}/send`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${keys.ops}` },
          body: JSON.stringify(message("contoso", { subject: `drain ${i}` })),
        });
      const sends = Array.from({ length: 50 }, (_, i) => send(i));
      await until("50 sends in flight", async () => {
        const text = (await http(`${url}/metrics`)).text;
        return metricValue(text, "noreply_relay_inflight_sends") === 50 ? true : undefined;
      });

      server.child.kill("SIGTERM");
      const readyz = await until("/readyz 503", async () => {
        const res = await http(`${url}/readyz`);
        return res.status === 503 ? res : undefined;
      });
      expect(readyz.json).toEqual({ status: "shutting_down", store: { type: "memory", status: "ok" } });
      expect((await http(`${url}/healthz`)).status).toBe(200);
      const late = await send(50);
      expect(late.status).toBe(503);
      expect(late.json.code).toBe("upstream_unavailable");
      expect(late.headers.get("retry-after")).toBe("1");

      const results = await Promise.all(sends);
      expect(results.map((r) => r.status)).toEqual(Array(50).fill(202));
      expect(await server.exited).toBe(0);
      expect(emulator.state.messages({ tenant: CONTOSO.id })).toHaveLength(50);
      const logs = server.stdout.join("\n");
      // The default V8 tuning (src/server.ts v8Flags) was applied before the service started.
      expect(server.stdout.map((l) => JSON.parse(l) as { v8Flags?: string[] }).find((l) => l.v8Flags !== undefined)?.v8Flags).toEqual(["--no-allocation-site-pretenuring"]);
      for (const s of [...secrets, keys.ops]) expect(logs).not.toContain(s);
      expect(logs).toContain('"msg":"stopped"');
      // Each send counted once: the start line names the 50 sends, not 100.
      const start = server.stdout.map((l) => JSON.parse(l) as { msg?: string; inFlight?: number }).find((l) => l.msg === "shutting down: finishing sends in flight");
      expect(start?.inFlight).toBe(50);
    });

    it("when the sends outlast server.drainTimeoutSeconds, then the process stops at the drain timeout, not at the request deadline, and says how many sends were cut", async () => {
      const keys = { ops: `ops-${randomBytes(16).toString("hex")}`, billing: `billing-${randomBytes(16).toString("hex")}` };
      await writeStandardFiles(dir, emulator.caPem);
      const config = standardConfig(emulator.url, dir, keys);
      config.server = { ...config.server, drainTimeoutSeconds: 1, requestDeadlineSeconds: 20 };
      const configPath = join(dir, "config-drain.json");
      await writeFile(configPath, JSON.stringify(config));
      const slow = emulator.state.inject({ kind: "sendMail", action: "latency", fixedMs: 8000 });
      try {
        const server = spawnServer({ NOREPLY_RELAY_CONFIG: configPath });
        const url = await server.listening();
        const sends = Array.from({ length: 3 }, (_, i) =>
          fetch(`${url}/send`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${keys.ops}` },
            body: JSON.stringify(message("contoso", { subject: `cut ${i}` })),
          }).then(
            (r) => r.status,
            () => "cut",
          ),
        );
        await until("3 sends in flight", async () => (metricValue((await http(`${url}/metrics`)).text, "noreply_relay_inflight_sends") === 3 ? true : undefined));
        const signalled = Date.now();
        server.child.kill("SIGTERM");
        expect(await server.exited).toBe(0);
        const took = Date.now() - signalled;
        expect(took).toBeGreaterThanOrEqual(900);
        expect(took).toBeLessThan(3500);
        expect(await Promise.all(sends)).toEqual(["cut", "cut", "cut"]);
        const lines = server.stdout.map((l) => JSON.parse(l) as { msg?: string; inFlight?: number });
        expect(lines.find((l) => l.msg === "shutting down: finishing sends in flight")?.inFlight).toBe(3);
        expect(lines.find((l) => l.msg === "stopped after the drain timeout; some sends were cut short")?.inFlight).toBe(3);
      } finally {
        slow.clear();
      }
    });
  });

  describe("SIGHUP", () => {
    let emulator: Emulator;

    beforeAll(async () => {
      emulator = await startEmulator({ scenario: standardScenario() });
    });
    afterAll(async () => {
      await emulator?.close();
    });

    it("when SIGHUP arrives after the config file changed, then the new tenant sends without a restart, and a broken file is refused", async () => {
      const keys = { ops: `ops-${randomBytes(16).toString("hex")}`, billing: `billing-${randomBytes(16).toString("hex")}` };
      await writeStandardFiles(dir, emulator.caPem);
      const config = standardConfig(emulator.url, dir, keys);
      // No file watching: only the signal re-reads the file (a ConfigMap mounted with subPath).
      config.server = { ...config.server, watchConfig: false };
      const tailspin = config.tenants.tailspin!;
      delete config.tenants.tailspin;
      const configPath = join(dir, "sighup.json");
      await writeFile(configPath, JSON.stringify(config));
      const server = spawnServer({ NOREPLY_RELAY_CONFIG: configPath });
      try {
        const url = await server.listening();
        const send = () =>
          http(`${url}/send`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${keys.ops}` },
            body: JSON.stringify(message("tailspin")),
          });
        const reloads = async (outcome: string) => metricValue((await http(`${url}/metrics`)).text, "noreply_relay_config_reload_total", { outcome });
        expect((await send()).status).toBe(404);

        await writeFile(configPath, JSON.stringify({ ...config, tenants: { ...config.tenants, tailspin } }));
        server.child.kill("SIGHUP");
        const sent = await until("tailspin after SIGHUP", async () => {
          const res = await send();
          return res.status === 404 ? undefined : res;
        });
        expect(sent.status).toBe(202);
        expect(await reloads("success")).toBe(1);

        await writeFile(configPath, "tenants: [this is not a config");
        server.child.kill("SIGHUP");
        await until("the refused reload", async () => ((await reloads("invalid")) === 1 ? true : undefined));
        expect((await send()).status).toBe(202);
        expect(server.stdout.join("\n")).toContain("config reload refused; the previous config stays in force");
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
      }
    });
  });
});
