import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSecretFiles, secretFileRefs } from "../../src/config/file-permissions.js";
import { parseConfig } from "../../src/config/load-config.js";
import { ciValuesFiles, configTextOf, deploymentOf, prepareHelm, render, type PodSpecView } from "./chart.js";

/**
 * The start-up warning about open secret files (src/config/file-permissions.ts) and the chart
 * agree: every secret file the chart's config names is mounted from a Secret volume whose mode
 * and the pod's fsGroup pass the check, so the warning does not fire in a pod the chart made.
 * Kubelet gives a Secret volume's files the volume's defaultMode (0644 without one) and, with an
 * fsGroup, that group, which the container's process holds.
 */

/** Kubernetes' mode for a Secret volume without defaultMode. */
const KUBERNETES_DEFAULT_MODE = 0o644;

let scratch: string;
beforeAll(() => {
  prepareHelm();
  scratch = mkdtempSync(join(tmpdir(), "nrr-chart-modes-"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** The mode kubelet gives `file` in the container, when a Secret volume of the pod provides it. */
function mountedMode(pod: PodSpecView, file: string): number | undefined {
  const mount = pod.containers[0]?.volumeMounts?.find((m) => m.mountPath === dirname(file));
  const secret = pod.volumes?.find((v) => v.name === mount?.name)?.secret;
  if (secret === undefined) return undefined;
  if (secret.items !== undefined && !secret.items.some((i) => i.path === basename(file))) return undefined;
  return secret.defaultMode ?? KUBERNETES_DEFAULT_MODE;
}

let made = 0;
/** The config text with each secret file replaced by a real file of the mode the pod would see. */
function asInThePod(configText: string, pod: PodSpecView, mode: (mounted: number) => number): { text: string; mounted: string[] } {
  let text = configText;
  const mounted: string[] = [];
  for (const ref of secretFileRefs(parseConfig(configText))) {
    const m = mountedMode(pod, ref.file);
    if (m === undefined) continue;
    const local = join(scratch, `f${++made}`);
    writeFileSync(local, "secret");
    chmodSync(local, mode(m));
    text = text.split(ref.file).join(local);
    mounted.push(ref.key);
  }
  return { text, mounted };
}

describe("chart Secret volumes and the start-up warning about open secret files", () => {
  it.each(ciValuesFiles())("when the chart is rendered with ci/%s, then no secret file it mounts would be warned about", (ciFile) => {
    const objects = render({ ciFiles: [ciFile] });
    const pod = deploymentOf(objects).spec.template.spec;
    const fsGroup = pod.securityContext?.["fsGroup"];
    const { text, mounted } = asInThePod(configTextOf(objects), pod, (m) => m);
    if (mounted.length === 0) return; // e.g. workload identity: no secret file
    expect(fsGroup).toEqual(expect.any(Number));
    // The pod's process holds the fsGroup, which kubelet makes the files' group: here, the test files' own group.
    const inFsGroup = [statSync(scratch).gid];
    expect(openSecretFiles(parseConfig(text), { groups: inFsGroup })).toEqual([]);
  });

  it("when a Secret volume had no defaultMode (Kubernetes' 0644), then the same files would be warned about (the check above has teeth)", () => {
    const objects = render({ ciFiles: ["redis-values.yaml"] });
    const pod = deploymentOf(objects).spec.template.spec;
    const { text, mounted } = asInThePod(configTextOf(objects), pod, () => KUBERNETES_DEFAULT_MODE);
    expect(mounted).toEqual(["app.credential.secretFile", "store.passwordFile"]);
    expect(openSecretFiles(parseConfig(text), { groups: [statSync(scratch).gid] }).map((f) => f.keys[0])).toEqual(mounted);
  });
});
