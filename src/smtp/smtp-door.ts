import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from "smtp-server";
import type { SmtpConfig } from "../config/schema.js";
import type { Lifecycle } from "../core/lifecycle.js";
import type { Clock } from "../core/ports.js";
import { LogBudget } from "../core/log-budget.js";
import { isRelayError, toRelayError } from "../core/problems.js";
import { addressProblem, MAX_RECIPIENTS } from "../mail/addresses.js";
import type { MimeDraft } from "../mail/mail-draft.js";
import { readMimeHeaders } from "../mail/mime-headers.js";
import { messageIdKey, mimeFingerprint } from "../mail/mime-message.js";
import type { RecordedAnswer } from "../mail/send-answer.js";
import { KeyInFlight, type SendMail, type SendReceipt } from "../mail/send-mail.js";
import { getSmtpMetrics, type SmtpMetrics } from "../metrics/smtp-metrics.js";
import { callerMayUse, type Caller, type CallerDirectory } from "../tenants/caller-directory.js";
import type { TenantDirectory } from "../tenants/tenant-directory.js";
import { ClientGuard } from "./client-guard.js";
import { problemReply, replyError, replyText, type SmtpReply } from "./replies.js";

/** Tenant label of messages whose tenant is not (or no longer) configured. */
const NO_TENANT = "_unknown";

