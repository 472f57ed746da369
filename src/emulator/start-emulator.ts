import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { parse as parseYamlDocument } from "yaml";
import { createTlsMaterial } from "./certificates.js";
import { Directory } from "./directory.js";
import { EntraService } from "./entra.js";
import { entraError, entraErrors } from "./entra-errors.js";
import { FaultRegistry, type FaultContext, type FaultHandle, type FaultInfo, type FaultInput, type RequestKind } from "./faults.js";
import {
  authorizeSendMail,
  GRAPH_MAX_REQUEST_BYTES,
  graphErrorBody,
  graphErrors,
  maySendAs,
  parseSendMail,
  serverError,
  type GraphError,
  type SendMailAuthorization,
} from "./graph.js";
import { BodyTooLargeError, readBody, send, sleep } from "./http-io.js";
import {
  MessageStore,
  renderMessagesPage,
  RequestLog,
  type MailboxConcurrency,
  type MessageFilter,
  type RequestFilter,
  type RequestLogEntry,
  type StoredMessage,
} from "./inspection.js";
import {
  latencySchema,
  mergeScenarioInput,
  parseScenario,
  ScenarioError,
  throttlingSchema,
  type LatencyConfig,
  type Scenario,
  type ScenarioInput,
  type ThrottlingConfig,
} from "./scenario.js";
import { Throttle } from "./throttle.js";

/** Options of `startEmulator`. Values given here override the scenario's. */
export interface EmulatorOptions {
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Listen address, default 127.0.0.1. */
  host?: string;
  /** Scenario object, or path of a YAML/JSON scenario file. Default: empty directory. */
  scenario?: ScenarioInput | string;
  latency?: Partial<LatencyConfig>;
  /** `false` turns throttling off (what the benchmark uses). */
  throttling?: Partial<ThrottlingConfig> | false;
  tokenLifetimeSeconds?: number;
  /** Stored messages kept (oldest dropped first). Default 10,000. */
  maxMessages?: number;
  /** Request log entries kept. Default 10,000. */
  maxRequests?: number;
  /** Keep raw request bodies and attachment contents of stored messages. Default true. */
  keepRaw?: boolean;
  /** Budget for raw bodies + attachment contents; oldest messages lose theirs first. Default 64 MiB. */
  maxRetainedBytes?: number;
  /** Extra DNS names / IPs for the server certificate (localhost, 127.0.0.1 and ::1 are always in). */
  hostnames?: string[];
}

/** Mints the access token the token endpoint would issue, bypassing credential checks (tests only). */
export interface MintAccessTokenOptions {
  tenantId: string;
  appId: string;
  /** Default: the roles consented in the scenario. */
  roles?: string[];
  lifetimeSeconds?: number;
  /** Extra or replacement claims; `undefined` removes a claim. */
  claims?: Record<string, unknown>;
}

/** Programmatic control of a running emulator (the same things `/_emulator/*` offers over HTTP). */
export interface EmulatorState {
  readonly url: string;
  /** The active scenario (validated, defaults applied, option overrides applied). */
  readonly scenario: Scenario;
  /** Issuer URL of the emulator's own OIDC provider (`issuer: emulator` in scenarios). */
  readonly oidcIssuer: string;
  /** Replaces the scenario. A string is a YAML/JSON file path. Throws ScenarioError. */
  loadScenario(input: ScenarioInput | string): Scenario;
  /** Merges into the scenario: top-level keys replace; tenants (by id) and apps (by clientId) replace or append. */
  patchScenario(patch: ScenarioInput): Scenario;
  messages(filter?: MessageFilter): StoredMessage[];
  requests(filter?: RequestFilter): RequestLogEntry[];
  /** sendMail requests at once per (app, mailbox): in flight now, peak, MailboxConcurrency 429s; `mailbox` = address, alias or id. */
  concurrency(filter?: { mailbox?: string }): MailboxConcurrency[];
  inject(fault: FaultInput): FaultHandle;
  faults(): FaultInfo[];
  clearFaults(): void;
  /** Overrides the global latency until `reset({ reloadScenario: true })`; `null` removes the override. */
  setLatency(latency: Partial<LatencyConfig> | null): void;
  /** Overrides throttling (`false` = off); `null` removes the override. */
  setThrottling(throttling: Partial<ThrottlingConfig> | false | null): void;
  /** Clears messages, requests, faults and concurrency peaks; with `reloadScenario` also reloads the original scenario and drops overrides. */
  reset(options?: { reloadScenario?: boolean }): void;
  /** A token from the emulator's OIDC issuer, for `ClientAssertionCredential` (workload identity). */
  mintFederatedToken(options: { subject: string; audience?: string; lifetimeSeconds?: number }): Promise<string>;
  mintAccessToken(options: MintAccessTokenOptions): Promise<string>;
}

