import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ErrorObject, type Options as AjvOptions, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { OpenAPIBackend, SetMatchType, ValidationContext, type Operation } from "openapi-backend";
import { parse } from "yaml";

/*
 * Checks real requests and responses against openapi.yaml, so component tests can prove the
 * description and the service agree. The OpenAPI work is openapi-backend's: routing (path, method),
 * status lookup (exact, `4XX`, `default`), response headers, JSON response bodies, request
 * parameters and JSON request bodies. Its Ajv is swapped for Ajv 2020 + ajv-formats (OpenAPI 3.1's
 * dialect). What is left here is glue, plus the shims marked SHIM below.
 *
 *   const spec = loadOpenApiValidator();
 *   expect(spec.validateResponse({ method: "POST", path: "/send", status: 202, headers, body })).toEqual([]);
 *   await spec.assertFetchResponse("POST", res);   // throws listing every mismatch
 */

/** The repository's openapi.yaml. */
export const OPENAPI_FILE = fileURLToPath(new URL("../../openapi.yaml", import.meta.url));

/** Headers as fetch gives them, or as node and supertest give them. */
export type HeadersLike = Headers | Readonly<Record<string, string | readonly string[] | number | undefined>>;

export interface ResponseUnderTest {
  /** HTTP method of the request, any case. */
  readonly method: string;
  /** Request path as sent (`/send`, `/tenants?x=1`) or a full URL; matched against the spec's path templates. */
  readonly path: string;
  readonly status: number;
  readonly headers?: HeadersLike;
  /**
   * The body: parsed JSON or the raw text/Buffer for JSON media types (raw is parsed here),
   * text or Buffer for other media types; undefined or "" for none.
   */
  readonly body?: unknown;
}

export interface RequestUnderTest {
  readonly method: string;
  readonly path: string;
  readonly headers?: HeadersLike;
  /** Parsed JSON or raw text, as for responses; undefined for none. */
  readonly body?: unknown;
}

export interface MatchedOperation {
  /** The spec's path template, e.g. `/send`. */
  readonly path: string;
  /** Lower case, as in the spec. */
  readonly method: string;
  readonly operation: OperationObject;
}

export interface OpenApiValidator {
  /** The parsed description. */
  readonly spec: OpenApiDocument;
  /** The operation a request goes to, or undefined when the spec has none. */
  findOperation(method: string, path: string): MatchedOperation | undefined;
  /** Every way the response differs from the description; empty when it conforms. */
  validateResponse(response: ResponseUnderTest): string[];
  /**
   * Like validateResponse, and also for requests the description has no operation for: those
   * may only get the answers its Errors section promises, `404 not_found` for a path it does not
   * list and `405 method_not_allowed` (with `Allow`) for a listed path with another method, each
   * a `Problem` with the `X-Request-Id` header of `components.headers.RequestId`.
   */
  validateAnyResponse(response: ResponseUnderTest): string[];
  /** Every way the request differs from the description (parameters and body); empty when it conforms. */
  validateRequest(request: RequestUnderTest): string[];
  /**
   * Checks a value against `components.schemas[name]`: for answers that belong to no single
   * operation, such as the 404 `not_found` and 405 `method_not_allowed` problems (schema `Problem`).
   */
  validateComponent(name: string, value: unknown): string[];
  /** Reads a fetch Response (from a clone, so the caller can still read it) and validates it. */
  validateFetchResponse(method: string, response: Response): Promise<string[]>;
  /** Throws an Error that lists every mismatch, or returns when the response conforms. */
  assertResponse(response: ResponseUnderTest): void;
  /** Like assertResponse, for a fetch Response. */
  assertFetchResponse(method: string, response: Response): Promise<void>;
}

