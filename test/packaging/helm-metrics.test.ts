import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parseConfig } from "../../src/config/load-config.js";
import { httpLimitsSchema, metricsSchema } from "../../src/config/schema.js";
import { chartDir, configTextOf, deploymentOf, notes, only, prepareHelm, render, templateRaw, type K8sObject } from "./chart.js";
import { validateObject } from "./kube-validate.js";

/**
 * The chart's `metrics` values (the bearer token GET /metrics requires, and a port of its own
 * for it: config metrics.tokenFile / metrics.port), what the ServiceMonitor and NetworkPolicy
 * make of them, and `server.http` (the listener's limits) on its way into the config file.
 */

beforeAll(() => {
  prepareHelm();
});

const METRICS_DIR = "/var/run/secrets/noreply-relay/metrics";
const FULLNAME = "noreply-relay";

/** Valid values with no Secret of the chart's own. */
const base = {
  app: { clientId: "00000000-0000-4000-8000-000000000001", credential: { type: "secret", secret: { existingSecret: "relay-client-secret" } } },
  tenants: { contoso: { tenantId: "contoso.example", sender: "noreply@contoso.example" } },
  callers: { billing: { keySha256: "c".repeat(64), tenants: ["contoso"] } },
};
const token = { enabled: true, existingSecret: "relay-metrics" };

function renderWith(more: Record<string, unknown>): K8sObject[] {
  return render({ values: { ...base, ...more } });
}

interface Endpoint {
  port: string;
  path: string;
  authorization?: { type: string; credentials: { name: string; key: string } };
  bearerTokenSecret?: { name: string; key: string };
  relabelings?: Array<Record<string, unknown>>;
}
interface ServiceMonitorView {
  metadata: { namespace: string };
  spec: { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: Endpoint[] };
}
interface ServiceView {
  metadata: { name: string; labels: Record<string, string> };
  spec: { type: string; selector: Record<string, string>; ports: Array<{ name: string; port: number; targetPort: string | number }> };
}
type Rule = { from?: Array<Record<string, unknown>>; ports?: Array<{ port: number | string; protocol?: string }> };
type Policy = { spec: { ingress: Rule[] } };

