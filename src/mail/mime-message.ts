import { createHash } from "node:crypto";
import { RelayError } from "../core/problems.js";
import type { SendMailBody } from "../core/ports.js";

/*
 * A message as a client wrote it (SMTP DATA), read only as far as the send use case needs: the
 * header fields that decide who sends and who receives, and the Message-ID. The body is never
 * parsed, decoded or logged; it goes to Graph byte for byte.
 *
 * Graph's MIME form of sendMail (https://learn.microsoft.com/en-us/graph/outlook-send-mime-message
 * and https://learn.microsoft.com/en-us/graph/api/user-sendmail, "Example 4: send a new message
 * using MIME format"): POST /users/{id}/sendMail with Content-Type text/plain and the base64 of
 * the whole MIME message (its Internet headers included) as the body; at most 4 MB as sent; the
 * recipients are the message's To, Cc and Bcc headers (there is no envelope), and the message is
 * always saved to Sent Items.
 */

/** What the use case reads from a MIME message's header. */
export interface MimeHeaders {
  /** Addresses of the From field(s), in order. */
  readonly from: readonly string[];
  /** How many From fields there are (RFC 5322: exactly one). */
  readonly fromFields: number;
  /** Addresses of the Sender field, when there is one. */
  readonly sender: readonly string[];
  readonly to: readonly string[];
  readonly cc: readonly string[];
  /** The Message-ID as written (`<…@…>`), when there is a well-formed one. */
  readonly messageId?: string;
  /** Fields that may appear at most once and appear more often (To, Cc, Message-ID…). */
  readonly repeated: readonly string[];
  /** Byte ranges of the client's own Bcc fields: never sent on (the envelope decides who is blind-copied). */
  readonly bccRanges: readonly (readonly [number, number])[];
  /** Where the header ends: the first byte after the blank line (or the whole message when there is none). */
  readonly headerEnd: number;
  /** The line ending the header uses ("\r\n" as SMTP sends it; "\n" for messages written otherwise). */
  readonly newline: "\r\n" | "\n";
}

/** Who Graph will deliver to, from the envelope and the header, or why the message cannot go as given. */
export interface MimeRecipients {
  /** Envelope recipients the To and Cc fields do not name: Graph reaches them only through a Bcc field. */
  readonly blind: readonly string[];
  /** Distinct recipients in all (what the daily recipient limit counts). */
  readonly count: number;
}

/**
 * SMTP delivers to the envelope (RCPT TO) and nobody else; Graph's MIME form delivers to the To,
 * Cc and Bcc fields. They are made to agree: every address in To and Cc must be an envelope
 * recipient (otherwise Graph would deliver to someone the client did not ask for: refused), and
 * envelope recipients the header does not name are sent as a Bcc field (see graphMimeBody).
 */
export function mimeRecipients(headers: MimeHeaders, envelopeTo: readonly string[]): MimeRecipients {
  const envelope = new Map<string, string>();
  for (const a of envelopeTo) if (!envelope.has(a.toLowerCase())) envelope.set(a.toLowerCase(), a);
  const named = new Set([...headers.to, ...headers.cc].map((a) => a.toLowerCase()));
  const stranger = [...named].find((a) => !envelope.has(a));
  if (stranger !== undefined) {
    throw new RelayError(
      "validation_failed",
      "the To or Cc header names an address that is not an envelope recipient (RCPT TO); Graph would deliver to it, so the message is refused",
      { errors: [{ path: "header.to", message: "every To and Cc address must also be given as RCPT TO" }] },
    );
  }
  const blind = [...envelope.entries()].filter(([lower]) => !named.has(lower)).map(([, a]) => a);
  return { blind, count: envelope.size };
}

/**
 * The sendMail body of the MIME form: the base64 of the message as the client wrote it, with at
 * most two header fields put in front and the client's own Bcc fields left out:
 *
 * - `Bcc:` with exactly the envelope recipients that To and Cc do not name, when there are any.
 *   The MIME form has no envelope, so a Bcc field is the only way Graph learns of them. Exchange
 *   turns it into blind recipients of the item it submits and writes no Bcc field into the copies
 *   it delivers (Bcc recipients are envelope-only, P1, recipients in Exchange's transport; the
 *   header the recipients see is made from To and Cc). The safe behaviour rests on that and on
 *   what the relay itself controls: the field never names anyone outside the envelope, and a Bcc
 *   field the client wrote (which may list addresses it did not RCPT TO, or all the blind
 *   recipients of a message meant to go to each separately) is always removed.
 * - `Message-ID:` when the message has none, so that a message trace finds it by the id the
 *   relay answers with.
 *
 * Without either, the bytes Graph receives decode to exactly the client's message.
 */
export function graphMimeBody(raw: Buffer, headers: MimeHeaders, blind: readonly string[], addMessageId?: string): SendMailBody {
  const nl = headers.newline;
  const front: string[] = [];
  if (blind.length > 0) front.push(`Bcc: ${blind.join(`,${nl} `)}${nl}`);
  if (addMessageId !== undefined) front.push(`Message-ID: ${addMessageId}${nl}`);
  const pieces: Buffer[] = front.length > 0 ? [Buffer.from(front.join(""), "utf8")] : [];
  let from = 0;
  for (const [start, end] of headers.bccRanges) {
    pieces.push(raw.subarray(from, start));
    from = end;
  }
  pieces.push(from === 0 ? raw : raw.subarray(from));
  const base64 = (pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)).toString("base64");
  return { parts: [base64], bytes: base64.length };
}

/** The decoded form of what graphMimeBody made: what Graph receives, as bytes (tests, the emulator's view). */
export function decodeGraphMimeBody(body: SendMailBody): Buffer {
  return Buffer.from(body.parts.join(""), "base64");
}

/**
 * The Idempotency-Key of a message that came with a Message-ID: per caller (the store keys by
 * caller), apart from HTTP keys by its prefix, the same for every retry of the message.
 */
export function messageIdKey(messageId: string): string {
  return `smtp-message-id:${createHash("sha256").update(messageId, "utf8").digest("hex")}`;
}

/**
 * What makes two submissions the same message: tenant, envelope (sender and the set of
 * recipients) and every byte of the message. A retry of the same message matches; a Message-ID
 * reused for another message does not (idempotency_conflict).
 */
export function mimeFingerprint(tenant: string, envelopeFrom: string, envelopeTo: readonly string[], raw: Buffer): string {
  const recipients = [...new Set(envelopeTo.map((a) => a.toLowerCase()))].sort();
  return createHash("sha256")
    .update(JSON.stringify([tenant, envelopeFrom.toLowerCase(), recipients]))
    .update("\n")
    .update(raw)
    .digest("hex");
}
