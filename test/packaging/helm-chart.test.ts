import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseConfig } from "../../src/config/load-config.js";
import { configSchema } from "../../src/config/schema.js";
import { chartDir, ciValuesDir, ciValuesFiles, configTextOf, lint, prepareHelm, render, templateRaw, type K8sObject } from "./chart.js";
import { validateObject } from "./kube-validate.js";

const valueSets: Array<{ label: string; ciFiles: string[] }> = [
  { label: "the default values", ciFiles: [] },
  ...ciValuesFiles().map((f) => ({ label: `ci/${f}`, ciFiles: [f] })),
];

const rendered = new Map<string, K8sObject[]>();

beforeAll(() => {
  prepareHelm();
  for (const v of valueSets) rendered.set(v.label, render({ ciFiles: v.ciFiles }));
});

function objectsFor(label: string): K8sObject[] {
  const objects = rendered.get(label);
  if (!objects) throw new Error(`not rendered: ${label}`);
  return objects;
}

describe("helm chart: lint and render", () => {
  it("when the chart's ci folder is listed, then it has the full, certificate, workload identity, existing-secret and Redis value sets", () => {
    expect(ciValuesFiles()).toEqual(
      expect.arrayContaining(["full-values.yaml", "certificate-values.yaml", "workload-identity-values.yaml", "existing-secret-values.yaml", "redis-values.yaml"]),
    );
  });

  it.each(valueSets)("when linted strictly with $label, then helm lint passes", ({ ciFiles }) => {
    const r = lint({ ciFiles });
    expect(r.stderr + r.stdout).toContain("0 chart(s) failed");
    expect(r.status).toBe(0);
  });

  it.each(valueSets)("when rendered with $label, then every object is valid for its Kubernetes schema", ({ label, ciFiles }) => {
    const objects = objectsFor(label);
    expect(objects.length).toBeGreaterThan(0);
    expect(objects.flatMap(validateObject)).toEqual([]);
    // Only the ServiceMonitor may live elsewhere: in serviceMonitor.namespace, next to Prometheus.
    const values = ciFiles.map((f) => parseYaml(readFileSync(join(ciValuesDir, f), "utf8")) as { serviceMonitor?: { namespace?: string } });
    const monitorNamespace = values.map((v) => v.serviceMonitor?.namespace).find(Boolean) ?? "mail";
    for (const o of objects) expect(o.metadata.namespace).toBe(o.kind === "ServiceMonitor" ? monitorNamespace : "mail");
  });

  it("when an object breaks the Kubernetes schema or is of an unknown kind, then validation reports it", () => {
    const broken = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "x" }, spec: { template: { spec: { containers: [{ name: "c", image: "i", ports: [{ containerPort: "http" }] }] } } } };
    expect(validateObject(broken as K8sObject).join("\n")).toMatch(/selector|containerPort/);
    expect(validateObject({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } })).toEqual(["Widget/w: no validator for example.com/v1/Widget"]);
    const badRule = { apiVersion: "monitoring.coreos.com/v1", kind: "PrometheusRule", metadata: { name: "r" }, spec: { groups: [{ name: "g", rules: [{ alert: "A", expr: "", for: "soon" }] }] } };
    expect(validateObject(badRule as K8sObject)).toHaveLength(2);
    const badMonitor = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: "m" },
      spec: { selector: { matchLabels: {} }, endpoints: [{ port: "metrics", authorization: { type: "Bearer", credentials: { name: "" } }, bearerTokenSecret: { key: "token" } }] },
    };
    expect(validateObject(badMonitor as K8sObject)).toHaveLength(3);
  });

  it("when rendered with the full values, then every kind the chart offers is there", () => {
    const kinds = objectsFor("ci/full-values.yaml").map((o) => o.kind).sort();
    expect(kinds).toEqual(
      [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Secret",
        "Service",
        "Service", // metrics.port: <full name>-metrics
        "ServiceAccount",
        "ServiceMonitor",
      ].sort(),
    );
  });

  it("when rendered with the default values (one pod, memory store), then the optional monitoring objects, the HPA and the PodDisruptionBudget are left out", () => {
    const kinds = objectsFor("the default values").map((o) => o.kind);
    expect(kinds).not.toContain("ServiceMonitor");
    expect(kinds).not.toContain("PrometheusRule");
    expect(kinds).not.toContain("HorizontalPodAutoscaler");
    expect(kinds).not.toContain("PodDisruptionBudget");
    expect(kinds).toContain("NetworkPolicy");
  });
});

