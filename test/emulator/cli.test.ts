import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Agent, fetch } from "undici";
import { stringify } from "yaml";
import { afterEach, describe, expect, it } from "vitest";
import { APP, CONTOSO, scenario, SECRET } from "./fixtures.js";

let child: ChildProcess | undefined;
afterEach(() => {
  child?.kill("SIGTERM");
  child = undefined;
});

/** Spawns the CLI the way the benchmark does and resolves with its first stdout line. */
function firstLine(args: string[]): Promise<string> {
  child = spawn(process.execPath, ["--import", "tsx", "src/emulator/cli.ts", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const proc = child;
  let stderr = "";
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.once("line", (line) => {
      lines.close();
      resolve(line);
    });
    proc.once("exit", (code) => reject(new Error(`emulator exited with ${code}: ${stderr}`)));
  });
}

describe("npm run emulator", () => {
  it("prints one JSON line with url and caFile once ready, and writes the CA there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "emulator-cli-"));
    const caFile = join(dir, "ca.pem");
    const scenarioFile = join(dir, "scenario.yaml");
    writeFileSync(scenarioFile, stringify(scenario()));

    const line = await firstLine(["--port", "0", "--ca-out", caFile, "--scenario", scenarioFile]);
    const ready = JSON.parse(line) as { url: string; caFile: string };
    expect(Object.keys(ready)).toEqual(["url", "caFile"]);
    expect(ready.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(ready.caFile).toBe(caFile);
    const ca = readFileSync(caFile, "utf8");
    expect(ca).toMatch(/^-----BEGIN CERTIFICATE-----/);

    // The CA file is what a client needs to talk to it, and the scenario file is loaded.
    const dispatcher = new Agent({ connect: { ca } });
    const res = await fetch(`${ready.url}/${CONTOSO}/oauth2/v2.0/token`, {
      method: "POST",
      dispatcher,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", client_id: APP, client_secret: SECRET, scope: "https://graph.microsoft.com/.default" }).toString(),
    });
    expect(res.status).toBe(200);
    await dispatcher.close();
  });
});