/** What the SMTP door needs of the service (src/service.ts wires it; the door knows no HTTP). */
export interface SmtpDoorDeps {
  readonly config: SmtpConfig;
  readonly sendMail: SendMail;
  readonly callers: () => CallerDirectory;
  readonly tenants: () => TenantDirectory;
  readonly lifecycle: Lifecycle;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Where to listen when `smtp.host` is not set (the HTTP listener's HOST). */
  readonly host: string;
  /** How long close() lets a message in progress finish (`server.drainTimeoutSeconds`). */
  readonly drainTimeoutMs: number;
}

/** The listening SMTP door. */
export interface SmtpDoor {
  /** The ports as bound (0 in the config picks a free one). */
  readonly ports: { readonly submission: number; readonly implicitTls?: number };
  readonly metrics: SmtpMetrics;
  /**
   * Stops listening. Idle connections get 421 at once; a connection in the middle of a message
   * gets its reply, then 421 at its next command; whatever is still open after the drain
   * timeout is closed.
   */
  close(): Promise<void>;
}

/** Who logged in on a session (smtp-server keeps it as `session.user`). */
interface SessionUser {
  readonly caller: Caller;
  readonly tenant: string;
}

/** The door's own state of one connection. */
interface SessionState {
  readonly listener: "submission" | "implicit_tls";
  readonly address: string;
  /** From MAIL FROM to the reply after DATA. */
  busy: boolean;
  messageTimer?: NodeJS.Timeout;
  lifeTimer?: NodeJS.Timeout;
  /** From the end of DATA to the reply: the message is in the send use case (maybe at Graph). */
  graphBound?: boolean;
  /** The connection outlived connectionTimeoutSeconds while a message was at Graph: closed after its reply. */
  expired?: boolean;
}

const EXPIRED: SmtpReply = { code: 421, status: "4.4.2", text: "connection open too long; reconnect" };

const AUTH_FAILED: SmtpReply = { code: 535, status: "5.7.8", text: "Authentication credentials invalid: the username is the tenant key, the password a caller's API key allowed for it" };

/** Starts the SMTP listeners (submission with STARTTLS, and implicit TLS when configured). */
export async function startSmtpDoor(deps: SmtpDoorDeps): Promise<SmtpDoor> {
  const { config, logger, clock, sendMail } = deps;
  const metrics = getSmtpMetrics(deps.registry);
  const guard = new ClientGuard({
    maxConnectionsPerClient: config.maxConnectionsPerClient,
    maxAuthFailures: config.authFailures.max,
    windowMs: config.authFailures.windowSeconds * 1000,
    now: () => clock.now(),
  });
  const sessions = new Map<string, SessionState>();
  const authLines = new LogBudget(20, 10_000);
  // Read once: smtp is a restart-only key (a renewed certificate needs a restart, as for the chart's rollout).
  const tls = config.tls !== undefined ? { key: readFileSync(config.tls.keyFile), cert: readFileSync(config.tls.certFile) } : undefined;
  const servers: SMTPServer[] = [];

  const answer = (stage: string, reply: SmtpReply): Error & { responseCode: number } => {
    metrics.reply(stage, reply.code);
    return replyError(reply);
  };
  const closeConnection = (server: SMTPServer, sessionId: string, reply: SmtpReply, stage: string): void => {
    for (const connection of server.connections) {
      if (connection.id !== sessionId) continue;
      metrics.reply(stage, reply.code);
      // 421 makes smtp-server close the connection after the line is written.
      connection.send(reply.code, `${reply.status} ${reply.text}`);
    }
  };

  const options = (listener: SessionState["listener"], server: () => SMTPServer): SMTPServerOptions => ({
    ...(tls !== undefined ? { key: tls.key, cert: tls.cert } : {}),
    secure: listener === "implicit_tls",
    // Without a certificate of ours, smtp-server would offer STARTTLS with its built-in test certificate.
    ...(tls === undefined ? { disabledCommands: ["STARTTLS"] } : {}),
    ...(config.hostname !== undefined ? { name: config.hostname } : {}),
    banner: "noreply-relay ESMTP: AUTH with the tenant key and an API key",
    size: config.maxMessageBytes,
    authMethods: ["PLAIN", "LOGIN"],
    authOptional: false,
    authRequiredMessage: "5.7.0 Authentication required",
    allowInsecureAuth: config.allowInsecureAuth,
    // smtp-server's enhanced codes come from the reply code alone (every 550 would be 5.1.1): the door
    // writes its own RFC 3463 code at the start of each reply it chooses instead.
    hideENHANCEDSTATUSCODES: true,
    hideDSN: true,
    disableReverseLookup: true,
    logger: false,
    maxClients: config.maxConnections,
    socketTimeout: config.socketTimeoutSeconds * 1000,
    closeTimeout: Math.max(1, deps.drainTimeoutMs),

    onConnect(session, callback) {
      const address = session.remoteAddress;
      if (deps.lifecycle.isDraining) {
        metrics.refusedConnections.labels("draining").inc();
        callback(answer("session", { code: 421, status: "4.3.2", text: "this instance is shutting down; try again" }));
        return;
      }
      if (!guard.connect(address)) {
        metrics.refusedConnections.labels("per_client").inc();
        callback(answer("session", { code: 421, status: "4.7.0", text: "too many connections from your address" }));
        return;
      }
      const state: SessionState = { listener, address, busy: false };
      sessions.set(session.id, state);
      metrics.connections.labels(listener).inc();
      metrics.openConnections.inc();
      state.lifeTimer = setTimeout(() => {
        // A message already at Graph gets its reply first: cutting it off would leave the client
        // not knowing whether it went.
        if (state.graphBound === true) state.expired = true;
        else closeConnection(server(), session.id, EXPIRED, "session");
      }, config.connectionTimeoutSeconds * 1000);
      state.lifeTimer.unref();
      callback();
    },

    onClose(session) {
      const state = sessions.get(session.id);
      if (state === undefined) return;
      sessions.delete(session.id);
      clearTimeout(state.messageTimer);
      clearTimeout(state.lifeTimer);
      guard.disconnect(state.address);
      metrics.openConnections.dec();
    },

    onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, callback) {
      const address = session.remoteAddress;
      if (guard.lockedOut(address)) {
        metrics.authFailures.labels("locked_out").inc();
        const reply = { code: 421, status: "4.7.0", text: "too many failed AUTH attempts from your address; try again later" };
        metrics.reply("auth", reply.code);
        logAuthFailure("locked_out", session);
        callback(null, { responseCode: reply.code, message: `${reply.status} ${reply.text}` });
        return;
      }
      const tenant = auth.username ?? "";
      const caller = deps.callers().authenticate(auth.password ?? "");
      // One answer for an unknown key, a key not allowed for the tenant and an unknown tenant: like
      // /send's 403, a caller learns nothing about tenants it may not use.
      if (caller === undefined || !callerMayUse(caller, tenant) || !deps.tenants().has(tenant)) {
        guard.authFailed(address);
        metrics.authFailures.labels("credentials").inc();
        metrics.reply("auth", AUTH_FAILED.code);
        logAuthFailure("credentials", session, caller);
        callback(null, { responseCode: AUTH_FAILED.code, message: `${AUTH_FAILED.status} ${AUTH_FAILED.text}` });
        return;
      }
      metrics.reply("auth", 235);
      const user: SessionUser = { caller, tenant };
      callback(null, { user });
    },

    onMailFrom(address, session, callback) {
      const state = sessions.get(session.id);
      const user = sessionUser(session);
      if (state === undefined || user === undefined) {
        callback(answer("mail", { code: 530, status: "5.7.0", text: "Authentication required" }));
        return;
      }
      if (deps.lifecycle.isDraining) {
        callback(answer("mail", { code: 421, status: "4.3.2", text: "this instance is shutting down; try again" }));
        return;
      }
      try {
        sendMail.checkSender(user.caller, user.tenant, address.address);
      } catch (err) {
        callback(answer("mail", problemReply(toRelayError(err))));
        return;
      }
      state.busy = true;
      clearTimeout(state.messageTimer);
      state.messageTimer = setTimeout(() => {
        if (session.envelope.mailFrom === false) return;
        closeConnection(server(), session.id, { code: 421, status: "4.4.2", text: `the message took longer than ${config.messageTimeoutSeconds} s; nothing was sent` }, "data");
      }, config.messageTimeoutSeconds * 1000);
      state.messageTimer.unref();
      metrics.reply("mail", 250);
      callback();
    },

    onRcptTo(address, session, callback) {
      const problem = addressProblem(address.address);
      if (problem !== undefined) {
        callback(answer("rcpt", { code: 553, status: "5.1.3", text: `recipient address ${problem}` }));
        return;
      }
      const known = session.envelope.rcptTo.some((r) => r.address.toLowerCase() === address.address.toLowerCase());
      if (!known && session.envelope.rcptTo.length >= MAX_RECIPIENTS) {
        // RFC 5321 §4.5.3.1.10: the client sends the rest in another transaction.
        callback(answer("rcpt", { code: 452, status: "4.5.3", text: `at most ${MAX_RECIPIENTS} recipients per message` }));
        return;
      }
      metrics.reply("rcpt", 250);
      callback();
    },

    onData(stream, session, callback) {
      const state = sessions.get(session.id);
      readMessage(stream, config.maxMessageBytes).then(
        (raw) => {
          if (state !== undefined) clearTimeout(state.messageTimer);
          if (state !== undefined) state.graphBound = true;
          const finish = (err: Error | null, text?: string): void => {
            if (state !== undefined) {
              state.busy = false;
              state.graphBound = false;
            }
            if (err !== null) callback(err);
            else callback(null, text);
            if (state?.expired === true) closeConnection(server(), session.id, EXPIRED, "session");
          };
          if (raw === undefined) {
            finish(answer("data", { code: 552, status: "5.3.4", text: `the message is larger than ${config.maxMessageBytes} bytes; nothing was sent` }));
            return;
          }
          deliver(session, raw).then(
            (reply) => {
              metrics.reply("data", reply.code);
              if (reply.code < 400) finish(null, `${reply.status} ${reply.text}`);
              else finish(replyError(reply));
            },
            (err: unknown) => {
              logger.error({ err, session: session.id }, "SMTP message failed unexpectedly");
              finish(answer("data", problemReply(toRelayError(err))));
            },
          );
        },
        (err: unknown) => {
          if (state !== undefined) state.busy = false;
          callback(err instanceof Error ? err : new Error(String(err)));
        },
      );
    },
  });

