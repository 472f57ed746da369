import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../src/config/load-config.js";
import { storeSchema } from "../../src/config/schema.js";
import { chartDir, configTextOf, deploymentOf, notes, only, prepareHelm, render, templateRaw, type K8sObject, type PodSpecView } from "./chart.js";

/**
 * The chart's `store` values: the config file's store section, the Secret and ConfigMap files it
 * points at, the NetworkPolicy egress to Redis, and the refusal to run several pods that each
 * keep their own state (store.type memory).
 */

beforeAll(() => {
  prepareHelm();
});

const REDIS_URL = "redis://redis-master.redis.svc.cluster.local:6379/0";
const REDIS_DIR = "/var/run/secrets/noreply-relay/redis";
const REDIS_CA_DIR = "/var/run/secrets/noreply-relay/redis-ca";

/** Valid values with no Secret of the chart's own, so every Secret below is the store's. */
const base = {
  app: { clientId: "00000000-0000-4000-8000-000000000001", credential: { type: "secret", secret: { existingSecret: "relay-client-secret" } } },
  tenants: { contoso: { tenantId: "contoso.example", sender: "noreply@contoso.example" } },
  callers: { billing: { keySha256: "c".repeat(64), tenants: ["contoso"] } },
};

function withStore(store: Record<string, unknown>, more: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...base, store, ...more };
}

const redisInline = { type: "redis", redis: { url: REDIS_URL } };

/** The config file's `store` section as the chart wrote it (before the service's defaults). */
function storeOf(objects: readonly K8sObject[]): unknown {
  return (parseYaml(configTextOf(objects)) as Record<string, unknown>)["store"];
}

interface MountedFile {
  readOnly: boolean | undefined;
  subPath: string | undefined;
  source: "secret" | "configMap";
  name: string;
  key: string;
  defaultMode: number | undefined;
}

/** Which Secret or ConfigMap key the container sees at `file`, through which mount. */
function mountedFile(pod: PodSpecView, file: string): MountedFile | undefined {
  const mount = pod.containers[0]?.volumeMounts?.find((m) => m.mountPath === dirname(file));
  if (!mount) return undefined;
  const volume = pod.volumes?.find((v) => v.name === mount.name);
  const fromSecret = volume?.secret;
  const fromConfigMap = volume?.configMap;
  const items = fromSecret?.items ?? fromConfigMap?.items ?? [];
  const item = items.find((i) => i.path === basename(file));
  if (!item) return undefined;
  return {
    readOnly: mount.readOnly,
    subPath: mount.subPath,
    source: fromSecret ? "secret" : "configMap",
    name: fromSecret ? fromSecret.secretName : (fromConfigMap?.name ?? ""),
    key: item.key,
    defaultMode: fromSecret ? fromSecret.defaultMode : fromConfigMap?.defaultMode,
  };
}

function volumeNames(objects: readonly K8sObject[]): string[] {
  return (deploymentOf(objects).spec.template.spec.volumes ?? []).map((v) => v.name);
}