function serviceMonitorOf(objects: readonly K8sObject[]): ServiceMonitorView {
  return only(objects, "ServiceMonitor") as unknown as ServiceMonitorView;
}
function servicesOf(objects: readonly K8sObject[]): ServiceView[] {
  return objects.filter((o) => o.kind === "Service") as unknown as ServiceView[];
}
function ingressOf(objects: readonly K8sObject[]): Rule[] {
  return (only(objects, "NetworkPolicy") as unknown as Policy).spec.ingress;
}
function containerOf(objects: readonly K8sObject[]) {
  const c = deploymentOf(objects).spec.template.spec.containers[0];
  if (!c) throw new Error("no container");
  return c as typeof c & { ports?: Array<{ name: string; containerPort: number }> };
}
/** The config file's `metrics` section as the chart wrote it. */
function metricsSectionOf(objects: readonly K8sObject[]): unknown {
  return (parseYaml(configTextOf(objects)) as Record<string, unknown>)["metrics"];
}
/** True when every label of `selector` is on `labels`. */
function selects(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

describe("helm chart: /metrics by default", () => {
  it("when metrics is left as it is, then the config has no metrics section, nothing is mounted for it, and the ServiceMonitor scrapes the API port without a token", () => {
    const objects = renderWith({ serviceMonitor: { enabled: true } });
    expect(metricsSectionOf(objects)).toBeUndefined();
    expect(parseConfig(configTextOf(objects)).metrics).toEqual({});
    expect((deploymentOf(objects).spec.template.spec.volumes ?? []).map((v) => v.name)).not.toContain("metrics-token");
    expect(containerOf(objects).ports?.map((p) => p.name)).toEqual(["http"]);
    expect(servicesOf(objects).map((s) => s.metadata.name)).toEqual([FULLNAME]);
    const [endpoint] = serviceMonitorOf(objects).spec.endpoints;
    expect(endpoint).toMatchObject({ port: "http", path: "/metrics" });
    expect(endpoint?.authorization).toBeUndefined();
    expect(endpoint?.bearerTokenSecret).toBeUndefined();
    expect(endpoint?.relabelings).toBeUndefined();
  });
});

describe("helm chart: the metrics bearer token", () => {
  it("when metrics.token is enabled, then its Secret is mounted read-only with mode 0440 for the fsGroup and the config's tokenFile names the mounted file", () => {
    const objects = renderWith({ metrics: { token: { ...token, key: "scrape-token" } } });
    const pod = deploymentOf(objects).spec.template.spec;
    expect(pod.volumes?.find((v) => v.name === "metrics-token")?.secret).toEqual({
      secretName: "relay-metrics",
      defaultMode: 0o440,
      items: [{ key: "scrape-token", path: "token" }],
    });
    expect(pod.containers[0]?.volumeMounts).toContainEqual({ name: "metrics-token", mountPath: METRICS_DIR, readOnly: true });
    expect(pod.securityContext?.["fsGroup"]).toEqual(expect.any(Number));
    expect(metricsSectionOf(objects)).toEqual({ tokenFile: `${METRICS_DIR}/token` });
    expect(parseConfig(configTextOf(objects)).metrics.tokenFile).toBe(`${METRICS_DIR}/token`);
    // The Secret is the user's: the chart never creates it.
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
  });

  it("when a ServiceMonitor scrapes a token-protected /metrics, then it hands Prometheus that Secret as a Bearer authorization", () => {
    const objects = renderWith({ metrics: { token }, serviceMonitor: { enabled: true } });
    const [endpoint] = serviceMonitorOf(objects).spec.endpoints;
    expect(endpoint?.authorization).toEqual({ type: "Bearer", credentials: { name: "relay-metrics", key: "token" } });
    expect(endpoint?.bearerTokenSecret).toBeUndefined();
    expect(objects.flatMap(validateObject)).toEqual([]);
  });

  it("when serviceMonitor.tokenField is bearerTokenSecret, then the endpoint uses that (deprecated) field instead", () => {
    const objects = renderWith({ metrics: { token }, serviceMonitor: { enabled: true, tokenField: "bearerTokenSecret" } });
    const [endpoint] = serviceMonitorOf(objects).spec.endpoints;
    expect(endpoint?.bearerTokenSecret).toEqual({ name: "relay-metrics", key: "token" });
    expect(endpoint?.authorization).toBeUndefined();
  });

  it("when the ServiceMonitor lives in Prometheus' namespace, then it names the token Secret there (serviceMonitor.tokenSecret) and still selects the release namespace", () => {
    const objects = renderWith({
      metrics: { token },
      serviceMonitor: { enabled: true, namespace: "monitoring", tokenSecret: { name: "noreply-relay-scrape", key: "bearer" } },
    });
    const monitor = serviceMonitorOf(objects);
    expect(monitor.metadata.namespace).toBe("monitoring");
    expect(monitor.spec.namespaceSelector.matchNames).toEqual(["mail"]);
    expect(monitor.spec.endpoints[0]?.authorization?.credentials).toEqual({ name: "noreply-relay-scrape", key: "bearer" });
    // The pod still mounts the token from the release namespace's Secret.
    expect(deploymentOf(objects).spec.template.spec.volumes?.find((v) => v.name === "metrics-token")?.secret?.secretName).toBe("relay-metrics");
  });

  it("when serviceMonitor.tokenSecret names only the Secret, then the key is metrics.token.key", () => {
    const objects = renderWith({ metrics: { token: { ...token, key: "t" } }, serviceMonitor: { enabled: true, namespace: "monitoring", tokenSecret: { name: "scrape" } } });
    expect(serviceMonitorOf(objects).spec.endpoints[0]?.authorization?.credentials).toEqual({ name: "scrape", key: "t" });
  });
});

describe("helm chart: a port of its own for /metrics", () => {
  const withPort = { metrics: { token, port: 9464 }, serviceMonitor: { enabled: true }, service: { type: "LoadBalancer", port: 80, annotations: { "example.com/lb": "public" } } };
  let objects: K8sObject[];
  beforeAll(() => {
    objects = renderWith(withPort);
  });

  it("when metrics.port is set, then the config names it, the container exposes it as `metrics`, and the probes stay on the API port", () => {
    expect(metricsSectionOf(objects)).toEqual({ port: 9464, tokenFile: `${METRICS_DIR}/token` });
    expect(parseConfig(configTextOf(objects)).metrics.port).toBe(9464);
    const c = containerOf(objects);
    expect(c.ports).toEqual([
      { name: "http", containerPort: 8080, protocol: "TCP" },
      { name: "metrics", containerPort: 9464, protocol: "TCP" },
    ]);
    expect(c.env).toContainEqual({ name: "PORT", value: "8080" });
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) expect(probe?.httpGet?.port).toBe("http");
    expect(objects.flatMap(validateObject)).toEqual([]);
  });

  it("when metrics.port is set, then a ClusterIP Service <full name>-metrics carries only that port, whatever service.type the API has", () => {
    const services = servicesOf(objects);
    expect(services.map((s) => s.metadata.name).sort()).toEqual([FULLNAME, `${FULLNAME}-metrics`]);
    const api = services.find((s) => s.metadata.name === FULLNAME);
    const metrics = services.find((s) => s.metadata.name === `${FULLNAME}-metrics`);
    expect(api?.spec.type).toBe("LoadBalancer");
    expect(api?.spec.ports.map((p) => p.targetPort)).toEqual(["http"]);
    expect(metrics?.spec.type).toBe("ClusterIP");
    expect(metrics?.spec.ports).toEqual([{ name: "metrics", port: 9464, targetPort: "metrics", protocol: "TCP" }]);
    expect((metrics as unknown as K8sObject).metadata.annotations).toBeUndefined();
    // It selects this release's pods.
    expect(selects(metrics?.spec.selector ?? {}, deploymentOf(objects).spec.template.metadata.labels)).toBe(true);
  });

  it("when metrics.port is set, then the ServiceMonitor selects the metrics Service alone, scrapes its `metrics` port with the token, and keeps the job label the full name", () => {
    const monitor = serviceMonitorOf(objects);
    const services = servicesOf(objects);
    expect(services.filter((s) => selects(monitor.spec.selector.matchLabels, s.metadata.labels)).map((s) => s.metadata.name)).toEqual([`${FULLNAME}-metrics`]);
    const [endpoint] = monitor.spec.endpoints;
    expect(endpoint).toMatchObject({ port: "metrics", path: "/metrics" });
    expect(endpoint?.authorization).toEqual({ type: "Bearer", credentials: { name: "relay-metrics", key: "token" } });
    // prometheusRule.metricSelector defaults to job="<full name>"; the Service's own name would be <full name>-metrics.
    expect(endpoint?.relabelings).toEqual([{ action: "replace", targetLabel: "job", replacement: FULLNAME }]);
  });

  it("when metrics.port is set, then the NetworkPolicy lets callers reach only the API port and Prometheus' namespace only the metrics port", () => {
    expect(ingressOf(objects)).toEqual([
      { from: [{ namespaceSelector: { matchLabels: { "noreply-relay.io/client": "true" } } }], ports: [{ port: "http", protocol: "TCP" }] },
      { from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }], ports: [{ port: "metrics", protocol: "TCP" }] },
    ]);
  });

  it("when metrics.port is set and metricsNamespaceSelector is null, then nothing reaches the metrics port", () => {
    const ingress = ingressOf(renderWith({ ...withPort, networkPolicy: { metricsNamespaceSelector: null } }));
    expect(ingress).toEqual([{ from: [{ namespaceSelector: { matchLabels: { "noreply-relay.io/client": "true" } } }], ports: [{ port: "http", protocol: "TCP" }] }]);
  });

  it("when the full name is long, then the metrics Service's name still fits 63 characters and ends in -metrics", () => {
    const long = renderWith({ ...withPort, fullnameOverride: "a".repeat(63) });
    const name = servicesOf(long).find((s) => s.metadata.name !== "a".repeat(63))?.metadata.name ?? "";
    expect(name).toBe(`${"a".repeat(55)}-metrics`);
    expect(long.flatMap(validateObject)).toEqual([]);
  });
});

