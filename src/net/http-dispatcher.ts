import { readFileSync } from "node:fs";
import { createSecureContext, rootCertificates } from "node:tls";
import { Agent, buildConnector } from "undici";
import type { Config } from "../config/schema.js";

/** How the outgoing HTTPS connections to Entra ID and Graph are pooled. */
export interface HttpsAgentOptions {
  /** Connections per origin; sends beyond this wait in undici's queue. */
  readonly connections?: number;
  /** How long an idle keep-alive connection is kept (ms). */
  readonly keepAliveTimeoutMs?: number;
  /** TCP + TLS handshake limit (ms). */
  readonly connectTimeoutMs?: number;
}

/**
 * An undici Agent with keep-alive that trusts the public roots plus `tls.caFile`.
 *
 * The CA is read here, once (an unreadable file fails now), and baked into one SecureContext:
 * passing `ca` per connection would make Node parse ~150 root certificates on every TLS
 * handshake. That parse (~30 ms) waits for the first connection, so start-up does not pay it.
 * NODE_EXTRA_CA_CERTS is deliberately not used so that trust is part of the config, not of the
 * process environment.
 */
export function createHttpsAgent(tls: Config["tls"], options: HttpsAgentOptions = {}): Agent {
  const timeout = options.connectTimeoutMs ?? 10_000;
  let connect: buildConnector.BuildOptions | buildConnector.connector = { timeout };
  if (tls.caFile !== undefined) {
    const extra = readFileSync(tls.caFile, "utf8");
    let connector: buildConnector.connector | undefined;
    connect = (opts, callback) => {
      connector ??= buildConnector({ timeout, secureContext: createSecureContext({ ca: [...rootCertificates, extra] }) });
      return connector(opts, callback);
    };
  }
  return new Agent({
    connections: options.connections ?? 256,
    // Short idle time (undici's default): reusing a socket the server is about to close turns a
    // POST into "written, then reset", i.e. outcome_unknown. Busy connections stay open anyway.
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 4_000,
    keepAliveMaxTimeout: 120_000,
    // One request per connection at a time: pipelining a POST that is not idempotent would
    // make a reset on one connection ambiguous for every request queued behind it.
    pipelining: 1,
    connect,
  });
}
