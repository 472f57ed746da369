import type { NextFunction, Request, Response } from "express";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { ConfigSource } from "../config/config-source.js";
import type { Clock, TokenProvider } from "../core/ports.js";
import type { OnceBook } from "../delivery/once-book.js";
import type { TenantView } from "../delivery/tenant-status.js";
import type { CallerDirectory } from "../tenants/caller-directory.js";
import type { TenantDirectory } from "../tenants/tenant-directory.js";

/** A route handler: answers through `res`, throws (or rejects with) a RelayError to refuse, calls next() to fall through to 404. */
export type RouteHandler = (req: Request, res: Response, next: NextFunction) => void | Promise<void>;

/**
 * Where route modules declare their routes. The app records each path's methods (for 405 with
 * `Allow`) and its pattern (the `route` label of the HTTP metrics), and gives every route the
 * same request ids, problem rendering and log line.
 */
export interface RouteTable {
  get(path: string, handler: RouteHandler): void;
  post(path: string, handler: RouteHandler): void;
}

/** What a route module gets besides the table: read-only views of the service's state. */
export interface RouteContext {
  readonly configSource: ConfigSource;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly clock: Clock;
  readonly tokenProvider: TokenProvider;
  /** The current tenants (a new directory after each config reload). */
  readonly tenants: () => TenantDirectory;
  /** The current callers, to authenticate an API key. */
  readonly callers: () => CallerDirectory;
  /** Every configured tenant's configuration and live state, in config order (the GET /tenants rows). */
  readonly tenantStatus: () => Promise<TenantView[]>;
  /** Ids usable once (admin-consent states): the service's stores.once, shared by replicas with the Redis store. */
  readonly once: OnceBook;
}

/**
 * A module of routes owned by another capability (API docs, admin consent, /tenants).
 * createApp registers each after the core routes, so errors become problem+json, requests get
 * ids, log lines and http metrics like any other. Throw a RelayError for a refusal; answer
 * however the route needs otherwise.
 */
export type RouteRegistrar = (routes: RouteTable, ctx: RouteContext) => void | Promise<void>;