/* The parts of an OpenAPI 3.1 document this helper reads. */
export interface OpenApiDocument {
  openapi: string;
  paths?: Record<string, PathItemObject>;
  components?: {
    schemas?: Record<string, JsonSchema>;
    headers?: Record<string, MaybeRef<HeaderObject>>;
    [section: string]: unknown;
  };
}
type JsonSchema = boolean | Record<string, unknown>;
type PathItemObject = Record<string, unknown> & { parameters?: MaybeRef<ParameterObject>[] };
export interface OperationObject {
  operationId?: string;
  parameters?: MaybeRef<ParameterObject>[];
  requestBody?: MaybeRef<RequestBodyObject>;
  responses?: Record<string, MaybeRef<ResponseObject>>;
  [key: string]: unknown;
}
interface Ref {
  $ref: string;
}
type MaybeRef<T> = T | Ref;
interface ParameterObject {
  name: string;
  in: "query" | "header" | "path" | "cookie";
  required?: boolean;
  schema?: JsonSchema;
}
interface HeaderObject {
  required?: boolean;
  schema?: JsonSchema;
}
interface MediaTypeObject {
  schema?: JsonSchema;
}
interface RequestBodyObject {
  required?: boolean;
  content?: Record<string, MediaTypeObject>;
}
interface ResponseObject {
  headers?: Record<string, MaybeRef<HeaderObject>>;
  content?: Record<string, MediaTypeObject>;
}
/* After openapi-backend has dereferenced the document: no Ref left. */
type Resolved<T> = T extends MaybeRef<infer U> ? Exclude<U, Ref> : T;

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;

const AJV_OPTIONS: AjvOptions = {
  allErrors: true,
  // Unknown keywords and formats are errors (openapi-backend's own default is strict: false).
  strict: true,
  // OpenAPI's narrowing branches (`allOf: [{$ref}, {properties: {code: {const}}}]`) carry no
  // `type` of their own, which strictTypes would report; 3.1's `type: [string, "null"]` is a union.
  strictTypes: false,
  allowUnionTypes: true,
};

/**
 * openapi-backend builds a draft-07 Ajv; OpenAPI 3.1 schemas are JSON Schema 2020-12, so each Ajv it
 * asks for is an Ajv2020 with the options it chose (e.g. coerceTypes for headers and parameters).
 */
function ajv2020(options: AjvOptions): Ajv2020 {
  const ajv = new Ajv2020(options);
  addFormats.default(ajv); // uuid, date-time, email, uri, … and OpenAPI's int32, int64, float, double, byte, binary, password
  ajv.addVocabulary(["example", "discriminator", "xml", "externalDocs"]); // OpenAPI's own annotations
  return ajv;
}

/** A validator for the repository's openapi.yaml (or another file). Reads and compiles once; reuse it. */
export function loadOpenApiValidator(file: string = OPENAPI_FILE): OpenApiValidator {
  return createOpenApiValidator(parse(readFileSync(file, "utf8")) as OpenApiDocument);
}

