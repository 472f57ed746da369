import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findPackageRoot, registerDocsRoutes, swaggerUiAssetPath } from "../../src/http/docs-routes.js";

const REPO_SPEC = fileURLToPath(new URL("../../openapi.yaml", import.meta.url));

async function start(app: FastifyInstance): Promise<string> {
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  return address;
}

/** Every src/href in the page, in order. */
function referencedUrls(html: string): string[] {
  return [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1] ?? "");
}

describe("docs routes on a bare fastify instance", () => {
  const app = Fastify();
  let base = "";

  beforeAll(async () => {
    await registerDocsRoutes(app, {});
    base = await start(app);
  });
  afterAll(() => app.close());

  it("when GET /openapi.yaml, then it answers the repository's openapi.yaml byte for byte as application/yaml", async () => {
    const res = await fetch(`${base}/openapi.yaml`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/yaml");
    expect(Buffer.from(await res.arrayBuffer()).equals(await readFile(REPO_SPEC))).toBe(true);
  });

  it("when the spec is asked for again with its ETag, then it answers 304 without a body", async () => {
    const first = await fetch(`${base}/openapi.yaml`);
    const etag = first.headers.get("etag");
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const again = await fetch(`${base}/openapi.yaml`, { headers: { "if-none-match": etag ?? "" } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
  });

  it("when GET /docs, then it answers an HTML page under a same-origin CSP that loads only local assets", async () => {
    const res = await fetch(`${base}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/https?:/);
    const html = await res.text();
    expect(html).toContain('<div id="swagger-ui">');
    expect(html).not.toMatch(/<script>|<script\s+(?![^>]*\bsrc=)/); // no inline script
    const urls = referencedUrls(html);
    expect(urls.length).toBeGreaterThan(0);
    for (const url of urls) expect(url).toMatch(/^docs\/[a-z0-9.-]+$/); // relative, same origin
  });

  it("when the page's assets are fetched, then each loads with its content type and nosniff", async () => {
    const html = await (await fetch(`${base}/docs`)).text();
    const expected: Record<string, RegExp> = {
      ".css": /^text\/css; charset=utf-8$/,
      ".js": /^text\/javascript; charset=utf-8$/,
      ".png": /^image\/png$/,
    };
    for (const url of referencedUrls(html)) {
      const res = await fetch(new URL(url, `${base}/docs`));
      expect(res.status, url).toBe(200);
      const ext = url.slice(url.lastIndexOf("."));
      expect(res.headers.get("content-type"), url).toMatch(expected[ext] ?? /^$/);
      expect(res.headers.get("x-content-type-options"), url).toBe("nosniff");
      expect((await res.arrayBuffer()).byteLength, url).toBeGreaterThan(0);
    }
  });

  it("when the Swagger UI bundle is fetched, then it is the installed swagger-ui-dist file", async () => {
    const res = await fetch(`${base}/docs/swagger-ui-bundle.js`);
    const served = Buffer.from(await res.arrayBuffer());
    expect(served.equals(await readFile(swaggerUiAssetPath("swagger-ui-bundle.js")))).toBe(true);
  });

  it("when the initializer is fetched, then it loads the relay's own spec and calls no third party", async () => {
    const js = await (await fetch(`${base}/docs/swagger-initializer.js`)).text();
    expect(js).toContain('url: "openapi.yaml"');
    expect(js).toContain("validatorUrl: null");
    expect(js).not.toMatch(/https?:\/\//);
  });

  it("when GET /docs/, then it redirects to /docs so the relative asset URLs resolve", async () => {
    const res = await fetch(`${base}/docs/`, { redirect: "manual" });
    expect(res.status).toBe(301);
    expect(new URL(res.headers.get("location") ?? "", `${base}/docs/`).pathname).toBe("/docs");
  });

  it("when a file that is not one of the page's assets is asked for, then it answers 404", async () => {
    for (const path of ["/docs/package.json", "/docs/swagger-ui.js.map", "/docs/..%2Fpackage.json", "/docs/oauth2-redirect.html"]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
    }
  });
});

describe("docs routes in an app that ignores trailing slashes", () => {
  const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } });
  let base = "";

  beforeAll(async () => {
    await registerDocsRoutes(app, {});
    base = await start(app);
  });
  afterAll(() => app.close());

  it("when GET /docs/, then it redirects to /docs so the relative asset URLs resolve", async () => {
    const res = await fetch(`${base}/docs/`, { redirect: "manual" });
    expect(res.status).toBe(301);
    expect(new URL(res.headers.get("location") ?? "", `${base}/docs/`).pathname).toBe("/docs");
  });
});

describe("docs routes with another spec file", () => {
  const app = Fastify();
  let dir = "";
  let base = "";

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "docs-routes-"));
    await writeFile(join(dir, "spec.yaml"), "openapi: 3.1.0\n");
    await registerDocsRoutes(app, { specPath: join(dir, "spec.yaml") });
    base = await start(app);
  });
  afterAll(async () => {
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("when specPath is given, then that file is served", async () => {
    expect(await (await fetch(`${base}/openapi.yaml`)).text()).toBe("openapi: 3.1.0\n");
  });

  it("when specPath does not exist, then registering fails at start-up", async () => {
    await expect(registerDocsRoutes(Fastify(), { specPath: join(dir, "missing.yaml") })).rejects.toThrow(/ENOENT/);
  });
});

describe("findPackageRoot", () => {
  it("when called from the module in src/ or in dist/, then it finds the repository root", () => {
    const root = fileURLToPath(new URL("../..", import.meta.url)).replace(/[\\/]$/, "");
    expect(findPackageRoot(join(root, "src", "http", "docs-routes.ts"))).toBe(root);
    expect(findPackageRoot(join(root, "dist", "http", "docs-routes.js"))).toBe(root);
  });
});
