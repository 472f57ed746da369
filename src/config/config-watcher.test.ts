import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfigFile } from "./load-config.js";
import { restartRequiredChanges, watchConfigFile, type ConfigReloadOutcome, type ConfigReloadTrigger, type ConfigWatcher } from "./config-watcher.js";
import type { Config } from "./schema.js";

const KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

let dir: string;
let watcher: ConfigWatcher | undefined;

function configText(tenants: string[], comment = ""): string {
  return [
    `# ${comment}`,
    "app:",
    "  clientId: 11111111-2222-3333-4444-555555555555",
    `  credential: { type: secret, secretFile: ${JSON.stringify(join(dir, "secret"))} }`,
    "tenants:",
    ...tenants.map((t) => `  ${t}: { tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, sender: noreply@${t}.com }`),
    "callers:",
    `  billing: { keySha256: ${KEY}, tenants: ["*"] }`,
    "",
  ].join("\n");
}

/** Records what the watcher reports and lets a test await the next report. */
function recorder() {
  const outcomes: [ConfigReloadOutcome, ConfigReloadTrigger][] = [];
  const configs: Config[] = [];
  const errors: Error[] = [];
  let wake: (() => void) | undefined;
  return {
    outcomes,
    configs,
    errors,
    onOutcome: (o: ConfigReloadOutcome, t: ConfigReloadTrigger) => {
      outcomes.push([o, t]);
      wake?.();
    },
    onConfig: (c: Config) => void configs.push(c),
    onError: (e: Error) => void errors.push(e),
    /** Resolves when `n` outcomes have been reported; fails after 3 s (file events are normally < 50 ms). */
    until(n: number): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (outcomes.length >= n) {
            clearTimeout(timeout);
            resolve();
          }
        };
        const timeout = setTimeout(() => reject(new Error(`only ${outcomes.length} of ${n} reloads reported`)), 3000);
        wake = check;
        check();
      });
    },
  };
}

const tenantKeys = (c: Config | undefined): string[] => Object.keys(c?.tenants ?? {});
const quiet = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "relay-config-watch-"));
  writeFileSync(join(dir, "secret"), "s3cret");
});