/** A validator for an already parsed OpenAPI 3.1 document. */
export function createOpenApiValidator(spec: OpenApiDocument): OpenApiValidator {
  if (!/^3\.1\./.test(spec.openapi)) throw new Error(`expected an OpenAPI 3.1 document, got openapi: ${spec.openapi}`);
  const backend = new OpenAPIBackend({
    definition: keepRefSiblings(spec, spec) as ConstructorParameters<typeof OpenAPIBackend>[0]["definition"],
    // quick: an in-memory document is dereferenced synchronously (dereference-json-schema), so this
    // helper can stay synchronous; validators compile on first use (~80 ms to load instead of ~600);
    // and openapi-backend's OpenAPI 3.0 document check is skipped (redocly lints openapi.yaml).
    // strict: a broken $ref rejects init() instead of a console warning.
    quick: true,
    strict: true,
    ignoreTrailingSlashes: false, // `/send/` is not `/send`
    ajvOpts: AJV_OPTIONS,
    customizeAjv: (_draft07, options) => ajv2020(options),
  });
  backend.init().catch((e: unknown) => console.error("openapi-backend init() failed:", e)); // then `initialized` stays false
  if (!backend.initialized) throw new Error("openapi-backend could not load the description (its init() error is logged)");
  const { router, validator: library } = backend;
  const definition = backend.definition as unknown as { components?: { schemas?: Record<string, JsonSchema>; headers?: Record<string, HeaderObject> } };

  /*
   * For the schemas openapi-backend does not compile (see SHIM: bodies) and components, the same
   * Ajv settings. The schemas come dereferenced from the library's copy; openapi.yaml has no
   * recursive schema (one would make ajv.compile overflow its stack, loudly).
   */
  const ajv = library.getAjv(ValidationContext.Response);
  const compiled = new WeakMap<object, ValidateFunction>();
  function check(schema: JsonSchema | undefined, value: unknown, where: string): string[] {
    if (schema === undefined) return [];
    const key = typeof schema === "object" ? schema : { schema };
    let fn = compiled.get(key);
    if (fn === undefined) compiled.set(key, (fn = ajv.compile(schema)));
    return fn(value) ? [] : formatErrors(fn.errors ?? [], where);
  }

  function route(method: string, path: string): Operation | undefined {
    return router.matchOperation({ method, path: toPathname(path), headers: {} });
  }

  /** The methods openapi-backend routes for this path. */
  function methodsOf(path: string): string[] {
    return METHODS.filter((m) => route(m, path) !== undefined);
  }

  function findOperation(method: string, path: string): MatchedOperation | undefined {
    const op = route(method, path);
    if (op === undefined) return undefined;
    // The caller gets the operation as written in openapi.yaml ($refs and all), not the library's copy.
    const operation = (spec.paths?.[op.path]?.[op.method] ?? op) as OperationObject;
    return { path: op.path, method: op.method, operation };
  }

  function describeMiss(method: string, path: string): string {
    const pathname = toPathname(path);
    const methods = methodsOf(path);
    if (methods.length === 0) return `${pathname} is not a path of the description`;
    return `${method.toUpperCase()} ${pathname} is not described (methods: ${methods.map((m) => m.toUpperCase()).join(", ")})`;
  }

  function validateResponse(res: ResponseUnderTest): string[] {
    const label = `${res.method.toUpperCase()} ${toPathname(res.path)} → ${res.status}`;
    const op = route(res.method, res.path);
    if (op === undefined) return [`${label}: ${describeMiss(res.method, res.path)}`];
    const responses = (op.responses ?? {}) as Record<string, Resolved<ResponseObject>>;
    // SHIM: openapi-backend has no public "which response documents this status" (its
    // utils.findStatusCodeMatch is internal) and, for a status with no validator, reports the
    // response valid. Same order as its lookup: exact status, then `4XX`, then `default`.
    const key = [String(res.status), `${Math.floor(res.status / 100)}XX`, "default"].find((k) => responses[k] !== undefined);
    const response = key === undefined ? undefined : responses[key];
    if (response === undefined) {
      return [`${label}: status ${res.status} is not documented (documented: ${Object.keys(responses).join(", ")})`];
    }
    const headers = normalizeHeaders(res.headers);
    const errors: string[] = [];

    const headerResult = library.validateResponseHeaders(Object.fromEntries(headers), op, {
      statusCode: res.status,
      setMatchType: SetMatchType.Superset,
    });
    const documented = new Map(Object.entries(response.headers ?? {}).map(([name, h]) => [name.toLowerCase(), { name, header: h as HeaderObject }]));
    for (const e of headerResult.errors ?? []) {
      const lower = e.keyword === "required" ? String(e.params.missingProperty) : decodePointer(e.instancePath.split("/")[2] ?? "");
      if (lower === "content-type") continue; // OpenAPI: Content-Type is described by `content`; a `headers` entry is ignored
      const doc = documented.get(lower);
      if (e.keyword === "required") {
        // SHIM: "superset" makes openapi-backend require every documented header that has a schema,
        // regardless of the Header Object's `required` (default false); "any" requires none. Only
        // `required: true` headers may be reported missing.
        if (doc?.header.required === true) errors.push(`${label}: header ${doc.name} is required but missing`);
        continue;
      }
      const rest = e.instancePath.split("/").slice(3).join("/");
      errors.push(...formatErrors([{ ...e, instancePath: rest === "" ? "" : `/${rest}` }], `${label}: header ${doc?.name ?? lower}`));
    }

    const bodyless = res.method.toLowerCase() === "head" || res.status === 304;
    errors.push(
      ...checkContent(label, response.content, headers, res.body, bodyless, (value) =>
        formatErrors(library.validateResponse(value, op, res.status).errors ?? [], `${label}: body`),
      ),
    );
    return errors;
  }

  /*
   * SHIM: bodies. openapi-backend validates only the `application/json` media type (request and
   * response) and takes the body already parsed: it neither checks the Content-Type against
   * `content`, nor an empty or undocumented body, nor schemas of other media types
   * (`application/problem+json` problems, text/plain /metrics, application/yaml, text/html). So:
   * pick the documented media type (exact, `type/*`, `*\/*`), parse JSON media types, hand
   * `application/json` to `json` (the library) and check any other media type's schema here.
   */
  function checkContent(
    label: string,
    content: Record<string, MediaTypeObject> | undefined,
    headers: Map<string, string>,
    body: unknown,
    bodyless: boolean,
    json: (value: unknown) => string[],
  ): string[] {
    const empty = body === undefined || body === null || body === "" || (Buffer.isBuffer(body) && body.length === 0);
    if (content === undefined || Object.keys(content).length === 0) {
      return empty ? [] : [`${label}: has a body but the description documents none`];
    }
    if (bodyless) return [];
    const contentType = headers.get("content-type");
    if (contentType === undefined) return [`${label}: content-type is missing (documented: ${Object.keys(content).join(", ")})`];
    const mediaKey = matchMediaType(contentType, Object.keys(content));
    if (mediaKey === undefined) {
      return [`${label}: content-type ${contentType} is not documented (documented: ${Object.keys(content).join(", ")})`];
    }
    if (empty) return [`${label}: body is empty but ${mediaKey} is documented`];
    let value: unknown = body;
    if (isJsonMediaType(mediaKey)) {
      if (typeof body === "string" || Buffer.isBuffer(body)) {
        try {
          value = JSON.parse(body.toString());
        } catch {
          return [`${label}: body is not valid JSON`];
        }
      }
    } else if (Buffer.isBuffer(body)) {
      value = body.toString("utf8");
    }
    if (mediaKey === "application/json") return json(value);
    return check(content[mediaKey]?.schema, value, `${label}: body`);
  }

  /* The edge answers of the Errors section in info.description: by status, the code they carry. */
  const EDGE_CODES: Readonly<Record<number, string>> = { 404: "not_found", 405: "method_not_allowed" };

  /* No operation to hand the library: these answers are checked against components here. */
  function validateAnyResponse(res: ResponseUnderTest): string[] {
    if (route(res.method, res.path) !== undefined) return validateResponse(res);
    const pathname = toPathname(res.path);
    const label = `${res.method.toUpperCase()} ${pathname} → ${res.status}`;
    const described = methodsOf(res.path);
    const expected = described.length > 0 ? 405 : 404;
    if (res.status !== expected) {
      return [`${label}: ${describeMiss(res.method, res.path)}, so only ${expected} ${EDGE_CODES[expected]} may answer it`];
    }
    const headers = normalizeHeaders(res.headers);
    const errors: string[] = [];
    const requestId = definition.components?.headers?.RequestId;
    if (requestId !== undefined) {
      const value = headers.get("x-request-id");
      if (value === undefined) errors.push(`${label}: header X-Request-Id is required but missing`);
      else errors.push(...check(requestId.schema, value, `${label}: header X-Request-Id`));
    }
    if (expected === 405) {
      const allow = (headers.get("allow") ?? "").split(",").map((m) => m.trim().toLowerCase());
      const missing = described.filter((m) => !allow.includes(m));
      if (missing.length > 0) errors.push(`${label}: header Allow must name ${missing.map((m) => m.toUpperCase()).join(", ")}`);
    }
    const contentType = headers.get("content-type") ?? "";
    if (essence(contentType) !== "application/problem+json") {
      return [...errors, `${label}: content-type ${contentType || "(none)"} is not application/problem+json`];
    }
    let body: unknown = res.body;
    if (typeof body === "string" || Buffer.isBuffer(body)) {
      try {
        body = JSON.parse(body.toString());
      } catch {
        return [...errors, `${label}: body is not valid JSON`];
      }
    }
    errors.push(...validateComponent("Problem", body).map((e) => `${label}: body ${e}`));
    const problem = body as { code?: unknown; status?: unknown } | null;
    if (problem?.code !== EDGE_CODES[expected]) errors.push(`${label}: body/code must be ${EDGE_CODES[expected]}, got ${JSON.stringify(problem?.code)}`);
    if (problem?.status !== expected) errors.push(`${label}: body/status must be ${expected}, got ${JSON.stringify(problem?.status)}`);
    return errors;
  }

  function validateRequest(req: RequestUnderTest): string[] {
    const url = new URL(req.path, "http://relay.invalid");
    const label = `${req.method.toUpperCase()} ${url.pathname}`;
    const op = route(req.method, req.path);
    if (op === undefined) return [`${label}: ${describeMiss(req.method, req.path)}`];
    const headers = normalizeHeaders(req.headers);
    const empty = req.body === undefined || req.body === "";
    const bodyErrors: string[] = [];
    let jsonBody: unknown; // what the library validates as the body: parsed application/json only
    const requestBody = op.requestBody as Resolved<RequestBodyObject> | undefined;
    if (requestBody === undefined) {
      // SHIM (see bodies): the library ignores a body the operation does not document.
      if (!empty) bodyErrors.push(`${label}: has a body but the description documents none`);
    } else if (!empty) {
      bodyErrors.push(
        ...checkContent(`${label} request`, requestBody.content, headers, req.body, false, (value) => {
          jsonBody = value;
          return [];
        }),
      );
    }

    const result = library.validateRequest({ method: req.method, path: `${url.pathname}${url.search}`, headers: Object.fromEntries(headers), body: jsonBody }, op);
    const paramErrors: string[] = [];
    for (const e of result.errors ?? []) {
      const [, part = "", name, ...rest] = e.instancePath.split("/");
      if (part === "requestBody") {
        bodyErrors.push(...formatErrors([{ ...e, instancePath: e.instancePath.slice("/requestBody".length) }], `${label} request: body`));
      } else if (e.keyword === "required" && e.params.missingProperty === "requestBody") {
        if (empty) bodyErrors.push(`${label}: body is required`); // otherwise a content error above says why there is none
      } else if (name === undefined) {
        // openapi-backend's parameter objects: a required one missing, or (query) one it does not describe
        const param = String(e.params.missingProperty ?? e.params.additionalProperty ?? "");
        const what = e.keyword === "required" ? "is required but missing" : e.keyword === "additionalProperties" ? "is not described" : (e.message ?? e.keyword);
        paramErrors.push(`${label}: ${part} parameter ${paramName(op, part, param)} ${what}`);
      } else {
        const where = `${label}: ${part} parameter ${paramName(op, part, decodePointer(name))}`;
        paramErrors.push(...formatErrors([{ ...e, instancePath: rest.length > 0 ? `/${rest.join("/")}` : "" }], where));
      }
    }
    return [...paramErrors, ...bodyErrors];
  }

  /* openapi-backend validates operations only; a component schema is compiled here (see check). */
  function validateComponent(name: string, value: unknown): string[] {
    const schema = definition.components?.schemas?.[name];
    if (schema === undefined) throw new Error(`openapi.yaml has no components.schemas.${name}`);
    return check(schema, value, name);
  }

  async function validateFetchResponse(method: string, response: Response): Promise<string[]> {
    const text = await response.clone().text();
    return validateResponse({ method, path: response.url, status: response.status, headers: response.headers, body: text });
  }

  function assertResponse(response: ResponseUnderTest): void {
    const errors = validateResponse(response);
    if (errors.length > 0) throw new Error(`response does not match openapi.yaml:\n  ${errors.join("\n  ")}`);
  }

  async function assertFetchResponse(method: string, response: Response): Promise<void> {
    const errors = await validateFetchResponse(method, response);
    if (errors.length > 0) throw new Error(`response does not match openapi.yaml:\n  ${errors.join("\n  ")}`);
  }

  return {
    spec,
    findOperation,
    validateResponse,
    validateAnyResponse,
    validateRequest,
    validateComponent,
    validateFetchResponse,
    assertResponse,
    assertFetchResponse,
  };
}