describe("helm chart: NetworkPolicy namespace selectors replace the defaults", () => {
  const clients = { matchLabels: { "noreply-relay.io/client": "true" } };
  const monitoring = { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } };
  const fromOf = (more: Record<string, unknown>) => ingressOf(renderWith({ networkPolicy: more }))[0]?.from;

  it("when a selector is given, then it is used as given (Helm used to merge the default labels into it, so callers needed both)", () => {
    expect(fromOf({ clientNamespaceSelector: { matchLabels: { team: "billing" } }, metricsNamespaceSelector: { matchLabels: { name: "prometheus" } } })).toEqual([
      { namespaceSelector: { matchLabels: { team: "billing" } } },
      { namespaceSelector: { matchLabels: { name: "prometheus" } } },
    ]);
    const expressions = { matchExpressions: [{ key: "team", operator: "In", values: ["billing", "support"] }] };
    expect(fromOf({ clientNamespaceSelector: expressions })).toEqual([{ namespaceSelector: expressions }, { namespaceSelector: monitoring }]);
  });

  it("when a selector is {}, then its default applies; when null, its namespaces are left out", () => {
    expect(fromOf({ clientNamespaceSelector: {}, metricsNamespaceSelector: {} })).toEqual([{ namespaceSelector: clients }, { namespaceSelector: monitoring }]);
    expect(fromOf({ metricsNamespaceSelector: null })).toEqual([{ namespaceSelector: clients }]);
    expect(fromOf({ clientNamespaceSelector: null })).toEqual([{ namespaceSelector: monitoring }]);
  });

  it("when both selectors are null and there is no extraIngress, then the policy admits nothing (an empty list, not a missing one)", () => {
    const objects = renderWith({ networkPolicy: { clientNamespaceSelector: null, metricsNamespaceSelector: null } });
    expect(ingressOf(objects)).toEqual([]);
    expect(objects.flatMap(validateObject)).toEqual([]);
  });

  it("when NOTES.txt tells how to admit a caller namespace, then it names the selector in force", () => {
    expect(notes({ values: { ...base, networkPolicy: { clientNamespaceSelector: { matchLabels: { team: "billing" } } } } })).toContain("kubectl label namespace <caller-namespace> team=billing");
    expect(notes({ values: base })).toContain("kubectl label namespace <caller-namespace> noreply-relay.io/client=true");
  });
});