describe("helm chart: the store section with Redis", () => {
  it("when store.type is redis with an inline URL and a password Secret (ci/redis-values.yaml), then the ConfigMap's store section is exactly what the service expects", () => {
    const objects = render({ ciFiles: ["redis-values.yaml"] });
    expect(storeOf(objects)).toEqual({
      type: "redis",
      url: REDIS_URL,
      passwordFile: `${REDIS_DIR}/password`,
      keyPrefix: "noreply-relay:",
      onUnavailable: "reject",
      leaseSeconds: 10,
      commandTimeoutMs: 1000,
      connectTimeoutSeconds: 10,
    });
    expect(parseConfig(configTextOf(objects)).store).toMatchObject({ type: "redis", url: REDIS_URL, passwordFile: `${REDIS_DIR}/password` });
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
  });

  it("when the whole URL is in a Secret key and the CA in a ConfigMap (ci/full-values.yaml), then the store section names the mounted files and every setting comes through", () => {
    expect(storeOf(render({ ciFiles: ["full-values.yaml"] }))).toEqual({
      type: "redis",
      urlFile: `${REDIS_DIR}/url`,
      tls: { caFile: `${REDIS_CA_DIR}/ca.crt`, serverName: "redis.example.internal" },
      keyPrefix: "relay-prod:",
      onUnavailable: "local",
      leaseSeconds: 15,
      commandTimeoutMs: 500,
      connectTimeoutSeconds: 20,
    });
  });

  it.each([
    {
      label: "ci/redis-values.yaml",
      opts: { ciFiles: ["redis-values.yaml"] },
      files: { passwordFile: { source: "secret", name: "noreply-relay-redis", key: "password", defaultMode: 0o440 } },
    },
    {
      label: "ci/full-values.yaml",
      opts: { ciFiles: ["full-values.yaml"] },
      files: {
        urlFile: { source: "secret", name: "relay-redis", key: "redis-url", defaultMode: 0o440 },
        caFile: { source: "configMap", name: "redis-ca", key: "ca.pem", defaultMode: 0o444 },
      },
    },
    {
      label: "a URL and a password from one Secret and the CA from a Secret",
      opts: {
        values: withStore({ type: "redis", redis: { existingSecret: "redis-auth", urlKey: "url", passwordKey: "pw", tls: { caSecret: "redis-tls", caKey: "ca.crt" } } }),
      },
      files: {
        urlFile: { source: "secret", name: "redis-auth", key: "url", defaultMode: 0o440 },
        passwordFile: { source: "secret", name: "redis-auth", key: "pw", defaultMode: 0o440 },
        caFile: { source: "secret", name: "redis-tls", key: "ca.crt", defaultMode: 0o444 },
      },
    },
  ])("when rendered with $label, then each file the store section names is a read-only mount of the right Secret or ConfigMap key", ({ opts, files }) => {
    const objects = render(opts);
    const cfg = parseConfig(configTextOf(objects)).store;
    const pod = deploymentOf(objects).spec.template.spec;
    const named: Record<string, string | undefined> = { urlFile: cfg.urlFile, passwordFile: cfg.passwordFile, caFile: cfg.tls.caFile };
    expect(Object.keys(named).filter((k) => named[k] !== undefined).sort()).toEqual(Object.keys(files).sort());
    for (const [field, expected] of Object.entries(files)) {
      const path = named[field] as string;
      expect({ field, mounted: mountedFile(pod, path) }).toEqual({ field, mounted: { readOnly: true, subPath: undefined, ...expected } });
    }
  });

  it("when the URL is given inline without a password Secret, then nothing is mounted for the store", () => {
    const objects = render({ values: withStore(redisInline) });
    expect(storeOf(objects)).toMatchObject({ type: "redis", url: REDIS_URL });
    expect(volumeNames(objects)).not.toContain("redis");
    expect(volumeNames(objects)).not.toContain("redis-ca");
  });

  it("when the store is memory (the default), then the ConfigMap has no store section and the pod mounts nothing for it", () => {
    const objects = render({ values: base });
    expect(storeOf(objects)).toBeUndefined();
    expect(parseConfig(configTextOf(objects)).store.type).toBe("memory");
    expect(volumeNames(objects).filter((n) => n.startsWith("redis"))).toEqual([]);
    expect(deploymentOf(objects).spec.template.metadata.annotations?.["checksum/store"]).toBeUndefined();
  });

  it("when the store section changes, then the pod template changes too (the service reads it only at start-up), while other config changes still hot-reload", () => {
    const template = (values: Record<string, unknown>) => deploymentOf(render({ values })).spec.template;
    const first = template(withStore(redisInline));
    expect(first.metadata.annotations?.["checksum/store"]).toMatch(/^[0-9a-f]{64}$/);
    const otherLease = template(withStore({ ...redisInline, leaseSeconds: 20 }));
    expect(otherLease.metadata.annotations?.["checksum/store"]).not.toBe(first.metadata.annotations?.["checksum/store"]);
    const otherTenant = template(withStore(redisInline, { tenants: { contoso: { ...base.tenants.contoso, displayName: "Contoso" } } }));
    expect(JSON.stringify(otherTenant)).toBe(JSON.stringify(first));
  });

  it("when values.yaml sets the store's tunables, then they are the service's own defaults", () => {
    const values = parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8")) as { store: Record<string, unknown> };
    const service = storeSchema.parse({ type: "redis", url: "redis://localhost:6379" });
    for (const key of ["keyPrefix", "onUnavailable", "leaseSeconds", "commandTimeoutMs", "connectTimeoutSeconds"] as const) {
      expect({ key, value: values.store[key] }).toEqual({ key, value: service[key] });
    }
    expect(values.store["type"]).toBe(storeSchema.parse({}).type);
  });

  it("when the config's store section has a key, then the chart sets it from a value or deliberately leaves it out", () => {
    // config key -> the value it comes from; null: not offered (environment variables: use files).
    const fromValue: Record<string, string | null> = {
      type: "type",
      url: "redis.url",
      urlFile: "redis.urlKey",
      urlEnv: null,
      passwordFile: "redis.passwordKey",
      passwordEnv: null,
      keyPrefix: "keyPrefix",
      tls: "redis.tls",
      onUnavailable: "onUnavailable",
      leaseSeconds: "leaseSeconds",
      commandTimeoutMs: "commandTimeoutMs",
      connectTimeoutSeconds: "connectTimeoutSeconds",
    };
    expect(Object.keys(storeSchema.shape).sort()).toEqual(Object.keys(fromValue).sort());
    type Node = { properties?: Record<string, Node> };
    const chartSchema = JSON.parse(readFileSync(join(chartDir, "values.schema.json"), "utf8")) as Node;
    const storeValues = chartSchema.properties?.["store"];
    for (const path of Object.values(fromValue)) {
      if (path === null) continue;
      const node = path.split(".").reduce<Node | undefined>((n, k) => n?.properties?.[k], storeValues);
      expect({ path, offered: node !== undefined }).toEqual({ path, offered: true });
    }
    const tlsKeys = Object.keys(storeSchema.shape.tls.unwrap().shape).sort();
    expect(tlsKeys).toEqual(["caFile", "serverName"]);
  });
});

