import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Request, Response } from "express";
import type { RouteTable } from "./route-table.js";

/*
 * GET /openapi.yaml and GET /docs (openapi.yaml, "Operations"). Swagger UI comes from the installed
 * swagger-ui-dist package and is served by the relay itself: no CDN, no inline script, so the
 * page runs under a strict Content-Security-Policy and works where the internet is not reachable.
 */

export interface DocsRoutesOptions {
  /** The OpenAPI file to serve; default `openapi.yaml` in the package root. */
  readonly specPath?: string;
}

interface Asset {
  readonly body: Buffer;
  readonly contentType: string;
  readonly etag: string;
}

const SPEC_CONTENT_TYPE = "application/yaml";
const HTML_CONTENT_TYPE = "text/html; charset=utf-8";

/* The swagger-ui-dist files the page loads, with their media types. Nothing else is served from the package. */
const PACKAGE_ASSETS: Readonly<Record<string, string>> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "index.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
  "favicon-16x16.png": "image/png",
};

/*
 * Relative URLs throughout, so the page also works behind a proxy that mounts the relay under a
 * path prefix: from /docs, `docs/x.js` is /docs/x.js and `openapi.yaml` is /openapi.yaml.
 */
const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>noreply-relay API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="stylesheet" href="docs/index.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-initializer.js"></script>
</body>
</html>
`;

/*
 * validatorUrl null: the default sends the spec to validator.swagger.io. queryConfigEnabled stays
 * off so a crafted link cannot point the page at another spec. The API key is kept in memory
 * only (persistAuthorization off): it must not outlive the tab in localStorage.
 */
const INITIALIZER_JS = `"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    queryConfigEnabled: false,
    persistAuthorization: false,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    requestSnippetsEnabled: true,
    defaultModelsExpandDepth: 0
  });
});
`;

/*
 * Same-origin only. Swagger UI sets inline style attributes and uses data: URIs for icons,
 * hence those two allowances; scripts are only the two files above.
 */
const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * Registers GET /openapi.yaml, GET /docs and the page's assets under /docs/. Every file is read
 * once, here: a missing spec or swagger-ui-dist fails start-up rather than the first request.
 */
export async function registerDocsRoutes(routes: RouteTable, opts: DocsRoutesOptions = {}): Promise<void> {
  const specPath = opts.specPath ?? join(findPackageRoot(fileURLToPath(import.meta.url)), "openapi.yaml");
  const spec = asset(await readFile(specPath), SPEC_CONTENT_TYPE);
  const page = asset(Buffer.from(DOCS_HTML), HTML_CONTENT_TYPE);

  const uiDir = swaggerUiDistDir();
  const assets = new Map<string, Asset>();
  for (const [name, contentType] of Object.entries(PACKAGE_ASSETS)) {
    assets.set(name, asset(await readFile(join(uiDir, name)), contentType));
  }
  assets.set("swagger-initializer.js", asset(Buffer.from(INITIALIZER_JS), "text/javascript; charset=utf-8"));

  routes.get("/openapi.yaml", (req, res) => {
    send(req, res, spec, "no-cache");
  });

  routes.get("/docs", (req, res) => {
    res.setHeader("content-security-policy", DOCS_CSP);
    res.setHeader("referrer-policy", "no-referrer");
    send(req, res, page, "no-cache");
  });

  routes.get("/docs/", (_req, res) => {
    // The page lives at /docs, where its relative URLs resolve.
    res.writeHead(301, { location: "../docs", "content-length": 0 });
    res.end();
  });

  routes.get("/docs/:file", (req, res, next) => {
    const found = assets.get(String(req.params.file));
    if (found === undefined) {
      next(); // the app's 404
      return;
    }
    // Not versioned by name, so browsers revalidate (cheap: 304 by ETag) after an hour.
    send(req, res, found, "public, max-age=3600");
  });
}

function asset(body: Buffer, contentType: string): Asset {
  return { body, contentType, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` };
}

function send(req: Request, res: Response, file: Asset, cacheControl: string): void {
  const headers = { etag: file.etag, "cache-control": cacheControl, "x-content-type-options": "nosniff" };
  if (req.headers["if-none-match"] === file.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, "content-type": file.contentType, "content-length": file.body.length });
  // HEAD: headers only (Node leaves the body out itself, but there is no need to hand it over).
  res.end(req.method === "HEAD" ? undefined : file.body);
}

/** The nearest directory at or above `from` that holds a package.json: the repo root from src/ and dist/ alike. */
export function findPackageRoot(from: string): string {
  let dir = dirname(from);
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${from}`);
    dir = parent;
  }
}

function swaggerUiDistDir(): string {
  // The package has no "exports" map, so its files resolve by path.
  return dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/swagger-ui-bundle.js"));
}

/** Absolute path of the swagger-ui-dist file `name` (for tests comparing bytes). */
export function swaggerUiAssetPath(name: string): string {
  return resolve(swaggerUiDistDir(), name);
}
