import { addressParser } from "postal-mime";
import type { MimeHeaders } from "./mime-message.js";

/*
 * Reading a client's MIME header (the SMTP door's part of src/mail/mime-message.ts): its own
 * module so that postal-mime loads only with the SMTP door, not in every process.
 */

/** One header field of the message: its name and where it is in the raw bytes (folded lines included). */
interface HeaderField {
  readonly name: string;
  /** Unfolded value (UTF-8; encoded words left as they are). */
  readonly value: string;
  readonly start: number;
  readonly end: number;
}

const ONCE = ["from", "sender", "to", "cc", "bcc", "message-id", "subject"] as const;
const MESSAGE_ID = /^<[^<>\s@]+@[^<>\s]+>$/;

/** Reads the header fields the use case needs (see MimeHeaders); the message itself is not changed. */
export function readMimeHeaders(raw: Buffer): MimeHeaders {
  const { fields, headerEnd, newline } = splitHeader(raw);
  const named = (n: string): HeaderField[] => fields.filter((f) => f.name === n);
  const addresses = (n: string): string[] => named(n).flatMap((f) => parseAddresses(f.value));
  const counts = new Map<string, number>();
  for (const f of fields) counts.set(f.name, (counts.get(f.name) ?? 0) + 1);
  const ids = named("message-id").map((f) => f.value.trim());
  const messageId = ids.length === 1 && MESSAGE_ID.test(ids[0]!) ? ids[0] : undefined;
  return {
    from: addresses("from"),
    fromFields: counts.get("from") ?? 0,
    sender: addresses("sender"),
    to: addresses("to"),
    cc: addresses("cc"),
    ...(messageId !== undefined ? { messageId } : {}),
    repeated: ONCE.filter((n) => (counts.get(n) ?? 0) > 1),
    bccRanges: named("bcc").map((f) => [f.start, f.end] as const),
    headerEnd,
    newline,
  };
}

/** Mailbox addresses of an address-list field (groups flattened, display names and comments dropped). */
function parseAddresses(value: string): string[] {
  return addressParser(value, { flatten: true })
    .map((a) => (a.address ?? "").trim())
    .filter((a) => a !== "");
}

/**
 * Splits the header into fields (RFC 5322 §2.2: a field goes on over lines that begin with a
 * space or tab). Bytes are read as UTF-8 (SMTPUTF8 headers are UTF-8; anything else is ASCII).
 */
function splitHeader(raw: Buffer): { fields: HeaderField[]; headerEnd: number; newline: "\r\n" | "\n" } {
  const fields: HeaderField[] = [];
  let newline: "\r\n" | "\n" = "\r\n";
  let pos = 0;
  let current: { name: string; start: number; lines: string[] } | undefined;
  const close = (end: number): void => {
    if (current === undefined) return;
    const joined = current.lines.join("");
    const colon = joined.indexOf(":");
    fields.push({ name: current.name, value: joined.slice(colon + 1).trim(), start: current.start, end });
    current = undefined;
  };
  while (pos < raw.length) {
    let eol = raw.indexOf(0x0a, pos);
    if (eol < 0) eol = raw.length;
    const next = Math.min(raw.length, eol + 1);
    const lineEnd = eol > pos && raw[eol - 1] === 0x0d ? eol - 1 : eol;
    if (pos === 0 && eol < raw.length) newline = lineEnd === eol ? "\n" : "\r\n";
    if (lineEnd === pos) {
      // The blank line: the body starts after it.
      close(pos);
      return { fields, headerEnd: next, newline };
    }
    const line = raw.toString("utf8", pos, lineEnd);
    const first = raw[pos];
    if ((first === 0x20 || first === 0x09) && current !== undefined) {
      current.lines.push(line);
    } else {
      close(pos);
      const colon = line.indexOf(":");
      // A line that is no field (no colon) ends the header, as mail parsers read it.
      if (colon <= 0) return { fields, headerEnd: pos, newline };
      current = { name: line.slice(0, colon).trim().toLowerCase(), start: pos, lines: [line] };
    }
    pos = next;
  }
  close(raw.length);
  return { fields, headerEnd: raw.length, newline };
}