  /** One message after DATA: through the send use case, answered as an SMTP reply, logged in one line. */
  async function deliver(session: SMTPServerSession, raw: Buffer): Promise<SmtpReply> {
    const started = performance.now();
    const requestId = randomUUID();
    const receivedAt = clock.now();
    const user = sessionUser(session);
    const mailFrom = session.envelope.mailFrom;
    if (user === undefined || mailFrom === false) return { code: 503, status: "5.5.1", text: "bad sequence of commands" };
    const envelopeTo = session.envelope.rcptTo.map((r) => r.address);
    const headers = readMimeHeaders(raw);
    const draft: MimeDraft = { kind: "mime", tenant: user.tenant, envelopeFrom: mailFrom.address, envelopeTo, raw, headers };
    const line: Record<string, unknown> = {
      requestId,
      session: session.id,
      caller: user.caller.name,
      recipients: envelopeTo.length,
      bytes: raw.length,
    };
    const tenantLabel = deps.tenants().has(user.tenant) ? user.tenant : NO_TENANT;
    if (tenantLabel !== NO_TENANT) line.tenant = user.tenant;
    if (headers.messageId !== undefined) line.internetMessageId = headers.messageId;
    let reply: SmtpReply;
    let outcome: string;
    try {
      if (headers.messageId === undefined) {
        const receipt = await sendMail.send({ caller: user.caller, draft, requestId, receivedAt });
        ({ reply, outcome } = sentReply(receipt, requestId, line));
      } else {
        const result = await sendMail.sendOnce({
          caller: user.caller,
          key: messageIdKey(headers.messageId),
          fingerprint: mimeFingerprint(user.tenant, mailFrom.address, envelopeTo, raw),
          requestId,
          receivedAt,
          draft: () => draft,
        });
        if (result.kind === "sent") ({ reply, outcome } = sentReply(result.receipt, requestId, line));
        else {
          line.replayOf = result.answer.requestId;
          ({ reply, outcome } = replayReply(result.answer, headers.messageId));
        }
      }
    } catch (err) {
      const relay = toRelayError(err);
      if (!isRelayError(err)) line.err = err;
      if (relay.extras.graphRequestId !== undefined) line.graphRequestId = relay.extras.graphRequestId;
      if (relay.extras.graphCode !== undefined) line.graphCode = relay.extras.graphCode;
      if (relay.extras.aadsts !== undefined) line.aadsts = relay.extras.aadsts;
      outcome = relay.code;
      reply = err instanceof KeyInFlight ? inFlightReply() : problemReply(relay);
      if (relay.code === "outcome_unknown") reply = { ...reply, text: replyText(`${relay.message} Retrying is safe: a resend of this message (same Message-ID) is not sent again.`) };
      if (reply.code >= 500 || relay.code === "internal_error") line.detail = relay.message;
    }
    const seconds = (performance.now() - started) / 1000;
    metrics.message(tenantLabel, outcome, seconds);
    line.outcome = outcome;
    line.reply = reply.code;
    line.durationMs = Math.round(seconds * 10_000) / 10;
    logger[reply.code >= 500 && outcome === "internal_error" ? "error" : "info"](line, "smtp message");
    return reply;
  }

