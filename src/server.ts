import { readFileSync, realpathSync } from "node:fs";
import type { Server } from "node:http";
import { totalmem } from "node:os";
import { pathToFileURL } from "node:url";
import { setFlagsFromString } from "node:v8";
import { pino, type Logger } from "pino";
import { Registry } from "prom-client";
import { createApp, type RelayApp } from "./app.js";
import { createEntraTokenProvider } from "./auth/entra-token-provider.js";
import { restartRequiredChanges, watchConfigFile, type ConfigReloadOutcome, type ConfigWatcher } from "./config/config-watcher.js";
import { warnOpenSecretFiles } from "./config/file-permissions.js";
import { ConfigError, loadConfigFile } from "./config/load-config.js";
import type { Config, HttpLimitsConfig } from "./config/schema.js";
import { createRememberingTokenProvider } from "./auth/credential-failure-memory.js";
import { createDeliveryStores } from "./delivery/create-delivery-stores.js";
import { createGraphMailSender, loadGraphClient } from "./graph/graph-mail-sender.js";
import { createHttpsAgent } from "./net/http-dispatcher.js";
import { createListener } from "./http/listener.js";
import { optionalRoutes } from "./http/optional-routes.js";
import { assertMetricsReader } from "./http/probe-routes.js";
import type { RouteRegistrar } from "./http/route-table.js";
import { lapsedLeaseAnswer, type RecordedAnswer } from "./mail/send-answer.js";
import { systemClock, type Clock } from "./core/ports.js";
import { getRelayMetrics, StoreMetrics } from "./metrics/relay-metrics.js";
import { startExpiryWarnings } from "./onboarding/expiry.js";
import { fixedConfigSource, type ConfigSource } from "./config/config-source.js";
import type { SmtpDoor, startSmtpDoor } from "./smtp/smtp-door.js";

export interface StartServerOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly port: number;
  readonly host: string;
  /** Route modules besides the core ones; default src/http/optional-routes.ts. */
  readonly routes?: readonly RouteRegistrar[];
  /** Environment for `secretEnv` look-ups; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * The file `config` was loaded from. With it, the file is followed (`server.watchConfig`) and
   * re-read by reload(); without it the config is fixed.
   */
  readonly configPath?: string;
  /** The one clock of every deadline, lease, hold and expiry; default the system clock. */
  readonly clock?: Clock;
  /** See GraphMailSenderOptions.permissionRecheckMs (tests shorten it). */
  readonly permissionRecheckMs?: number;
}

/** A listening service with the real Entra ID and Graph adapters. */
export interface RunningServer {
  readonly relay: RelayApp;
  /** `http://host:port` as bound. */
  readonly url: string;
  /** The SMTP door's ports as bound, when `smtp.enabled`. */
  readonly smtp?: SmtpDoor["ports"];
  /**
   * SIGHUP: forgets remembered credential rejections (a secret file fixed in place is tried at
   * once) and every mailbox's throttle memory (a Graph Retry-After an operator knows to be over),
   * and re-reads the config file. An invalid file is refused and the config in force stays.
   */
  reload(): ConfigReloadOutcome;
  /** Graceful stop (see RelayApp.shutdown), then the adapters' connections are closed. */
  stop(drainTimeoutMs: number): Promise<{ drained: boolean; cut: number }>;
}