/** A running emulator. */
export interface Emulator {
  /** Base URL, e.g. `https://127.0.0.1:54321` (use as `authorityHost` and Graph `baseUrl`). */
  url: string;
  /** PEM of the CA that signed the server certificate: trust this in clients. */
  caPem: string;
  state: EmulatorState;
  /** Stops listening, drops kept-alive and hanging connections. */
  close(): Promise<void>;
}

const ENTRA_HEADERS = { "Cache-Control": "no-store, no-cache", Pragma: "no-cache", "Content-Type": "application/json; charset=utf-8" };
const MAX_FORM_BYTES = 1024 * 1024;
const MAX_CONTROL_BYTES = 16 * 1024 * 1024;

/** One request in flight: what the log line and fault matching need. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  clientRequestId: string;
  log: RequestLogEntry;
  faultCtx: FaultContext;
}

/** Entra's default access-token lifetime: random from 60 to 90 minutes (see scenario.ts). */
function entraDefaultLifetimeSeconds(): number {
  return 3600 + Math.floor(Math.random() * 1801);
}

function disabledThrottling(): ThrottlingConfig {
  return { mailboxConcurrency: 0, requestsPerWindow: 0, windowSeconds: 600, recipientsPerDay: 0, uploadBytesPerWindow: 0, uploadWindowSeconds: 300 };
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Reads `appid` from a bearer token without verifying it: fault matching only, never authorization. */
function peekAppId(authorization: string | undefined): string | undefined {
  const token = authorization?.replace(/^Bearer\s+/i, "");
  const payload = token?.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { appid?: unknown };
    return typeof claims.appid === "string" ? claims.appid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts the Microsoft 365 emulator: Entra ID (discovery, JWKS, client-credentials tokens)
 * and Graph sendMail over HTTPS with a freshly generated CA, plus the `/_emulator/` control
 * and inspection API. Standalone: it imports nothing from the service.
 *
 * Trusting its CA (NODE_EXTRA_CA_CERTS only works at process start), see src/emulator/README.md:
 * - @azure/identity: `{ authorityHost: emu.url, disableInstanceDiscovery: true, agent: new https.Agent({ ca: emu.caPem }) }`
 * - Graph client: `{ baseUrl: emu.url, customHosts: new Set([new URL(emu.url).hostname]),
 *   fetchOptions: { dispatcher: new undici.Agent({ connect: { ca: emu.caPem } }) } }`
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? "127.0.0.1";
  const [tls, entra] = await Promise.all([createTlsMaterial([host, ...(options.hostnames ?? [])]), EntraService.create()]);

  const optionThrottling = options.throttling;
  function applyOptions(s: Scenario): Scenario {
    return {
      ...s,
      ...(options.tokenLifetimeSeconds !== undefined ? { tokenLifetimeSeconds: options.tokenLifetimeSeconds } : {}),
      ...(options.latency !== undefined ? { latency: latencySchema.parse({ ...s.latency, ...options.latency }) } : {}),
      ...(optionThrottling === false
        ? { throttling: disabledThrottling() }
        : optionThrottling !== undefined
          ? { throttling: throttlingSchema.parse({ ...s.throttling, ...optionThrottling }) }
          : {}),
    };
  }

  function readScenarioInput(input: ScenarioInput | string | undefined): ScenarioInput {
    if (input === undefined) return {};
    if (typeof input !== "string") return input;
    // Kept as the raw document (not the parsed scenario) because PATCH merges into it.
    let doc: unknown;
    try {
      doc = parseYamlDocument(readFileSync(input, "utf8"));
    } catch (e) {
      throw new ScenarioError(`cannot read scenario ${input}: ${(e as Error).message}`);
    }
    return (doc ?? {});
  }

  let scenarioInput: ScenarioInput = readScenarioInput(options.scenario);
  let scenario = applyOptions(parseScenario(scenarioInput));
  let dir = new Directory(scenario);
  let latencyOverride: LatencyConfig | undefined;
  let throttleOverride: ThrottlingConfig | undefined;

  const faults = new FaultRegistry();
  const store = new MessageStore(options.maxMessages ?? 10_000, options.keepRaw ?? true, options.maxRetainedBytes ?? 64 * 1024 * 1024);
  const requestLog = new RequestLog(options.maxRequests ?? 10_000);
  const throttle = new Throttle(() => throttleOverride ?? scenario.throttling);
  const hanging = new Set<ServerResponse>();

  function useScenario(input: ScenarioInput): Scenario {
    const parsed = applyOptions(parseScenario(input));
    scenarioInput = input;
    scenario = parsed;
    dir = new Directory(parsed);
    return parsed;
  }

  function latencyMs(): number {
    const l = latencyOverride ?? scenario.latency;
    return l.fixedMs + (l.jitterMs > 0 ? Math.random() * l.jitterMs : 0);
  }

  // ---- request plumbing -------------------------------------------------------------------

  function startExchange(req: IncomingMessage, res: ServerResponse, kind: RequestKind, path: string): Exchange {
    const requestId = randomUUID();
    const crid = req.headers["client-request-id"];
    const clientRequestId = typeof crid === "string" && crid !== "" ? crid : requestId;
    const started = performance.now();
    const log: RequestLogEntry = {
      id: requestId,
      at: new Date().toISOString(),
      method: req.method ?? "GET",
      path,
      kind,
      status: 0,
      outcome: "answered",
      durationMs: 0,
    };
    res.once("close", () => {
      hanging.delete(res);
      log.durationMs = Math.round((performance.now() - started) * 100) / 100;
      if (log.outcome === "answered") {
        if (res.writableFinished) log.status = res.statusCode;
        else log.outcome = "aborted";
      }
      requestLog.add(log);
    });
    return { req, res, requestId, clientRequestId, log, faultCtx: { kind, tenantKeys: [], mailboxKeys: [] } };
  }

  function reset(x: Exchange): void {
    x.log.outcome = "reset";
    x.req.socket.destroy();
  }

  function hang(x: Exchange): void {
    x.log.outcome = "hang";
    hanging.add(x.res);
  }

  function graphHeaders(x: Exchange, extra: Record<string, string> = {}): Record<string, string> {
    return { "request-id": x.requestId, "client-request-id": x.clientRequestId, ...extra };
  }

  function sendGraphError(x: Exchange, e: GraphError, extra: Record<string, string> = {}): void {
    x.log.errorCode = e.code;
    // Graph's 401s name the authority and Graph's app id in WWW-Authenticate (shown in
    // https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/extract-authentication-parameters);
    // the authority here is the emulator, so a client that follows it stays local.
    const challenge: Record<string, string> =
      e.status === 401 ? { "WWW-Authenticate": `Bearer realm="", authorization_uri="${url}/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"` } : {};
    send(x.res, e.status, graphErrorBody(e, x.requestId, x.clientRequestId), graphHeaders(x, { ...challenge, ...e.headers, ...extra }));
  }

  /** Answers with an injected `respond` (or the final answer of `acceptThen504`). */
  function sendFaultAnswer(x: Exchange, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const isGraph = x.log.kind === "sendMail";
    let payload = body;
    if (payload === undefined) {
      const text = STATUS_CODES[status] ?? "Error";
      if (isGraph && status >= 500) {
        const e = serverError(status);
        x.log.errorCode = e.code;
        payload = graphErrorBody({ ...e, status }, x.requestId, x.clientRequestId);
      } else if (isGraph) payload = graphErrorBody({ status, code: text.replace(/[^A-Za-z]/g, ""), message: text }, x.requestId, x.clientRequestId);
      else if (status === 429 || status >= 500) {
        // Entra's own outage body (with its AADSTS code), so a client is tested against what Entra
        // really sends on a bad day: see entraErrors.transient / entraErrors.throttled.
        const e = entraError(status === 429 ? entraErrors.throttled : entraErrors.transient, {}, x.clientRequestId);
        x.log.errorCode = `AADSTS${e.body.error_codes[0]}`;
        payload = e.body;
      } else payload = status >= 400 ? { error: "invalid_request", error_description: text } : {};
    }
    const base: Record<string, string> = isGraph ? graphHeaders(x) : { "client-request-id": x.clientRequestId };
    const contentType = typeof payload === "string" ? "text/plain; charset=utf-8" : "application/json";
    send(x.res, status, payload, { ...base, ...headers }, contentType);
  }

  /** Applies an answering fault (not latency, not acceptThen504). Returns true if the request is done. */
  async function applyFault(x: Exchange, f: FaultInfo | undefined, delay: number): Promise<boolean> {
    if (f === undefined || f.spec.action === "latency" || f.spec.action === "acceptThen504") return false;
    x.log.faultId = f.id;
    const spec = f.spec;
    if (spec.action === "reset") {
      reset(x);
      return true;
    }
    if (spec.action === "hang") {
      hang(x);
      return true;
    }
    await sleep(delay);
    const headers = { ...(spec.headers ?? {}) };
    if (spec.retryAfter !== undefined) headers["Retry-After"] = String(spec.retryAfter);
    if (spec.graphError !== undefined) {
      const e = namedGraphError(spec.graphError);
      sendGraphError(x, { ...e, status: spec.status ?? e.status }, headers);
      return true;
    }
    sendFaultAnswer(x, spec.status ?? 500, spec.body, headers);
    return true;
  }

  /** A fault whose `graphError` names a catalogued refusal (checked now, not at the first match). */
  function checkedFault(fault: FaultInput): FaultInput {
    const name = (fault as { graphError?: unknown }).graphError;
    if (typeof name === "string") namedGraphError(name);
    return fault;
  }

  function namedGraphError(name: string): GraphError {
    const e = (graphErrors as Record<string, unknown>)[name];
    if (typeof e !== "object" || e === null) throw new ScenarioError(`unknown graphError "${name}"`);
    return e as GraphError;
  }

  function tenantKeys(segment: string): string[] {
    const t = dir.tenant(segment);
    return [segment, ...(t === undefined ? [] : [t.id, ...t.domains])].map((k) => k.toLowerCase());
  }

  // ---- Entra -----------------------------------------------------------------------------

  async function handleDiscovery(x: Exchange, tenantSegment: string | undefined, what: "openid" | "instance" | "jwks", query: URLSearchParams): Promise<void> {
    if (tenantSegment !== undefined) {
      x.faultCtx.tenantKeys = tenantKeys(tenantSegment);
      const t = dir.tenant(tenantSegment);
      x.log.tenant = t?.id ?? tenantSegment;
    }
    const delay = latencyMs() + (faults.size > 0 ? faults.takeLatency(x.faultCtx) : 0);
    const fault = faults.size > 0 ? (faults.takeAction(x.faultCtx, "beforeBody") ?? faults.takeAction(x.faultCtx, "afterBody")) : undefined;
    if (await applyFault(x, fault, delay)) return;
    await sleep(delay);
    const headers = { ...ENTRA_HEADERS, "client-request-id": x.clientRequestId };
    let status = 200;
    let body: unknown;
    if (what === "instance") body = entra.instanceDiscovery(query.get("authorization_endpoint"));
    else if (what === "jwks") body = entra.jwks();
    else {
      const seg = tenantSegment ?? "common";
      const tenant = dir.tenant(seg);
      if (tenant === undefined && !EntraService.isTenantAlias(seg)) {
        // Entra answers discovery of an unknown tenant with the AADSTS90002 body (MSAL then hides it).
        const e = entraError(entraErrors.tenantNotFoundDiscovery, { tenant: seg }, x.clientRequestId);
        x.log.errorCode = "AADSTS90002";
        status = e.status;
        body = e.body;
      } else {
        body = entra.openIdConfiguration(seg, tenant);
      }
    }
    if (fault?.spec.action === "acceptThen504") {
      x.log.faultId = fault.id;
      sendFaultAnswer(x, fault.spec.status, fault.spec.body);
      return;
    }
    send(x.res, status, body, headers);
  }

  async function handleToken(x: Exchange, tenantSegment: string): Promise<void> {
    x.faultCtx.tenantKeys = tenantKeys(tenantSegment);
    x.log.tenant = dir.tenant(tenantSegment)?.id ?? tenantSegment;
    if (faults.size > 0 && (await applyFault(x, faults.takeAction(x.faultCtx, "beforeBody"), 0))) return;
    let raw: Buffer;
    try {
      raw = await readBody(x.req, MAX_FORM_BYTES);
    } catch (e) {
      if (e instanceof BodyTooLargeError) send(x.res, 413, { error: "invalid_request", error_description: "Request too large." }, ENTRA_HEADERS);
      else x.res.destroy();
      return;
    }
    const form = new URLSearchParams(raw.toString("utf8"));
    const clientId = form.get("client_id") ?? undefined;
    if (clientId !== undefined) x.log.clientId = clientId;
    x.faultCtx.clientId = clientId;
    const delay = latencyMs() + (faults.size > 0 ? faults.takeLatency(x.faultCtx) : 0);
    const fault = faults.size > 0 ? faults.takeAction(x.faultCtx, "afterBody") : undefined;
    if (await applyFault(x, fault, delay)) return;
    await sleep(delay);
    const authorization = x.req.headers.authorization;
    const result = await entra.token(dir, tenantSegment, form, {
      ...(authorization !== undefined ? { authorization } : {}),
      correlationId: x.clientRequestId,
      tokenLifetimeSeconds: scenario.tokenLifetimeSeconds ?? entraDefaultLifetimeSeconds(),
    });
    if (result.clientId !== undefined) x.log.clientId = result.clientId;
    if (result.errorCode !== undefined) x.log.errorCode = result.errorCode;
    if (fault?.spec.action === "acceptThen504") {
      x.log.faultId = fault.id;
      sendFaultAnswer(x, fault.spec.status, fault.spec.body);
      return;
    }
    const traceId = "trace_id" in result.body ? String(result.body.trace_id) : x.requestId;
    send(x.res, result.status, result.body, { ...ENTRA_HEADERS, "client-request-id": x.clientRequestId, "x-ms-request-id": traceId });
  }

  // ---- Graph -----------------------------------------------------------------------------

  async function handleSendMail(x: Exchange, userSegment: string): Promise<void> {
    const entry = dir.mailbox(userSegment);
    x.log.mailbox = entry?.mailbox.address ?? userSegment;
    if (entry !== undefined) x.log.tenant = entry.tenant.id;
    if (faults.size > 0) {
      const m = entry?.mailbox;
      x.faultCtx.mailboxKeys = [userSegment, ...(m === undefined ? [] : [m.address, m.id, ...m.aliases])].map((k) => k.toLowerCase());
      x.faultCtx.tenantKeys = entry === undefined ? [] : [entry.tenant.id, ...entry.tenant.domains].map((k) => k.toLowerCase());
      x.faultCtx.clientId = peekAppId(x.req.headers.authorization);
      if (await applyFault(x, faults.takeAction(x.faultCtx, "beforeBody"), 0)) return;
    }

    let body: Buffer;
    try {
      body = await readBody(x.req, GRAPH_MAX_REQUEST_BYTES);
    } catch (e) {
      if (e instanceof BodyTooLargeError) sendGraphError(x, graphErrors.tooLarge);
      else x.res.destroy();
      return;
    }

    const delay = latencyMs() + (faults.size > 0 ? faults.takeLatency(x.faultCtx) : 0);
    const fault = faults.size > 0 ? faults.takeAction(x.faultCtx, "afterBody") : undefined;
    if (await applyFault(x, fault, delay)) return;

    const authz = await authorizeSendMail(dir, entra, userSegment, x.req.headers.authorization);
    const claims = authz.ok ? authz.auth.claims : authz.claims;
    if (claims !== undefined) {
      x.log.clientId = claims.appid;
      x.log.tenant ??= claims.tid;
    }
    if (!authz.ok) {
      await sleep(delay);
      sendGraphError(x, authz.error);
      return;
    }
    const { auth } = authz;

    const slot = throttle.tryAcquire(auth.claims.appid, auth.entry.mailbox.id, body.length);
    if (!slot.ok) {
      const byReason = { concurrency: graphErrors.mailboxConcurrency, rate: graphErrors.tooManyRequests, incomingBytes: graphErrors.incomingBytes };
      sendGraphError(x, byReason[slot.reason], { "Retry-After": String(slot.retryAfterSeconds) });
      return;
    }
    // Held until Exchange is done with the request, not until the client hangs up: a client that
    // gave up (a timeout) and retries meets its own earlier request still in the slot, as in
    // https://learn.microsoft.com/en-us/answers/questions/2286986/sending-emails-with-the-graph-java-sdk-fails-with
    // (after four 504s the fifth try got 429: "the other four attempts are still active").
    // Released as soon as the answer is written, not when the socket reports it flushed: the
    // client may act on the answer (and send the next request) before this process sees that.
    try {
      await processSendMail(x, body, auth, fault, delay);
    } finally {
      slot.release();
    }
  }

  async function processSendMail(x: Exchange, body: Buffer, auth: SendMailAuthorization, fault: FaultInfo | undefined, delay: number): Promise<void> {
    await sleep(delay);

    const parsed = await parseSendMail(body, x.req.headers["content-type"], auth, x.requestId);
    if (!parsed.ok) {
      sendGraphError(x, parsed.error);
      return;
    }
    const m = parsed.message;
    if (!maySendAs(auth.entry, m.from?.address)) {
      sendGraphError(x, graphErrors.sendAsDenied);
      return;
    }
    if (!throttle.trySubmit(auth.entry.mailbox.id, m.toRecipients.length + m.ccRecipients.length + m.bccRecipients.length)) {
      sendGraphError(x, graphErrors.submissionQuota);
      return;
    }
    store.add(parsed.message);
    if (fault?.spec.action === "acceptThen504") {
      // Stored, then failed: the copy goes out although the client sees 5xx (the 4 copies after
      // 504s in https://learn.microsoft.com/en-us/answers/questions/2286986/sending-emails-with-the-graph-java-sdk-fails-with).
      x.log.faultId = fault.id;
      if (fault.spec.body !== undefined) sendFaultAnswer(x, fault.spec.status, fault.spec.body);
      else sendGraphError(x, { ...serverError(fault.spec.status), status: fault.spec.status });
      return;
    }
    send(x.res, 202, undefined, graphHeaders(x));
  }

  // ---- control API ----------------------------------------------------------------------

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const raw = (await readBody(req, MAX_CONTROL_BYTES)).toString("utf8");
    if (raw.trim() === "") return undefined;
    const type = (req.headers["content-type"] ?? "").toLowerCase();
    if (type.includes("yaml")) return parseYamlDocument(raw);
    return JSON.parse(raw) as unknown;
  }

  function messageFilter(q: URLSearchParams): MessageFilter {
    const f: MessageFilter = {};
    for (const k of ["sender", "recipient", "subject", "tenant", "mailbox", "appId", "requestId"] as const) {
      const v = q.get(k);
      if (v !== null && v !== "") f[k] = v;
    }
    return f;
  }

  function limitOf(q: URLSearchParams): number {
    const n = Number(q.get("limit") ?? "");
    return Number.isInteger(n) && n > 0 ? n : Number.MAX_SAFE_INTEGER;
  }

  function withoutContent(m: StoredMessage): StoredMessage {
    const { raw: _raw, ...rest } = m;
    return { ...rest, attachments: m.attachments.map(({ contentBytes: _c, ...a }) => a) };
  }

  function requestFilter(q: URLSearchParams): RequestFilter {
    const f: RequestFilter = {};
    const kind = q.get("kind");
    if (kind !== null && kind !== "") f.kind = kind as RequestKind;
    const status = q.get("status");
    if (status !== null && status !== "") f.status = Number(status);
    const outcome = q.get("outcome");
    if (outcome !== null && outcome !== "") f.outcome = outcome as RequestLogEntry["outcome"];
    for (const k of ["tenant", "clientId", "mailbox"] as const) {
      const v = q.get(k);
      if (v !== null && v !== "") f[k] = v;
    }
    return f;
  }

  async function handleControl(req: IncomingMessage, res: ServerResponse, segs: string[], query: URLSearchParams): Promise<void> {
    const method = req.method ?? "GET";
    const route = segs.join("/");
    const json = (status: number, body: unknown) => send(res, status, body, { "Cache-Control": "no-store" });
    try {
      if (route === "" && method === "GET") {
        send(res, 200, renderMessagesPage(state.messages().slice(-1000)), { "Cache-Control": "no-store" }, "text/html; charset=utf-8");
      } else if (route === "health") {
        json(200, { ok: true, url: state.url });
      } else if (route === "ca.pem") {
        send(res, 200, tls.caPem, {}, "application/x-pem-file");
      } else if (route === "messages" && method === "GET") {
        // `limit` keeps the newest N; `raw=false` leaves out raw bodies and attachment contents.
        const all = state.messages(messageFilter(query));
        const limited = all.slice(-limitOf(query));
        const value = query.get("raw") === "false" ? limited.map(withoutContent) : limited;
        json(200, { count: all.length, value });
      } else if (route === "messages" && method === "DELETE") {
        store.clear();
        json(200, { ok: true });
      } else if (route === "requests" && method === "GET") {
        const all = state.requests(requestFilter(query));
        json(200, { count: all.length, value: all.slice(-limitOf(query)) });
      } else if (route === "concurrency" && method === "GET") {
        const mailbox = query.get("mailbox");
        json(200, { value: state.concurrency(mailbox !== null && mailbox !== "" ? { mailbox } : {}) });
      } else if (route === "requests" && method === "DELETE") {
        requestLog.clear();
        json(200, { ok: true });
      } else if (route === "reset" && method === "POST") {
        const body = (await readJson(req)) as { reloadScenario?: unknown } | undefined;
        state.reset({ reloadScenario: body?.reloadScenario === true || query.get("reloadScenario") === "true" });
        json(200, { ok: true });
      } else if (route === "faults" && method === "GET") {
        json(200, { value: faults.list() });
      } else if (route === "faults" && method === "POST") {
        const body = await readJson(req);
        const list = Array.isArray(body) ? body : [body];
        const handles = list.map((f) => faults.add(checkedFault(f as FaultInput)));
        const byId = new Map(faults.list().map((f) => [f.id, f]));
        json(201, Array.isArray(body) ? { value: handles.map((h) => byId.get(h.id)) } : byId.get(handles[0]!.id));
      } else if (route === "faults" && method === "DELETE") {
        faults.clear();
        json(200, { ok: true });
      } else if (segs[0] === "faults" && segs.length === 2 && method === "DELETE") {
        json(faults.remove(segs[1]!) ? 200 : 404, { ok: true });
      } else if (route === "latency" && method === "GET") {
        json(200, latencyOverride ?? scenario.latency);
      } else if (route === "latency" && method === "PUT") {
        state.setLatency((await readJson(req)) as Partial<LatencyConfig> | null);
        json(200, latencyOverride ?? scenario.latency);
      } else if (route === "throttling" && method === "GET") {
        json(200, throttleOverride ?? scenario.throttling);
      } else if (route === "throttling" && method === "PUT") {
        state.setThrottling((await readJson(req)) as Partial<ThrottlingConfig> | false | null);
        json(200, throttleOverride ?? scenario.throttling);
      } else if (route === "scenario" && method === "GET") {
        json(200, scenarioInput);
      } else if (route === "scenario" && method === "PUT") {
        state.loadScenario(((await readJson(req)) ?? {}));
        json(200, scenarioInput);
      } else if (route === "scenario" && method === "PATCH") {
        state.patchScenario(((await readJson(req)) ?? {}));
        json(200, scenarioInput);
      } else if (route === "oidc/.well-known/openid-configuration") {
        json(200, entra.oidcConfiguration());
      } else if (route === "oidc/jwks") {
        json(200, await entra.oidcJwks());
      } else if (route === "oidc/token" && method === "POST") {
        const body = ((await readJson(req)) ?? {}) as { subject?: unknown; audience?: unknown; lifetimeSeconds?: unknown };
        if (typeof body.subject !== "string") throw new ScenarioError("`subject` (string) is required");
        const token = await state.mintFederatedToken({
          subject: body.subject,
          ...(typeof body.audience === "string" ? { audience: body.audience } : {}),
          ...(typeof body.lifetimeSeconds === "number" ? { lifetimeSeconds: body.lifetimeSeconds } : {}),
        });
        json(200, { token });
      } else if (route === "tokens" && method === "POST") {
        const body = ((await readJson(req)) ?? {}) as MintAccessTokenOptions;
        if (typeof body.tenantId !== "string" || typeof body.appId !== "string") throw new ScenarioError("`tenantId` and `appId` are required");
        json(200, { access_token: await state.mintAccessToken(body) });
      } else {
        json(404, { error: "not_found", message: `no control endpoint ${method} /_emulator/${route}` });
      }
    } catch (e) {
      const issues = e instanceof ScenarioError ? e.issues : (e as { issues?: unknown }).issues;
      json(400, { error: "bad_request", message: (e as Error).message, ...(issues !== undefined ? { issues } : {}) });
    }
  }

  // ---- routing ---------------------------------------------------------------------------

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? "/";
    const qi = rawUrl.indexOf("?");
    const path = qi < 0 ? rawUrl : rawUrl.slice(0, qi);
    const query = new URLSearchParams(qi < 0 ? "" : rawUrl.slice(qi + 1));
    const segs = path.split("/").filter((s) => s !== "");
    const method = req.method ?? "GET";

    if (segs[0] === "_emulator") return handleControl(req, res, segs.slice(1), query);

    const s0 = segs[0]?.toLowerCase();
    if (s0 === "v1.0" || s0 === "beta") {
      const user = segs[1]?.toLowerCase();
      const isSend =
        (user === "users" && segs.length === 4 && segs[3]!.toLowerCase() === "sendmail") || (user === "me" && segs.length === 3 && segs[2]!.toLowerCase() === "sendmail");
      const x = startExchange(req, res, isSend ? "sendMail" : "other", path);
      if (!isSend) return sendGraphError(x, graphErrors.segmentNotFound(decodeSegment(segs[segs.length - 1] ?? "")));
      if (method !== "POST") return sendGraphError(x, graphErrors.methodNotAllowed);
      return handleSendMail(x, user === "me" ? "me" : decodeSegment(segs[2]!));
    }

    const tail = segs.slice(1).join("/").toLowerCase();
    if (segs.length >= 2) {
      const tenantSegment = decodeSegment(segs[0]!);
      if (tail === "v2.0/.well-known/openid-configuration" || tail === ".well-known/openid-configuration") {
        return handleDiscovery(startExchange(req, res, "discovery", path), tenantSegment, "openid", query);
      }
      if (tail === "discovery/instance") return handleDiscovery(startExchange(req, res, "discovery", path), undefined, "instance", query);
      if (tail === "discovery/v2.0/keys" || tail === "discovery/keys") return handleDiscovery(startExchange(req, res, "discovery", path), tenantSegment, "jwks", query);
      if (tail === "oauth2/v2.0/token" && method === "POST") return handleToken(startExchange(req, res, "token", path), tenantSegment);
    }
    const x = startExchange(req, res, "other", path);
    send(res, 404, { error: "not_found", error_description: `The emulator does not serve ${method} ${path}` }, { "client-request-id": x.clientRequestId });
  }

  const server = createServer({ key: tls.keyPem, cert: tls.certPem, keepAliveTimeout: 30_000 }, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, { error: "emulator_error", message: (e as Error).message });
      else res.destroy();
    });
  });
  // Clients see resets as resets; nothing to report here.
  server.on("clientError", (_e, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `https://${urlHost}:${port}`;
  entra.url = url;

  const state: EmulatorState = {
    url,
    get scenario() {
      return scenario;
    },
    oidcIssuer: entra.oidcIssuer,
    loadScenario(input) {
      return useScenario(readScenarioInput(input));
    },
    patchScenario(patch) {
      return useScenario(mergeScenarioInput(scenarioInput, patch));
    },
    messages(filter = {}) {
      const f = { ...filter };
      if (f.tenant !== undefined) f.tenant = dir.tenant(f.tenant)?.id ?? f.tenant;
      if (f.mailbox !== undefined) f.mailbox = dir.mailbox(f.mailbox)?.mailbox.address ?? f.mailbox;
      return store.list(f);
    },
    requests(filter = {}) {
      return requestLog.list(filter);
    },
    concurrency(filter = {}) {
      const wanted = filter.mailbox === undefined ? undefined : (dir.mailbox(filter.mailbox)?.mailbox.id ?? filter.mailbox);
      return throttle
        .concurrency()
        .filter((m) => wanted === undefined || m.mailboxId === wanted)
        .map((m) => ({
          appId: m.appId,
          mailbox: dir.mailbox(m.mailboxId)?.mailbox.address ?? m.mailboxId,
          mailboxId: m.mailboxId,
          inFlight: m.inFlight,
          peak: m.peak,
          concurrencyRejections: m.concurrencyRejections,
        }));
    },
    inject(fault) {
      return faults.add(checkedFault(fault));
    },
    faults() {
      return faults.list();
    },
    clearFaults() {
      faults.clear();
    },
    setLatency(latency) {
      latencyOverride = latency === null ? undefined : latencySchema.parse({ ...(latencyOverride ?? scenario.latency), ...latency });
    },
    setThrottling(t) {
      throttleOverride = t === null ? undefined : t === false ? disabledThrottling() : throttlingSchema.parse({ ...(throttleOverride ?? scenario.throttling), ...t });
    },
    reset(opts = {}) {
      store.clear();
      requestLog.clear();
      faults.clear();
      throttle.resetWindows();
      throttle.resetConcurrency();
      if (opts.reloadScenario === true) {
        latencyOverride = undefined;
        throttleOverride = undefined;
        useScenario(readScenarioInput(options.scenario));
      }
    },
    mintFederatedToken(opts) {
      return entra.mintFederatedToken(opts);
    },
    mintAccessToken(opts) {
      return entra.mintAccessToken(dir, opts);
    },
  };

  return {
    url,
    caPem: tls.caPem,
    state,
    async close() {
      for (const res of hanging) res.destroy();
      hanging.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
