import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { END, START, renderConfigReference } from "../../scripts/config-reference.js";
import { AADSTS_ADVICE } from "../../src/auth/aadsts.js";
import { RESTART_REQUIRED_KEYS } from "../../src/config/config-watcher.js";
import { ROOT, readDoc, section } from "./markdown.js";

/** The metrics every deployment can rely on (the first table of docs/operations.md#metrics). */
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

/** Every metric name written as a string literal in the service's source (tests and the emulator left out). */
function metricNamesInSource(): string[] {
  const names = new Set<string>();
  const files = readdirSync(`${ROOT}src`, { recursive: true, encoding: "utf8" }).filter(
    (f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.startsWith("emulator"),
  );
  for (const f of files) {
    for (const m of readFileSync(`${ROOT}src/${f}`, "utf8").matchAll(/"(noreply_relay_[a-z_]+)"/g)) names.add(m[1]!);
  }
  return [...names].sort();
}

describe("docs/configuration.md", () => {
  const doc = readDoc("docs/configuration.md");

  it("when the config schema changes, then the generated configuration reference is regenerated", () => {
    expect(doc).toContain(START);
    const block = doc.slice(doc.indexOf(START), doc.indexOf(END) + END.length);
    expect(block, "run: npx tsx scripts/config-reference.ts --write").toBe(renderConfigReference());
  });

  it("when a key needs a restart, then the section on changing the config names it", () => {
    const text = section(doc, "Changing the config while the service runs");
    expect(text).not.toBe("");
    for (const key of RESTART_REQUIRED_KEYS) expect(text, key).toContain(`\`${key}\``);
  });
});

describe("docs/operations.md", () => {
  const doc = readDoc("docs/operations.md");

  it("when a contract metric exists, then the metrics table lists it", () => {
    const metrics = section(doc, "Metrics");
    for (const name of contract) expect(metrics).toContain(`| \`${name}\` |`);
  });

  it("when the service registers a metric, then the metrics section lists it", () => {
    const metrics = section(doc, "Metrics");
    const names = metricNamesInSource();
    expect(names).toEqual(expect.arrayContaining(contract));
    for (const name of names) expect(metrics, name).toContain(`| \`${name}\` |`);
  });

  it("when a key needs a restart, then the hot reload section names it", () => {
    const text = section(doc, "Hot reload");
    expect(text).not.toBe("");
    for (const key of RESTART_REQUIRED_KEYS) expect(text, key).toContain(`\`${key}\``);
  });

  it("when the chart defines an alert, then the docs explain it", () => {
    const rules = readFileSync(`${ROOT}helm/noreply-relay/templates/prometheusrule.yaml`, "utf8");
    const alerts = [...rules.matchAll(/^\s*- alert: (\w+)/gm)].map((m) => m[1]!);
    expect(alerts.length).toBeGreaterThan(0);
    const explained = section(doc, "Alerts") + section(readDoc("docs/helm-redis.md"), "When Redis is down");
    for (const alert of alerts) expect(explained, alert).toContain(`| \`${alert}\` |`);
  });
});

describe("docs/delivery.md", () => {
  it("when a key needs a restart, then its hot reload section names it", () => {
    const text = section(readDoc("docs/delivery.md"), "Hot reload");
    expect(text).not.toBe("");
    for (const key of RESTART_REQUIRED_KEYS) expect(text, key).toContain(`\`${key}\``);
  });
});

describe("docs/troubleshooting.md", () => {
  it("when the service has advice for an AADSTS code, then the troubleshooting table explains it", () => {
    const table = section(readDoc("docs/troubleshooting.md"), "Entra ID: AADSTS codes");
    for (const code of Object.keys(AADSTS_ADVICE)) expect(table, code).toContain(`| AADSTS${code} |`);
  });
});
