import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import nodemailer, { type Transporter } from "nodemailer";
import MailComposer from "nodemailer/lib/mail-composer";
import type { ConfigInput } from "../../src/config/schema.js";
import { createTlsMaterial } from "../../src/emulator/certificates.js";
import type { StoredMessage } from "../../src/emulator/inspection.js";
import { startHarness, type Harness, type HarnessOptions } from "../support/harness.js";

type SmtpInput = NonNullable<ConfigInput["smtp"]>;

/** A harness whose service also listens for SMTP on 127.0.0.1 (a free port), with a certificate made for this run. */
export interface SmtpHarness {
  readonly h: Harness;
  /** The CA of the SMTP certificate: what a client must trust. */
  readonly caPem: string;
  readonly port: number;
  readonly implicitTlsPort?: number;
  /**
   * A nodemailer SMTP transport to the door over STARTTLS (required), logging in as `user` with
   * `pass`; closed by close().
   */
  transport(user: string, pass: string, options?: { pool?: boolean; port?: number; secure?: boolean; requireTLS?: boolean; ignoreTLS?: boolean }): Transporter;
  close(): Promise<void>;
}

export async function startSmtpHarness(options: HarnessOptions & { smtp?: Partial<SmtpInput> } = {}): Promise<SmtpHarness> {
  // Made at test time, never committed: the private key lives only in the harness's temp dir.
  const tls = await createTlsMaterial();
  const h = await startHarness({
    ...options,
    configure: (config, dir) => {
      config.smtp = {
        enabled: true,
        port: 0,
        tls: { certFile: join(dir, "smtp-cert.pem"), keyFile: join(dir, "smtp-key.pem") },
        ...options.smtp,
      };
      options.configure?.(config, dir);
    },
    beforeLoad: async (dir) => {
      await writeFile(join(dir, "smtp-cert.pem"), tls.certPem);
      await writeFile(join(dir, "smtp-key.pem"), tls.keyPem, { mode: 0o600 });
      await options.beforeLoad?.(dir);
    },
  });
  if (h.smtp === undefined) throw new Error("the SMTP door did not start");
  const transports: Transporter[] = [];
  const ports = h.smtp;
  return {
    h,
    caPem: tls.caPem,
    port: ports.submission,
    ...(ports.implicitTls !== undefined ? { implicitTlsPort: ports.implicitTls } : {}),
    transport(user, pass, o = {}) {
      const t = nodemailer.createTransport({
        host: "127.0.0.1",
        port: o.port ?? ports.submission,
        secure: o.secure ?? false,
        requireTLS: o.requireTLS ?? !(o.secure ?? false),
        ...(o.ignoreTLS === true ? { ignoreTLS: true, requireTLS: false } : {}),
        auth: { user, pass },
        tls: { ca: [tls.caPem] },
        ...(o.pool === true ? { pool: true, maxConnections: 4 } : {}),
        connectionTimeout: 5_000,
        greetingTimeout: 5_000,
        socketTimeout: 20_000,
      });
      transports.push(t);
      return t;
    },
    async close() {
      for (const t of transports) t.close();
      await h.close();
    },
  };
}

/** The message exactly as a client (nodemailer's MailComposer) writes it, built once: a retry sends the same bytes. */
export async function composeMessage(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return new MailComposer(mail).compile().build();
}

/** What Graph received for a stored MIME message: the decoded request body (the emulator keeps it as it arrived). */
export function receivedMime(message: StoredMessage): Buffer {
  if (message.format !== "mime" || message.raw === undefined) throw new Error(`message ${message.id} is not a retained MIME message`);
  return Buffer.from(message.raw, "base64");
}

/** The reply code of a failed nodemailer send (its `responseCode`), and the reply line. */
export async function refusal(promise: Promise<unknown>): Promise<{ responseCode: number; response: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { responseCode?: number; response?: string };
    return { responseCode: e.responseCode ?? 0, response: e.response ?? String(err) };
  }
  throw new Error("the send was accepted, a refusal was expected");
}
