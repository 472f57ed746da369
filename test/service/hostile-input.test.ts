import { randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { message } from "../support/fixtures.js";
import { specValidator } from "../support/checked-fetch.js";
import { startHarness, type Harness, type HttpResult } from "../support/harness.js";

/*
 * Issue 14, "Hostile and careless clients": bodies and headers a careless or hostile caller
 * sends, over HTTP to the service with the real adapters and the emulator as Entra and Graph.
 * Every answer is checked against openapi.yaml by the harness; "nothing sent" is what the
 * emulator saw, never what the service says.
 */

/** The largest answer any of these requests may get. */
const MAX_ANSWER_BYTES = 64 * 1024;

function expectInvalid(res: HttpResult, path?: string | RegExp, message?: RegExp): void {
  expect(res.status, res.text).toBe(400);
  expect(res.json.code).toBe("validation_failed");
  expect(Buffer.byteLength(res.text)).toBeLessThanOrEqual(MAX_ANSWER_BYTES);
  if (path === undefined) return;
  const errors = res.json.errors as { path: string; message: string }[];
  const match = errors.find((e) => (typeof path === "string" ? e.path === path : path.test(e.path)) && (message === undefined || message.test(e.message)));
  expect(match, `no error at ${String(path)} matching ${String(message)}: ${res.text.slice(0, 800)}`).toBeDefined();
}

/** `{"tenant":…, …, "k0":1, "k1":1, …}` with `n` unknown members, as text (JSON.stringify of such an object is slow). */
function withUnknownFields(n: number): string {
  const parts = ['"tenant":"contoso","to":["someone@example.com"],"subject":"Hello","text":"Hi"'];
  for (let i = 0; i < n; i++) parts.push(`"k${i}":1`);
  return `{${parts.join(",")}}`;
}

/** A valid message with `levels` nested arrays in an extra member. */
function nested(levels: number): string {
  return `{"tenant":"contoso","to":["someone@example.com"],"subject":"Hello","text":"Hi","deep":${"[".repeat(levels)}${"]".repeat(levels)}}`;
}

describe("POST /send: hostile and careless clients", () => {
  let h: Harness;
  const graphSends = (): number => h.emulator.state.requests({ kind: "sendMail" }).length;
  const idempotencyKey = (): Record<string, string> => ({ "idempotency-key": `hostile-${randomUUID()}` });

  /** POST /send of a valid message with header `name` sent once per value (fetch and supertest would join them). */
  function postWithHeaderTwice(name: string, values: string[]): Promise<HttpResult> {
    const body = JSON.stringify(message());
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${h.url}/send`, { method: "POST" }, (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (d: string) => (text += d));
        res.on("end", () => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") headers.set(k, v);
          const errors = specValidator().validateAnyResponse({ method: "POST", path: "/send", status: res.statusCode ?? 0, headers, body: text });
          if (errors.length > 0) reject(new Error(`the answer does not match openapi.yaml: ${errors.join("; ")}`));
          else resolve({ status: res.statusCode ?? 0, headers, text, json: JSON.parse(text) as unknown });
        });
      });
      req.on("error", reject);
      req.setHeader("content-type", "application/json");
      req.setHeader("authorization", `Bearer ${h.keys.ops}`);
      req.setHeader(name, values);
      req.end(body);
    });
  }

  beforeAll(async () => {
    h = await startHarness({ logLevel: "info" });
  });
  afterAll(async () => {
    await h?.close();
  });
  beforeEach(() => {
    h.emulator.state.reset();
  });

  describe("bounded error answers (item 3)", () => {
    it("when a body has 600,000 unknown fields, then 400 validation_failed in a small answer that names the member limit", async () => {
      const res = await h.send(withUnknownFields(600_000));
      expectInvalid(res, "(body)", /more than 64 members/);
      expect(res.text.length).toBeLessThan(2048);
      expect(graphSends()).toBe(0);
    });

    it("when 100 recipients are invalid, then errors lists the first 20 and errorsOmitted counts the other 80", async () => {
      const to = Array.from({ length: 100 }, (_, i) => `not-an-address-${i}`);
      const res = await h.send(message("contoso", { to }));
      expectInvalid(res);
      expect(res.json.errors).toHaveLength(20);
      expect(res.json.errors[0]).toEqual({ path: "to[0]", message: expect.any(String) as string });
      expect(res.json.errors[19].path).toBe("to[19]");
      expect(res.json.errorsOmitted).toBe(80);
      expect(res.json.detail).toMatch(/100 invalid fields/);
    });

    it("when at most 20 fields are invalid, then every one is listed and errorsOmitted is absent", async () => {
      const res = await h.send(message("contoso", { to: ["x", "y"] }));
      expectInvalid(res);
      expect(res.json.errors).toHaveLength(2);
      expect(res.json).not.toHaveProperty("errorsOmitted");
    });

    it("when an unknown field's name is 100,000 characters long, then the answer quotes a shortened path and stays small", async () => {
      const name = "n".repeat(100_000);
      const res = await h.send(JSON.stringify({ ...message(), [name]: 1 }));
      expectInvalid(res, /^nnnn.*…$/, /unknown field/);
      expect(res.text.length).toBeLessThan(2048);
    });

    it("when 64 unknown fields each hold a long name, then the whole answer still stays under 64 KB", async () => {
      const extra: Record<string, number> = {};
      for (let i = 0; i < 50; i++) extra[`${i}${"z".repeat(20_000)}`] = i;
      const res = await h.send(message("contoso", extra));
      expectInvalid(res);
      expect(res.json.errors).toHaveLength(20);
      expect(res.json.errorsOmitted).toBe(30);
    });

    it("when a recipient list has 10,000 entries, then it is refused at the reader's item limit without validating each entry", async () => {
      const to = Array.from({ length: 10_000 }, (_, i) => `r${i}@example.com`);
      const res = await h.send(message("contoso", { to }));
      expectInvalid(res, "to", /more than 1000 items/);
      expect(graphSends()).toBe(0);
    });
  });

  describe("no recursion a caller controls (item 4)", () => {
    it.each([
      ["2,540 levels without an Idempotency-Key", 2_540, false],
      ["2,540 levels with an Idempotency-Key", 2_540, true],
      ["100,000 levels without an Idempotency-Key", 100_000, false],
      ["100,000 levels with an Idempotency-Key", 100_000, true],
    ])("when a body nests %s, then 400 validation_failed naming the depth limit, never 500", async (_, levels, keyed) => {
      const res = await h.send(nested(levels), keyed ? { headers: idempotencyKey() } : {});
      expectInvalid(res, /^deep(\[0\]){63}$/, /deeper than 64 levels/);
      expect(graphSends()).toBe(0);
    });

    it("when a body nests exactly 64 levels, then the reader takes it and validation answers about the field", async () => {
      const res = await h.send(nested(63));
      expectInvalid(res, "deep", /unknown field/);
    });

    it("when an Idempotency-Key comes with no body at all, then 400 validation_failed, not a 500 from fingerprinting nothing", async () => {
      for (const contentType of ["text/plain", "application/jsonx"]) {
        const res = await h.send("", { headers: { ...idempotencyKey(), "content-type": contentType } });
        expectInvalid(res, "(body)");
      }
      expect(graphSends()).toBe(0);
    });

    it("when nested objects repeat under an Idempotency-Key, then the fingerprint is computed and the refusal is a 400", async () => {
      const deep = `${'{"a":'.repeat(60)}1${"}".repeat(60)}`;
      const res = await h.send(`{"tenant":"contoso","to":["someone@example.com"],"subject":"Hello","text":"Hi","x":${deep}}`, { headers: idempotencyKey() });
      expectInvalid(res, "x", /unknown field/);
    });
  });

  describe("text fields carry text (item 7)", () => {
    const forbidden: [string, string][] = [
      ["NUL", "\u0000"],
      ["BEL", "\u0007"],
      ["ESC", "\u001b"],
      ["DEL", "\u007f"],
      ["NEL (C1)", "\u0085"],
      ["CSI (C1)", "\u009b"],
      ["LINE SEPARATOR", "\u2028"],
      ["PARAGRAPH SEPARATOR", "\u2029"],
      ["RIGHT-TO-LEFT OVERRIDE", "\u202e"],
      ["LEFT-TO-RIGHT EMBEDDING", "\u202a"],
      ["FIRST STRONG ISOLATE", "\u2068"],
      ["POP DIRECTIONAL ISOLATE", "\u2069"],
      ["ZERO WIDTH SPACE", "\u200b"],
      ["ZERO WIDTH NO-BREAK SPACE", "\ufeff"],
      ["WORD JOINER", "\u2060"],
      ["SOFT HYPHEN", "\u00ad"],
      ["a lone surrogate", "\ud800"],
    ];

    it.each(forbidden)("when the subject contains %s, then 400 validation_failed at subject and nothing is sent", async (_, char) => {
      const res = await h.send(message("contoso", { subject: `Invoice${char}42` }));
      expectInvalid(res, "subject", /./);
      expect(graphSends()).toBe(0);
    });

    it.each(forbidden)("when a display name contains %s, then 400 at to[0].name", async (_, char) => {
      expectInvalid(await h.send(message("contoso", { to: [{ address: "someone@example.com", name: `Support${char}Desk` }] })), "to[0].name");
    });

    it.each(forbidden)("when a custom header value contains %s, then 400 at that header", async (_, char) => {
      expectInvalid(await h.send(message("contoso", { headers: { "X-Order-Id": `A${char}1` } })), 'headers["X-Order-Id"]');
    });

    it.each(forbidden)("when an attachment file name contains %s, then 400 at attachments[0].filename", async (_, char) => {
      const attachments = [{ filename: `invoice${char}fdp.exe`, contentType: "application/pdf", content: "QUJD" }];
      expectInvalid(await h.send(message("contoso", { attachments })), "attachments[0].filename");
    });

    it("when a file name hides its extension behind a right-to-left override, then it is refused, whatever the rest says", async () => {
      const attachments = [{ filename: "Invoice_\u202Efdp.exe", contentType: "application/pdf", content: "QUJD" }];
      expectInvalid(await h.send(message("contoso", { attachments })), "attachments[0].filename", /U\+202E/);
    });

    it("when a display name or file name contains a tab, then it is refused; in a subject or header value a tab is allowed", async () => {
      expectInvalid(await h.send(message("contoso", { to: [{ address: "someone@example.com", name: "A\tB" }] })), "to[0].name");
      const file = [{ filename: "a\tb.pdf", contentType: "application/pdf", content: "QUJD" }];
      expectInvalid(await h.send(message("contoso", { attachments: file })), "attachments[0].filename");
      const res = await h.send(message("contoso", { subject: "Order\t42", headers: { "X-Order-Id": "A\t1" }, dryRun: true }));
      expect(res.status, res.text).toBe(200);
    });

    it("when text is in other scripts, with emoji and their joiners, or Persian with its zero-width non-joiner, then it is accepted", async () => {
      const subject = "Ihre Bestellung 🇩🇪 👩‍👩‍👧 ❤️ — Заказ 注文 می‌خواهم नमस्‍ते";
      const res = await h.send(message("contoso", { subject, to: [{ address: "someone@example.com", name: "Zoë O’Brien 👩‍💻" }], dryRun: true }));
      expect(res.status, res.text).toBe(200);
    });

    it("when a zero-width joiner stands between Latin letters, then it is refused", async () => {
      expectInvalid(await h.send(message("contoso", { subject: "pay\u200dpal" })), "subject", /U\+200D/);
    });

    it("when a contentType or contentId carries a control character, then it is refused", async () => {
      const a = (extra: Record<string, unknown>) => [{ filename: "a.pdf", contentType: "application/pdf", content: "QUJD", ...extra }];
      expectInvalid(await h.send(message("contoso", { attachments: a({ contentType: "application/pdf; name=\u0000x" }) })), "attachments[0].contentType");
      expectInvalid(await h.send(message("contoso", { attachments: a({ contentId: "logo\u202e" }) })), "attachments[0].contentId");
    });

    it("when the text or html body holds a lone surrogate, then it is refused (it cannot be sent as UTF-8)", async () => {
      expectInvalid(await h.send(message("contoso", { text: "broken \ud83d here" })), "text");
      expectInvalid(await h.send(message("contoso", { html: "<p>\udc00</p>" })), "html");
    });
  });

  describe("addresses (item 7)", () => {
    it.each([
      ["a zero-width space in the domain", "someone@exa\u200bmple.com"],
      ["a soft hyphen in the domain", "someone@exam\u00adple.com"],
      ["a right-to-left override in the domain", "someone@\u202emoc.elpmaxe"],
      ["a Kelvin sign in the domain", "someone@\u212Aontoso.com"],
      ["fullwidth letters in the domain", "someone@\uff45xample.com"],
      ["a fullwidth full stop in the domain", "someone@example\uff0ecom"],
      ["Cyrillic mixed with Latin in one label", "someone@ex\u0430mple.com"],
      ["Greek mixed with Latin in one label", "someone@\u03bfffice.com"],
      ["a decomposed (NFD) umlaut", "someone@bu\u0308cher.de"],
      ["an A-label that does not decode", "someone@xn--zz.com"],
      ["an A-label that hides a mixed-script label", "someone@xn--exmple-4nf.com"],
      ["a zero-width space in the local part", "some\u200bone@example.com"],
      ["a right-to-left override in the local part", "some\u202eone@example.com"],
      ["a C1 control in the local part", "some\u0085one@example.com"],
      ["a line separator in the local part", "some\u2028one@example.com"],
    ])("when a recipient has %s, then 400 at to[0]", async (_, address) => {
      const res = await h.send(message("contoso", { to: [address] }));
      expectInvalid(res, "to[0]");
      expect(graphSends()).toBe(0);
    });

    it.each([
      ["an NFC U-label", "kunde@bücher.de"],
      ["an A-label", "kunde@xn--bcher-kva.de"],
      ["a Japanese domain", "info@例え.jp"],
      ["an upper-case ASCII domain", "Someone@Example.COM"],
      ["a UTF-8 local part", "zoë@example.com"],
    ])("when a recipient has %s, then it is accepted", async (_, address) => {
      const res = await h.send(message("contoso", { to: [address], dryRun: true }));
      expect(res.status, res.text).toBe(200);
    });
  });

  describe("duplicates (item 7)", () => {
    it("when a body repeats a top-level key, then 400 at that key and nothing is sent", async () => {
      const res = await h.send('{"tenant":"contoso","to":["someone@example.com"],"subject":"Hello","subject":"Other","text":"Hi"}');
      expectInvalid(res, "subject", /duplicate key/);
      expect(graphSends()).toBe(0);
    });

    it("when a nested object repeats a key, also written with an escape, then 400 at that key", async () => {
      const res = await h.send('{"tenant":"contoso","to":[{"address":"a@example.com","\\u0061ddress":"b@example.com"}],"subject":"Hello","text":"Hi"}');
      expectInvalid(res, "to[0].address", /duplicate key/);
    });

    it("when a repeated key sits in malformed JSON, then the answer is about the syntax", async () => {
      expectInvalid(await h.send('{"subject":"a","subject":"b",'), "(body)", /not valid JSON/);
    });

    it("when two Idempotency-Key headers are sent, then 400 at Idempotency-Key and nothing is sent", async () => {
      const res = await postWithHeaderTwice("idempotency-key", ["order-1", "order-2"]);
      expect(res.status, res.text).toBe(400);
      expect(res.json.code).toBe("validation_failed");
      expect(res.json.errors).toEqual([{ path: "Idempotency-Key", message: expect.stringMatching(/once/) as string }]);
      expect(graphSends()).toBe(0);
    });

    it("when two identical Idempotency-Key headers are sent, then it is still 400", async () => {
      const res = await postWithHeaderTwice("idempotency-key", ["order-3", "order-3"]);
      expect(res.status, res.text).toBe(400);
      expect(graphSends()).toBe(0);
    });
  });

  describe("from and the tenant's sender (item 7)", () => {
    it("when from spells the sender with a Kelvin sign for k, then 400 validation_failed at from and Graph is not called", async () => {
      const res = await h.send(message("fabrikam", { from: "noreply@fabri\u212Aam.com" }));
      expectInvalid(res, "from", /U\+212A/);
      expect(h.emulator.state.requests().length).toBe(0);
    });

    it("when from uses a compatibility look-alike in the local part, then 400 at from", async () => {
      expectInvalid(await h.send(message("contoso", { from: "\uff4eoreply@contoso.com" })), "from");
      expectInvalid(await h.send(message("contoso", { from: "noreply@conto\u017fo.com" })), "from");
    });

    it("when from is the sender in other ASCII case, then it is accepted", async () => {
      const res = await h.send(message("contoso", { from: "NoReply@Contoso.COM", dryRun: true }));
      expect(res.status, res.text).toBe(200);
    });

    it("when from carries a dotted capital I, whose lower case is i plus a combining dot, then it is refused before Graph", async () => {
      const res = await h.send(message("fabrikam", { from: "noreply@fabr\u0130kam.com" }));
      expectInvalid(res, "from");
      expect(h.emulator.state.requests().length).toBe(0);
    });
  });
});
