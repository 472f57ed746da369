import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { PROBLEMS, type ProblemCode } from "../../src/core/problems.js";
import { CALLER_PROBLEMS, isCallerProblem } from "../../src/delivery/tenant-status.js";
import { itWithTool } from "../support/external-tools.js";
import { only, prepareHelm, render } from "./chart.js";

/**
 * The chart's PrometheusRule, checked by promtool (Debian package `prometheus`; .ci/run installs
 * it): `check rules` parses every expression, `test rules` runs the unit tests in
 * fixtures/alert-rules.test.yaml against the rendered rules.
 */

const fixture = new URL("./fixtures/alert-rules.test.yaml", import.meta.url);
const RUNBOOK = "https://runbooks.example.com/noreply-relay";
const REDIS_STORE = { type: "redis", redis: { url: "redis://redis.example:6379/0" } };
const STORE_ALERTS = ["NoreplyRelayStoreUnavailable", "NoreplyRelayStoreFallback"];
/** The outcome of a /send whose caller hung up before the answer (src/app.ts, status 499). */
const CLIENT_CLOSED = "client_closed";

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroups {
  groups: Array<{ name: string; rules: Rule[] }>;
}

let dir = "";
let groups: RuleGroups;

function promtool(args: string[]): { status: number; output: string } {
  const r = spawnSync("promtool", args, { cwd: dir, encoding: "utf8" });
  if (r.error) throw new Error(`promtool is not installed (apt-get install prometheus): ${r.error.message}`);
  return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

function alerts(): Rule[] {
  return groups.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
}

/** The outcomes the error-ratio alert does not count as errors (its `outcome!~` regex). */
function notErrorOutcomes(): Set<string> {
  const ratio = alerts().find((a) => a.alert === "NoreplyRelayHighErrorRatio");
  const excluded = /outcome!~"([^"]*)"/.exec(ratio?.expr ?? "")?.[1];
  if (excluded === undefined) throw new Error("NoreplyRelayHighErrorRatio has no outcome!~ matcher");
  return new Set(excluded.split("|"));
}

