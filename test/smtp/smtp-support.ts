import { writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
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
  transport(
    user: string,
    pass: string,
    options?: { pool?: boolean; port?: number; secure?: boolean; requireTLS?: boolean; ignoreTLS?: boolean; localAddress?: string },
  ): Transporter;
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
        ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
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

/**
 * A bare SMTP client over a socket, for what nodemailer does not let a test do: stall in the
 * middle of DATA, keep a connection idle, open connections without sending. Replies are read
 * whole (multi-line replies joined with "\n").
 */
export class SmtpWire {
  private socket: Socket;
  private buffer = "";
  private lines: string[] = [];
  private readonly replies: string[] = [];
  private waiter: ((reply: string | undefined) => void) | undefined;
  private ended = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.listen(socket);
  }

  /** Connects (from `localAddress` when given) and reads the greeting. */
  static async open(port: number, options: { localAddress?: string } = {}): Promise<{ wire: SmtpWire; greeting: string }> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, ...(options.localAddress !== undefined ? { localAddress: options.localAddress } : {}) });
      s.once("connect", () => resolve(s));
      s.once("error", reject);
    });
    const wire = new SmtpWire(socket);
    return { wire, greeting: (await wire.reply()) ?? "(closed)" };
  }

  private listen(socket: Socket): void {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let eol: number;
      while ((eol = this.buffer.indexOf("\r\n")) >= 0) {
        const line = this.buffer.slice(0, eol);
        this.buffer = this.buffer.slice(eol + 2);
        this.lines.push(line);
        if (/^\d{3}(?: |$)/.test(line)) {
          this.push(this.lines.join("\n"));
          this.lines = [];
        }
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.ended = true;
      this.waiter?.(undefined);
      this.waiter = undefined;
    });
  }

  private push(reply: string): void {
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w(reply);
    } else this.replies.push(reply);
  }

  /** The next reply, or undefined once the server has closed the connection. */
  reply(timeoutMs = 10_000): Promise<string | undefined> {
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no SMTP reply within ${timeoutMs} ms`)), timeoutMs);
      this.waiter = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }

  command(line: string): Promise<string | undefined> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** EHLO, STARTTLS trusting `caPem`, EHLO again. */
  async startTls(caPem: string): Promise<void> {
    await this.command("EHLO test.example");
    const ready = await this.command("STARTTLS");
    if (!ready?.startsWith("220")) throw new Error(`STARTTLS refused: ${ready}`);
    const plain = this.socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    this.socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({ socket: plain, ca: [caPem], servername: "localhost" }, () => resolve(s));
      s.once("error", reject);
    });
    this.listen(this.socket);
    await this.command("EHLO test.example");
  }

  /** AUTH PLAIN with the tenant key and an API key; the reply. */
  auth(user: string, pass: string): Promise<string | undefined> {
    return this.command(`AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString("base64")}`);
  }

  /** Resolves when the server has closed the connection. */
  closed(timeoutMs = 10_000): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the connection stayed open ${timeoutMs} ms`)), timeoutMs);
      this.socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
