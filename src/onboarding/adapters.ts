import { pino } from "pino";
import { fetch } from "undici";
import { AADSTS_ADVICE } from "../auth/aadsts.js";
import { createEntraTokenProvider } from "../auth/entra-token-provider.js";
import type { Config } from "../config/schema.js";
import { createGraphMailSender } from "../graph/graph-mail-sender.js";
import { createHttpsAgent } from "../net/http-dispatcher.js";
import { silentObserver, systemClock } from "../core/ports.js";
import type { VerifyDeps } from "./verify.js";

/** Where the CLI writes (process.stdout/stderr, or a test's buffer). */
export interface CliOutput {
  write(chunk: string): unknown;
}

/** What `verify` needs from the outside world; the real adapters by default. */
export interface VerifyAdapters {
  readonly deps: VerifyDeps;
  close(): Promise<void>;
}

export type VerifyAdapterFactory = (config: Config, io: { env: NodeJS.ProcessEnv; stderr: CliOutput }) => Promise<VerifyAdapters>;


/**
 * The real adapters behind `verify`: the service's own Entra token provider and Graph
 * sender (same code path as a send), one HTTPS agent trusting `tls.caFile`, and the AADSTS
 * advice table of src/auth. Logs go to stderr at LOG_LEVEL (default error: the report already says what went wrong), never a token.
 */
export function createVerifyAdapters(config: Config, io: { env: NodeJS.ProcessEnv; stderr: CliOutput }): Promise<VerifyAdapters> {
  const dispatcher = createHttpsAgent(config.tls, { connections: 4 });
  const logger = pino({ level: io.env.LOG_LEVEL ?? "error", base: { tool: "noreply-relay" } }, { write: (s: string) => io.stderr.write(s) });
  const tokenProvider = createEntraTokenProvider({ config, observer: silentObserver, logger, dispatcher, env: io.env });
  const graphSender = createGraphMailSender({ config, tokenProvider, observer: silentObserver, logger, dispatcher });
  const fetchJson = async (url: string): Promise<unknown> => {
    const res = await fetch(url, { dispatcher, signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
    return res.json();
  };
  return Promise.resolve({
    deps: {
      tokenProvider,
      graphSender,
      fetchJson,
      clock: systemClock,
      aadstsAdvice: (code) => {
        const advice = AADSTS_ADVICE[code];
        return advice ? `${advice.summary}: ${advice.action}` : `see https://login.microsoftonline.com/error?code=${code}`;
      },
    },
    close: async () => {
      await graphSender.close();
      await tokenProvider.close();
      await dispatcher.close();
    },
  });
}
