import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { parse } from "yaml";

/*
 * Checks real requests and responses against openapi.yaml, so component tests can prove the
 * description and the service agree. JSON Schema 2020-12 (OpenAPI 3.1's dialect) via Ajv; the
 * OpenAPI layer around it (paths, methods, statuses, media types, headers) is matched here.
 *
 *   const spec = loadOpenApiValidator();
 *   expect(spec.validateResponse({ method: "POST", path: "/send", status: 202, headers, body })).toEqual([]);
 *   await spec.assertFetchResponse("POST", res);   // throws listing every mismatch
 */

/** The repository's openapi.yaml. */
export const OPENAPI_FILE = fileURLToPath(new URL("../../openapi.yaml", import.meta.url));

/** Headers as fetch gives them, or as node/fastify/light-my-request give them. */
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

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;
const SPEC_ID = "urn:noreply-relay:openapi";
const COMPONENT_REF = "#/components/schemas/";

/** A validator for the repository's openapi.yaml (or another file). Reads and compiles once; reuse it. */
export function loadOpenApiValidator(file: string = OPENAPI_FILE): OpenApiValidator {
  return createOpenApiValidator(parse(readFileSync(file, "utf8")) as OpenApiDocument);
}

/** A validator for an already parsed OpenAPI 3.1 document. */
export function createOpenApiValidator(spec: OpenApiDocument): OpenApiValidator {
  if (!/^3\.1\./.test(spec.openapi)) throw new Error(`expected an OpenAPI 3.1 document, got openapi: ${spec.openapi}`);
  const ajv = new Ajv2020({
    allErrors: true,
    // OpenAPI's narrowing branches (`allOf: [{$ref}, {properties: {code: {const}}}]`) carry no
    // `type` of their own, which strictTypes would report; 3.1's `type: [string, "null"]` is a union.
    strictTypes: false,
    allowUnionTypes: true,
  });
  addFormats.default(ajv);
  // OpenAPI's own schema keywords: annotations, nothing to validate.
  ajv.addVocabulary(["example", "discriminator", "xml", "externalDocs"]);
  const defs: Record<string, JsonSchema> = {};
  for (const [name, schema] of Object.entries(spec.components?.schemas ?? {})) defs[name] = rebase(schema) as JsonSchema;
  ajv.addSchema({ $id: SPEC_ID, $defs: defs });

  const compiled = new WeakMap<object, ValidateFunction>();
  function validatorFor(schema: JsonSchema): ValidateFunction {
    const key = typeof schema === "object" ? schema : { schema };
    let fn = compiled.get(key);
    if (fn === undefined) {
      fn = ajv.compile(typeof schema === "object" ? (rebase(schema) as Record<string, unknown>) : schema);
      compiled.set(key, fn);
    }
    return fn;
  }

  function check(schema: JsonSchema | undefined, value: unknown, where: string): string[] {
    if (schema === undefined) return [];
    const fn = validatorFor(schema);
    return fn(value) ? [] : formatErrors(fn.errors ?? [], where);
  }

  function deref<T>(value: MaybeRef<T>): T {
    let current: unknown = value;
    for (let hops = 0; isRef(current); hops++) {
      if (hops > 20 || !current.$ref.startsWith("#/")) throw new Error(`cannot resolve $ref ${current.$ref}`);
      current = current.$ref
        .slice(2)
        .split("/")
        .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"))
        .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], spec);
      if (current === undefined) throw new Error(`$ref ${(value as Ref).$ref} points nowhere`);
    }
    return current as T;
  }

  const templates = Object.keys(spec.paths ?? {})
    .map((template) => ({
      template,
      regex: new RegExp(`^${template.split(/\{[^}]+\}/).map(escapeRegExp).join("[^/]+")}$`),
      literal: template.replace(/\{[^}]+\}/g, "").length,
    }))
    // A concrete path wins over a templated one that also matches (OpenAPI "Path Templating Matching").
    .sort((a, b) => b.literal - a.literal);

  function findOperation(method: string, path: string): MatchedOperation | undefined {
    const pathname = toPathname(path);
    const m = method.toLowerCase();
    for (const { template, regex } of templates) {
      if (!regex.test(pathname)) continue;
      const item = deref(spec.paths?.[template] as MaybeRef<PathItemObject>);
      const operation = item[m] as OperationObject | undefined;
      if (operation !== undefined) return { path: template, method: m, operation };
    }
    return undefined;
  }

  function describeMiss(method: string, path: string): string {
    const pathname = toPathname(path);
    const allowed = templates.filter((t) => t.regex.test(pathname));
    if (allowed.length === 0) return `${pathname} is not a path of the description`;
    const methods = allowed.flatMap((t) => METHODS.filter((m) => (spec.paths?.[t.template] as PathItemObject)[m] !== undefined));
    return `${method.toUpperCase()} ${pathname} is not described (methods: ${methods.map((m) => m.toUpperCase()).join(", ")})`;
  }

  function validateResponse(res: ResponseUnderTest): string[] {
    const label = `${res.method.toUpperCase()} ${toPathname(res.path)} → ${res.status}`;
    const matched = findOperation(res.method, res.path);
    if (matched === undefined) return [`${label}: ${describeMiss(res.method, res.path)}`];
    const responses = matched.operation.responses ?? {};
    const key = [String(res.status), `${String(res.status)[0]}XX`, "default"].find((k) => responses[k] !== undefined);
    if (key === undefined) {
      return [`${label}: status ${res.status} is not documented (documented: ${Object.keys(responses).join(", ")})`];
    }
    const response = deref(responses[key] as MaybeRef<ResponseObject>);
    const headers = normalizeHeaders(res.headers);
    const errors: string[] = [];

    for (const [name, headerOrRef] of Object.entries(response.headers ?? {})) {
      if (name.toLowerCase() === "content-type") continue; // OpenAPI: described by `content`, ignored here
      const header = deref(headerOrRef);
      const value = headers.get(name.toLowerCase());
      if (value === undefined) {
        if (header.required === true) errors.push(`${label}: header ${name} is required but missing`);
        continue;
      }
      errors.push(...check(header.schema, coerce(value, header.schema), `${label}: header ${name}`));
    }

    errors.push(...checkContent(label, response.content, headers, res.body, res.method.toLowerCase() === "head" || res.status === 304));
    return errors;
  }

  function checkContent(
    label: string,
    content: Record<string, MediaTypeObject> | undefined,
    headers: Map<string, string>,
    body: unknown,
    bodyless: boolean,
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
    return check(content[mediaKey]?.schema, value, `${label}: body`);
  }

  /* The edge answers of the Errors section in info.description: by status, the code they carry. */
  const EDGE_CODES: Readonly<Record<number, string>> = { 404: "not_found", 405: "method_not_allowed" };

  function validateAnyResponse(res: ResponseUnderTest): string[] {
    if (findOperation(res.method, res.path) !== undefined) return validateResponse(res);
    const pathname = toPathname(res.path);
    const label = `${res.method.toUpperCase()} ${pathname} → ${res.status}`;
    const listed = templates.filter((t) => t.regex.test(pathname));
    const expected = listed.length > 0 ? 405 : 404;
    if (res.status !== expected) {
      return [`${label}: ${describeMiss(res.method, res.path)}, so only ${expected} ${EDGE_CODES[expected]} may answer it`];
    }
    const headers = normalizeHeaders(res.headers);
    const errors: string[] = [];
    const requestId = spec.components?.headers?.RequestId;
    if (requestId !== undefined) {
      const value = headers.get("x-request-id");
      if (value === undefined) errors.push(`${label}: header X-Request-Id is required but missing`);
      else errors.push(...check(deref(requestId).schema, value, `${label}: header X-Request-Id`));
    }
    if (expected === 405) {
      const allow = (headers.get("allow") ?? "").split(",").map((m) => m.trim().toLowerCase());
      const described = listed.flatMap((t) => METHODS.filter((m) => (spec.paths?.[t.template] as PathItemObject)[m] !== undefined));
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
    const label = `${req.method.toUpperCase()} ${toPathname(req.path)}`;
    const matched = findOperation(req.method, req.path);
    if (matched === undefined) return [`${label}: ${describeMiss(req.method, req.path)}`];
    const headers = normalizeHeaders(req.headers);
    const query = new URL(req.path, "http://relay.invalid").searchParams;
    const errors: string[] = [];
    const pathItem = deref(spec.paths?.[matched.path] as MaybeRef<PathItemObject>);
    for (const paramOrRef of [...(pathItem.parameters ?? []), ...(matched.operation.parameters ?? [])]) {
      const param = deref(paramOrRef);
      if (param.in !== "header" && param.in !== "query") continue; // path parameters matched the template already
      const value = param.in === "header" ? headers.get(param.name.toLowerCase()) : (query.get(param.name) ?? undefined);
      if (value === undefined) {
        if (param.required === true) errors.push(`${label}: ${param.in} parameter ${param.name} is required but missing`);
        continue;
      }
      errors.push(...check(param.schema, coerce(value, param.schema), `${label}: ${param.in} parameter ${param.name}`));
    }
    const body = matched.operation.requestBody === undefined ? undefined : deref(matched.operation.requestBody);
    const empty = req.body === undefined || req.body === "";
    if (body === undefined) {
      if (!empty) errors.push(`${label}: has a body but the description documents none`);
    } else if (empty) {
      if (body.required === true) errors.push(`${label}: body is required`);
    } else {
      errors.push(...checkContent(`${label} request`, body.content, headers, req.body, false));
    }
    return errors;
  }

  const componentRefs = new Map<string, JsonSchema>();
  function validateComponent(name: string, value: unknown): string[] {
    if (spec.components?.schemas?.[name] === undefined) throw new Error(`openapi.yaml has no components.schemas.${name}`);
    let ref = componentRefs.get(name);
    if (ref === undefined) componentRefs.set(name, (ref = { $ref: `${COMPONENT_REF}${name}` })); // one compile per name
    return check(ref, value, name);
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

/** Copies a schema with every `#/components/schemas/X` reference pointed at the compiled copy. */
function rebase(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(rebase);
  if (node === null || typeof node !== "object") return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] =
      key === "$ref" && typeof value === "string" && value.startsWith(COMPONENT_REF)
        ? `${SPEC_ID}#/$defs/${value.slice(COMPONENT_REF.length)}`
        : rebase(value);
  }
  return out;
}

function formatErrors(errors: readonly ErrorObject[], where: string): string[] {
  return errors
    .filter((e) => e.keyword !== "if") // "must match then schema" repeats the error under it
    .map((e) => {
      const extra = e.keyword === "additionalProperties" ? ` (${String(e.params.additionalProperty)})` : e.keyword === "enum" || e.keyword === "const" ? ` (${JSON.stringify(e.params)})` : "";
      return `${where}${e.instancePath} ${e.message ?? e.keyword}${extra}`;
    });
}

function isRef(value: unknown): value is Ref {
  return typeof value === "object" && value !== null && typeof (value as Ref).$ref === "string";
}

function toPathname(path: string): string {
  return new URL(path, "http://relay.invalid").pathname;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
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

/** Header and query values are strings; a schema asking for a number or boolean means its text form. */
function coerce(value: string, schema: JsonSchema | undefined): unknown {
  const type = typeof schema === "object" ? schema.type : undefined;
  const types = Array.isArray(type) ? type : [type];
  if ((types.includes("integer") || types.includes("number")) && /^-?\d+(\.\d+)?$/.test(value)) return Number(value);
  if (types.includes("boolean") && (value === "true" || value === "false")) return value === "true";
  return value;
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