  function logAuthFailure(reason: string, session: SMTPServerSession, caller?: Caller): void {
    const verdict = authLines.take(performance.now());
    if (verdict.suppressedBefore > 0) logger.warn({ suppressed: verdict.suppressedBefore }, "SMTP AUTH failure lines were left out");
    // Never the username (a user may type the key there) nor the password: the address, and the caller when the key was known.
    if (verdict.allowed) logger.warn({ session: session.id, client: session.remoteAddress, reason, ...(caller !== undefined ? { caller: caller.name } : {}) }, "smtp auth failed");
  }

  const host = config.host ?? deps.host;
  const listen = (listener: SessionState["listener"], port: number): Promise<number> => {
    // The options' handlers reach their own server (to close a connection) through this late-bound reference.
    const box: { server?: SMTPServer } = {};
    const s = new SMTPServer(options(listener, () => box.server!));
    box.server = s;
    servers.push(s);
    s.on("error", (err: Error) => logger.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, "SMTP connection error"));
    return new Promise((resolve, reject) => {
      s.server.once("error", reject);
      s.listen(port, host, () => {
        s.server.removeListener("error", reject);
        resolve((s.server.address() as AddressInfo).port);
      });
    });
  };

  const closeAll = (): Promise<void> =>
    Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.server.listening) return resolve();
            s.close(() => resolve());
            for (const connection of s.connections) {
              const state = sessions.get(connection.id);
              if (state !== undefined && !state.busy) connection.send(421, "4.3.2 this instance is shutting down; try again");
            }
          }),
      ),
    ).then(() => undefined);

  let ports: SmtpDoor["ports"];
  try {
    const submission = await listen("submission", config.port);
    const implicitTls = config.implicitTlsPort !== undefined ? await listen("implicit_tls", config.implicitTlsPort) : undefined;
    ports = implicitTls !== undefined ? { submission, implicitTls } : { submission };
  } catch (err) {
    await closeAll();
    throw err;
  }
  logger.info({ ...ports, host, tls: tls !== undefined }, "SMTP door listening");
  return { ports, metrics, close: closeAll };
}

