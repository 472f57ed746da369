import type { MailAddress, MailDraft } from "./mail-draft.js";
import type { GraphFileAttachment, GraphMessage, GraphRecipient, SendMailBody } from "../core/ports.js";

/** Graph refuses sendMail requests above 4 MB (the JSON body, base64 attachments included). */
export const GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** `<{id}@{sender domain}>`: a Message-ID that a message trace in Exchange can find from our response. */
export function internetMessageIdFor(id: string, senderDomain: string): string {
  return `<${id}@${senderDomain}>`;
}

function recipient(a: MailAddress): GraphRecipient {
  return { emailAddress: a.name === undefined ? { address: a.address } : { address: a.address, name: a.name } };
}

/**
 * The Graph `message` for a draft. The sender is not in it: Graph takes it from the
 * /users/{sender} path, which is always the tenant's configured mailbox.
 */
export function buildGraphMessage(draft: MailDraft, internetMessageId: string): GraphMessage {
  const message: GraphMessage = {
    subject: draft.subject,
    body: draft.html !== undefined ? { contentType: "HTML", content: draft.html } : { contentType: "Text", content: draft.text ?? "" },
    toRecipients: draft.to.map(recipient),
    internetMessageId,
  };
  if (draft.cc.length > 0) message.ccRecipients = draft.cc.map(recipient);
  if (draft.bcc.length > 0) message.bccRecipients = draft.bcc.map(recipient);
  if (draft.replyTo.length > 0) message.replyTo = draft.replyTo.map(recipient);
  if (draft.importance !== undefined) message.importance = draft.importance;
  if (draft.headers.length > 0) message.internetMessageHeaders = draft.headers.map((h) => ({ name: h.name, value: h.value }));
  if (draft.attachments.length > 0) {
    message.attachments = draft.attachments.map((a): GraphFileAttachment => {
      const att: GraphFileAttachment = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        name: a.filename,
        contentType: a.contentType,
        contentBytes: a.contentBase64,
      };
      if (a.inline) att.isInline = true;
      if (a.contentId !== undefined) att.contentId = a.contentId;
      return att;
    });
  }
  return message;
}

const CONTENT_BYTES_KEY = '"contentBytes":"';

/**
 * The sendMail request body, serialised once: measured here and sent as-is by the Graph adapter.
 * Joined, the parts are exactly `JSON.stringify({ message, saveToSentItems })`, but each
 * attachment's base64 is a part of its own, the very string the caller sent, instead of being
 * JSON-escaped into one big string and copied into a Buffer: for a 100 KB attachment that
 * took 250 µs and made two 137 KB strings and a 137 KB Buffer for the garbage collector.
 * Base64 needs no JSON escaping and is ASCII (one byte per character), and `contentBytes`
 * always is base64 (MailAttachment.contentBase64 is checked at the edge).
 */
export function serializeSendMail(message: GraphMessage, saveToSentItems: boolean): SendMailBody {
  const attachments = message.attachments;
  if (attachments === undefined || attachments.length === 0) {
    const json = JSON.stringify({ message, saveToSentItems });
    return { parts: [json], bytes: Buffer.byteLength(json, "utf8") };
  }
  // Every other key is fixed and every string value escaped, so each `"contentBytes":"` is a
  // real key, in attachment order; the "" after it is the gap the base64 goes into.
  const json = JSON.stringify({ message: { ...message, attachments: attachments.map((a) => ({ ...a, contentBytes: "" })) }, saveToSentItems });
  const parts: string[] = [];
  let bytes = Buffer.byteLength(json, "utf8");
  let from = 0;
  for (const a of attachments) {
    const gap = json.indexOf(CONTENT_BYTES_KEY, from) + CONTENT_BYTES_KEY.length;
    parts.push(json.slice(from, gap), a.contentBytes);
    bytes += a.contentBytes.length;
    from = gap;
  }
  parts.push(json.slice(from));
  return { parts, bytes };
}
