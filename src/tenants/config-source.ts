import type { Config } from "../config/schema.js";

/**
 * Where the app gets its config. Today a fixed object; the hot-reload issue will add a
 * file-watching source that calls its listeners with each new valid config.
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