describe("helm chart: the rendered config file", () => {
  it.each(valueSets)("when rendered with $label, then the service's own config parser accepts the ConfigMap", ({ label }) => {
    const text = configTextOf(objectsFor(label));
    expect(() => parseConfig(text, "configmap")).not.toThrow();
  });

  it("when rendered with the full values, then each config section comes through unchanged and the credential points at the mounted files", () => {
    const cfg = parseConfig(configTextOf(objectsFor("ci/full-values.yaml")));
    expect(cfg.server.drainTimeoutSeconds).toBe(40);
    expect(cfg.server.publicUrl).toBe("https://mail-relay.example.com");
    expect(cfg.tls.caFile).toBe("/etc/noreply-relay-ca/ca.pem");
    expect(cfg.idempotency.ttlSeconds).toBe(43200);
    expect(cfg.consent?.stateSecretEnv).toBe("CONSENT_STATE_SECRET");
    expect(cfg.tenants["contoso"]?.limits).toEqual({ maxConcurrency: 2, recipientsPerDay: 5000, maxQueue: 200 });
    expect(cfg.tenants["fabrikam"]?.app?.credential.type).toBe("certificate");
    expect(cfg.callers["support"]?.tenants).toEqual(["*"]);
    expect(cfg.app?.credential).toEqual({
      type: "secret",
      secretFile: "/var/run/secrets/noreply-relay/credential/client-secret",
      secondarySecretFile: "/var/run/secrets/noreply-relay/credential/client-secret-next",
      expiresAt: new Date("2027-06-30T00:00:00Z"),
    });
  });

  it.each(valueSets)("when rendered with $label, then the config file holds only the config schema's top-level keys", ({ label }) => {
    const raw = parseYaml(configTextOf(objectsFor(label))) as Record<string, unknown>;
    const allowed = Object.keys(configSchema.shape);
    expect(Object.keys(raw).filter((k) => !allowed.includes(k))).toEqual([]);
    expect(Object.keys(raw)).toEqual(expect.arrayContaining(["server", "tenants", "callers"]));
  });
});

