/**
 * TypeScript types of the HTTP API, generated from openapi.yaml with openapi-typescript, for
 * callers' code and the typed test client (test/support/api-client.ts).
 *
 *   npx tsx scripts/generate-api-types.ts           rewrite test/generated/api.d.ts
 *   npx tsx scripts/generate-api-types.ts --check   exit 1 when the committed file is stale
 */
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString } from "openapi-typescript";

export const OPENAPI_FILE = fileURLToPath(new URL("../openapi.yaml", import.meta.url));
export const API_TYPES_FILE = fileURLToPath(new URL("../test/generated/api.d.ts", import.meta.url));

const HEADER = `/*
 * Generated from openapi.yaml by scripts/generate-api-types.ts (openapi-typescript); do not edit.
 * Regenerate with \`npx tsx scripts/generate-api-types.ts\`; a test fails while this file is stale.
 */

`;

/** The .d.ts text for an OpenAPI document's text. */
export async function generateApiTypes(specText: string): Promise<string> {
  // A string is the document itself; `silent` keeps openapi-typescript's progress off stdout.
  const ast = await openapiTS(specText, { silent: true, alphabetize: false, exportType: false });
  return HEADER + astToString(ast);
}

async function main(argv: readonly string[]): Promise<number> {
  const expected = await generateApiTypes(readFileSync(OPENAPI_FILE, "utf8"));
  let current: string | undefined;
  try {
    current = readFileSync(API_TYPES_FILE, "utf8");
  } catch {
    current = undefined;
  }
  if (current === expected) {
    console.log("test/generated/api.d.ts is up to date");
    return 0;
  }
  if (argv.includes("--check")) {
    console.error("test/generated/api.d.ts is stale; run `npx tsx scripts/generate-api-types.ts`");
    return 1;
  }
  writeFileSync(API_TYPES_FILE, expected);
  console.log("wrote test/generated/api.d.ts");
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
