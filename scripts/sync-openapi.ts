/**
 * Keeps the request schemas of openapi.yaml identical to the zod schema the service parses
 * POST /send with: `components.schemas.SendRequest`, `Recipient` and `Attachment` are generated
 * from `sendRequestSchema` and nothing else in the file is touched.
 *
 *   npx tsx scripts/sync-openapi.ts           rewrite the generated schemas in openapi.yaml
 *   npx tsx scripts/sync-openapi.ts --check   exit 1 (and name them) when they differ
 *
 * Edit the zod schema (and its `.describe()` texts), never these three schemas by hand.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { isMap, parseDocument, type ToStringOptions } from "yaml";
import { z } from "zod";
import { sendRequestSchema } from "../src/http/send-request-schema.js";

export type JsonSchema = Record<string, unknown>;

/** The repository's openapi.yaml. */
export const OPENAPI_FILE = fileURLToPath(new URL("../openapi.yaml", import.meta.url));

/*
 * openapi.yaml is written in the style these options reproduce, so parsing and printing it
 * again changes no byte outside the schemas being replaced (a test checks the round trip).
 */
export const YAML_OUTPUT: ToStringOptions = { lineWidth: 0, flowCollectionPadding: false, singleQuote: true };

/**
 * The generated component schemas and the zod schema each comes from. The sub-schemas are
 * found through the request schema's shape, so they are exactly the instances it validates with.
 */
export function generatedSchemaSources(): Record<string, z.ZodType> {
  return {
    SendRequest: sendRequestSchema,
    Recipient: sendRequestSchema.shape.to.unwrap().element,
    Attachment: sendRequestSchema.shape.attachments.unwrap().element,
  };
}

/**
 * JSON Schema 2020-12 (OpenAPI 3.1's dialect) of each source, as the request *input*: fields
 * with defaults stay optional. Sub-schemas that have a component of their own become `$ref`s.
 */
export function generateComponentSchemas(sources: Record<string, z.ZodType> = generatedSchemaSources()): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(sources)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, {
    target: "draft-2020-12",
    io: "input",
    uri: (id) => `#/components/schemas/${id}`,
  });
  const out: Record<string, JsonSchema> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    // `$schema` and `$id` belong to standalone documents; inside OpenAPI they would re-base the $refs.
    const { $schema: _schema, $id: _id, ...rest } = schema as JsonSchema;
    out[id] = rest;
  }
  return out;
}

export interface SyncResult {
  /** openapi.yaml with the generated schemas in place (the input itself when nothing changed). */
  readonly text: string;
  /** Names of the component schemas that differed from the generated ones. */
  readonly changed: readonly string[];
}

/** Replaces each generated component schema that differs (compared as data) in the OpenAPI text. */
export function syncOpenApiText(text: string, generated: Record<string, JsonSchema>): SyncResult {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new Error(`openapi.yaml does not parse: ${doc.errors[0]?.message}`);
  const schemas = doc.getIn(["components", "schemas"], true);
  if (!isMap(schemas)) throw new Error("openapi.yaml has no components.schemas map");
  const current = (doc.toJS() as { components: { schemas: Record<string, unknown> } }).components.schemas;
  const changed: string[] = [];
  for (const [name, schema] of Object.entries(generated)) {
    if (isDeepStrictEqual(current[name], schema)) continue;
    doc.setIn(["components", "schemas", name], doc.createNode(schema));
    changed.push(name);
  }
  return { text: changed.length === 0 ? text : doc.toString(YAML_OUTPUT), changed };
}

function main(argv: readonly string[]): number {
  const check = argv.includes("--check");
  const before = readFileSync(OPENAPI_FILE, "utf8");
  const { text, changed } = syncOpenApiText(before, generateComponentSchemas());
  if (changed.length === 0) {
    console.log("openapi.yaml: generated schemas are up to date");
    return 0;
  }
  if (check) {
    console.error(
      `openapi.yaml: ${changed.join(", ")} differ from src/http/send-request-schema.ts; run \`npx tsx scripts/sync-openapi.ts\``,
    );
    return 1;
  }
  writeFileSync(OPENAPI_FILE, text);
  console.log(`openapi.yaml: rewrote ${changed.join(", ")}`);
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