describe("helm chart: bad values fail at install", () => {
  const base = {
    app: { clientId: "00000000-0000-4000-8000-000000000001", credential: { type: "secret", secret: { existingSecret: "s" } } },
    tenants: { contoso: { tenantId: "contoso.example", sender: "noreply@contoso.example" } },
    callers: { billing: { keySha256: "a".repeat(64), tenants: ["contoso"] } },
  };

  it("when the base of these cases is rendered, then it succeeds (so each failure below is the change it makes)", () => {
    expect(templateRaw({ values: base }).status).toBe(0);
  });

  it.each([
    { why: "a tenant has a key the config file does not know", values: { tenants: { contoso: { ...base.tenants.contoso, senderr: "x@y.example" } } }, error: "senderr" },
    { why: "a tenant's sender is not an address", values: { tenants: { contoso: { tenantId: "contoso.example", sender: "noreply" } } }, error: "/tenants/contoso/sender" },
    { why: "a tenantId is neither a GUID nor a domain", values: { tenants: { contoso: { tenantId: "not a tenant", sender: "a@b.example" } } }, error: "/tenants/contoso/tenantId" },
    { why: "a caller's keySha256 is not 64 hex digits", values: { callers: { billing: { keySha256: "abc", tenants: ["contoso"] } } }, error: "/callers/billing/keySha256" },
    { why: "the credential type is unknown", values: { app: { ...base.app, credential: { type: "password" } } }, error: "/app/credential/type" },
    { why: "the clientId is not a GUID", values: { app: { ...base.app, clientId: "my-app" } }, error: "/app/clientId" },
    { why: "a top-level value is misspelt", values: { replicas: 3 }, error: "replicas" },
    { why: "a server setting is out of range", values: { server: { drainTimeoutSeconds: 9999 } }, error: "/server/drainTimeoutSeconds" },
    { why: "a limit is out of range", values: { tenants: { contoso: { ...base.tenants.contoso, limits: { maxConcurrency: 0 } } } }, error: "maxConcurrency" },
    { why: "the root filesystem user would be root", values: { securityContext: { runAsUser: 0 } }, error: "/securityContext/runAsUser" },
    { why: "the client secret is given inline in a tenant's app", values: { tenants: { contoso: { ...base.tenants.contoso, app: { clientId: base.app.clientId, credential: { type: "secret", secret: "hunter2" } } } } }, error: "/tenants/contoso/app/credential" },
  ])("when $why, then the values schema rejects it", ({ values, error }) => {
    const r = templateRaw({ values: { ...base, ...values } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("schema");
    expect(r.stderr).toContain(error);
  });

  it.each([
    { why: "type secret has neither existingSecret nor value", values: { app: { ...base.app, credential: { type: "secret", secret: { existingSecret: "" } } } }, error: "app.credential.secret: give existingSecret" },
    { why: "type secret has both existingSecret and value", values: { app: { ...base.app, credential: { type: "secret", secret: { existingSecret: "s", value: "fake" } } } }, error: "not both" },
    { why: "type certificate has no PEM", values: { app: { ...base.app, credential: { type: "certificate" } } }, error: "app.credential.certificate" },
    { why: "a caller names a tenant that is not configured", values: { callers: { billing: { keySha256: "a".repeat(64), tenants: ["fabrikam"] } } }, error: 'callers.billing.tenants: unknown tenant "fabrikam"' },
    { why: "tenants exist but no app is configured anywhere", values: { app: { clientId: "", credential: { type: "secret" } } }, error: "tenants.contoso.app: no app" },
    { why: "the grace period would cut the drain short", values: { terminationGracePeriodSeconds: 20 }, error: "terminationGracePeriodSeconds (20) must be greater than" },
    { why: "autoscaling has min above max", values: { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 2 }, store: { type: "redis", redis: { url: "redis://redis.example:6379" } } }, error: "minReplicas" },
  ])("when $why, then rendering fails with a message naming the value", ({ values, error }) => {
    const r = templateRaw({ values: { ...base, ...values } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(error);
  });
});

type JsonSchema = {
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  definitions?: Record<string, JsonSchema>;
  const?: unknown;
  $ref?: string;
};

function keysOf(s: JsonSchema | undefined): string[] {
  return Object.keys(s?.properties ?? {}).sort();
}

function credentialVariants(s: JsonSchema | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const v of s?.oneOf ?? s?.anyOf ?? []) out[String(v.properties?.["type"]?.const)] = keysOf(v);
  return out;
}

describe("helm chart: values.schema.json follows the config schema", () => {
  const chartSchema = JSON.parse(readFileSync(join(chartDir, "values.schema.json"), "utf8")) as JsonSchema;
  const configJson = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as JsonSchema;
  const cfg = configJson.properties ?? {};
  const defs = chartSchema.definitions ?? {};

  it("when a config section gains or loses a key, then the chart's values schema has the same keys", () => {
    for (const section of ["cloud", "tls", "server", "idempotency", "consent"]) {
      expect({ section, keys: keysOf(chartSchema.properties?.[section]) }).toEqual({ section, keys: keysOf(cfg[section]) });
    }
    const tenant = cfg["tenants"]?.additionalProperties as JsonSchema;
    expect(keysOf(defs["tenant"])).toEqual(keysOf(tenant));
    expect(keysOf(defs["tenant"]?.properties?.["limits"])).toEqual(keysOf(tenant.properties?.["limits"]));
    expect(keysOf(defs["caller"])).toEqual(keysOf(cfg["callers"]?.additionalProperties as JsonSchema));
    expect(credentialVariants(defs["credential"])).toEqual(credentialVariants(tenant.properties?.["app"]?.properties?.["credential"]));
  });

  it("when the config schema has a top-level key, then the chart offers it as a value", () => {
    for (const key of Object.keys(cfg)) expect(Object.keys(chartSchema.properties ?? {})).toContain(key);
  });
});
