import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load-config.js";
import { SEMI_SPACE_FLAG } from "../../src/server.js";
import { ciValuesFiles, configTextOf, deploymentOf, only, prepareHelm, render, templateRaw, type K8sObject } from "./chart.js";

beforeAll(() => {
  prepareHelm();
});

const valueSets = [{ label: "the default values", ciFiles: [] as string[] }, ...ciValuesFiles().map((f) => ({ label: `ci/${f}`, ciFiles: [f] }))];

const minimal = {
  app: { clientId: "00000000-0000-4000-8000-000000000001", credential: { type: "secret", secret: { value: "fake-secret" } } },
  tenants: { contoso: { tenantId: "contoso.example", sender: "noreply@contoso.example" } },
  callers: { billing: { keySha256: "b".repeat(64), tenants: ["contoso"] } },
};

describe("helm chart: pod security", () => {
  it.each(valueSets)("when rendered with $label, then the pod runs as non-root with a read-only root, no capabilities, RuntimeDefault seccomp and no privilege escalation", ({ ciFiles }) => {
    const pod = deploymentOf(render({ ciFiles })).spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    expect(pod.securityContext?.["runAsUser"]).not.toBe(0);
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.containers).toHaveLength(1);
    for (const c of pod.containers) {
      expect(c.securityContext).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
      });
      expect(c.securityContext?.capabilities?.add).toBeUndefined();
    }
  });

  it("when rendered, then /tmp is a writable emptyDir since the root filesystem is read-only", () => {
    const pod = deploymentOf(render()).spec.template.spec;
    const mount = pod.containers[0]?.volumeMounts?.find((m) => m.mountPath === "/tmp");
    expect(mount?.readOnly).not.toBe(true);
    expect(pod.volumes?.find((v) => v.name === mount?.name)?.emptyDir).toBeDefined();
  });

  it("when rendered, then liveness and startup probe /healthz, readiness probes /readyz, and requests and limits are set", () => {
    const c = deploymentOf(render()).spec.template.spec.containers[0];
    expect(c?.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(c?.startupProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(c?.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http" });
    expect(Object.keys(c?.resources?.requests ?? {}).sort()).toEqual(["cpu", "memory"]);
    expect(c?.resources?.limits?.["memory"]).toBeDefined();
  });

  it("when rendered, then the config directory is mounted without subPath so kubelet's updates reach the hot reload", () => {
    const pod = deploymentOf(render()).spec.template.spec;
    const env = Object.fromEntries((pod.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env["NOREPLY_RELAY_CONFIG"]).toBe("/etc/noreply-relay/config.yaml");
    expect(env["PORT"]).toBe("8080");
    const mount = pod.containers[0]?.volumeMounts?.find((m) => m.mountPath === "/etc/noreply-relay");
    expect(mount).toMatchObject({ readOnly: true });
    expect(mount?.subPath).toBeUndefined();
    expect(pod.volumes?.find((v) => v.name === mount?.name)?.configMap).toBeDefined();
  });
});

describe("helm chart: shutdown", () => {
  function grace(values: Record<string, unknown>): { grace: number | undefined; preStop: number | undefined; drain: number } {
    const objects = render({ values });
    const pod = deploymentOf(objects).spec.template.spec;
    return {
      grace: pod.terminationGracePeriodSeconds,
      preStop: pod.containers[0]?.lifecycle?.preStop?.sleep?.seconds,
      drain: parseConfig(configTextOf(objects)).server.drainTimeoutSeconds,
    };
  }

  it("when rendered with the default drain timeout, then the grace period outlasts preStop sleep plus the 20 s drain", () => {
    const g = grace({});
    expect(g.drain).toBe(20);
    expect(g.grace).toBe(35);
    expect(g.grace ?? 0).toBeGreaterThan(g.drain + (g.preStop ?? 0));
  });

  it("when server.drainTimeoutSeconds changes, then terminationGracePeriodSeconds follows it", () => {
    expect(grace({ server: { drainTimeoutSeconds: 120 } }).grace).toBe(135);
    expect(grace({ server: { drainTimeoutSeconds: 7.5 }, preStopSleepSeconds: 0 })).toEqual({ grace: 18, preStop: undefined, drain: 7.5 });
  });

  it("when terminationGracePeriodSeconds is given and long enough, then it is used as is", () => {
    expect(grace({ terminationGracePeriodSeconds: 90 }).grace).toBe(90);
  });
});

describe("helm chart: credentials", () => {
  function credentialVolume(objects: K8sObject[]) {
    const pod = deploymentOf(objects).spec.template.spec;
    const mount = pod.containers[0]?.volumeMounts?.find((m) => m.mountPath === "/var/run/secrets/noreply-relay/credential");
    return { mount, volume: pod.volumes?.find((v) => v.name === "credential") };
  }

  it("when the client secret is given as a value, then the chart owns a Secret, mounts it read-only and rolls the pods when it changes", () => {
    const first = render({ values: minimal });
    const secret = only(first, "Secret") as unknown as { data: Record<string, string> };
    expect(Buffer.from(secret.data["client-secret"] ?? "", "base64").toString()).toBe("fake-secret");
    const { mount, volume } = credentialVolume(first);
    expect(mount?.readOnly).toBe(true);
    expect(volume?.secret?.secretName).toBe(only(first, "Secret").metadata.name);
    const checksum = (o: K8sObject[]) => deploymentOf(o).spec.template.metadata.annotations?.["checksum/credential"];
    expect(checksum(first)).toMatch(/^[0-9a-f]{64}$/);
    const rotated = render({ values: { ...minimal, app: { ...minimal.app, credential: { type: "secret", secret: { value: "fake-secret-2" } } } } });
    expect(checksum(rotated)).not.toBe(checksum(first));
  });

  it("when only the config changes, then the pod template stays the same (hot reload) unless rollOnConfigChange is on", () => {
    const changed = { ...minimal, server: { drainTimeoutSeconds: 20, requestDeadlineSeconds: 10 } };
    const template = (values: Record<string, unknown>) => JSON.stringify(deploymentOf(render({ values })).spec.template);
    expect(template(changed)).toBe(template(minimal));
    expect(template({ ...changed, rollOnConfigChange: true })).not.toBe(template({ ...minimal, rollOnConfigChange: true }));
  });

  it("when existingSecret is used, then no Secret is rendered and its keys are mounted under the config's file names", () => {
    const objects = render({ ciFiles: ["existing-secret-values.yaml"] });
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
    expect(deploymentOf(objects).spec.template.metadata.annotations?.["checksum/credential"]).toBeUndefined();
    const { volume } = credentialVolume(objects);
    expect(volume?.secret).toMatchObject({
      secretName: "noreply-relay-client-secret",
      items: [
        { key: "client-secret", path: "client-secret" },
        { key: "client-secret-next", path: "client-secret-next" },
      ],
    });
    const cred = parseConfig(configTextOf(objects)).app?.credential;
    expect(cred).toMatchObject({
      type: "secret",
      secretFile: "/var/run/secrets/noreply-relay/credential/client-secret",
      secondarySecretFile: "/var/run/secrets/noreply-relay/credential/client-secret-next",
    });
  });

  it("when the credential is a certificate, then its PEM Secret is mounted and the config's certificateFile points at it", () => {
    const objects = render({ ciFiles: ["certificate-values.yaml"] });
    const { volume } = credentialVolume(objects);
    expect(volume?.secret).toMatchObject({ secretName: "noreply-relay-certificate", items: [{ key: "certificate.pem", path: "certificate.pem" }] });
    expect(parseConfig(configTextOf(objects)).app?.credential).toEqual({
      type: "certificate",
      certificateFile: "/var/run/secrets/noreply-relay/credential/certificate.pem",
      sendCertificateChain: true,
      expiresAt: new Date("2027-01-31T00:00:00Z"),
    });
  });

  it("when the certificate PEM is given as a value, then the chart creates the Secret holding it", () => {
    const pem = "-----BEGIN CERTIFICATE-----\nFAKE\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nFAKE\n-----END PRIVATE KEY-----\n";
    const objects = render({ values: { ...minimal, app: { ...minimal.app, credential: { type: "certificate", certificate: { pem } } } } });
    const secret = only(objects, "Secret") as unknown as { data: Record<string, string> };
    expect(Buffer.from(secret.data["certificate.pem"] ?? "", "base64").toString()).toBe(pem);
  });

  it("when workload identity is chosen, then the service account carries the client id, the pod the use label, the config the projected token, and no Secret exists", () => {
    const objects = render({ ciFiles: ["workload-identity-values.yaml"] });
    const sa = only(objects, "ServiceAccount");
    expect(sa.metadata.annotations?.["azure.workload.identity/client-id"]).toBe("00000000-0000-4000-8000-000000000003");
    const deployment = deploymentOf(objects);
    expect(deployment.spec.template.metadata.labels?.["azure.workload.identity/use"]).toBe("true");
    expect(deployment.spec.template.spec.serviceAccountName).toBe(sa.metadata.name);
    expect(objects.filter((o) => o.kind === "Secret")).toEqual([]);
    expect(credentialVolume(objects).volume).toBeUndefined();
    expect(parseConfig(configTextOf(objects)).app?.credential).toEqual({
      type: "workloadIdentity",
      tokenFile: "/var/run/secrets/azure/tokens/azure-identity-token",
    });
  });

  it("when a secret credential is used, then the pod does not ask for workload identity", () => {
    const objects = render({ values: minimal });
    expect(deploymentOf(objects).spec.template.metadata.labels?.["azure.workload.identity/use"]).toBeUndefined();
    expect(only(objects, "ServiceAccount").metadata.annotations?.["azure.workload.identity/client-id"]).toBeUndefined();
  });
});

describe("helm chart: network policy", () => {
  type Rule = { from?: unknown[]; to?: unknown[]; ports?: Array<{ port: number | string; protocol?: string }> };
  type Policy = { spec: { policyTypes: string[]; ingress: Rule[]; egress: Rule[] } };

  it("when rendered with the default values, then ingress comes only from labelled namespaces and egress goes only to DNS and 443", () => {
    const np = only(render(), "NetworkPolicy") as unknown as Policy;
    expect(np.spec.policyTypes).toEqual(["Ingress", "Egress"]);
    expect(np.spec.ingress).toEqual([
      {
        from: [
          { namespaceSelector: { matchLabels: { "noreply-relay.io/client": "true" } } },
          { namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } },
        ],
        ports: [{ port: "http", protocol: "TCP" }],
      },
    ]);
    const ports = np.spec.egress.flatMap((r) => (r.ports ?? []).map((p) => `${p.protocol}/${p.port}`)).sort();
    expect(ports).toEqual(["TCP/443", "TCP/53", "UDP/53"]);
    expect(np.spec.egress.every((r) => (r.ports ?? []).length > 0)).toBe(true);
  });

  it("when networkPolicy.enabled is false, then no NetworkPolicy is rendered", () => {
    expect(render({ values: { networkPolicy: { enabled: false } } }).map((o) => o.kind)).not.toContain("NetworkPolicy");
  });
});

describe("helm chart: node's options (the young generation)", () => {
  function envOf(values?: Record<string, unknown>, ciFiles?: string[]): Array<{ name: string; value?: string }> {
    return deploymentOf(render({ ...(values ? { values } : {}), ...(ciFiles ? { ciFiles } : {}) })).spec.template.spec.containers[0]?.env ?? [];
  }
  const nodeOptionsOf = (env: Array<{ name: string; value?: string }>) => env.filter((e) => e.name === "NODE_OPTIONS").map((e) => e.value);

  it("when rendered with the defaults, then NODE_OPTIONS gives V8 the semi-spaces the service is measured with (a 512Mi limit alone gives 1 MiB)", () => {
    expect(nodeOptionsOf(envOf())).toEqual([SEMI_SPACE_FLAG]);
  });

  it("when extraEnv also sets NODE_OPTIONS (the full values do), then there is one NODE_OPTIONS with nodeOptions first and the extra flags after, so they win", () => {
    const env = envOf(undefined, ["full-values.yaml"]);
    expect(nodeOptionsOf(env)).toEqual([`${SEMI_SPACE_FLAG} --max-old-space-size=512`]);
    expect(env.map((e) => e.name)).toContain("CONSENT_STATE_SECRET");
    expect(new Set(env.map((e) => e.name)).size).toBe(env.length);
  });

  it("when nodeOptions is emptied and nothing else sets it, then no NODE_OPTIONS is rendered (the image's own applies)", () => {
    expect(nodeOptionsOf(envOf({ nodeOptions: "" }))).toEqual([]);
  });

  it("when extraEnv takes NODE_OPTIONS from a Secret or ConfigMap, then rendering fails and says where node's flags go", () => {
    const r = templateRaw({ values: { extraEnv: [{ name: "NODE_OPTIONS", valueFrom: { configMapKeyRef: { name: "x", key: "y" } } }] } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("put node's flags in nodeOptions");
  });
});
