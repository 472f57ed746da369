import { Counter, Gauge, Histogram, type Registry } from "prom-client";

type Child = { inc(value?: number): void };

/**
 * The SMTP door's metrics (docs/smtp.md, "Metrics"), registered only when the door is enabled.
 * Labels are bounded: listener names, reply codes, the door's own stage names, tenant keys from
 * the config (or `_unknown`) and outcome codes; never an address, a username or a Message-ID.
 */
export class SmtpMetrics {
  readonly connections: Counter<"listener">;
  readonly refusedConnections: Counter<"reason">;
  readonly openConnections: Gauge;
  readonly authFailures: Counter<"reason">;
  readonly replies: Counter<"stage" | "code">;
  readonly messages: Counter<"tenant" | "outcome">;
  readonly messageDuration: Histogram<"outcome">;
  private readonly replyChildren = new Map<string, Child>();
  private readonly messageChildren = new Map<string, Child>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.connections = new Counter({
      name: "noreply_relay_smtp_connections_total",
      help: "SMTP connections accepted, by listener (submission = STARTTLS port, implicit_tls).",
      labelNames: ["listener"],
      registers,
    });
    this.refusedConnections = new Counter({
      name: "noreply_relay_smtp_connections_refused_total",
      help: "SMTP connections refused at once with 421, by reason (per_client, draining).",
      labelNames: ["reason"],
      registers,
    });
    this.openConnections = new Gauge({
      name: "noreply_relay_smtp_open_connections",
      help: "SMTP connections open now.",
      registers,
    });
    this.authFailures = new Counter({
      name: "noreply_relay_smtp_auth_failures_total",
      help: "Failed SMTP AUTH attempts, by reason (credentials: unknown key, or a key not allowed for the tenant; locked_out: the client address has too many recent failures).",
      labelNames: ["reason"],
      registers,
    });
    this.replies = new Counter({
      name: "noreply_relay_smtp_replies_total",
      help: "Replies the SMTP door chose, by stage (auth, mail, rcpt, data, session) and reply code.",
      labelNames: ["stage", "code"],
      registers,
    });
    this.messages = new Counter({
      name: "noreply_relay_smtp_messages_total",
      help: "Messages received over SMTP (after DATA), by tenant and outcome (sent, duplicate, or a problem code), like noreply_relay_send_total for POST /send.",
      labelNames: ["tenant", "outcome"],
      registers,
    });
    this.messageDuration = new Histogram({
      name: "noreply_relay_smtp_message_duration_seconds",
      help: "From the end of DATA to the reply: what the relay adds to an SMTP submission (Graph included).",
      labelNames: ["outcome"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    for (const listener of ["submission", "implicit_tls"]) this.connections.labels(listener).inc(0);
    for (const reason of ["credentials", "locked_out"]) this.authFailures.labels(reason).inc(0);
  }

  reply(stage: string, code: number): void {
    const key = `${stage} ${code}`;
    let c = this.replyChildren.get(key);
    if (c === undefined) this.replyChildren.set(key, (c = this.replies.labels(stage, String(code))));
    c.inc();
  }

  message(tenant: string, outcome: string, seconds: number): void {
    const key = `${tenant}\n${outcome}`;
    let c = this.messageChildren.get(key);
    if (c === undefined) this.messageChildren.set(key, (c = this.messages.labels(tenant, outcome)));
    c.inc();
    this.messageDuration.labels(outcome === "sent" || outcome === "duplicate" ? outcome : "refused").observe(seconds);
  }
}

const byRegistry = new WeakMap<Registry, SmtpMetrics>();

/** The SMTP metrics of a registry, registered on first use. */
export function getSmtpMetrics(registry: Registry): SmtpMetrics {
  let m = byRegistry.get(registry);
  if (m === undefined) byRegistry.set(registry, (m = new SmtpMetrics(registry)));
  return m;
}
