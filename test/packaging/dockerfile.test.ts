import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { run as dockerfilelint } from "dockerfilelint";
import { SEMI_SPACE_FLAG } from "../../src/server.js";
import { repoRoot } from "./chart.js";

/**
 * No Docker engine runs here, so the image is checked from its Dockerfile: lint, stage
 * structure, what reaches the final stage, and the HEALTHCHECK command itself (run with the
 * local node against a throwaway HTTP server).
 */

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

const dockerfileText = readFileSync(join(repoRoot, "Dockerfile"), "utf8");
const dockerignore = readFileSync(join(repoRoot, ".dockerignore"), "utf8");

/** Instructions with continuation lines joined and comments dropped, grouped by stage. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split("\n");
  let buffer = "";
  let startLine = 0;
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (buffer === "" && (line === "" || line.startsWith("#"))) return;
    if (buffer === "") startLine = i + 1;
    if (line.startsWith("#")) return;
    if (line.endsWith("\\")) {
      buffer += `${line.slice(0, -1)} `;
      return;
    }
    const full = (buffer + line).trim();
    buffer = "";
    const m = /^(\S+)\s*(.*)$/.exec(full);
    if (!m) return;
    const keyword = (m[1] as string).toUpperCase();
    const args = m[2] as string;
    if (keyword === "FROM") {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: from?.[1] ?? args, name: from?.[2], instructions: [] });
    } else {
      stages.at(-1)?.instructions.push({ keyword, args, line: startLine });
    }
  });
  return stages;
}

const stages = parseDockerfile(dockerfileText);
const final = stages.at(-1) as Stage;
const byKeyword = (s: Stage, k: string) => s.instructions.filter((i) => i.keyword === k);
const execForm = (args: string): string[] => {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed)) throw new Error("not exec form");
  return parsed as string[];
};

describe("Dockerfile", () => {
  it("when linted with dockerfilelint, then it reports no issue", () => {
    expect(dockerfilelint(repoRoot, dockerfileText)).toEqual([]);
  });

  it("when parsed, then it has named build, production-deps and runtime stages", () => {
    expect(stages.map((s) => s.name)).toEqual(["build", "deps", "runtime"]);
    for (const s of stages) expect(s.from).toMatch(/^(node:20[.\d]*-(bookworm-)?slim|gcr\.io\/distroless\/nodejs20-debian12(:nonroot)?)(@sha256:[0-9a-f]{64})?$/);
  });

  it("when the build stage installs, then it gets dev dependencies and compiles with npm run build", () => {
    const build = stages.find((s) => s.name === "build") as Stage;
    const runs = byKeyword(build, "RUN").map((r) => r.args);
    expect(runs.some((r) => /npm ci\b/.test(r) && !r.includes("--omit=dev"))).toBe(true);
    expect(runs.some((r) => r.includes("npm run build"))).toBe(true);
    // npm run build bundles the service with scripts/bundle-server.mjs: the stage has it.
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts.build).toContain("node scripts/bundle-server.mjs");
    expect(byKeyword(build, "COPY").map((c) => c.args.split(/\s+/)[0])).toContain("scripts/bundle-server.mjs");
  });

  it("when the deps stage installs, then it omits dev dependencies and runs no install scripts", () => {
    const deps = stages.find((s) => s.name === "deps") as Stage;
    const ci = byKeyword(deps, "RUN").find((r) => /npm ci\b/.test(r.args));
    expect(ci?.args).toContain("--omit=dev");
    expect(ci?.args).toContain("--ignore-scripts");
  });

  it("when the final stage is assembled, then it holds only dist, production node_modules, openapi.yaml and the package files", () => {
    const copies = byKeyword(final, "COPY").map((c) => c.args.split(/\s+/));
    const fromStage = copies.filter((c) => c[0]?.startsWith("--from=")).map((c) => `${c[0]} ${c.slice(1, -1).join(" ")}`);
    expect(fromStage.sort()).toEqual(["--from=build /app/dist", "--from=deps /app/node_modules"]);
    const fromContext = copies.filter((c) => !c.some((a) => a.startsWith("--"))).flatMap((c) => c.slice(0, -1));
    expect(fromContext.sort()).toEqual(["openapi.yaml", "package-lock.json", "package.json"]);
    expect(byKeyword(final, "RUN")).toEqual([]);
  });

  it("when the final stage runs, then it is non-root with NODE_ENV=production", () => {
    const users = byKeyword(final, "USER").map((u) => u.args);
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1) as string;
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(byKeyword(final, "ENV").map((e) => e.args).join(" ")).toMatch(/\bNODE_ENV=production\b/);
  });

  it("when the final stage runs, then NODE_OPTIONS gives V8 the young generation the service is measured with, whatever the pod's memory limit", () => {
    const env = byKeyword(final, "ENV").map((e) => e.args).join(" ");
    expect(env).toContain(`NODE_OPTIONS=${SEMI_SPACE_FLAG}`);
  });

  it("when the container starts, then node runs dist/server.js in exec form so SIGTERM reaches it", () => {
    const entry = byKeyword(final, "ENTRYPOINT").at(-1);
    expect(entry).toBeDefined();
    expect(execForm(entry?.args ?? "")).toEqual(["/nodejs/bin/node", "dist/server.js"]);
    for (const cmd of byKeyword(final, "CMD")) expect(() => execForm(cmd.args)).not.toThrow();
  });

  it("when the build context is sent, then .dockerignore lets through only what the Dockerfile copies", () => {
    const rules = dockerignore.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
    expect(rules[0]).toBe("*");
    const allowed = rules.filter((r) => r.startsWith("!")).map((r) => r.slice(1).replace(/\/$/, ""));
    const copiedFromContext = stages
      .flatMap((s) => byKeyword(s, "COPY"))
      .map((c) => c.args.split(/\s+/))
      .filter((c) => !c.some((a) => a.startsWith("--from=")))
      .flatMap((c) => c.filter((a) => !a.startsWith("--")).slice(0, -1));
    expect([...new Set(copiedFromContext)].sort()).toEqual([...allowed].sort());
    for (const secretish of [".env", "node_modules", ".git", ".tools", "helm"]) expect(allowed).not.toContain(secretish);
  });
});

describe("Dockerfile HEALTHCHECK", () => {
  const healthcheck = byKeyword(final, "HEALTHCHECK").at(-1);
  const servers: Server[] = [];

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** Runs the HEALTHCHECK's exec-form command with the local node instead of the image's. */
  function runHealthcheck(port: number): Promise<number> {
    const cmd = execForm((healthcheck?.args ?? "").replace(/^.*?CMD\s+/, ""));
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, cmd.slice(1), { env: { ...process.env, PORT: String(port) }, stdio: "ignore" });
      child.on("error", reject);
      child.on("exit", (code) => resolve(code ?? -1));
    });
  }

  async function serve(status: number): Promise<number> {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      seen.push(req.url ?? "");
      res.statusCode = req.url === "/healthz" ? status : 404;
      res.end();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return (server.address() as AddressInfo).port;
  }

  it("when the Dockerfile is read, then the HEALTHCHECK runs node in exec form against /healthz", () => {
    expect(healthcheck?.args).toMatch(/--interval=\d+s/);
    const cmd = execForm((healthcheck?.args ?? "").replace(/^.*?CMD\s+/, ""));
    expect(cmd[0]).toBe("/nodejs/bin/node");
    expect(cmd[1]).toBe("-e");
    expect(cmd[2]).toContain("/healthz");
  });

  it("when /healthz answers 200, then the check passes", async () => {
    expect(await runHealthcheck(await serve(200))).toBe(0);
  });

  it("when /healthz answers 503, then the check fails", async () => {
    expect(await runHealthcheck(await serve(503))).toBe(1);
  });

  it("when nothing listens, then the check fails", async () => {
    const port = await serve(200);
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    expect(await runHealthcheck(port)).toBe(1);
  });
});
