import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { get } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../docs/markdown.js";
import { spawnServer, stopServer, type ChildServer } from "../support/child-server.js";
import { startDemo, stopDemo, type RunningDemo } from "../support/demo-process.js";
import { freePort } from "../support/free-port.js";

/*
 * `npm run demo` prints an SMTP example (a `node -e` with nodemailer); run exactly what it
 * prints, in a shell, from the repository, and see the message at the emulator.
 */

function getJson(url: string, ca: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve(JSON.parse(body)));
    }).on("error", reject);
  });
}

let demo: RunningDemo | undefined;
beforeAll(async () => {
  demo = await startDemo();
}, 40_000);
afterAll(() => stopDemo(demo));

describe("npm run demo: the SMTP example", () => {
  it("when a developer runs the printed node -e command, then it prints the 250 reply and the emulator holds the message", async () => {
    const banner = demo!.banner;
    expect(banner).toMatch(/^\s+SMTP\s+127\.0\.0\.1:\d+\s+\(STARTTLS/m);
    const lines = banner.split("\n");
    const start = lines.findIndex((l) => l.includes("Send over SMTP"));
    const end = lines.findIndex((l, i) => i > start && l.includes("process.exitCode"));
    expect(start).toBeGreaterThan(0);
    const command = lines.slice(start + 1, end + 1).join("\n");
    expect(command).toMatch(/^\s+node -e "require\('nodemailer'\)/);

    const run = spawnSync("sh", ["-c", command], { cwd: ROOT, encoding: "utf8", timeout: 30_000 });

    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/^250 2\.0\.0 accepted by Microsoft Graph as <[^>]+@contoso\.com>/);
    const emulator = /^\s+M365 emulator\s+(https:\/\/\S+)\s+\(HTTPS, its own CA: ([^)]+)\)/m.exec(banner);
    const messages = (await getJson(`${emulator![1]}/_emulator/messages`, readFileSync(emulator![2]!, "utf8"))) as {
      value: Array<{ subject: string; format: string; sender: string }>;
    };
    expect(messages.value.map((m) => [m.subject, m.format, m.sender])).toEqual([["Hello over SMTP", "mime", "noreply@contoso.com"]]);
  });
});

describe("npm run demo -- --keep: a second instance beside the demo", () => {
  let dir: string;
  let kept: RunningDemo | undefined;
  let second: ChildServer | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "noreply-relay-demo-keep-"));
  });
  afterAll(async () => {
    if (second !== undefined) await stopServer(second);
    await stopDemo(kept);
    await rm(dir, { recursive: true, force: true });
  });

  it("when a developer starts the printed second instance while the demo runs, then it starts (its SMTP door on another port) and sends through the demo's emulator", async () => {
    // The demo's SMTP door on a fixed port, as with the default 2525: the second config must not ask for it too.
    const smtpPort = await freePort();
    kept = await startDemo({ cwd: dir, args: ["--keep"], env: { EMULATOR_PORT: "0", SMTP_PORT: String(smtpPort) } });
    const printed = /NOREPLY_RELAY_CONFIG=(\S+) node dist\/server\.js/.exec(kept.banner);
    expect(printed?.[1]).toBe(join(dir, ".demo", "config-second.yaml"));
    const key = kept.apiKey;

    // The source, not `npm run build` (which would rewrite this repository's dist/).
    second = spawnServer({ NOREPLY_RELAY_CONFIG: printed![1]! });
    const url = await second.listening();
    const door = second.stdout.map((l) => JSON.parse(l) as { msg?: string; submission?: number }).find((l) => l.msg === "SMTP door listening");
    expect(door?.submission).toBeGreaterThan(0);
    expect(door?.submission).not.toBe(smtpPort);
    const res = await fetch(`${url}/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ tenant: "contoso", to: ["someone@example.com"], subject: "from the second instance", text: "It works." }),
    });
    expect(res.status).toBe(202);
  }, 60_000);
});
