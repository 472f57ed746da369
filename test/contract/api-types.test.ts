import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { API_TYPES_FILE, OPENAPI_FILE, generateApiTypes } from "../../scripts/generate-api-types.js";

describe("generated API types", () => {
  it("when the types are generated from openapi.yaml again, then they equal the committed test/generated/api.d.ts", async () => {
    const expected = await generateApiTypes(await readFile(OPENAPI_FILE, "utf8"));
    const committed = await readFile(API_TYPES_FILE, "utf8");
    // On failure: npx tsx scripts/generate-api-types.ts
    expect(committed === expected, "test/generated/api.d.ts is stale: run `npx tsx scripts/generate-api-types.ts`").toBe(true);
  });
});
