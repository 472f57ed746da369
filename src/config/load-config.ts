import { accessSync, constants, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type * as Yaml from "yaml";
import type { z } from "zod";
import { JsonTextError, parseJsonText, type JsonShapeLimits } from "../core/json-text.js";
import { configSchema, type Config, type CredentialConfig } from "./schema.js";

type YamlModule = typeof Yaml;
let yaml: YamlModule | undefined;

/**
 * The YAML parser, loaded at the first config that is not JSON (~35 ms of start-up otherwise,
 * for the generated JSON configs large deployments use). Synchronous, as parseConfig is.
 */
function yamlParser(): YamlModule {
  yaml ??= createRequire(import.meta.url)("yaml") as YamlModule;
  return yaml;
}

/** A config that cannot be used; `problems` name each bad key by its dotted path. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(source: string, problems: readonly string[]) {
    super(`invalid config ${source}:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** `tenants.contoso.sender: invalid email` */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const lines: string[] = [];
  for (const issue of issues) {
    const base = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) lines.push(`${base ? `${base}.` : ""}${key}: unknown key`);
      continue;
    }
    if (issue.code === "invalid_union" && "errors" in issue && issue.errors.length > 0) {
      // A discriminated union with a known discriminator reports the branch's own issues.
      const nested = issue.errors.flat().map((i) => ({ ...i, path: [...issue.path, ...i.path] }));
      if (nested.length > 0) {
        lines.push(...formatIssues(nested));
        continue;
      }
    }
    lines.push(`${base || "(root)"}: ${issue.message}`);
  }
  return lines;
}

/** Parses YAML or JSON text (JSON is YAML) and validates it. Pure: reads no other files. */
export function parseConfig(text: string, source = "config"): Config {
  let raw: unknown = parseJsonConfig(text, source);
  if (raw === undefined) {
    try {
      // YAML 1.1 timestamps become Date objects, so `expiresAt: 2027-06-30T00:00:00Z` works unquoted.
      raw = yamlParser().parse(text, { customTags: ["timestamp"], uniqueKeys: true });
    } catch (err) {
      throw new ConfigError(source, [`(file): not valid YAML or JSON: ${(err as Error).message.split("\n")[0]}`]);
    }
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(source, ["(root): must be a mapping with tenants and callers"]);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(source, formatIssues(result.error.issues));
  return deepFreeze(result.data);
}

/** A config file's JSON is read without shape limits: 10,000 tenants are 10,000 members of one object. */
const CONFIG_JSON_SHAPE: JsonShapeLimits = Object.freeze({ maxDepth: 64, maxMembers: Number.POSITIVE_INFINITY, maxItems: Number.POSITIVE_INFINITY });

/*
 * JSON is YAML, but the YAML parser takes ~65 ms per 1,000 tenants where JSON.parse takes
 * under 1 ms: a generated 10,000-tenant JSON config would spend most of start-up in it. So a
 * text that parses as JSON is taken as JSON, under the rules the HTTP door applies to request
 * bodies (parseJsonText): a key repeated in one object is refused, as YAML's `uniqueKeys`
 * refuses it (JSON.parse would silently keep the last), and so are prototype-poisoning keys.
 * Anything else, including YAML flow mappings like `{a: 1}`, goes to the YAML parser.
 */
function parseJsonConfig(text: string, source: string): unknown {
  if (!/^\s*\{/.test(text)) return undefined;
  try {
    return parseJsonText(text, CONFIG_JSON_SHAPE);
  } catch (err) {
    if (err instanceof JsonTextError) throw new ConfigError(source, [`${err.path}: ${err.reason}`]);
    return undefined;
  }
}

/**
 * Reads, validates and checks a config file: every referenced file (secrets, certificates,
 * token files, CA) must be readable and every referenced environment variable set, so a
 * typo is found at start-up and not at the first send.
 */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(path, [`(file): cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  const config = parseConfig(text, path);
  const problems = checkReferences(config, env);
  if (problems.length > 0) throw new ConfigError(path, problems);
  return config;
}

/** Files that must be readable and environment variables that must be set. */
export function checkReferences(config: Config, env: NodeJS.ProcessEnv): string[] {
  const problems: string[] = [];
  const file = (path: string, where: string): void => {
    try {
      accessSync(path, constants.R_OK);
    } catch (err) {
      problems.push(`${where}: cannot read file (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
  };
  const variable = (name: string, where: string): void => {
    if (!env[name]) problems.push(`${where}: environment variable ${name} is not set`);
  };
  const credential = (c: CredentialConfig, where: string): void => {
    switch (c.type) {
      case "secret":
        if (c.secretFile !== undefined) file(c.secretFile, `${where}.secretFile`);
        if (c.secretEnv !== undefined) variable(c.secretEnv, `${where}.secretEnv`);
        if (c.secondarySecretFile !== undefined) file(c.secondarySecretFile, `${where}.secondarySecretFile`);
        if (c.secondarySecretEnv !== undefined) variable(c.secondarySecretEnv, `${where}.secondarySecretEnv`);
        break;
      case "certificate":
        file(c.certificateFile, `${where}.certificateFile`);
        break;
      case "workloadIdentity":
        file(c.tokenFile, `${where}.tokenFile`);
        break;
    }
  };
  if (config.tls.caFile !== undefined) file(config.tls.caFile, "tls.caFile");
  if (config.app) credential(config.app.credential, "app.credential");
  for (const [key, tenant] of Object.entries(config.tenants)) {
    if (tenant.app) credential(tenant.app.credential, `tenants.${key}.app.credential`);
  }
  const { store } = config;
  if (store.urlFile !== undefined) file(store.urlFile, "store.urlFile");
  if (store.urlEnv !== undefined) variable(store.urlEnv, "store.urlEnv");
  if (store.passwordFile !== undefined) file(store.passwordFile, "store.passwordFile");
  if (store.passwordEnv !== undefined) variable(store.passwordEnv, "store.passwordEnv");
  if (store.tls.caFile !== undefined) file(store.tls.caFile, "store.tls.caFile");
  if (config.metrics.tokenFile !== undefined) file(config.metrics.tokenFile, "metrics.tokenFile");
  if (config.metrics.tokenEnv !== undefined) variable(config.metrics.tokenEnv, "metrics.tokenEnv");
  if (config.consent?.stateSecretFile !== undefined) file(config.consent.stateSecretFile, "consent.stateSecretFile");
  if (config.consent?.stateSecretEnv !== undefined) variable(config.consent.stateSecretEnv, "consent.stateSecretEnv");
  return problems;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !(value instanceof Date) && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