/** Wires the real adapters to the app and listens. */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const registry = new Registry();
  const metrics = getRelayMetrics(registry);
  // First, because with `store.type: redis` an unreachable Redis must stop start-up before anything listens.
  const storeMetrics = config.store.type === "redis" ? new StoreMetrics(registry) : undefined;
  const stores = await createDeliveryStores<RecordedAnswer>({
    config,
    logger,
    clock,
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(storeMetrics !== undefined ? { observer: storeMetrics } : {}),
    expiredResponse: lapsedLeaseAnswer,
  });
  storeMetrics?.setRoundTripsSource(() => stores.roundTrips);
  // One keep-alive pool for Entra and Graph: both live behind the same cloud endpoints' TLS trust.
  const dispatcher = createHttpsAgent(config.tls);
  const watcher = options.configPath !== undefined ? followConfigFile(options.configPath, config, logger, metrics.configReload.bind(metrics)) : undefined;
  const configSource: ConfigSource = watcher ?? fixedConfigSource(config);
  // One instance for the Graph sender and the app: a rejection remembered by one is seen by both.
  const tokenProvider = createRememberingTokenProvider(
    createEntraTokenProvider({
      config,
      observer: metrics,
      logger,
      dispatcher,
      clock,
      ...(options.env !== undefined ? { env: options.env } : {}),
    }),
    { holdMs: () => configSource.current().server.credentialFailureHoldSeconds * 1000, book: stores.rejections, clock },
  );
  const graphSender = createGraphMailSender({
    config,
    tokenProvider,
    observer: metrics,
    logger,
    dispatcher,
    clock,
    ...(options.permissionRecheckMs !== undefined ? { permissionRecheckMs: options.permissionRecheckMs } : {}),
    maxRetryAfterMs: () => configSource.current().server.maxRetryAfterSeconds * 1000,
  });
  // Read at each scrape, so a rotated token file applies without a restart.
  const metricsToken = (): string | undefined => readMetricsToken(configSource.current(), options.env ?? process.env);
  // An empty token would leave nothing to compare with: refused at start-up (later, it locks /metrics instead).
  if (metricsToken() === "") {
    await stores.close();
    watcher?.close();
    await dispatcher.close();
    throw new ConfigError(options.configPath ?? "(given)", [
      `metrics: ${config.metrics.tokenFile !== undefined ? `tokenFile ${config.metrics.tokenFile}` : `tokenEnv ${config.metrics.tokenEnv}`} is empty; put the bearer token there, or remove the key to leave /metrics open`,
    ]);
  }
  const relay = await createApp({
    configSource,
    tokenProvider,
    graphSender,
    registry,
    logger,
    clock,
    stores,
    routes: options.routes ?? optionalRoutes,
    metrics: { onApiPort: config.metrics.port === undefined, token: metricsToken },
  });
  let url: string;
  let metricsServer: Server | undefined;
  let smtp: SmtpDoor | undefined;
  try {
    url = await relay.listen(options.port, options.host);
    if (config.metrics.port !== undefined) metricsServer = await listenForMetrics(registry, metricsToken, config.metrics.port, options.host, config.server.http);
    // Loaded only when enabled: smtp-server and postal-mime cost ~40 ms of every start-up otherwise.
    if (config.smtp.enabled) smtp = await (await import("./smtp/smtp-door.js")).startSmtpDoor(smtpDeps(relay, config, options.host));
  } catch (err) {
    metricsServer?.close();
    await relay.shutdown(0);
    watcher?.close();
    await stores.close();
    throw err;
  }
  // Loaded once serving, so readiness does not wait for it; a send arriving first waits for it itself.
  tokenProvider.warmUp().catch((err: unknown) => logger.error({ err }, "could not load the identity library"));
  loadGraphClient().catch((err: unknown) => logger.error({ err }, "could not load the Microsoft Graph client"));
  // At start-up (once serving: it need not delay readiness) and daily, a log line for each
  // credential that expires within 30 days.
  const expiry = startExpiryWarnings({ config: () => configSource.current(), logger, clock });
  logger.info({ url, tenants: relay.tenants().size, store: config.store.type }, "noreply-relay listening");
  return {
    relay,
    url,
    ...(smtp !== undefined ? { smtp: smtp.ports } : {}),
    reload() {
      tokenProvider.forget();
      relay.clearThrottles();
      return watcher?.reload("signal") ?? "unchanged";
    },
    async stop(drainTimeoutMs) {
      expiry.stop();
      watcher?.close();
      const [result] = await Promise.all([relay.shutdown(drainTimeoutMs), smtp?.close()]);
      metricsServer?.close();
      // After the drain timeout, sends still at Graph are cut: closing the pool politely would wait for them.
      if (!result.drained) await dispatcher.destroy().catch(() => {});
      await Promise.allSettled([graphSender.close(), tokenProvider.close()]);
      await Promise.allSettled([dispatcher.close(), stores.close()]);
      return result;
    },
  };
}

