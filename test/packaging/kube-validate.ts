import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import type { K8sObject } from "./chart.js";

/**
 * Validates rendered objects against the Kubernetes OpenAPI schemas that kubernetes-models
 * ships (types, required fields, enums). Those validators accept unknown fields, so typos in
 * field names are caught by the explicit assertions in the chart tests instead.
 *
 * ServiceMonitor and PrometheusRule are CRDs: @kubernetes-models/prometheus-operator is not a
 * dependency, so they are checked structurally here and their PromQL by promtool.
 */

type Validatable = { validate(): void };
const builtIn: Record<string, (data: never) => Validatable> = {
  "apps/v1/Deployment": (d) => new Deployment(d),
  "autoscaling/v2/HorizontalPodAutoscaler": (d) => new HorizontalPodAutoscaler(d),
  "networking.k8s.io/v1/NetworkPolicy": (d) => new NetworkPolicy(d),
  "policy/v1/PodDisruptionBudget": (d) => new PodDisruptionBudget(d),
  "v1/ConfigMap": (d) => new ConfigMap(d),
  "v1/Secret": (d) => new Secret(d),
  "v1/Service": (d) => new Service(d),
  "v1/ServiceAccount": (d) => new ServiceAccount(d),
};

const DURATION = /^(\d+(ms|s|m|h|d|w|y))+$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown): boolean {
  return isRecord(v) && Object.values(v).every((x) => typeof x === "string");
}

function secretKeySelector(v: unknown): boolean {
  return isRecord(v) && typeof v["name"] === "string" && DNS_SUBDOMAIN.test(v["name"]) && typeof v["key"] === "string" && v["key"] !== "";
}

function checkServiceMonitor(o: K8sObject): string[] {
  const errors: string[] = [];
  const spec = o["spec"];
  if (!isRecord(spec)) return ["spec: missing"];
  const selector = spec["selector"];
  if (!isRecord(selector) || !stringMap(selector["matchLabels"])) errors.push("spec.selector.matchLabels: must be a map of strings");
  const endpoints = spec["endpoints"];
  if (!Array.isArray(endpoints) || endpoints.length === 0) return [...errors, "spec.endpoints: must be a non-empty list"];
  endpoints.forEach((e: unknown, i) => {
    if (!isRecord(e)) return errors.push(`spec.endpoints[${i}]: must be an object`);
    if (typeof e["port"] !== "string") errors.push(`spec.endpoints[${i}].port: must be a Service port name`);
    for (const k of ["interval", "scrapeTimeout"]) {
      if (e[k] !== undefined && !(typeof e[k] === "string" && DURATION.test(e[k]))) errors.push(`spec.endpoints[${i}].${k}: must be a duration`);
    }
    if (e["path"] !== undefined && !(typeof e["path"] === "string" && e["path"].startsWith("/"))) errors.push(`spec.endpoints[${i}].path: must start with /`);
    // A Secret key selector for the scrape's bearer token: authorization.credentials, or the deprecated bearerTokenSecret.
    const auth = e["authorization"];
    if (auth !== undefined) {
      if (!isRecord(auth) || typeof auth["type"] !== "string") errors.push(`spec.endpoints[${i}].authorization: needs a type`);
      else if (!secretKeySelector(auth["credentials"])) errors.push(`spec.endpoints[${i}].authorization.credentials: must name a Secret and key`);
    }
    if (e["bearerTokenSecret"] !== undefined && !secretKeySelector(e["bearerTokenSecret"])) errors.push(`spec.endpoints[${i}].bearerTokenSecret: must name a Secret and key`);
    if (e["authorization"] !== undefined && e["bearerTokenSecret"] !== undefined) errors.push(`spec.endpoints[${i}]: authorization and bearerTokenSecret are exclusive`);
    const relabelings = e["relabelings"];
    if (relabelings !== undefined && !(Array.isArray(relabelings) && relabelings.every(isRecord))) errors.push(`spec.endpoints[${i}].relabelings: must be a list of objects`);
    return undefined;
  });
  return errors;
}

function checkPrometheusRule(o: K8sObject): string[] {
  const errors: string[] = [];
  const spec = o["spec"];
  if (!isRecord(spec) || !Array.isArray(spec["groups"]) || spec["groups"].length === 0) return ["spec.groups: must be a non-empty list"];
  spec["groups"].forEach((g: unknown, gi) => {
    if (!isRecord(g) || typeof g["name"] !== "string" || !Array.isArray(g["rules"])) return errors.push(`spec.groups[${gi}]: needs name and rules`);
    g["rules"].forEach((r: unknown, ri) => {
      const at = `spec.groups[${gi}].rules[${ri}]`;
      if (!isRecord(r)) return errors.push(`${at}: must be an object`);
      const named = [typeof r["alert"] === "string", typeof r["record"] === "string"].filter(Boolean).length;
      if (named !== 1) errors.push(`${at}: needs exactly one of alert or record`);
      if (typeof r["expr"] !== "string" || r["expr"].trim() === "") errors.push(`${at}.expr: must be a non-empty string`);
      if (r["for"] !== undefined && !(typeof r["for"] === "string" && DURATION.test(r["for"]))) errors.push(`${at}.for: must be a duration`);
      for (const k of ["labels", "annotations"]) if (r[k] !== undefined && !stringMap(r[k])) errors.push(`${at}.${k}: must be a map of strings`);
      return undefined;
    });
    return undefined;
  });
  return errors;
}

const custom: Record<string, (o: K8sObject) => string[]> = {
  "monitoring.coreos.com/v1/ServiceMonitor": checkServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": checkPrometheusRule,
};

/** Problems of one object; empty when it is valid. */
export function validateObject(o: K8sObject): string[] {
  const key = `${o.apiVersion}/${o.kind}`;
  const where = `${o.kind}/${o.metadata?.name ?? "?"}`;
  const errors: string[] = [];
  if (!o.metadata?.name || o.metadata.name.length > 63 || !DNS_LABEL.test(o.metadata.name)) errors.push("metadata.name: must be a DNS label");
  const model = builtIn[key];
  if (model) {
    try {
      model(o as never).validate();
    } catch (err) {
      errors.push((err as Error).message);
    }
  } else if (custom[key]) {
    errors.push(...(custom[key])(o));
  } else {
    errors.push(`no validator for ${key}`);
  }
  return errors.map((e) => `${where}: ${e}`);
}
