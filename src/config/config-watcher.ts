import { watch, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { loadConfigFile } from "./load-config.js";
import type { Config } from "./schema.js";

/**
 * Hot reload of the config file. The directory is watched, not the file: editors and
 * deploy tools replace the file by renaming a new one over it, and Kubernetes updates a
 * mounted ConfigMap by swapping the `..data` symlink next to it — a watch on the file itself
 * would stay on the old inode and never fire again. Events are debounced, the file is loaded
 * and validated like at start-up, and only a valid config that differs from the current one
 * reaches the listeners; an invalid one is refused and the old config stays in force.
 * (A ConfigMap mounted with subPath is never updated by the kubelet: send SIGHUP after a change.)
 */

/** The `outcome` label of noreply_relay_config_reload_total. */
export type ConfigReloadOutcome = "success" | "invalid" | "unchanged";

/** What started a reload: the file watcher, or a call to reload() (SIGHUP). */
export type ConfigReloadTrigger = "watch" | "signal";

export interface ConfigWatcherOptions {
  /** The config file (NOREPLY_RELAY_CONFIG). */
  readonly path: string;
  /** The config in force now (loaded at start-up). */
  readonly initial: Config;
  /** Called with each new valid, changed config; same as subscribe(). */
  readonly onConfig?: (config: Config, previous: Config) => void;
  /** A refused reload (ConfigError names each bad key), a failing listener, or a watch error. Log it. */
  readonly onError?: (err: Error) => void;
  /** Every finished reload, for the reload counter and a log line. */
  readonly onOutcome?: (outcome: ConfigReloadOutcome, trigger: ConfigReloadTrigger) => void;
  /** Watch the directory (`server.watchConfig`); false leaves only reload(). Default true. */
  readonly watch?: boolean;
  /** Quiet time after the last file event before reading. Default 200 ms. */
  readonly debounceMs?: number;
  /** Reads and validates the file. Default loadConfigFile (also checks referenced files and env). */
  readonly load?: (path: string) => Config;
}

/**
 * A config source that follows the file. Its current()/subscribe() match the ConfigSource
 * the app reads (src/tenants/config-source.ts).
 */
export interface ConfigWatcher {
  /** The config in force. */
  current(): Config;
  /** Calls `listener(config, previous)` after each successful reload; returns an unsubscribe function. */
  subscribe(listener: (config: Config, previous: Config) => void): () => void;
  /** Reads the file now (SIGHUP), whatever the watcher saw. */
  reload(trigger?: ConfigReloadTrigger): ConfigReloadOutcome;
  /** Stops watching; pending debounced reloads are dropped. */
  close(): void;
}

/** Starts following `options.path`; see the module comment. */
export function watchConfigFile(options: ConfigWatcherOptions): ConfigWatcher {
  const load = options.load ?? ((p: string) => loadConfigFile(p));
  const debounceMs = options.debounceMs ?? 200;
  const file = resolve(options.path);
  const name = basename(file);
  const listeners = new Set<(config: Config, previous: Config) => void>();
  if (options.onConfig) listeners.add(options.onConfig);
  const report = (err: unknown): void => options.onError?.(err instanceof Error ? err : new Error(String(err)));

  let current = options.initial;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let watcher: FSWatcher | undefined;
  let closed = false;

  const reload = (trigger: ConfigReloadTrigger = "signal"): ConfigReloadOutcome => {
    let next: Config;
    try {
      next = load(file);
    } catch (err) {
      report(err);
      options.onOutcome?.("invalid", trigger);
      return "invalid";
    }
    // Comment edits, touches and ConfigMap swaps of other keys change nothing the service uses.
    // Compared now rather than kept: with 10,000 tenants the text is megabytes, and reloads are rare.
    if (comparable(next) === comparable(current)) {
      options.onOutcome?.("unchanged", trigger);
      return "unchanged";
    }
    const previous = current;
    current = next;
    for (const listener of [...listeners]) {
      try {
        listener(next, previous);
      } catch (err) {
        // The config is valid and others have applied it; one failing listener must not stop them.
        report(err);
      }
    }
    options.onOutcome?.("success", trigger);
    return "success";
  };

  const schedule = (): void => {
    if (closed) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) reload("watch");
    }, debounceMs);
    timer.unref();
  };

  if (options.watch ?? true) {
    watcher = watch(dirname(file), { persistent: false }, (_event, filename) => {
      // null: the platform did not say which entry changed. "..": the Kubernetes ConfigMap symlinks.
      if (filename === null || filename === name || filename.startsWith("..")) schedule();
    });
    watcher.on("error", report);
  }

  return {
    current: () => current,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reload,
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      watcher?.close();
    },
  };
}

/**
 * Keys read once at start-up as the service is wired today (adapters' endpoints and TLS
 * agent, the drain timeout, the idempotency and shared stores, the watcher itself).
 * A reload applies everything else; these need a restart.
 */
export const RESTART_REQUIRED_KEYS = [
  "cloud",
  "tls",
  "server.drainTimeoutSeconds",
  "server.watchConfig",
  "idempotency",
  "store",
  "server.http",
  "metrics.port",
  "smtp",
] as const;

/** Which of RESTART_REQUIRED_KEYS differ between two configs, to warn that a reload left them as they were. */
export function restartRequiredChanges(previous: Config, next: Config): string[] {
  const at = (config: Config, path: string): unknown =>
    path.split(".").reduce<unknown>((v, k) => (v !== null && typeof v === "object" ? (v as Record<string, unknown>)[k] : undefined), config);
  return RESTART_REQUIRED_KEYS.filter((path) => JSON.stringify(at(previous, path)) !== JSON.stringify(at(next, path)));
}

/** Dates serialise to ISO strings, so two loads of the same file compare equal. */
function comparable(config: Config): string {
  return JSON.stringify(config);
}
