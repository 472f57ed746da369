import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext } from "playwright-core";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoredMessage } from "../../src/emulator/inspection.js";
import { createApiClient, type ApiClient } from "../support/api-client.js";
import { specValidator } from "../support/checked-fetch.js";
import { startDemo, stopDemo, type RunningDemo } from "../support/demo-process.js";
import { describeWithTool } from "../support/external-tools.js";

/*
 * `npm run demo` as a developer runs it (src/demo.ts in a child process, on free ports), then
 * its /docs in Debian's Chromium: authorize with the demo key, "Try it out" on POST /send, see
 * the 202 on the page and find the message in the emulator. Runs wherever /usr/bin/chromium
 * exists; in CI a missing Chromium fails the run instead of skipping (.ci/run installs it).
 * The screenshot is kept in test-results/ (git-ignored) for a person to look at.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = join(ROOT, "test-results", "docs-try-it-out.png");

/*
 * As this machine's closed network needs: no sandbox (root), no GPU, and none of Chromium's
 * own background connections (updates, sync, QUIC probes), which would only be refused.
 */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let demo: RunningDemo | undefined;
beforeAll(async () => {
  demo = await startDemo({ timeoutMs: 20_000 });
});
afterAll(() => stopDemo(demo));

describe("the running demo's answers", () => {
  let relay: ApiClient;
  beforeAll(() => {
    relay = createApiClient({ baseUrl: demo!.url, apiKey: demo!.apiKey, validator: specValidator() });
  });

  it("when the demo's /openapi.yaml and /docs are fetched and then revalidated, then 200 and 304 both conform to openapi.yaml", async () => {
    const spec = await relay.openApi();
    expect(spec.status).toBe(200);
    expect(spec.body).toBe(await readFile(join(ROOT, "openapi.yaml"), "utf8"));
    const again = await relay.openApi({ headers: { "if-none-match": spec.headers.get("etag") ?? "" } });
    expect(again.status).toBe(304);
    const docs = await relay.docs();
    expect(docs.status).toBe(200);
    expect((await relay.docs({ headers: { "if-none-match": docs.headers.get("etag") ?? "" } })).status).toBe(304);
  });

  it("when the probes and metrics of the demo are read, then they conform", async () => {
    expect((await relay.healthz()).status).toBe(200);
    expect((await relay.readyz()).status).toBe(200);
    expect((await relay.metrics()).status).toBe(200);
  });

  it("when the demo's admin key reads /tenants, then both demo tenants are listed in the documented shape", async () => {
    const res = await relay.listTenants();
    expect(res.status).toBe(200);
    if (res.status === 200) {
      expect(res.body.tenants.map((t) => [t.tenant, t.sender])).toEqual([
        ["contoso", "noreply@contoso.com"],
        ["fabrikam", "noreply@fabrikam.com"],
      ]);
    }
  });

  it("when the consent callback is reached without a state, then it answers the documented 400 page", async () => {
    expect((await relay.consentCallback({ admin_consent: "True" })).status).toBe(400);
  });
});

describeWithTool("chromium", "GET /docs of the running demo in Chromium", () => {
  let context: BrowserContext;
  let profile = "";

  beforeAll(async () => {
    profile = await mkdtemp(join(tmpdir(), "noreply-relay-chromium-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
  });
  afterAll(async () => {
    await context?.close();
    await rm(profile, { recursive: true, force: true });
  });

  it("when a developer authorizes with the demo key and tries out POST /send, then the page shows 202 and the emulator holds the message", async () => {
    const { url, apiKey, emulatorUrl, caFile } = demo!;
    const page = await context.newPage();
    const complaints: string[] = [];
    const foreign: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") complaints.push(m.text());
    });
    page.on("pageerror", (e) => complaints.push(e.message));
    page.on("request", (r) => {
      if (!r.url().startsWith(url) && !r.url().startsWith("data:")) foreign.push(r.url());
    });
    // What the page received from the relay is checked like any other answer in the suite.
    const answers: Promise<string[]>[] = [];
    page.on("response", (r) => {
      const path = new URL(r.url()).pathname;
      // offSpec: Swagger UI's own files under /docs/ are static assets, not operations of the API.
      if (!r.url().startsWith(url) || path.startsWith("/docs/")) return;
      answers.push(
        Promise.all([r.allHeaders(), r.text()]).then(([headers, body]) =>
          specValidator().validateAnyResponse({ method: r.request().method(), path, status: r.status(), headers, body }),
        ),
      );
    });

    await page.goto(`${url}/docs`);
    const operation = page.locator("#operations-Mail-sendMail");
    await operation.waitFor();

    await page.locator("button.authorize").first().click();
    // The dialog lists every security scheme (apiKey for /send, metricsToken for /metrics): authorize apiKey only.
    const apiKeyForm = page.locator(".modal-ux form").filter({ hasText: "apiKey (http, Bearer)" });
    await apiKeyForm.locator("input").fill(apiKey);
    await apiKeyForm.locator("button.authorize").click();
    await apiKeyForm.locator("button.btn-done").click();

    await operation.locator(".opblock-summary").click();
    const tryItOut = operation.locator("button.try-out__btn");
    if ((await tryItOut.textContent())?.trim() === "Try it out") await tryItOut.click();
    await operation.locator("button.execute").click();

    const status = operation.locator(".live-responses-table .response .response-col_status");
    let shown: { internetMessageId: string; sender: string };
    try {
      await expect.poll(() => status.first().textContent(), { timeout: 10_000 }).toMatch(/^\s*202/);
      shown = JSON.parse((await operation.locator(".live-responses-table .response-col_description pre").first().textContent()) ?? "") as typeof shown;
      // The picture a person should see: the live answer with its 202 and body.
      await operation.locator(".live-responses-table").scrollIntoViewIfNeeded();
      await page.mouse.wheel(0, -120);
    } finally {
      // Also on failure: then it shows what the page showed instead.
      await mkdir(join(ROOT, "test-results"), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: false });
    }

    const dispatcher = new Agent({ connect: { ca: await readFile(caFile, "utf8") } });
    try {
      const res = await undiciFetch(`${emulatorUrl}/_emulator/messages?raw=false`, { dispatcher });
      const { value } = (await res.json()) as { value: StoredMessage[] };
      expect(value).toHaveLength(1);
      expect(value[0]).toMatchObject({ mailbox: "noreply@contoso.com", internetMessageId: shown.internetMessageId, subject: "Your password was changed" });
      expect(value[0]?.toRecipients.map((r) => r.address)).toEqual(["ada@example.com"]);
    } finally {
      await dispatcher.close();
    }
    expect(shown.sender).toBe("noreply@contoso.com");
    expect(complaints).toEqual([]);
    expect(foreign).toEqual([]);
    expect(answers.length).toBeGreaterThanOrEqual(3); // /docs, /openapi.yaml, POST /send
    expect((await Promise.all(answers)).flat()).toEqual([]);
  });
});
