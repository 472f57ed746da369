import type { Config } from "./schema.js";

/**
 * Where the app gets its config: a fixed object, or the file-following ConfigWatcher
 * (src/config/config-watcher.ts) that calls its listeners with each new valid config.
 */
export interface ConfigSource {
  current(): Config;
  /** Calls `listener` after each successful reload; returns an unsubscribe function. */
  subscribe(listener: (config: Config) => void): () => void;
}

/** A source that never changes. */
export function fixedConfigSource(config: Config): ConfigSource {
  return { current: () => config, subscribe: () => () => {} };
}