/** The SMTP door over the same service as the HTTP app (its own listeners, the same send use case). */
function smtpDeps(relay: RelayApp, config: Config, host: string): Parameters<typeof startSmtpDoor>[0] {
  const { service } = relay;
  return {
    config: config.smtp,
    sendMail: service.sendMail,
    callers: service.callers,
    tenants: service.tenants,
    lifecycle: service.lifecycle,
    registry: service.registry,
    logger: service.logger,
    clock: service.clock,
    host,
    drainTimeoutMs: config.server.drainTimeoutSeconds * 1000,
  };
}

/**
 * The metrics bearer token from `metrics.tokenFile` / `metrics.tokenEnv`; undefined when neither
 * is configured (/metrics open). A configured but empty or unset token is "", which no request
 * matches: a Secret emptied by mistake locks /metrics rather than opening it.
 */
function readMetricsToken(config: Config, env: NodeJS.ProcessEnv): string | undefined {
  const { tokenFile, tokenEnv } = config.metrics;
  if (tokenFile !== undefined) return readFileSync(tokenFile, "utf8").trim();
  if (tokenEnv !== undefined) return env[tokenEnv]?.trim() ?? "";
  return undefined;
}

/**
 * `metrics.port`: GET /metrics on its own listener (same host), so scrapes and callers stay apart
 * (a NetworkPolicy can open one port to Prometheus only). Anything else there is a 404.
 */
function listenForMetrics(registry: Registry, token: () => string | undefined, port: number, host: string, limits: HttpLimitsConfig): Promise<Server> {
  // The same listener limits as the API port (header and request time, connection caps): only the port is Prometheus's.
  const server = createListener((req, res) => {
    const answer = (status: number, type: string, body: string): void => {
      res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if ((req.method !== "GET" && req.method !== "HEAD") || (req.url ?? "").split("?", 1)[0] !== "/metrics") {
      answer(404, "text/plain; charset=utf-8", "only GET /metrics is served here\n");
      return;
    }
    try {
      assertMetricsReader(req.headers.authorization, token());
    } catch {
      res.setHeader("www-authenticate", 'Bearer realm="noreply-relay metrics"');
      answer(401, "text/plain; charset=utf-8", "the metrics bearer token is required\n");
      return;
    }
    registry.metrics().then(
      (text) => answer(200, registry.contentType, text),
      () => answer(500, "text/plain; charset=utf-8", "metrics could not be collected\n"),
    );
  }, { limits, mayContinue: () => false });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.removeListener("error", reject);
      resolve(server);
    });
  });
}

/**
 * Follows the config file: valid changes reach the app's listeners; an invalid file is refused
 * (each bad key logged, the config in force stays); every reload is counted by outcome.
 */
function followConfigFile(path: string, initial: Config, logger: Logger, count: (outcome: ConfigReloadOutcome) => void): ConfigWatcher {
  const watcher = watchConfigFile({
    path,
    initial,
    watch: initial.server.watchConfig,
    onError: (err) =>
      logger.warn({ problems: err instanceof ConfigError ? err.problems : [err.message] }, "config reload refused; the previous config stays in force"),
    onOutcome: (outcome, trigger) => {
      count(outcome);
      logger.info({ outcome, trigger }, "config reload");
    },
  });
  watcher.subscribe((next, previous) => {
    const keys = restartRequiredChanges(previous, next);
    if (keys.length > 0) logger.warn({ keys }, "config reload: these settings change only after a restart");
    logger.info({ tenants: Object.keys(next.tenants).length, callers: Object.keys(next.callers).length }, "config reloaded");
  });
  return watcher;
}