describe("helm chart: one pod unless the state is shared", () => {
  it("when rendered with the default values, then one pod runs, without an HPA or a PodDisruptionBudget", () => {
    const objects = render({ values: base });
    expect((only(objects, "Deployment") as unknown as { spec: { replicas?: number } }).spec.replicas).toBe(1);
    expect(objects.map((o) => o.kind)).not.toContain("HorizontalPodAutoscaler");
    expect(objects.map((o) => o.kind)).not.toContain("PodDisruptionBudget");
  });

  it.each([
    { why: "replicaCount is 3", values: { replicaCount: 3 }, pods: "3 pods (replicaCount)" },
    { why: "the HPA is on", values: { autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 5 } }, pods: "up to 5 pods (autoscaling.maxReplicas)" },
    { why: "the HPA is on with replicaCount 1", values: { replicaCount: 1, autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 2 } }, pods: "up to 2 pods (autoscaling.maxReplicas)" },
  ])("when the store is memory and $why, then rendering fails and says why and what to do", ({ values, pods }) => {
    const r = templateRaw({ values: { ...base, ...values } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`store.type memory keeps delivery state in each pod, but this release runs ${pods}`);
    expect(r.stderr).toContain("an Idempotency-Key replay that reaches another pod would send the mail again");
    expect(r.stderr).toContain("Set store.type redis (see docs/helm-redis.md)");
    expect(r.stderr).toContain("store.allowPerPodState true");
  });

  it("when the store is memory with replicaCount 0 or 1, then it renders", () => {
    expect(templateRaw({ values: { ...base, replicaCount: 0 } }).status).toBe(0);
    expect(templateRaw({ values: { ...base, replicaCount: 1 } }).status).toBe(0);
  });

  it("when store.allowPerPodState is true, then several memory-store pods render and NOTES.txt warns loudly", () => {
    const values = { ...base, replicaCount: 3, store: { type: "memory", allowPerPodState: true } };
    const objects = render({ values });
    expect((only(objects, "Deployment") as unknown as { spec: { replicas?: number } }).spec.replicas).toBe(3);
    const text = notes({ values });
    expect(text).toContain("WARNING: SEVERAL PODS WITH PER-POD STATE");
    expect(text).toContain("an Idempotency-Key replay that reaches another pod SENDS THE MAIL AGAIN");
    expect(text).toContain("N x limits.maxConcurrency");
  });

  it("when one pod runs or the state is in Redis, then NOTES.txt has no per-pod warning, and with Redis it says what happens when Redis is down", () => {
    expect(notes({ values: base })).not.toContain("WARNING");
    const redis = notes({ ciFiles: ["redis-values.yaml"] });
    expect(redis).not.toContain("WARNING");
    expect(redis).toContain("Delivery state is shared by every pod through Redis");
    expect(redis).toContain("sends without one get 503 too, and the pod reports not ready (onUnavailable reject)");
    expect(redis).not.toContain("ANY address");
    const local = notes({ values: withStore({ ...redisInline, onUnavailable: "local" }) });
    expect(local).toContain("go out under each pod's own limits (onUnavailable local)");
    expect(local).toContain("The NetworkPolicy lets the pods reach ANY address on port 6379");
  });

  it.each([
    { why: "one pod", values: withStore(redisInline, { replicaCount: 1 }), pdb: false },
    { why: "two pods", values: withStore(redisInline, { replicaCount: 2 }), pdb: true },
    { why: "the HPA on", values: withStore(redisInline, { autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 3 } }), pdb: true },
    { why: "three pods and the budget turned off", values: withStore(redisInline, { replicaCount: 3, podDisruptionBudget: { enabled: false } }), pdb: false },
  ])("when the store is Redis with $why, then a PodDisruptionBudget is rendered only if there can be several pods, and never protects pods that are not ready", ({ values, pdb }) => {
    const objects = render({ values });
    const budgets = objects.filter((o) => o.kind === "PodDisruptionBudget") as unknown as Array<{ spec: { maxUnavailable: number; unhealthyPodEvictionPolicy?: string } }>;
    expect(budgets.map((b) => ({ maxUnavailable: b.spec.maxUnavailable, unhealthy: b.spec.unhealthyPodEvictionPolicy }))).toEqual(pdb ? [{ maxUnavailable: 1, unhealthy: "AlwaysAllow" }] : []);
  });

  it("when rendered with ci/redis-values.yaml, then the HPA owns the replica count and a budget keeps drains to one pod at a time", () => {
    const objects = render({ ciFiles: ["redis-values.yaml"] });
    expect((only(objects, "Deployment") as unknown as { spec: { replicas?: number } }).spec.replicas).toBeUndefined();
    expect((only(objects, "HorizontalPodAutoscaler") as unknown as { spec: { minReplicas: number; maxReplicas: number } }).spec).toMatchObject({ minReplicas: 3, maxReplicas: 8 });
    expect((only(objects, "PodDisruptionBudget") as unknown as { spec: { maxUnavailable: number } }).spec.maxUnavailable).toBe(1);
  });
});

