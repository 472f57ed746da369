import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { END, START, renderConfigReference } from "../../scripts/config-reference.js";
import { PROBLEMS, PROBLEM_CODES } from "../../src/core/problems.js";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const contract = [
  "noreply_relay_send_total",
  "noreply_relay_policy_denied_total",
  "noreply_relay_graph_requests_total",
  "noreply_relay_graph_request_duration_seconds",
  "noreply_relay_token_requests_total",
  "noreply_relay_graph_throttled_total",
  "noreply_relay_inflight_sends",
  "noreply_relay_credential_expiry_timestamp_seconds",
  "noreply_relay_http_request_duration_seconds",
];

describe("README", () => {
  it("when the config schema changes, then the generated configuration reference is regenerated", () => {
    const block = readme.slice(readme.indexOf(START), readme.indexOf(END) + END.length);
    expect(block, "run: npx tsx scripts/config-reference.ts --write").toBe(renderConfigReference());
  });

  it("when a problem code exists, then the README explains it with its status", () => {
    for (const code of PROBLEM_CODES) {
      expect(readme).toMatch(new RegExp(`\\| \`${code}\` \\| ${PROBLEMS[code].status} \\|`));
    }
  });

  it("when a contract metric exists, then the README's metrics table lists it", () => {
    for (const name of contract) expect(readme).toContain(`| \`${name}\` |`);
  });

  it("when a reader runs the two commands, then the README names them exactly", () => {
    expect(readme).toContain("npm ci && npm run demo");
    expect(readme).toContain("npm ci && npm test");
  });
});
