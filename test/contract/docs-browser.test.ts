import Fastify from "fastify";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerDocsRoutes } from "../../src/http/docs-routes.js";

/*
 * Drives /docs in a real browser: the page renders under its CSP, a developer can authorize
 * with an API key, and "Try it out" sends the request to the relay. Opt-in because it needs a
 * Chromium: NOREPLY_RELAY_CHROMIUM=/path/to/chromium npx vitest run test/contract/docs-browser.test.ts
 */
const executablePath = process.env.NOREPLY_RELAY_CHROMIUM;

describe.skipIf(executablePath === undefined || executablePath === "")("GET /docs in a browser", () => {
  const app = Fastify();
  const received: { authorization?: string; idempotencyKey?: string; body: unknown }[] = [];
  let base = "";
  let browser: Browser;

  beforeAll(async () => {
    await registerDocsRoutes(app, {});
    // Stands in for the real route: this test is about the page, not about sending.
    app.post("/send", async (request, reply) => {
      received.push({
        authorization: request.headers.authorization,
        idempotencyKey: request.headers["idempotency-key"] as string | undefined,
        body: request.body,
      });
      return reply.code(200).send({});
    });
    base = await app.listen({ port: 0, host: "127.0.0.1" });
    browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
  });
  afterAll(async () => {
    await browser?.close();
    await app.close();
  });

  it("when a developer authorizes and tries out POST /send, then the request reaches the relay with the key and nothing else is loaded", async () => {
    const page = await browser.newPage();
    const complaints: string[] = [];
    const foreign: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") complaints.push(m.text());
    });
    page.on("pageerror", (e) => complaints.push(e.message));
    page.on("request", (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreign.push(r.url());
    });

    await page.goto(`${base}/docs`);
    await page.waitForSelector("#operations-Mail-sendMail");
    await page.click("button.authorize");
    await page.fill(".modal-ux input", "test-api-key");
    await page.click(".modal-ux button.authorize");
    await page.click(".modal-ux button.btn-done");
    await page.click("#operations-Mail-sendMail .opblock-summary");
    await page.click("#operations-Mail-sendMail .execute");
    await page.waitForSelector("#operations-Mail-sendMail .live-responses-table");

    expect(received).toHaveLength(1);
    expect(received[0]?.authorization).toBe("Bearer test-api-key");
    // The parameter has no example, so Swagger UI does not send one fixed key on every try.
    expect(received[0]?.idempotencyKey).toBeUndefined();
    expect(received[0]?.body).toMatchObject({ tenant: "contoso", subject: expect.any(String) });
    expect(complaints).toEqual([]);
    expect(foreign).toEqual([]);
  });
});