describe("helm chart: NetworkPolicy egress to Redis", () => {
  type Rule = { to?: unknown[]; ports?: Array<{ port: number | string; protocol?: string }> };
  const egress = (objects: readonly K8sObject[]) => (only(objects, "NetworkPolicy") as unknown as { spec: { egress: Rule[] } }).spec.egress;
  const storeRules = (objects: readonly K8sObject[], port: number) => egress(objects).filter((r) => (r.ports ?? []).some((p) => p.port === port));

  it("when the store is Redis with peers given (ci/redis-values.yaml), then egress to them on 6379 is allowed and nothing else is added", () => {
    const objects = render({ ciFiles: ["redis-values.yaml"] });
    expect(storeRules(objects, 6379)).toEqual([
      {
        ports: [{ port: 6379, protocol: "TCP" }],
        to: [
          {
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "redis" } },
            podSelector: { matchLabels: { "app.kubernetes.io/name": "redis" } },
          },
        ],
      },
    ]);
    const ports = egress(objects).flatMap((r) => (r.ports ?? []).map((p) => `${p.protocol}/${p.port}`)).sort();
    expect(ports).toEqual(["TCP/443", "TCP/53", "TCP/6379", "UDP/53"]);
  });

  it("when the port and an ipBlock are configured (ci/full-values.yaml), then the rule uses them", () => {
    expect(storeRules(render({ ciFiles: ["full-values.yaml"] }), 6380)).toEqual([{ ports: [{ port: 6380, protocol: "TCP" }], to: [{ ipBlock: { cidr: "10.20.40.0/28" } }] }]);
  });

  it("when the store is Redis without peers, then the rule allows the port to any address", () => {
    expect(storeRules(render({ values: withStore(redisInline) }), 6379)).toEqual([{ ports: [{ port: 6379, protocol: "TCP" }] }]);
  });

  it("when the store is memory, then there is no egress rule for Redis even with peers configured", () => {
    const objects = render({ values: { ...base, networkPolicy: { redis: { port: 6379, to: [{ ipBlock: { cidr: "10.0.0.0/8" } }] } } } });
    expect(storeRules(objects, 6379)).toEqual([]);
    expect(egress(objects)).toHaveLength(2);
  });
});

