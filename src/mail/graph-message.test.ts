import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { serializeSendMail } from "./graph-message.js";
import type { GraphFileAttachment, GraphMessage } from "../core/ports.js";

function attachment(size: number, extra: Partial<GraphFileAttachment> = {}): GraphFileAttachment {
  return {
    "@odata.type": "#microsoft.graph.fileAttachment",
    name: "invoice.pdf",
    contentType: "application/pdf",
    contentBytes: randomBytes(size).toString("base64"),
    ...extra,
  };
}

const base: GraphMessage = {
  subject: "Invoice",
  body: { contentType: "HTML", content: "<p>Hello</p>" },
  toRecipients: [{ emailAddress: { address: "a@example.com" } }],
  internetMessageId: "<1@example.com>",
};

/** What the Graph adapter would send if it serialised the message itself. */
function reference(message: GraphMessage, saveToSentItems: boolean): Buffer {
  return Buffer.from(JSON.stringify({ message, saveToSentItems }), "utf8");
}

describe("serializeSendMail", () => {
  it.each<[string, GraphMessage]>([
    ["no attachments", base],
    ["one attachment", { ...base, attachments: [attachment(102_400)] }],
    ["an empty attachment", { ...base, attachments: [attachment(0)] }],
    [
      "several attachments, inline ones with content ids",
      { ...base, attachments: [attachment(1), attachment(2, { isInline: true, contentId: "logo" }), attachment(70_000, { name: "b.png" })] },
    ],
    [
      "text that looks like the key the base64 goes after",
      {
        ...base,
        subject: '"contentBytes":"',
        body: { contentType: "Text", content: 'x "contentBytes":"" \\"contentBytes\\":\\"\\" \u0000\u001f\u2028 \ud800 ✓ 😀' },
        internetMessageHeaders: [{ name: "X-contentBytes", value: '"contentBytes":""' }],
        attachments: [attachment(10, { name: '"contentBytes":"".pdf', contentType: "application/pdf; name=\"contentBytes\"" }), attachment(20)],
      },
    ],
    [
      "non-ASCII everywhere but the base64",
      {
        ...base,
        subject: "Rechnung für Łukasz — 請求書 😀",
        ccRecipients: [{ emailAddress: { address: "b@example.com", name: "Zoë" } }],
        attachments: [attachment(33, { name: "Übersicht.pdf" })],
      },
    ],
  ])("when the message has %s, then the bytes equal JSON.stringify's as UTF-8", (_, message) => {
    for (const save of [false, true]) {
      const body = serializeSendMail(message, save);
      const joined = Buffer.from(body.parts.join(""), "utf8");
      expect(joined.equals(reference(message, save))).toBe(true);
      expect(body.bytes).toBe(joined.length);
      // Each attachment's base64 is its own part, the very string of the message.
      for (const a of message.attachments ?? []) expect(body.parts.some((p) => p === a.contentBytes)).toBe(true);
    }
  });

  it("when serialised, then the message given is left unchanged", () => {
    const message = { ...base, attachments: [attachment(12)] };
    const before = JSON.stringify(message);
    serializeSendMail(message, false);
    expect(JSON.stringify(message)).toBe(before);
  });
});
