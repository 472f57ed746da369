import { describe, expect, it } from "vitest";
import { z } from "zod";
import { parseConfig } from "../../src/config/load-config.js";
import { smtpSchema } from "../../src/config/schema.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chartDir, configTextOf, deploymentOf, prepareHelm, render, templateRaw, type K8sObject } from "./chart.js";

/*
 * The chart's SMTP values: off by default; when on, the container ports, the TLS Secret mount,
 * the config section pointing at it, a Service of its own and the NetworkPolicy ingress.
 */

interface ServiceView {
  metadata: { name: string };
  spec: { type: string; externalTrafficPolicy?: string; ports: Array<{ name: string; port: number; targetPort: string }> };
}
interface IngressRule {
  from?: Array<Record<string, unknown>>;
  ports?: Array<{ port: string | number }>;
}

const services = (objects: readonly K8sObject[]): ServiceView[] => objects.filter((o) => o.kind === "Service") as unknown as ServiceView[];
const ingress = (objects: readonly K8sObject[]): IngressRule[] =>
  (objects.find((o) => o.kind === "NetworkPolicy") as unknown as { spec: { ingress: IngressRule[] } }).spec.ingress;

describe("helm chart: SMTP", () => {
  prepareHelm();

  it("when smtp is not enabled (the default), then there is no SMTP Service, port, mount or config", () => {
    const objects = render();
    expect(services(objects).map((s) => s.metadata.name)).toEqual(["noreply-relay"]);
    const pod = deploymentOf(objects).spec.template.spec;
    expect(JSON.stringify(pod)).not.toMatch(/smtp/i);
    expect(parseConfig(configTextOf(objects)).smtp.enabled).toBe(false);
    expect(ingress(objects).flatMap((r) => r.ports ?? []).map((p) => p.port)).toEqual(["http"]);
  });

  it("when smtp is enabled with ci/smtp-values.yaml, then the config listens on 2587 and 2465 with the mounted TLS Secret", () => {
    const objects = render({ ciFiles: ["smtp-values.yaml"] });
    const config = parseConfig(configTextOf(objects));
    expect(config.smtp).toMatchObject({ enabled: true, port: 2587, implicitTlsPort: 2465, hostname: "smtp.example.com", maxConnectionsPerClient: 8 });
    expect(config.smtp.authFailures).toEqual({ max: 5, windowSeconds: 600 });
    const pod = deploymentOf(objects).spec.template.spec;
    const container = pod.containers[0] as unknown as { ports: Array<{ name: string; containerPort: number }>; volumeMounts: Array<{ name: string; mountPath: string }> };
    expect(container.ports.map((p) => [p.name, p.containerPort])).toEqual([
      ["http", 8080],
      ["smtp", 2587],
      ["smtps", 2465],
    ]);
    const mount = container.volumeMounts.find((m) => m.name === "smtp-tls");
    expect(config.smtp.tls).toEqual({ certFile: `${mount?.mountPath}/tls.crt`, keyFile: `${mount?.mountPath}/tls.key` });
    expect(pod.volumes?.find((v) => v.name === "smtp-tls")?.secret).toMatchObject({ secretName: "smtp-example-com-tls", defaultMode: 0o440 });
  });

  it("when smtp is enabled, then a Service of its own exposes 587 and 465 and the NetworkPolicy lets smtp.from in on those ports only", () => {
    const objects = render({ ciFiles: ["smtp-values.yaml"] });
    const smtp = services(objects).find((s) => s.metadata.name === "noreply-relay-smtp");
    expect(smtp?.spec).toMatchObject({ type: "LoadBalancer", externalTrafficPolicy: "Local" });
    expect(smtp?.spec.ports.map((p) => [p.name, p.port, p.targetPort])).toEqual([
      ["smtp", 587, "smtp"],
      ["smtps", 465, "smtps"],
    ]);
    const rule = ingress(objects).find((r) => r.ports?.some((p) => p.port === "smtp"));
    expect(rule).toEqual({ from: [{ ipBlock: { cidr: "10.20.0.0/16" } }], ports: [{ port: "smtp", protocol: "TCP" }, { port: "smtps", protocol: "TCP" }] });
  });

  it("when smtp.from is empty, then SMTP is open to the client namespaces, like the HTTP API", () => {
    const objects = render({ values: { smtp: { enabled: true, tls: { secretName: "t" } } } });
    const rule = ingress(objects).find((r) => r.ports?.some((p) => p.port === "smtp"));
    expect(rule?.from).toEqual([{ namespaceSelector: { matchLabels: { "noreply-relay.io/client": "true" } } }]);
    expect(rule?.ports).toEqual([{ port: "smtp", protocol: "TCP" }]);
    expect(services(objects).find((s) => s.metadata.name === "noreply-relay-smtp")?.spec.type).toBe("ClusterIP");
  });

  it("when smtp is enabled without a TLS Secret, then rendering fails naming smtp.tls.secretName", () => {
    const r = templateRaw({ values: { smtp: { enabled: true } } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("smtp.tls.secretName");
  });

  it("when the config's smtp section gains a key, then the chart offers it (under smtp.config) or sets it itself", () => {
    const chartSchema = JSON.parse(readFileSync(join(chartDir, "values.schema.json"), "utf8")) as {
      properties: { smtp: { properties: { config: { properties: Record<string, unknown> } } } };
    };
    const offered = Object.keys(chartSchema.properties.smtp.properties.config.properties);
    const setByChart = ["enabled", "host", "port", "implicitTlsPort", "tls", "allowInsecureAuth"];
    const configKeys = Object.keys((z.toJSONSchema(smtpSchema, { io: "input", unrepresentable: "any" }) as { properties: Record<string, unknown> }).properties);
    expect([...offered, ...setByChart].sort()).toEqual(configKeys.sort());
  });
});
