import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Express } from "express";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findPackageRoot, registerDocsRoutes, swaggerUiAssetPath } from "../../src/http/docs-routes.js";
import { routeApp } from "../support/route-app.js";

const REPO_SPEC = fileURLToPath(new URL("../../openapi.yaml", import.meta.url));

/** GET through supertest, the body as bytes whatever its type. */
async function get(app: Express, path: string, headers: Record<string, string> = {}) {
  let test = request(app).get(path);
  for (const [k, v] of Object.entries(headers)) test = test.set(k, v);
  const res = await test.buffer(true).parse((stream, done) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => done(null, Buffer.concat(chunks)));
  });
  const body = res.body as Buffer;
  return { status: res.status, header: (name: string): string | undefined => res.headers[name.toLowerCase()], body, text: body.toString("utf8") };
}

/** Every src/href in the page, in order. */
function referencedUrls(html: string): string[] {
  return [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1] ?? "");
}

describe("docs routes on a bare express app", () => {
  let app: Express;

  beforeAll(async () => {
    app = await routeApp((routes) => registerDocsRoutes(routes, {}));
  });

  it("when GET /openapi.yaml, then it answers the repository's openapi.yaml byte for byte as application/yaml", async () => {
    const res = await get(app, "/openapi.yaml");
    expect(res.status).toBe(200);
    expect(res.header("content-type")).toBe("application/yaml");
    expect(res.body.equals(await readFile(REPO_SPEC))).toBe(true);
  });

  it("when the spec is asked for again with its ETag, then it answers 304 without a body", async () => {
    const first = await get(app, "/openapi.yaml");
    const etag = first.header("etag");
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const again = await get(app, "/openapi.yaml", { "if-none-match": etag ?? "" });
    expect(again.status).toBe(304);
    expect(again.text).toBe("");
  });

  it("when GET /docs, then it answers an HTML page under a same-origin CSP that loads only local assets", async () => {
    const res = await get(app, "/docs");
    expect(res.status).toBe(200);
    expect(res.header("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.header("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/https?:/);
    const html = res.text;
    expect(html).toContain('<div id="swagger-ui">');
    expect(html).not.toMatch(/<script>|<script\s+(?![^>]*\bsrc=)/); // no inline script
    const urls = referencedUrls(html);
    expect(urls.length).toBeGreaterThan(0);
    for (const url of urls) expect(url).toMatch(/^docs\/[a-z0-9.-]+$/); // relative, same origin
  });

  it("when the page's assets are fetched, then each loads with its content type and nosniff", async () => {
    const html = (await get(app, "/docs")).text;
    const expected: Record<string, RegExp> = {
      ".css": /^text\/css; charset=utf-8$/,
      ".js": /^text\/javascript; charset=utf-8$/,
      ".png": /^image\/png$/,
    };
    for (const url of referencedUrls(html)) {
      const res = await get(app, new URL(url, "http://relay.test/docs").pathname);
      expect(res.status, url).toBe(200);
      const ext = url.slice(url.lastIndexOf("."));
      expect(res.header("content-type"), url).toMatch(expected[ext] ?? /^$/);
      expect(res.header("x-content-type-options"), url).toBe("nosniff");
      expect(res.body.length, url).toBeGreaterThan(0);
    }
  });

  it("when the Swagger UI bundle is fetched, then it is the installed swagger-ui-dist file", async () => {
    const served = (await get(app, "/docs/swagger-ui-bundle.js")).body;
    expect(served.equals(await readFile(swaggerUiAssetPath("swagger-ui-bundle.js")))).toBe(true);
  });

  it("when the initializer is fetched, then it loads the relay's own spec and calls no third party", async () => {
    const js = (await get(app, "/docs/swagger-initializer.js")).text;
    expect(js).toContain('url: "openapi.yaml"');
    expect(js).toContain("validatorUrl: null");
    expect(js).not.toMatch(/https?:\/\//);
  });

  it("when GET /docs/, then it redirects to /docs so the relative asset URLs resolve", async () => {
    const res = await get(app, "/docs/");
    expect(res.status).toBe(301);
    expect(new URL(res.header("location") ?? "", "http://relay.test/docs/").pathname).toBe("/docs");
  });

  it("when a file that is not one of the page's assets is asked for, then it answers 404", async () => {
    for (const path of ["/docs/package.json", "/docs/swagger-ui.js.map", "/docs/..%2Fpackage.json", "/docs/oauth2-redirect.html"]) {
      expect((await get(app, path)).status, path).toBe(404);
    }
  });
});

describe("docs routes with another spec file", () => {
  let app: Express;
  let dir = "";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "docs-routes-"));
    await writeFile(join(dir, "spec.yaml"), "openapi: 3.1.0\n");
    app = await routeApp((routes) => registerDocsRoutes(routes, { specPath: join(dir, "spec.yaml") }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("when specPath is given, then that file is served", async () => {
    expect((await get(app, "/openapi.yaml")).text).toBe("openapi: 3.1.0\n");
  });

  it("when specPath does not exist, then registering fails at start-up", async () => {
    await expect(routeApp((routes) => registerDocsRoutes(routes, { specPath: join(dir, "missing.yaml") }))).rejects.toThrow(/ENOENT/);
  });
});

describe("findPackageRoot", () => {
  it("when called from the module in src/ or in dist/, then it finds the repository root", () => {
    const root = fileURLToPath(new URL("../..", import.meta.url)).replace(/[\\/]$/, "");
    expect(findPackageRoot(join(root, "src", "http", "docs-routes.ts"))).toBe(root);
    expect(findPackageRoot(join(root, "dist", "http", "docs-routes.js"))).toBe(root);
  });
});