describe("helm chart: server.http", () => {
  it("when server.http is set, then the config file carries it as given and the service's parser accepts it", () => {
    const http = { headersTimeoutSeconds: 15, requestTimeoutSeconds: 120, keepAliveTimeoutSeconds: 65, maxConnections: 4096, maxConnectionsPerClient: 0 };
    const objects = renderWith({ server: { drainTimeoutSeconds: 20, http } });
    expect((parseYaml(configTextOf(objects)) as { server: { http: unknown } }).server.http).toEqual(http);
    expect(parseConfig(configTextOf(objects)).server.http).toEqual(http);
  });

  it("when values.yaml sets server.http, then each value is the service's own default", () => {
    const values = parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8")) as { server: { http: Record<string, unknown> } };
    expect(values.server.http).toEqual(httpLimitsSchema.parse({}));
  });

  it("when the values schema bounds server.http, then its keys, types and limits are the config schema's", () => {
    type Node = { properties?: Record<string, Node>; type?: unknown; minimum?: number; maximum?: number };
    const chartSchema = JSON.parse(readFileSync(join(chartDir, "values.schema.json"), "utf8")) as Node;
    const chart = chartSchema.properties?.["server"]?.properties?.["http"]?.properties ?? {};
    const service = (z.toJSONSchema(httpLimitsSchema, { io: "input" }) as Node).properties ?? {};
    const bounds = (props: Record<string, Node>) =>
      Object.fromEntries(Object.entries(props).map(([k, n]) => [k, { type: n.type, minimum: n.minimum, maximum: n.maximum }]));
    expect(bounds(chart)).toEqual(bounds(service));
    // metrics.port likewise (null in the chart: on the API port).
    const port = chartSchema.properties?.["metrics"]?.properties?.["port"];
    const servicePort = (z.toJSONSchema(metricsSchema, { io: "input" }) as Node).properties?.["port"];
    expect({ minimum: port?.minimum, maximum: port?.maximum }).toEqual({ minimum: servicePort?.minimum, maximum: servicePort?.maximum });
  });

  it("when server.http changes, then the pod template changes (the service reads it only at start-up), while a tenant change still hot-reloads", () => {
    const template = (more: Record<string, unknown>) => deploymentOf(renderWith(more)).spec.template;
    const first = template({});
    expect(first.metadata.annotations?.["checksum/server-http"]).toMatch(/^[0-9a-f]{64}$/);
    const slower = template({ server: { http: { headersTimeoutSeconds: 20 } } });
    expect(slower.metadata.annotations?.["checksum/server-http"]).not.toBe(first.metadata.annotations?.["checksum/server-http"]);
    const otherTenant = template({ tenants: { contoso: { ...base.tenants.contoso, displayName: "Contoso" } } });
    expect(JSON.stringify(otherTenant)).toBe(JSON.stringify(first));
  });

  it("when the config's metrics section has a key, then the chart sets it from a value or deliberately leaves it out", () => {
    // config key -> the value it comes from; null: not offered (an environment variable: use the Secret file).
    const fromValue: Record<string, string | null> = { tokenFile: "token.existingSecret", tokenEnv: null, port: "port" };
    expect(Object.keys(metricsSchema.shape).sort()).toEqual(Object.keys(fromValue).sort());
  });
});

