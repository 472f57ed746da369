import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `src/server.ts` in a child process (through tsx), as `npm start` would run the build. */
export interface ChildServer {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  /** Resolves with the service URL once it logs that it listens. */
  listening(): Promise<string>;
}

/**
 * Starts the service in a child process with `env` (and PATH, HOST=127.0.0.1, PORT=0 unless given).
 * `script`: a built entry point to run with node instead, such as a bundle of the service.
 */
export function spawnServer(env: Record<string, string>, options: { script?: string } = {}): ChildServer {
  const args = options.script === undefined ? ["--import", "tsx", "src/server.ts"] : [options.script];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  let pending = "";
  const waiters: ((url: string) => void)[] = [];
  let url: string | undefined;
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      stdout.push(line);
      try {
        const rec = JSON.parse(line) as { msg?: string; url?: string };
        if (rec.msg === "noreply-relay listening" && rec.url !== undefined) {
          url = rec.url;
          for (const w of waiters.splice(0)) w(rec.url);
        }
      } catch {
        // not a log line
      }
    }
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    stdout,
    stderr,
    exited,
    listening: () =>
      url !== undefined
        ? Promise.resolve(url)
        : Promise.race([
            new Promise<string>((resolve) => waiters.push(resolve)),
            exited.then((code) => {
              throw new Error(`server exited (${code}) before listening: ${stderr.join("")}`);
            }),
          ]),
  };
}

/**
 * SIGTERM, as a supervisor stops it (it drains), and SIGKILL if it has not exited after
 * `graceMs`. Resolves with the exit code (or the signal name); at once if it had already exited.
 */
export async function stopServer(server: ChildServer, graceMs = 15_000): Promise<number | string> {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill("SIGTERM");
    const timer = setTimeout(() => server.child.kill("SIGKILL"), graceMs);
    await server.exited;
    clearTimeout(timer);
  }
  return server.exited;
}