beforeAll(() => {
  prepareHelm();
  // With store.type redis, so the store alerts are among the rules.
  const objects = render({ values: { prometheusRule: { enabled: true, runbookBaseUrl: RUNBOOK }, store: REDIS_STORE } });
  groups = (only(objects, "PrometheusRule") as unknown as { spec: RuleGroups }).spec;
  dir = mkdtempSync(join(tmpdir(), "noreply-relay-rules-"));
  writeFileSync(join(dir, "rules.yaml"), stringify(groups));
  copyFileSync(fixture, join(dir, "alert-rules.test.yaml"));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("PrometheusRule alerts", () => {
  itWithTool("promtool", "when promtool checks the rendered rules, then every expression parses", () => {
    const r = promtool(["check", "rules", "rules.yaml"]);
    expect(r.output).toContain(`SUCCESS: ${groups.groups.flatMap((g) => g.rules).length} rules found`);
    expect(r.status).toBe(0);
  });

  itWithTool("promtool", "when an expression is broken, then promtool check rules fails (the check is real)", () => {
    const broken = structuredClone(groups);
    (broken.groups[0]?.rules[0] as Rule).expr = "sum by (tenant) (rate(noreply_relay_send_total[5m])";
    writeFileSync(join(dir, "broken.yaml"), stringify(broken));
    expect(promtool(["check", "rules", "broken.yaml"]).status).not.toBe(0);
  });

  itWithTool("promtool", "when promtool runs the alert unit tests, then each alert fires on its input series and stays quiet otherwise", () => {
    const r = promtool(["test", "rules", "alert-rules.test.yaml"]);
    expect(r.output).toContain("SUCCESS");
    expect(r.status).toBe(0);
  });

  itWithTool("promtool", "when a series only appears at its first event, then the event alerts still fire (a plain increase() would miss it)", () => {
    const plain = structuredClone(groups);
    let rewritten = 0;
    for (const rule of plain.groups.flatMap((g) => g.rules)) {
      const expr = rule.expr.replace(/\((\w+\{[^}]*\}) unless \1 offset \w+\)\s*or\s*/g, "");
      if (expr !== rule.expr) rewritten++;
      rule.expr = expr;
    }
    expect(rewritten).toBeGreaterThanOrEqual(3);
    writeFileSync(join(dir, "rules.yaml"), stringify(plain));
    try {
      const r = promtool(["test", "rules", "alert-rules.test.yaml"]);
      expect(r.status).not.toBe(0);
      expect(r.output).toContain("NoreplyRelayPolicyDenied");
    } finally {
      writeFileSync(join(dir, "rules.yaml"), stringify(groups));
    }
  });

  it("when the chart has an alert, then the unit tests cover it", () => {
    const tests = parseYaml(readFileSync(fixture, "utf8")) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
    const firing = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    for (const a of alerts()) expect(firing).toContain(a.alert);
  });

  it("when the alerts are listed, then the ones SREs asked for exist with a severity, summary, description and runbook", () => {
    const names = alerts().map((a) => a.alert);
    expect(names).toEqual(
      expect.arrayContaining([
        "NoreplyRelayPolicyDenied",
        "NoreplyRelayCredentialExpiresSoon",
        "NoreplyRelayCredentialRejected",
        "NoreplyRelayHighErrorRatio",
        "NoreplyRelayGraphThrottled",
        "NoreplyRelayOutcomeUnknown",
        ...STORE_ALERTS,
      ]),
    );
    for (const a of alerts()) {
      expect(["warning", "critical"]).toContain(a.labels?.["severity"]);
      expect(a.annotations?.["summary"]).toBeTruthy();
      expect(a.annotations?.["description"]).toBeTruthy();
      expect(a.annotations?.["runbook_url"]).toBe(`${RUNBOOK}#${a.alert?.toLowerCase()}`);
    }
    const expiry = alerts().find((a) => a.alert === "NoreplyRelayCredentialExpiresSoon");
    expect(expiry?.expr).toContain("< 30 * 86400");
  });

  it("when the store is memory, then the store alerts are left out (their series exist only with store.type redis)", () => {
    const memory = render({ values: { prometheusRule: { enabled: true } } });
    const names = (only(memory, "PrometheusRule") as unknown as { spec: RuleGroups }).spec.groups.flatMap((g) => g.rules).map((r) => r.alert);
    expect(names).toContain("NoreplyRelayDown");
    for (const a of STORE_ALERTS) expect(names).not.toContain(a);
  });

  it("when the store is Redis, then the unavailable-store alert is critical and names what callers get", () => {
    const unavailable = alerts().find((a) => a.alert === "NoreplyRelayStoreUnavailable");
    expect(unavailable?.labels?.["severity"]).toBe("critical");
    expect(unavailable?.for).toBe("2m");
    expect(unavailable?.annotations?.["description"]).toContain("sends with an Idempotency-Key get 503");
    expect(alerts().find((a) => a.alert === "NoreplyRelayStoreFallback")?.labels?.["severity"]).toBe("warning");
  });

  it("when the error ratio is computed, then it leaves out successes, replays, callers hanging up and exactly the caller's own problems (never one of the service's)", () => {
    const notErrors = notErrorOutcomes();
    expect([...notErrors].sort()).toEqual(["sent", "dry_run", "duplicate", CLIENT_CLOSED, ...CALLER_PROBLEMS].sort());
    for (const code of Object.keys(PROBLEMS) as ProblemCode[]) expect(notErrors.has(code), code).toBe(isCallerProblem(code));
  });

  it("when a caller hangs up, then the outcome the service counts is the one the error ratio leaves out", () => {
    // src/app.ts counts a /send whose caller left before the answer as outcome client_closed (status 499).
    const app = readFileSync(new URL("../../src/app.ts", import.meta.url), "utf8");
    expect(app).toContain(`const CLIENT_CLOSED = "${CLIENT_CLOSED}";`);
    expect(app).toMatch(/ctx\.outcome = CLIENT_CLOSED/);
  });

  it("when promtool tests the error ratio without an alert, then its input feeds every outcome the ratio leaves out", () => {
    const tests = parseYaml(readFileSync(fixture, "utf8")) as {
      tests: Array<{ input_series: Array<{ series: string }>; alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
    };
    const quiet = tests.tests.filter((t) => (t.alert_rule_test ?? []).every((a) => a.alertname === "NoreplyRelayHighErrorRatio" && a.exp_alerts.length === 0) && (t.alert_rule_test ?? []).length > 0);
    const fed = new Set(quiet.flatMap((t) => t.input_series.map((s) => /outcome="([^"]+)"/.exec(s.series)?.[1])));
    for (const outcome of notErrorOutcomes()) if (outcome !== "dry_run" && outcome !== "duplicate") expect(fed.has(outcome), outcome).toBe(true);
  });

  it("when the send alerts are rendered, then they count the SMTP door's messages as sends too", () => {
    for (const name of ["NoreplyRelayHighErrorRatio", "NoreplyRelayCredentialRejected", "NoreplyRelayOutcomeUnknown"]) {
      const expr = alerts().find((x) => x.alert === name)?.expr ?? "";
      expect(expr, name).toContain('__name__=~"noreply_relay_send_total|noreply_relay_smtp_messages_total"');
    }
  });

  it("when the rules are rendered, then every expression is scoped to this release's job and namespace", () => {
    for (const a of alerts()) {
      // metric{…}, or {__name__=~"a|b", …} for the sends of both doors.
      const selectors = a.expr.match(/(?:\w+|(?<![\w}]))\{[^}]*\}/g) ?? [];
      expect(selectors.length).toBeGreaterThan(0);
      for (const s of selectors) expect(s).toContain('job="noreply-relay", namespace="mail"');
    }
  });
});
