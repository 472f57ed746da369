import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { PROBLEMS, type ProblemCode } from "../../src/core/problems.js";
import { loadOpenApiValidator, type OperationObject } from "../support/openapi-validator.js";

/*
 * openapi.yaml against itself and against the code's list of problems: every example is valid,
 * every problem code is documented where the service gives it, and the file lints clean.
 */

const validator = loadOpenApiValidator();
const spec = validator.spec as unknown as Spec;
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Example {
  value?: unknown;
  $ref?: string;
}
interface Media {
  example?: unknown;
  examples?: Record<string, Example>;
}
interface Response {
  $ref?: string;
  headers?: Record<string, { $ref?: string; required?: boolean; example?: unknown }>;
  content?: Record<string, Media>;
}
interface Spec {
  paths: Record<string, Record<string, OperationObject>>;
  components: { schemas: Record<string, { enum?: string[] }>; [k: string]: unknown };
}

function resolve<T>(node: T & { $ref?: string }): T {
  if (node.$ref === undefined) return node;
  const target = node.$ref
    .slice(2)
    .split("/")
    .map((p) => p.replaceAll("~1", "/"))
    .reduce<unknown>((n, k) => (n as Record<string, unknown>)[k], spec);
  return resolve(target as T & { $ref?: string });
}

function examplesOf(media: Media): [string, unknown][] {
  const named = Object.entries(media.examples ?? {}).map(([name, ex]): [string, unknown] => [name, resolve(ex).value]);
  return media.example === undefined ? named : [["example", media.example], ...named];
}

const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
  Object.entries(item)
    .filter(([method]) => ["get", "put", "post", "delete", "patch"].includes(method))
    .map(([method, operation]) => ({ path, method, operation })),
);

describe("openapi.yaml examples", () => {
  it.each(operations.map((o) => [`${o.method.toUpperCase()} ${o.path}`, o] as const))(
    "when the request examples of %s are checked, then each matches the request schema",
    (_name, { path, method, operation }) => {
      const body = operation.requestBody === undefined ? undefined : resolve(operation.requestBody as { content?: Record<string, Media> });
      for (const [mediaType, media] of Object.entries(body?.content ?? {})) {
        for (const [name, value] of examplesOf(media)) {
          expect(validator.validateRequest({ method, path, headers: { "content-type": mediaType }, body: value }), name).toEqual([]);
        }
      }
    },
  );

  it.each(operations.map((o) => [`${o.method.toUpperCase()} ${o.path}`, o] as const))(
    "when the response examples of %s are checked, then each matches its status's schema and headers",
    (_name, { path, method, operation }) => {
      for (const [status, ref] of Object.entries(operation.responses ?? {})) {
        const response = resolve(ref as Response);
        const headers: Record<string, string> = {};
        for (const [name, header] of Object.entries(response.headers ?? {})) {
          const h = resolve(header);
          if (h.required === true) headers[name] = String(h.example);
        }
        for (const [mediaType, media] of Object.entries(response.content ?? {})) {
          const examples = examplesOf(media);
          for (const [name, value] of examples) {
            const errors = validator.validateResponse({ method, path, status: Number(status), headers: { ...headers, "content-type": mediaType }, body: value });
            expect(errors, `${status} ${name}`).toEqual([]);
          }
        }
      }
    },
  );
});

describe("openapi.yaml problem codes", () => {
  const codes = Object.keys(PROBLEMS) as ProblemCode[];
  const sendResponses = spec.paths["/send"]?.post?.responses ?? {};

  it("when the ProblemCode enum is compared with src/core/problems.ts, then they list the same codes", () => {
    expect([...(spec.components.schemas.ProblemCode?.enum ?? [])].sort()).toEqual([...codes].sort());
  });

  /** Problem examples of POST /send, by code. */
  const sendExamples = new Map<string, { status: number; value: Record<string, unknown> }[]>();
  for (const [status, ref] of Object.entries(sendResponses)) {
    const media = resolve(ref as Response).content?.["application/problem+json"];
    for (const [, value] of media === undefined ? [] : examplesOf(media)) {
      const v = value as Record<string, unknown>;
      const list = sendExamples.get(String(v.code)) ?? [];
      list.push({ status: Number(status), value: v });
      sendExamples.set(String(v.code), list);
    }
  }

  // Edge codes (no route, wrong method, a request too slow, an Expect we do not do) are not a property of one operation.
  const sendCodes = codes.filter((c) => !["not_found", "method_not_allowed", "request_timeout", "expectation_failed"].includes(c));

  it.each(sendCodes)("when POST /send's responses are read, then %s has an example matching the code's status, title and retryable", (code) => {
    const problem = PROBLEMS[code];
    const examples = sendExamples.get(code) ?? [];
    expect(examples.length, `no example of ${code}`).toBeGreaterThan(0);
    for (const { status, value } of examples) {
      expect(status).toBe(problem.status);
      expect(value).toMatchObject({
        type: `https://noreply-relay.dev/problems/${code}`,
        title: problem.title,
        status: problem.status,
        code,
        retryable: problem.retryable,
      });
    }
  });

  it("when a response is 429 or 503, then it requires a Retry-After header", () => {
    for (const { path, method, operation } of operations) {
      for (const [status, ref] of Object.entries(operation.responses ?? {})) {
        if (status !== "429" && status !== "503") continue;
        if (path === "/readyz") continue; // a probe's 503 is "not ready", not a request to retry
        const header = resolve(ref as Response).headers?.["Retry-After"];
        expect(header && resolve(header).required, `${method} ${path} ${status}`).toBe(true);
      }
    }
  });

  it("when an operation answers JSON, then its errors are application/problem+json", () => {
    for (const { path, method, operation } of operations) {
      const responses = Object.entries(operation.responses ?? {}).map(([s, r]) => [s, resolve(r as Response)] as const);
      const json = responses.some(([s, r]) => s.startsWith("2") && r.content?.["application/json"] !== undefined);
      if (!json || path === "/readyz") continue;
      for (const [status, response] of responses) {
        if (Number(status) < 400) continue;
        expect(Object.keys(response.content ?? {}), `${method} ${path} ${status}`).toEqual(["application/problem+json"]);
      }
    }
  });
});

describe("openapi.yaml lint", () => {
  it("when redocly lints it with redocly.yaml, then there are no problems", async () => {
    const cli = fileURLToPath(new URL("../../node_modules/@redocly/cli/bin/cli.js", import.meta.url));
    const run = promisify(execFile);
    const result = await run(process.execPath, [cli, "lint", "openapi.yaml", "--format", "stylish"], {
      cwd: ROOT,
      env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", NO_COLOR: "1" },
    }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? "", stderr: err.stderr ?? JSON.stringify(err), failed: true }));
    expect("failed" in result ? `${result.stdout}\n${result.stderr}` : "").toBe("");
  });
});