/**
 * SHIM: openapi-backend's synchronous dereference replaces a `{ $ref, ...siblings }` object by its
 * target and drops the siblings, but in OpenAPI 3.1 (JSON Schema 2020-12) a schema's `$ref`
 * applies alongside its other keywords. A copy of the document in which such a schema reads
 * `{ ...siblings, allOf: [{ $ref }] }` keeps them. Reference Objects outside schemas may only
 * carry `summary` and `description`, so any other sibling marks a schema. On the way, a $ref that
 * points nowhere is reported here, by name (the library would fail with a TypeError).
 */
function keepRefSiblings(node: unknown, root: OpenApiDocument): unknown {
  if (Array.isArray(node)) return node.map((v) => keepRefSiblings(v, root));
  if (node === null || typeof node !== "object") return node;
  const copy = Object.fromEntries(Object.entries(node).map(([k, v]) => [k, keepRefSiblings(v, root)]));
  const { $ref, ...siblings } = copy;
  if (typeof $ref === "string" && resolvePointer(root, $ref) === undefined) throw new Error(`$ref ${$ref} points nowhere (only local references resolve)`);
  if (typeof $ref !== "string" || Object.keys(siblings).every((k) => k === "summary" || k === "description")) return copy;
  return { ...siblings, allOf: [...(Array.isArray(siblings.allOf) ? siblings.allOf : []), { $ref }] };
}

