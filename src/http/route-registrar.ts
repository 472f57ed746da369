import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { TenantView } from "../delivery/tenant-status.js";
import type { Clock, TokenProvider } from "../core/ports.js";
import type { CallerDirectory } from "../tenants/caller-directory.js";
import type { ConfigSource } from "../config/config-source.js";
import type { TenantDirectory } from "../tenants/tenant-directory.js";

/** What a route module gets besides the app: read-only views of the service's state. */
export interface RouteContext {
  readonly configSource: ConfigSource;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly tokenProvider: TokenProvider;
  /** The current tenants (a new directory after each config reload). */
  readonly tenants: () => TenantDirectory;
  /** The current callers, to authenticate an API key (`authenticate(key)`). */
  readonly callers: () => CallerDirectory;
  /** Every configured tenant's configuration and live state, in config order (the GET /tenants rows). */
  readonly tenantStatus: () => Promise<TenantView[]>;
}

/**
 * A module of routes owned by another capability (API docs, admin consent, /tenants).
 * createApp registers each after the core routes, inside the same Fastify instance, so
 * errors become problem+json, requests get ids, log lines and http metrics like any other.
 * Throw a RelayError for a refusal; reply however the route needs otherwise.
 */
export type RouteRegistrar = (app: FastifyInstance, ctx: RouteContext) => void | Promise<void>;
