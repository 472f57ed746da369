import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parse, parseDocument } from "yaml";
import { OPENAPI_FILE, YAML_OUTPUT, generateComponentSchemas, syncOpenApiText } from "../../scripts/sync-openapi.js";
import { parseSendRequest } from "../../src/http/send-request-schema.js";

/* The request schema in openapi.yaml is the zod schema the service parses with, not a copy of it. */

const text = await readFile(OPENAPI_FILE, "utf8");

describe("openapi.yaml and the zod request schema", () => {
  it("when the component schemas are generated from sendRequestSchema, then openapi.yaml already has them", () => {
    const { changed } = syncOpenApiText(text, generateComponentSchemas());
    // On failure: npx tsx scripts/sync-openapi.ts
    expect(changed, "openapi.yaml differs from src/http/send-request-schema.ts: run `npx tsx scripts/sync-openapi.ts`").toEqual([]);
  });

  it("when the request examples of POST /send are parsed by the service's parser, then each is accepted", () => {
    const examples = parse(text).paths["/send"].post.requestBody.content["application/json"].examples as Record<string, { value: unknown }>;
    expect(Object.keys(examples).length).toBeGreaterThan(0);
    for (const [name, { value }] of Object.entries(examples)) {
      const result = parseSendRequest(value);
      expect(result.ok ? [] : result.errors, name).toEqual([]);
    }
  });

  it("when openapi.yaml is parsed and printed the way the sync script prints, then no byte changes", () => {
    // Otherwise a sync would reformat parts of the file it has no business touching.
    expect(parseDocument(text).toString(YAML_OUTPUT) === text).toBe(true);
  });

  it("when one generated schema has drifted, then the sync rewrites that schema only and keeps the comments", () => {
    const drifted = text.replace("      description: A file attachment.\n", "      description: stale\n");
    expect(drifted).not.toBe(text);
    const { text: synced, changed } = syncOpenApiText(drifted, generateComponentSchemas());
    expect(changed).toEqual(["Attachment"]);
    expect(synced).toBe(text);
  });
});