/** A parameter's name as openapi.yaml spells it (openapi-backend lower-cases header names). */
function paramName(op: Operation, where: string, name: string): string {
  return (op.parameters as ParameterObject[] | undefined)?.find((p) => p.in === where && (where === "header" ? p.name.toLowerCase() === name.toLowerCase() : p.name === name))?.name ?? name;
}

function formatErrors(errors: readonly ErrorObject[], where: string): string[] {
  return errors
    .filter((e) => e.keyword !== "if") // "must match then schema" repeats the error under it
    .map((e) => {
      const extra = e.keyword === "additionalProperties" ? ` (${String(e.params.additionalProperty)})` : e.keyword === "enum" || e.keyword === "const" ? ` (${JSON.stringify(e.params)})` : "";
      return `${where}${e.instancePath} ${e.message ?? e.keyword}${extra}`;
    });
}

function resolvePointer(root: unknown, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  return ref
    .slice(2)
    .split("/")
    .reduce<unknown>((node, key) => (node === null || typeof node !== "object" ? undefined : (node as Record<string, unknown>)[decodePointer(key)]), root);
}

function decodePointer(segment: string): string {
  return segment.replaceAll("~1", "/").replaceAll("~0", "~");
}

function toPathname(path: string): string {
  return new URL(path, "http://relay.invalid").pathname;
}

function normalizeHeaders(headers: HeadersLike | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (headers === undefined) return out;
  if (headers instanceof Headers) {
    headers.forEach((value, name) => out.set(name.toLowerCase(), value));
    return out;
  }
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out.set(name.toLowerCase(), Array.isArray(value) ? value.join(", ") : String(value));
  }
  return out;
}

function essence(mediaType: string): string {
  return (mediaType.split(";")[0] ?? "").trim().toLowerCase();
}

function matchMediaType(contentType: string, documented: readonly string[]): string | undefined {
  const actual = essence(contentType);
  const [type] = actual.split("/");
  return (
    documented.find((d) => essence(d) === actual) ??
    documented.find((d) => essence(d) === `${type}/*`) ??
    documented.find((d) => essence(d) === "*/*")
  );
}

function isJsonMediaType(mediaType: string): boolean {
  const e = essence(mediaType);
  return e === "application/json" || e.endsWith("+json");
}