/** SIGHUP: re-read the config file now (see RunningServer.reload). */
export function reloadOnHangup(server: RunningServer, logger: Logger): void {
  process.on("SIGHUP", () => {
    logger.info({ signal: "SIGHUP" }, "re-reading the config file");
    server.reload();
  });
}

/**
 * SIGTERM / SIGINT: readiness turns 503 and new sends are refused with a retryable 503
 * while the listener stays open (so probes see "not ready" rather than "refused"); sends in
 * flight finish within `server.drainTimeoutSeconds`; then the process exits 0. A second
 * signal exits at once with 1.
 */
export function stopOnSignals(server: RunningServer, logger: Logger, drainTimeoutSeconds: number): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting without waiting for sends in flight");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, inFlight: server.relay.lifecycle.inProgress, drainTimeoutSeconds }, "shutting down: finishing sends in flight");
    server.stop(drainTimeoutSeconds * 1000).then(
      ({ drained, cut }) => {
        if (drained) logger.info("stopped");
        else logger.warn({ inFlight: cut }, cut > 0 ? "stopped after the drain timeout; some sends were cut short" : "stopped after the drain timeout; connections were closed, no send was cut");
        logger.flush();
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "error while stopping");
        logger.flush();
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

/** PORT, HOST, LOG_LEVEL as the README ("Run it yourself") and docs/operations.md define them. */
export function listenSettings(env: NodeJS.ProcessEnv): { port: number; host: string; logLevel: string } {
  const rawPort = env.PORT ?? "8080";
  const port = Number(rawPort);
  if (!/^\d+$/.test(rawPort) || port > 65535) throw new ConfigError("from the environment", [`PORT: must be a TCP port number, got "${rawPort}"`]);
  const logLevel = env.LOG_LEVEL ?? "info";
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(logLevel)) {
    throw new ConfigError("from the environment", [`LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent; got "${logLevel}"`]);
  }
  return { port, host: env.HOST ?? "0.0.0.0", logLevel };
}

/**
 * V8 flags the process sets for itself before it serves, from NOREPLY_RELAY_V8_PRETENURING
 * (docs/configuration.md#environment): `off` (the default) turns off V8's allocation-site
 * pretenuring, `on` keeps V8's default.
 *
 * Why: under load V8 starts allocating some per-request objects directly in the old generation
 * (pretenuring, decided from how many survived while requests overlapped). They still die with
 * their request, but only a mark-compact collects them, and until then every young string they
 * point to, a 137 KB request body or attachment included, counts as alive at each scavenge and
 * is promoted. At 200 req/s with 20 % attachment mails that promoted 5.5–7.3 MB per scavenge and
 * made a mark-compact every few seconds; without pretenuring 0.4–0.6 MB, with the same CPU per
 * send (BENCHMARKS.md, docs/benchmarks-log.md "Fifth pass").
 */
export function v8Flags(env: NodeJS.ProcessEnv): string[] {
  // Unset or empty (as a chart may render it): the default.
  const value = env.NOREPLY_RELAY_V8_PRETENURING || "off";
  if (value === "on") return [];
  if (value === "off") return ["--no-allocation-site-pretenuring"];
  throw new ConfigError("from the environment", [`NOREPLY_RELAY_V8_PRETENURING: must be on or off, got "${value.slice(0, 40)}"`]);
}

/** The young generation every figure in BENCHMARKS.md was measured with (MiB per semi-space). */
export const SEMI_SPACE_MIB = 16;
/** What the image (`NODE_OPTIONS`) and the Helm chart (`nodeOptions`) pass to node. */
export const SEMI_SPACE_FLAG = `--max-semi-space-size=${SEMI_SPACE_MIB}`;
/** Below this much memory V8 gives Node 20 semi-spaces smaller than SEMI_SPACE_MIB. */
const FULL_YOUNG_GENERATION_BYTES = 4 * 1024 ** 3;

