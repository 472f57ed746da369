import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, stringify } from "yaml";
import { ensureHelm, helmEnv } from "../../scripts/ensure-helm.mjs";

/** Renders and lints helm/noreply-relay with the helm binary that scripts/ensure-helm.mjs unpacks. */

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const chartDir = join(repoRoot, "helm", "noreply-relay");
export const ciValuesDir = join(chartDir, "ci");
export const RELEASE = "noreply-relay";
export const NAMESPACE = "mail";

/** A rendered Kubernetes object; only the type meta is known up front. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

let helmPath: string | undefined;

/** Unpacks helm once per worker (cheap when .tools/helm is current). */
export function prepareHelm(): string {
  helmPath ??= ensureHelm();
  return helmPath;
}

export function helm(args: readonly string[]): HelmResult {
  const r = spawnSync(prepareHelm(), args, { env: helmEnv(), encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The chart's CI values files (ci/*-values.yaml), by file name. */
export function ciValuesFiles(): string[] {
  return readdirSync(ciValuesDir)
    .filter((f) => f.endsWith("-values.yaml"))
    .sort();
}

export interface RenderOptions {
  /** Values files under the chart's ci/ folder. */
  ciFiles?: readonly string[];
  /** Values given inline, applied last. */
  values?: Record<string, unknown>;
}

function valuesArgs(opts: RenderOptions, scratch: string): string[] {
  const args: string[] = [];
  for (const f of opts.ciFiles ?? []) args.push("-f", join(ciValuesDir, f));
  if (opts.values) {
    const file = join(scratch, "values.yaml");
    writeFileSync(file, stringify(opts.values));
    args.push("-f", file);
  }
  return args;
}

function withScratch<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "noreply-relay-chart-"));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `helm template`; returns helm's result so failures can be asserted on. */
export function templateRaw(opts: RenderOptions = {}): HelmResult {
  return withScratch((dir) => helm(["template", RELEASE, chartDir, "--namespace", NAMESPACE, ...valuesArgs(opts, dir)]));
}

/** `helm lint --strict` with the same values. */
export function lint(opts: RenderOptions = {}): HelmResult {
  return withScratch((dir) => helm(["lint", "--strict", chartDir, "--namespace", NAMESPACE, ...valuesArgs(opts, dir)]));
}

/**
 * NOTES.txt as `helm install --dry-run=client` prints it (`helm template` does not render it).
 * Client-only: no cluster is contacted. Throws with helm's error when the install would fail.
 */
export function notes(opts: RenderOptions = {}): string {
  const r = withScratch((dir) => helm(["install", RELEASE, chartDir, "--namespace", NAMESPACE, "--dry-run=client", "--output", "json", ...valuesArgs(opts, dir)]));
  if (r.status !== 0) throw new Error(`helm install --dry-run=client failed:\n${r.stderr}`);
  const release = JSON.parse(r.stdout) as { info?: { notes?: string } };
  return release.info?.notes ?? "";
}

/** Parses a multi-document manifest; empty documents are dropped. */
export function parseManifest(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null) objects.push(value);
  }
  return objects;
}

/** `helm template` that must succeed; returns the rendered objects. */
export function render(opts: RenderOptions = {}): K8sObject[] {
  const r = templateRaw(opts);
  if (r.status !== 0) throw new Error(`helm template failed:\n${r.stderr}`);
  return parseManifest(r.stdout);
}

/** The one object of a kind; throws when there is none or several. */
export function only(objects: readonly K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, rendered ${found.length}`);
  return found[0] as K8sObject;
}

// Just enough of the Deployment's shape for the assertions; kubernetes-models checks the rest.
export interface PodSpecView {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds?: number;
  securityContext?: Record<string, unknown>;
  containers: Array<{
    name: string;
    image: string;
    env?: Array<{ name: string; value?: string }>;
    securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] } };
    livenessProbe?: { httpGet?: { path: string; port: string | number } };
    readinessProbe?: { httpGet?: { path: string; port: string | number } };
    startupProbe?: { httpGet?: { path: string; port: string | number } };
    lifecycle?: { preStop?: { sleep?: { seconds: number } } };
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
    volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
  }>;
  volumes?: Array<{
    name: string;
    emptyDir?: Record<string, unknown>;
    configMap?: { name: string; defaultMode?: number; items?: Array<{ key: string; path: string }> };
    secret?: { secretName: string; defaultMode?: number; items?: Array<{ key: string; path: string }> };
  }>;
}

export interface DeploymentView {
  spec: { template: { metadata: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpecView } };
}

export function deploymentOf(objects: readonly K8sObject[]): DeploymentView {
  return only(objects, "Deployment") as unknown as DeploymentView;
}

/** The config.yaml text the ConfigMap carries. */
export function configTextOf(objects: readonly K8sObject[]): string {
  const cm = only(objects, "ConfigMap") as unknown as { data: Record<string, string> };
  const text = cm.data["config.yaml"];
  if (text === undefined) throw new Error("ConfigMap has no config.yaml");
  return text;
}
