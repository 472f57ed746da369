import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { get } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../docs/markdown.js";

/*
 * `npm run demo` prints an SMTP example (a `node -e` with nodemailer); run exactly what it
 * prints, in a shell, from the repository, and see the message at the emulator.
 */

interface Demo {
  readonly child: ChildProcess;
  readonly banner: string;
}

function startDemo(): Promise<Demo> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/demo.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", SMTP_PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo printed no banner within 30 s:\n${output.join("")}`)), 30_000);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output.push(chunk);
      const text = output.join("");
      if (!text.includes("Request log lines")) return;
      clearTimeout(timer);
      resolve({ child, banner: text });
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}) before it was ready:\n${output.join("")}`));
    });
  });
}

function getJson(url: string, ca: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => (body += c));
      res.on("end", () => resolve(JSON.parse(body)));
    }).on("error", reject);
  });
}

let demo: Demo | undefined;
beforeAll(async () => {
  demo = await startDemo();
}, 40_000);
afterAll(async () => {
  if (demo === undefined || demo.child.exitCode !== null) return;
  const exited = new Promise((resolve) => demo!.child.once("exit", resolve));
  demo.child.kill("SIGTERM");
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
  if (demo.child.exitCode === null) demo.child.kill("SIGKILL");
});

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