export interface HeapSetup {
  /** `process.execArgv`. */
  readonly execArgv: readonly string[];
  /** `NODE_OPTIONS`. */
  readonly nodeOptions: string | undefined;
  /** `process.constrainedMemory()`: the cgroup limit; 0 or more than the machine when there is none. */
  readonly constrainedMemory: number;
  /** `os.totalmem()`. */
  readonly totalMemory: number;
}

/**
 * A warning when V8 chose the young generation from a small memory limit: node was started
 * without `--max-semi-space-size` and has less than 4 GiB (container limit or machine). V8
 * sizes the semi-spaces from the memory it may use: 16 MiB from 4 GiB up, 8 at 2 GiB, 4 at
 * 1 GiB, 1 at 512 MiB (the chart's limit). At 1 MiB the service scavenged ten times as often,
 * promoted request data into mark-compacts, and spent ~2.2× the CPU per send
 * (docs/benchmarks-log.md "Sixth pass"). The flag cannot be set from inside the process: V8
 * sizes the heap before any JavaScript runs.
 */
export function youngGenerationWarning(setup: HeapSetup): { memoryMiB: number; msg: string } | undefined {
  const given = [...setup.execArgv, setup.nodeOptions ?? ""].join(" ");
  if (/(^|\s)--max[-_]semi[-_]space[-_]size([=\s]|$)/.test(given)) return undefined;
  const limit = setup.constrainedMemory > 0 && setup.constrainedMemory < setup.totalMemory ? setup.constrainedMemory : setup.totalMemory;
  if (limit >= FULL_YOUNG_GENERATION_BYTES) return undefined;
  const memoryMiB = Math.round(limit / 1024 ** 2);
  return {
    memoryMiB,
    msg:
      `node has ${memoryMiB} MiB of memory and no --max-semi-space-size: V8 sizes its young generation from that memory, ` +
      `smaller than the ${SEMI_SPACE_MIB} MiB semi-spaces the service is measured with (1 MiB at 512 MiB: about twice the CPU per send). ` +
      `Start node with NODE_OPTIONS=${SEMI_SPACE_FLAG}, as the image and the Helm chart do (docs/operations.md#heap)`,
  };
}

async function main(): Promise<void> {
  let settings: ReturnType<typeof listenSettings>;
  let config: Config;
  let path: string | undefined;
  let flags: string[];
  try {
    flags = v8Flags(process.env);
    // Before the config is read: V8 takes its pretenuring decisions at every GC from then on.
    for (const flag of flags) setFlagsFromString(flag);
    settings = listenSettings(process.env);
    path = process.env.NOREPLY_RELAY_CONFIG;
    if (path === undefined || path === "") throw new ConfigError("from the environment", ["NOREPLY_RELAY_CONFIG: set it to the path of the YAML or JSON config file"]);
    config = loadConfigFile(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`noreply-relay: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  const logger = pino({ level: settings.logLevel, base: { service: "noreply-relay" } });
  if (flags.length > 0) logger.info({ v8Flags: flags }, "V8 tuning applied (NOREPLY_RELAY_V8_PRETENURING=on keeps V8's defaults)");
  const young = youngGenerationWarning({ execArgv: process.execArgv, nodeOptions: process.env.NODE_OPTIONS, constrainedMemory: process.constrainedMemory(), totalMemory: totalmem() });
  if (young) logger.warn({ memoryMiB: young.memoryMiB }, young.msg);
  // Secret and key files others can read: a warning per file (it starts anyway).
  warnOpenSecretFiles(config, logger);
  const server = await startServer({ config, logger, port: settings.port, host: settings.host, configPath: path });
  stopOnSignals(server, logger, config.server.drainTimeoutSeconds);
  reloadOnHangup(server, logger);
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((err: unknown) => {
    console.error("noreply-relay: failed to start:", err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
