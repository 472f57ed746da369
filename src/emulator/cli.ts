import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startEmulator, type EmulatorOptions } from "./start-emulator.js";

/*
 * npm run emulator -- --port 0 --ca-out ca.pem [--scenario scenario.yaml]
 * Prints exactly one line on stdout once ready: {"url":"https://127.0.0.1:PORT","caFile":"<file>"}.
 * Everything else goes to stderr so callers can read the first stdout line as JSON.
 */

const usage = `Usage: emulator [options]
  --port <n>             port to listen on (0 = any free port, default 0)
  --host <addr>          listen address (default 127.0.0.1)
  --ca-out <file>        write the CA certificate (PEM) here (default: a file in the temp dir)
  --scenario <file>      YAML/JSON scenario file
  --no-throttling        turn Outlook throttling off
  --latency-ms <n>       fixed latency added to every Entra/Graph request
  --jitter-ms <n>        random extra latency in [0, n)
  --token-lifetime <s>   access token lifetime in seconds (default: random 3600-5400, like Entra)
  --max-messages <n>     stored messages kept (default 10000)
  --no-raw               do not keep raw bodies / attachment contents
  --help`;

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} expects a non-negative number, got '${v}'`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "ca-out": { type: "string" },
      scenario: { type: "string" },
      "no-throttling": { type: "boolean" },
      "latency-ms": { type: "string" },
      "jitter-ms": { type: "string" },
      "token-lifetime": { type: "string" },
      "max-messages": { type: "string" },
      "no-raw": { type: "boolean" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help === true) {
    console.error(usage);
    return;
  }

  const fixedMs = num("latency-ms", values["latency-ms"]);
  const jitterMs = num("jitter-ms", values["jitter-ms"]);
  const tokenLifetimeSeconds = num("token-lifetime", values["token-lifetime"]);
  const maxMessages = num("max-messages", values["max-messages"]);
  const options: EmulatorOptions = {
    port: num("port", values.port) ?? 0,
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(values.scenario !== undefined ? { scenario: resolve(values.scenario) } : {}),
    ...(values["no-throttling"] === true ? { throttling: false as const } : {}),
    ...(fixedMs !== undefined || jitterMs !== undefined ? { latency: { fixedMs: fixedMs ?? 0, jitterMs: jitterMs ?? 0 } } : {}),
    ...(tokenLifetimeSeconds !== undefined ? { tokenLifetimeSeconds } : {}),
    ...(maxMessages !== undefined ? { maxMessages } : {}),
    ...(values["no-raw"] === true ? { keepRaw: false } : {}),
  };

  const emulator = await startEmulator(options);
  const port = new URL(emulator.url).port;
  const caFile = resolve(values["ca-out"] ?? join(tmpdir(), `noreply-relay-emulator-ca-${port}.pem`));
  writeFileSync(caFile, emulator.caPem, { mode: 0o644 });

  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    emulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  process.stdout.write(`${JSON.stringify({ url: emulator.url, caFile })}\n`);
}

main().catch((e: unknown) => {
  console.error(`emulator: ${(e as Error).message}`);
  process.exit(1);
});