describe("helm chart: bad store values fail at install", () => {
  it("when the base of these cases is rendered with an inline URL, and with a user name but no password, then it succeeds", () => {
    expect(templateRaw({ values: withStore(redisInline) }).status).toBe(0);
    expect(templateRaw({ values: withStore({ type: "redis", redis: { url: "rediss://relay@redis.example:6380/2" } }) }).status).toBe(0);
  });

  it.each([
    { why: "the store type is unknown", values: withStore({ type: "postgres" }), error: "/store/type" },
    { why: "the URL holds a password", values: withStore({ type: "redis", redis: { url: "redis://:fake-password@redis.example:6379/0" } }), error: "/store/redis/url" },
    { why: "the URL holds a user and a password", values: withStore({ type: "redis", redis: { url: "rediss://relay:fake-password@redis.example:6380" } }), error: "/store/redis/url" },
    { why: "the URL is not redis:// or rediss://", values: withStore({ type: "redis", redis: { url: "http://redis.example:6379" } }), error: "/store/redis/url" },
    { why: "a store.redis key is misspelt", values: withStore({ type: "redis", redis: { url: REDIS_URL, passwordkey: "password" } }), error: "passwordkey" },
    { why: "a store key is misspelt", values: withStore({ ...redisInline, leaseSecond: 10 }), error: "leaseSecond" },
    { why: "the key prefix has a space", values: withStore({ ...redisInline, keyPrefix: "noreply relay:" }), error: "/store/keyPrefix" },
    { why: "onUnavailable is unknown", values: withStore({ ...redisInline, onUnavailable: "ignore" }), error: "/store/onUnavailable" },
    { why: "the lease is shorter than the service allows", values: withStore({ ...redisInline, leaseSeconds: 1 }), error: "/store/leaseSeconds" },
    { why: "the Secret name is not a Kubernetes name", values: withStore({ type: "redis", redis: { url: REDIS_URL, existingSecret: "Redis_Secret", passwordKey: "p" } }), error: "/store/redis/existingSecret" },
    { why: "the Redis port is out of range", values: withStore(redisInline, { networkPolicy: { redis: { port: 0, to: [] } } }), error: "/networkPolicy/redis/port" },
    { why: "a Redis peer mixes ipBlock and a selector", values: withStore(redisInline, { networkPolicy: { redis: { port: 6379, to: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] } } }), error: "/networkPolicy/redis/to/0" },
    { why: "a Redis peer's field is misspelt", values: withStore(redisInline, { networkPolicy: { redis: { port: 6379, to: [{ namespaceSelectors: {} }] } } }), error: "namespaceSelectors" },
  ])("when $why, then the values schema rejects it", ({ values, error }) => {
    const r = templateRaw({ values });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("schema");
    expect(r.stderr).toContain(error);
  });

  it.each([
    { why: "type redis has no URL", store: { type: "redis" }, error: "store.redis: with store.type redis, give url" },
    { why: "both url and urlKey are given", store: { type: "redis", redis: { url: REDIS_URL, existingSecret: "r", urlKey: "url" } }, error: "give url or urlKey" },
    { why: "urlKey is given without existingSecret", store: { type: "redis", redis: { urlKey: "url" } }, error: "set existingSecret to the name of your Secret" },
    { why: "existingSecret names no key", store: { type: "redis", redis: { url: REDIS_URL, existingSecret: "r" } }, error: "neither urlKey nor passwordKey" },
    { why: "the CA comes from both a Secret and a ConfigMap", store: { type: "redis", redis: { url: "rediss://redis.example:6380", tls: { caSecret: "a", caConfigMap: "b" } } }, error: "give caSecret or caConfigMap, not both" },
    { why: "a CA is given for a redis:// URL", store: { type: "redis", redis: { url: REDIS_URL, tls: { caConfigMap: "redis-ca" } } }, error: "use a rediss:// URL" },
    { why: "a Redis URL is given but the type is memory", store: { type: "memory", redis: { url: REDIS_URL } }, error: "store.redis is set but store.type is memory" },
  ])("when $why, then rendering fails with a message naming the value", ({ store, error }) => {
    const r = templateRaw({ values: withStore(store) });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(error);
  });
});