describe("helm chart: bad metrics and server.http values fail at install", () => {
  it("when the base of these cases is rendered with a token, a port and a ServiceMonitor, then it succeeds", () => {
    expect(templateRaw({ values: { ...base, metrics: { token, port: 9464 }, serviceMonitor: { enabled: true } } }).status).toBe(0);
  });

  it.each([
    { why: "metrics.port is out of range", values: { metrics: { port: 70000 } }, error: "/metrics/port" },
    { why: "metrics.port is not a number", values: { metrics: { port: "9464" } }, error: "/metrics/port" },
    { why: "a metrics.token key is misspelt", values: { metrics: { token: { ...token, secret: "x" } } }, error: "secret" },
    { why: "the token Secret is not a Kubernetes name", values: { metrics: { token: { enabled: true, existingSecret: "Relay_Metrics" } } }, error: "/metrics/token/existingSecret" },
    { why: "serviceMonitor.tokenField is unknown", values: { metrics: { token }, serviceMonitor: { enabled: true, tokenField: "basicAuth" } }, error: "/serviceMonitor/tokenField" },
    { why: "a server.http limit is out of range", values: { server: { http: { headersTimeoutSeconds: 0 } } }, error: "/server/http/headersTimeoutSeconds" },
    { why: "maxConnections is not a whole number", values: { server: { http: { maxConnections: 10.5 } } }, error: "/server/http/maxConnections" },
    { why: "a server.http key is misspelt", values: { server: { http: { maxConnection: 10 } } }, error: "maxConnection" },
  ])("when $why, then the values schema rejects it", ({ values, error }) => {
    const r = templateRaw({ values: { ...base, ...values } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("schema");
    expect(r.stderr).toContain(error);
  });

  it.each([
    { why: "the token is enabled without its Secret", values: { metrics: { token: { enabled: true } } }, error: "metrics.token.enabled is true but metrics.token.existingSecret is empty" },
    { why: "a token Secret is named but the token is not enabled", values: { metrics: { token: { enabled: false, existingSecret: "relay-metrics" } } }, error: "metrics.token.existingSecret is set but metrics.token.enabled is false" },
    { why: "metrics.port is the API port", values: { metrics: { port: 8080 } }, error: "metrics.port (8080) must differ from the API port (8080)" },
    {
      why: "the ServiceMonitor is in another namespace without a token Secret there",
      values: { metrics: { token }, serviceMonitor: { enabled: true, namespace: "monitoring" } },
      error: "serviceMonitor.namespace is monitoring but the metrics token Secret relay-metrics is in mail",
    },
    { why: "serviceMonitor.tokenSecret is set without a token", values: { serviceMonitor: { enabled: true, tokenSecret: { name: "scrape" } } }, error: "serviceMonitor.tokenSecret is set but metrics.token.enabled is false" },
    { why: "serviceMonitor.tokenSecret has a key but no name", values: { metrics: { token }, serviceMonitor: { enabled: true, tokenSecret: { key: "t" } } }, error: "serviceMonitor.tokenSecret.key is set without serviceMonitor.tokenSecret.name" },
    { why: "the request timeout is shorter than the headers timeout", values: { server: { http: { headersTimeoutSeconds: 30, requestTimeoutSeconds: 20 } } }, error: "server.http.requestTimeoutSeconds (20) must be at least server.http.headersTimeoutSeconds (30)" },
  ])("when $why, then rendering fails with a message naming the value", ({ values, error }) => {
    const r = templateRaw({ values: { ...base, ...values } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(error);
  });

  it("when the ServiceMonitor is in the release namespace itself, then the token Secret there is enough", () => {
    expect(templateRaw({ values: { ...base, metrics: { token }, serviceMonitor: { enabled: true, namespace: "mail" } } }).status).toBe(0);
  });
});