afterEach(() => {
  watcher?.close();
  watcher = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe("watchConfigFile", () => {
  it("when the file is rewritten in place with a new tenant, then listeners get the new config once", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 20, ...r });
    writeFileSync(path, configText(["contoso", "fabrikam"]));
    await r.until(1);
    expect(r.outcomes).toEqual([["success", "watch"]]);
    expect(tenantKeys(r.configs[0])).toEqual(["contoso", "fabrikam"]);
    expect(tenantKeys(watcher.current())).toEqual(["contoso", "fabrikam"]);
  });

  it("when a new file is renamed over the old one, then it is picked up and later changes still are", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 20, ...r });
    writeFileSync(join(dir, "config.yaml.tmp"), configText(["fabrikam"]));
    renameSync(join(dir, "config.yaml.tmp"), path);
    await r.until(1);
    expect(tenantKeys(watcher.current())).toEqual(["fabrikam"]);
    writeFileSync(join(dir, "config.yaml.tmp"), configText(["northwind"]));
    renameSync(join(dir, "config.yaml.tmp"), path);
    await r.until(2);
    expect(tenantKeys(watcher.current())).toEqual(["northwind"]);
  });

  it("when the new file is invalid, then it is refused with the bad key named, the old config stays, and a fix is taken", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const initial = loadConfigFile(path);
    const r = recorder();
    watcher = watchConfigFile({ path, initial, debounceMs: 20, ...r });
    writeFileSync(path, configText(["contoso"]).replace("noreply@contoso.com", "not-an-address"));
    await r.until(1);
    expect(r.outcomes).toEqual([["invalid", "watch"]]);
    expect(r.errors[0]?.message).toContain("tenants.contoso.sender: invalid email");
    expect(r.configs).toHaveLength(0);
    expect(watcher.current()).toBe(initial);
    writeFileSync(path, configText(["contoso", "fabrikam"]));
    await r.until(2);
    expect(r.outcomes[1]).toEqual(["success", "watch"]);
  });

  it("when a referenced secret file is missing, then the reload is refused", () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), watch: false, ...r });
    writeFileSync(path, configText(["contoso"]).replace(JSON.stringify(join(dir, "secret")), JSON.stringify(join(dir, "missing"))));
    expect(watcher.reload()).toBe("invalid");
    expect(r.errors[0]?.message).toContain("app.credential.secretFile: cannot read file");
  });

  it("when Kubernetes swaps the ..data symlink of a ConfigMap, then the new config is picked up", async () => {
    mkdirSync(join(dir, "..2026_01_01_00_00_00.1"));
    writeFileSync(join(dir, "..2026_01_01_00_00_00.1", "config.yaml"), configText(["contoso"]));
    symlinkSync("..2026_01_01_00_00_00.1", join(dir, "..data"));
    symlinkSync(join("..data", "config.yaml"), join(dir, "config.yaml"));
    const path = join(dir, "config.yaml");
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 20, ...r });
    // What the kubelet's atomic writer does: new timestamped dir, new symlink, rename over ..data, remove the old dir.
    mkdirSync(join(dir, "..2026_01_01_00_05_00.2"));
    writeFileSync(join(dir, "..2026_01_01_00_05_00.2", "config.yaml"), configText(["contoso", "fabrikam"]));
    symlinkSync("..2026_01_01_00_05_00.2", join(dir, "..data_tmp"));
    renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
    rmSync(join(dir, "..2026_01_01_00_00_00.1"), { recursive: true });
    await r.until(1);
    expect(r.outcomes).toEqual([["success", "watch"]]);
    expect(tenantKeys(watcher.current())).toEqual(["contoso", "fabrikam"]);
  });

  it("when only a comment changes, then the reload is unchanged and listeners are not called", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 20, ...r });
    writeFileSync(path, configText(["contoso"], "edited by an operator"));
    await r.until(1);
    expect(r.outcomes).toEqual([["unchanged", "watch"]]);
    expect(r.configs).toHaveLength(0);
  });

  it("when reload() is called (SIGHUP) with watching off, then the file is read at once", () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), watch: false, ...r });
    expect(watcher.reload()).toBe("unchanged");
    writeFileSync(path, configText(["fabrikam"]));
    expect(watcher.reload("signal")).toBe("success");
    expect(r.outcomes).toEqual([
      ["unchanged", "signal"],
      ["success", "signal"],
    ]);
    expect(tenantKeys(r.configs[0])).toEqual(["fabrikam"]);
  });

  it("when several writes come in a burst, then the file is read once after the burst", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    let loads = 0;
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 150, load: (p) => (loads++, loadConfigFile(p)), ...r });
    // Spaced out: the kernel merges identical events that are still unread, which would hide a missing debounce.
    for (const t of ["a1", "a2", "a3", "a4", "a5"]) {
      writeFileSync(path, configText(["contoso", t]));
      await quiet(5);
    }
    await r.until(1);
    // Without a debounce, the other writes' reloads would land within a few ms of the first.
    await quiet(60);
    expect(loads).toBe(1);
    expect(tenantKeys(watcher.current())).toEqual(["contoso", "a5"]);
  });

  it("when another file in the directory changes, then no reload happens", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 10, ...r });
    writeFileSync(join(dir, "secret"), "rotated");
    writeFileSync(join(dir, "notes.txt"), "hello");
    await quiet(60);
    expect(r.outcomes).toHaveLength(0);
  });

  it("when a listener throws, then the error is reported and the other listeners still get the config", () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), watch: false, ...r });
    const seen: string[][] = [];
    watcher.subscribe(() => {
      throw new Error("listener broke");
    });
    const unsubscribe = watcher.subscribe((c, previous) => seen.push([...tenantKeys(previous), "→", ...tenantKeys(c)]));
    writeFileSync(path, configText(["fabrikam"]));
    expect(watcher.reload()).toBe("success");
    expect(seen).toEqual([["contoso", "→", "fabrikam"]]);
    expect(r.errors.map((e) => e.message)).toEqual(["listener broke"]);
    unsubscribe();
    writeFileSync(path, configText(["northwind"]));
    watcher.reload();
    expect(seen).toHaveLength(1);
  });

  it("when closed, then file changes are no longer followed", async () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const r = recorder();
    watcher = watchConfigFile({ path, initial: loadConfigFile(path), debounceMs: 10, ...r });
    writeFileSync(path, configText(["fabrikam"]));
    watcher.close(); // also drops the pending debounced reload
    await quiet(60);
    expect(r.outcomes).toHaveLength(0);
    expect(tenantKeys(watcher.current())).toEqual(["contoso"]);
  });
});

describe("restartRequiredChanges", () => {
  it("when a reload changes keys read only at start-up, then they are named; tenant changes are not", () => {
    const path = join(dir, "config.yaml");
    writeFileSync(path, configText(["contoso"]));
    const before = loadConfigFile(path);
    writeFileSync(
      path,
      configText(["contoso", "fabrikam"]) +
        "server: { maxBodyBytes: 2048, drainTimeoutSeconds: 5, requestDeadlineSeconds: 10 }\ncloud: { graphBaseUrl: https://graph.example.test }\n",
    );
    const after = loadConfigFile(path);
    expect(restartRequiredChanges(before, after)).toEqual(["cloud", "server.drainTimeoutSeconds"]);
    expect(restartRequiredChanges(before, before)).toEqual([]);
  });
});
