import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { bundleServer } from "../../scripts/bundle-server.mjs";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import { spawnServer, stopServer } from "../support/child-server.js";
import { describeWithTool } from "../support/external-tools.js";
import { CONTOSO, FABRIKAM, message, standardScenario } from "../support/fixtures.js";
import { http, metricValue, standardConfig, writeStandardFiles } from "../support/harness.js";
import { startTestRedis, type TestRedis } from "../support/redis-server.js";

/*
 * What the image runs is the bundle scripts/bundle-server.mjs makes (npm run build writes it to
 * dist/server.js), not src/ through tsx as the other tests run it. These tests bundle the
 * service the same way into a directory of their own and run it with plain node: the real
 * @azure/identity and Graph client inside the bundle, against the emulator, over HTTP and SMTP.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };

// Inside the package, as dist/ is: the bundle finds openapi.yaml above it, and swagger-ui-dist
// and yaml in node_modules/.
const OUT = join(ROOT, "node_modules", ".cache", `noreply-relay-bundle-test-${process.pid}-${randomBytes(4).toString("hex")}`);

let bundle: Awaited<ReturnType<typeof bundleServer>>;
let emulator: Emulator;
let dir: string;

beforeAll(async () => {
  [bundle, emulator, dir] = await Promise.all([
    bundleServer({ outdir: OUT }),
    startEmulator({ scenario: standardScenario() }),
    mkdtemp(join(tmpdir(), "noreply-relay-bundle-")),
  ]);
}, 60_000);

afterAll(async () => {
  await emulator?.close();
  await rm(OUT, { recursive: true, force: true });
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const newKeys = () => ({ ops: `ops-${randomBytes(16).toString("hex")}`, billing: `billing-${randomBytes(16).toString("hex")}` });

function send(url: string, key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return http(`${url}/send`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}`, ...headers }, body: JSON.stringify(body) });
}

describe("the service bundle (scripts/bundle-server.mjs, what npm run build writes to dist/server.js)", () => {
  it("when bundled, then the dependencies are inside it, all of them production ones, and the on-demand parts are chunks", () => {
    for (const name of ["express", "undici", "zod", "pino", "prom-client", "@azure/identity", "@azure/msal-node", "@microsoft/microsoft-graph-client", "ioredis", "smtp-server"]) {
      expect(bundle.packages).toContain(name);
    }
    // Only what the runtime image installs (npm ci --omit=dev): no package the lockfile marks dev-only.
    // Decided per installed copy: node_modules/mime-db is a development one, express's copies are not.
    const devOnly = bundle.packageDirs.filter((dir) => lock.packages[dir]?.dev === true);
    expect(devOnly).toEqual([]);
    expect(bundle.packageDirs.filter((dir) => lock.packages[dir] === undefined)).toEqual([]);
    // One copy of each package version: express 5's mime-types and mime-db are installed four
    // times (express, accepts, send, type-is), identical, and the bundle keeps one.
    const byVersion = new Map<string, string[]>();
    for (const dir of bundle.packageDirs) {
      const id = `${dir.slice(dir.lastIndexOf("node_modules/") + "node_modules/".length)}@${(lock.packages[dir] as { version?: string } | undefined)?.version}`;
      byVersion.set(id, [...(byVersion.get(id) ?? []), dir]);
    }
    expect([...byVersion].filter(([, dirs]) => dirs.length > 1)).toEqual([]);
    expect(bundle.packageDirs.filter((d) => d.endsWith("node_modules/mime-db"))).toHaveLength(1);
    // Read from node_modules at run time, not bundled: the docs page's static files, and the YAML parser.
    expect(bundle.packages).not.toContain("swagger-ui-dist");
    expect(bundle.packages).not.toContain("yaml");
    expect(Object.keys(pkg.dependencies)).toEqual(expect.arrayContaining(["swagger-ui-dist", "yaml"]));
    expect(bundle.files).toContain("server.js");
    expect(bundle.files).toContain("server.js.map");
    const chunks = bundle.files.filter((f) => f.startsWith("chunks/") && f.endsWith(".js"));
    expect(chunks.length).toBeGreaterThanOrEqual(4);
    for (const f of bundle.files) expect(existsSync(join(OUT, f))).toBe(true);
    // The source map points at src/, and holds no source text.
    const map = JSON.parse(readFileSync(join(OUT, "server.js.map"), "utf8")) as { sources: string[]; sourcesContent?: unknown };
    expect(map.sources.some((s) => s.endsWith("src/server.ts"))).toBe(true);
    expect(map.sourcesContent).toBeUndefined();
  });

  it("when bundled, then the classes of src/ keep their names (error types in logs read as in the source)", () => {
    const text = bundle.files.filter((f) => f.endsWith(".js")).map((f) => readFileSync(join(OUT, f), "utf8")).join("\n");
    expect(bundle.sources).toContain("src/server.ts");
    const classes = bundle.sources.flatMap((f) => [...readFileSync(join(ROOT, f), "utf8").matchAll(/^\s*(?:export\s+)?(?:abstract\s+)?class\s+(\w+)/gm)].map((m) => m[1]!));
    expect(classes).toEqual(expect.arrayContaining(["ConfigError", "GraphMailSenderImpl", "StoreUnavailableError"]));
    // esbuild writes `var X = class …` (the class's name is inferred from X) or keeps `class X`;
    // a clash would make it X2.
    const renamed = classes.filter((c) => !new RegExp(`(?:\\bclass ${c}\\b|\\b${c}=class\\b)`).test(text));
    expect(renamed).toEqual([]);
  });

  it("when node runs it with --enable-source-maps, then a stack trace names the file and line in src/ (without: the bundle)", () => {
    const script = `const m = await import(${JSON.stringify(pathToFileURL(join(OUT, "server.js")).href)}); try { m.v8Flags({ NOREPLY_RELAY_V8_PRETENURING: "bad" }); } catch (e) { console.log(e.constructor.name, e.stack); }`;
    const run = (flags: string[]) => execFileSync(process.execPath, [...flags, "--input-type=module", "-e", script], { encoding: "utf8", cwd: ROOT });
    const mapped = run(["--enable-source-maps"]);
    expect(mapped).toMatch(/^ConfigError /);
    expect(mapped).toMatch(/at (?:Module\.)?v8Flags \(\S*src\/server\.ts:\d+:\d+\)/);
    expect(run([])).toMatch(/at (?:Module\.)?v8Flags \(\S*\/server\.js:\d+:\d+\)/);
  });

  it("when run with node and a YAML config, then it sends through the real SDKs, maps Entra's and Graph's refusals, serves the docs, the spec, metrics and SMTP, and stops on SIGTERM", async () => {
    const keys = newKeys();
    const secrets = await writeStandardFiles(dir, emulator.caPem);
    const config = standardConfig(emulator.url, dir, keys);
    config.smtp = { enabled: true, port: 0, allowInsecureAuth: true };
    const configPath = join(dir, "config.yaml");
    await writeFile(configPath, stringify(config));

    const server = spawnServer({ NOREPLY_RELAY_CONFIG: configPath }, { script: join(OUT, "server.js") });
    try {
      const url = await server.listening();
      expect((await http(`${url}/readyz`)).status).toBe(200);

      const sent = await send(url, keys.ops, message("contoso", { subject: "from the bundle" }), { "idempotency-key": "bundle-1" });
      expect(sent.status).toBe(202);
      const replay = await send(url, keys.ops, message("contoso", { subject: "from the bundle" }), { "idempotency-key": "bundle-1" });
      expect(replay.status).toBe(202);
      expect(replay.headers.get("idempotent-replayed")).toBe("true");
      expect(emulator.state.messages({ tenant: CONTOSO.id }).map((m) => m.subject)).toEqual(["from the bundle"]);

      // Graph's 403 for a mailbox the access policy does not allow, and Entra's AADSTS7000215 for a wrong secret.
      const denied = await send(url, keys.ops, message("fabrikam"));
      expect(denied.status).toBe(403);
      expect(denied.json.code).toBe("policy_denied");
      expect(emulator.state.messages({ tenant: FABRIKAM.id })).toEqual([]);
      const rejected = await send(url, keys.ops, message("litware"));
      expect(rejected.status).toBe(502);
      expect(rejected.json).toMatchObject({ code: "credential_rejected", aadsts: "7000215" });

      const docs = await http(`${url}/docs`);
      expect(docs.status).toBe(200);
      // A static file of swagger-ui-dist, outside openapi.yaml (so plain fetch, not the checked client).
      const ui = await fetch(`${url}/docs/swagger-ui-bundle.js`);
      expect(ui.status).toBe(200);
      expect((await ui.text()).length).toBeGreaterThan(100_000);
      const spec = await http(`${url}/openapi.yaml`);
      expect(spec.status).toBe(200);
      expect(spec.text).toContain("/send:");
      const metrics = (await http(`${url}/metrics`)).text;
      expect(metricValue(metrics, "noreply_relay_send_total", { tenant: "contoso", outcome: "sent" })).toBe(1);
      expect(metricValue(metrics, "noreply_relay_send_total", { tenant: "fabrikam", outcome: "policy_denied" })).toBe(1);

      // The SMTP door is a chunk loaded at start-up when enabled: a message over it reaches Graph.
      const door = server.stdout.map((l) => JSON.parse(l) as { msg?: string; submission?: number }).find((l) => l.msg === "SMTP door listening");
      expect(door?.submission).toBeGreaterThan(0);
      const transport = nodemailer.createTransport({ host: "127.0.0.1", port: door!.submission!, secure: false, ignoreTLS: true, auth: { user: "contoso", pass: keys.ops } });
      try {
        await transport.sendMail({ from: "noreply@contoso.com", to: "someone@example.com", subject: "over SMTP, from the bundle", text: "hello" });
      } finally {
        transport.close();
      }
      expect(emulator.state.messages({ tenant: CONTOSO.id }).map((m) => m.subject)).toContain("over SMTP, from the bundle");
    } finally {
      expect(await stopServer(server)).toBe(0);
    }
    const logs = server.stdout.join("\n") + server.stderr.join("");
    expect(logs).toContain('"msg":"stopped"');
    for (const s of [...secrets, keys.ops]) expect(logs).not.toContain(s);
    expect(server.stderr.join("")).toBe("");
  });
});

describeWithTool("redis-server", "the service bundle on the Redis store (its chunk, with ioredis inside)", () => {
  let redis: TestRedis;

  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it("when store.type is redis, then it is ready, sends once per Idempotency-Key and says so on /readyz", async () => {
    const keys = newKeys();
    await writeStandardFiles(dir, emulator.caPem);
    const config = standardConfig(emulator.url, dir, keys);
    config.store = { type: "redis", url: redis.url, keyPrefix: "bundle-test:" };
    const configPath = join(dir, "config-redis.json");
    await writeFile(configPath, JSON.stringify(config));
    emulator.state.reset();

    const server = spawnServer({ NOREPLY_RELAY_CONFIG: configPath }, { script: join(OUT, "server.js") });
    try {
      const url = await server.listening();
      const ready = await http(`${url}/readyz`);
      expect(ready.status).toBe(200);
      expect(ready.json.store).toEqual({ type: "redis", status: "ok" });
      const body = message("contoso", { subject: "bundle on redis" });
      expect((await send(url, keys.ops, body, { "idempotency-key": "bundle-redis-1" })).status).toBe(202);
      const again = await send(url, keys.ops, body, { "idempotency-key": "bundle-redis-1" });
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(emulator.state.messages({ tenant: CONTOSO.id })).toHaveLength(1);
      expect(await redis.client.keys("bundle-test:*")).not.toEqual([]);
    } finally {
      expect(await stopServer(server)).toBe(0);
    }
  });
});
