import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { message } from "../support/fixtures.js";
import { startHarness, type Harness } from "../support/harness.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PDF = Buffer.from("%PDF-1.4 invoice").toString("base64");
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]).toString("base64");

describe("POST /send: the message Graph receives", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({
      configure: (c) => {
        c.tenants.tailspin!.saveToSentItems = true;
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  it("when a message with every field is sent, then the emulator holds exactly that message from the tenant's sender", async () => {
    const res = await h.send({
      tenant: "contoso",
      from: "NoReply@Contoso.com",
      to: ["a@example.com", { address: "b@example.com", name: "Bee" }],
      cc: [{ address: "c@example.com" }],
      bcc: ["d@example.com"],
      replyTo: ["support@contoso.com"],
      subject: "Your invoice",
      text: "plain body",
      html: '<p>html body <img src="cid:logo"></p>',
      attachments: [
        { filename: "invoice.pdf", contentType: "application/pdf", content: PDF },
        { filename: "logo.png", contentType: "image/png", content: PNG, contentId: "logo", inline: true },
      ],
      headers: { "X-Order-Id": "42", "x-trace": "abc def" },
      importance: "high",
      saveToSentItems: true,
    });

    expect(res.status).toBe(202);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(Object.keys(res.json).sort()).toEqual(["acceptedAt", "id", "internetMessageId", "sender", "tenant"]);
    expect(res.json.id).toMatch(UUID);
    expect(res.json.internetMessageId).toBe(`<${res.json.id}@contoso.com>`);
    expect(res.json).toMatchObject({ tenant: "contoso", sender: "noreply@contoso.com" });
    expect(new Date(res.json.acceptedAt).toISOString()).toBe(res.json.acceptedAt);

    const messages = h.emulator.state.messages();
    expect(messages).toHaveLength(1);
    const m = messages[0]!;
    expect(m.mailbox).toBe("noreply@contoso.com");
    expect(m.toRecipients).toEqual([{ address: "a@example.com" }, { address: "b@example.com", name: "Bee" }]);
    expect(m.ccRecipients).toEqual([{ address: "c@example.com" }]);
    expect(m.bccRecipients).toEqual([{ address: "d@example.com" }]);
    expect(m.replyTo).toEqual([{ address: "support@contoso.com" }]);
    expect(m.subject).toBe("Your invoice");
    expect(m.body).toEqual({ contentType: "html", content: '<p>html body <img src="cid:logo"></p>' });
    expect(m.attachments).toEqual([
      expect.objectContaining({ name: "invoice.pdf", contentType: "application/pdf", size: 16, isInline: false }),
      expect.objectContaining({ name: "logo.png", contentType: "image/png", size: 11, isInline: true, contentId: "logo" }),
    ]);
    expect(m.attachments[0]!.contentId).toBeUndefined();
    expect(m.internetMessageHeaders).toEqual([
      { name: "X-Order-Id", value: "42" },
      { name: "x-trace", value: "abc def" },
    ]);
    expect(m.importance).toBe("high");
    expect(m.saveToSentItems).toBe(true);
    // The request body as Graph received it carries our Message-ID, so a message trace finds it.
    const sent = JSON.parse(m.raw!) as { message: Record<string, unknown> };
    expect(sent.message.internetMessageId).toBe(res.json.internetMessageId);
    expect(sent.message.from).toBeUndefined();
  });

  it("when only text is given, then the body is plain text and importance is left to Graph", async () => {
    const res = await h.send(message("contoso", { text: "just text" }));
    expect(res.status).toBe(202);
    const [m] = h.emulator.state.messages();
    expect(m!.body).toEqual({ contentType: "text", content: "just text" });
    expect(m!.importance).toBe("normal");
    expect(JSON.parse(m!.raw!).message.importance).toBeUndefined();
  });

  it.each([
    { tenant: "contoso", request: undefined, expected: false, why: "tenant default false" },
    { tenant: "contoso", request: true, expected: true, why: "request overrides the tenant" },
    { tenant: "tailspin", request: undefined, expected: true, why: "tenant config true" },
    { tenant: "tailspin", request: false, expected: false, why: "request overrides the tenant" },
  ])("when saveToSentItems is $request for $tenant, then Graph gets $expected ($why)", async ({ tenant, request, expected }) => {
    const res = await h.send(message(tenant, request === undefined ? {} : { saveToSentItems: request }));
    expect(res.status).toBe(202);
    const [m] = h.emulator.state.messages();
    expect(m!.saveToSentItems).toBe(expected);
  });

  it("when dryRun is true, then the answer is 200 with the same body shape and nothing reaches Graph", async () => {
    const res = await h.send(message("contoso", { dryRun: true }));
    expect(res.status).toBe(200);
    expect(Object.keys(res.json).sort()).toEqual(["acceptedAt", "id", "internetMessageId", "sender", "tenant"]);
    expect(res.json.internetMessageId).toBe(`<${res.json.id}@contoso.com>`);
    expect(h.emulator.state.messages()).toHaveLength(0);
    expect(h.emulator.state.requests({ kind: "sendMail" })).toHaveLength(0);
  });

  it("when a dry run names a tenant whose credential Entra rejects, then it fails like a real send would", async () => {
    const res = await h.send(message("litware", { dryRun: true }));
    expect(res.status).toBe(502);
    expect(res.json.code).toBe("credential_rejected");
    expect(h.emulator.state.messages()).toHaveLength(0);
  });
});