function sessionUser(session: SMTPServerSession): SessionUser | undefined {
  const user = session.user as Partial<SessionUser> | undefined;
  return user?.caller !== undefined && typeof user.tenant === "string" ? (user as SessionUser) : undefined;
}

function sentReply(receipt: SendReceipt, requestId: string, line: Record<string, unknown>): { reply: SmtpReply; outcome: string } {
  line.messageId = receipt.id;
  line.attempts = receipt.attempts;
  if (receipt.graphRequestId !== undefined) line.graphRequestId = receipt.graphRequestId;
  return { reply: { code: 250, status: "2.0.0", text: `accepted by Microsoft Graph as ${receipt.internetMessageId} (request ${requestId})` }, outcome: receipt.status };
}

/**
 * A resend of a message (same caller, same Message-ID, same bytes) that was handled before:
 * never sent again. Accepted before: 250. The first attempt's outcome unknown (Graph got the
 * whole message and did not confirm it, and the client was told 4xx): 250 too, so the client
 * stops resending; the message most likely went out, and the reply says that it is not sent
 * again. Any other remembered answer (a bug after Graph may have been called): permanent, so
 * the client stops and reports it rather than resending it for days.
 */
function replayReply(answer: RecordedAnswer, messageId: string): { reply: SmtpReply; outcome: string } {
  if (answer.kind === "accepted") {
    return { reply: { code: 250, status: "2.0.0", text: replyText(`${messageId} was accepted before (request ${answer.requestId}); not sent again`) }, outcome: "duplicate" };
  }
  if (answer.code === "outcome_unknown") {
    return {
      reply: { code: 250, status: "2.0.0", text: replyText(`${messageId} was handed to Microsoft Graph before (request ${answer.requestId}), which did not confirm it; not sent again`) },
      outcome: "duplicate",
    };
  }
  return {
    reply: { code: 554, status: "5.3.0", text: replyText(`${messageId} failed before (request ${answer.requestId}: ${answer.code}) after it may have been sent; not sent again`) },
    outcome: "duplicate",
  };
}

function inFlightReply(): SmtpReply {
  return { code: 451, status: "4.3.0", text: "an earlier submission of this message (same Message-ID) is still being sent; try again later" };
}

/**
 * The whole DATA stream in one Buffer, or undefined when it went over `max` bytes (the rest is
 * read and dropped: the client has to be allowed to finish before it gets the 552).
 */
function readMessage(stream: SMTPServerDataStream, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    stream.on("data", (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    stream.once("error", reject);
    stream.once("end", () => resolve(over || stream.sizeExceeded ? undefined : Buffer.concat(chunks, size)));
  });
}

