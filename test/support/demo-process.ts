import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `npm run demo` (src/demo.ts) in a child process, once its banner is out. */
export interface RunningDemo {
  readonly child: ChildProcess;
  /** Everything it printed up to and including the banner. */
  readonly banner: string;
  /** The service's URL, the demo API key, the emulator's URL and CA file, as the banner says. */
  readonly url: string;
  readonly apiKey: string;
  readonly emulatorUrl: string;
  readonly caFile: string;
  /** Its output so far (stdout and stderr, in arrival order), growing while it runs. */
  readonly output: string[];
}

/**
 * Starts the demo on free ports (PORT=0, and SMTP_PORT=0 unless `env` says otherwise) and reads
 * its banner. `cwd` and `args` (`--keep`) run it elsewhere: tsx is loaded by its path then.
 */
export function startDemo(options: { cwd?: string; args?: string[]; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunningDemo> {
  const tsx = pathToFileURL(join(ROOT, "node_modules", "tsx", "dist", "loader.mjs")).href;
  const child = spawn(process.execPath, ["--import", tsx, join(ROOT, "src", "demo.ts"), ...(options.args ?? [])], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", SMTP_PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const timeoutMs = options.timeoutMs ?? 30_000;
  const output: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo printed no banner within ${timeoutMs / 1000} s:\n${output.join("")}`)), timeoutMs);
    let done = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      output.push(chunk);
      const text = output.join("");
      if (done || !text.includes("Request log lines")) return;
      done = true;
      clearTimeout(timer);
      const url = /^\s+Service\s+(http:\/\/\S+)/m.exec(text)?.[1];
      const apiKey = /^\s+Demo API key\s+(\S+)/m.exec(text)?.[1];
      const emulator = /^\s+M365 emulator\s+(https:\/\/\S+)\s+\(HTTPS, its own CA: ([^)]+)\)/m.exec(text);
      if (url === undefined || apiKey === undefined || emulator?.[1] === undefined || emulator[2] === undefined) {
        reject(new Error(`cannot read the demo's banner:\n${text}`));
        return;
      }
      resolve({ child, banner: text, url, apiKey, emulatorUrl: emulator[1], caFile: emulator[2], output });
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}) before it was ready:\n${output.join("")}`));
    });
  });
}

/** SIGTERM, as Ctrl-C would: the demo stops the service and the emulator (SIGKILL after 5 s). */
export async function stopDemo(demo: RunningDemo | undefined): Promise<void> {
  if (demo === undefined || demo.child.exitCode !== null) return;
  const exited = new Promise((resolve) => demo.child.once("exit", resolve));
  demo.child.kill("SIGTERM");
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
  if (demo.child.exitCode === null) demo.child.kill("SIGKILL");
}
