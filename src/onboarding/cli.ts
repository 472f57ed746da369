#!/usr/bin/env node
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError, loadConfigFile, parseConfig } from "../config/load-config.js";
import type { Config } from "../config/schema.js";
import { systemClock, type Clock } from "../core/ports.js";
import { ConsentSetupError, makeConsentLink } from "./consent.js";
import { listCredentialExpiry } from "./expiry.js";
import { PolicyScriptInputError, policyScriptFor } from "./policy-script.js";
import { UnsafeScriptValueError } from "./powershell.js";
import type { CliOutput, VerifyAdapterFactory } from "./adapters.js";
import { formatReport, verifyTenant } from "./verify.js";

/*
 * `noreply-relay`: the operator's tool for onboarding tenants. Reads the same config file as
 * the service. Exit codes: 0 done / all checks passed, 1 a check failed or the config is
 * unusable, 2 the command line is wrong.
 */

export interface CliIo {
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
  /** Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** For `hash-key` without --generate; default process.stdin. */
  readonly stdin?: AsyncIterable<string | Buffer> & { isTTY?: boolean };
  readonly clock?: Clock;
  /** Replaces the real token provider / Graph sender (tests of the CLI's own logic only). */
  readonly verifyAdapters?: VerifyAdapterFactory;
}

export const USAGE = `noreply-relay: onboard Microsoft 365 tenants for noreply-relay

Usage: noreply-relay <command> [options]

Commands:
  tenants                      List configured tenants: sender, credential, client id, expiry.
  consent-url <tenant>         Print the admin-consent link for a tenant key, or for the tenant
                               GUID / domain of a customer not yet in the config.
  policy-script <tenant>       Print the PowerShell script that limits the app to the tenant's
                               sender (RBAC for Applications). --legacy: ApplicationAccessPolicy.
  verify <tenant>              Get a real token and check tenant, Mail.Send, excess permissions
                               and credential expiry. --send-test <address>: also send one test
                               message from the sender. --rbac: the tenant uses RBAC for
                               Applications (no Mail.Send expected in the token).
  hash-key                     Read an API key from stdin and print its keySha256 for the config;
                               --generate makes a new random key and prints it once.

Options:
  --config <file>              Config file (default: $NOREPLY_RELAY_CONFIG).
  --json                       Machine-readable output.
  -h, --help                   This help.

Exit codes: 0 ok, 1 a check failed or the config is unusable, 2 wrong usage.
`;

const COMMANDS = new Set(["tenants", "consent-url", "policy-script", "verify", "hash-key"]);

class UsageError extends Error {}

/** Runs one command; resolves to the exit code. Never calls process.exit. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const env = io.env ?? process.env;
  const clock = io.clock ?? systemClock;
  const out = (s: string) => io.stdout.write(s);
  const err = (s: string) => io.stderr.write(s);

  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    err(`noreply-relay: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { command, positionals, values } = parsed;
  if (values.help) {
    out(USAGE);
    return 0;
  }
  if (command === undefined) {
    err(USAGE);
    return 2;
  }
  if (!COMMANDS.has(command)) {
    err(`noreply-relay: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }

  try {
    switch (command) {
      case "hash-key":
        return await hashKey(values, io, out, err);
      case "tenants": {
        noPositionals(positionals, command);
        const config = readConfig(values.config, env, false);
        return tenants(config, values.json === true, clock, out);
      }
      case "consent-url": {
        const arg = onePositional(positionals, command, "<tenant key, tenant GUID or domain>");
        const config = readConfig(values.config, env, false);
        const link = makeConsentLink(config, arg, { now: clock.now(), env });
        if (values.json) {
          out(`${JSON.stringify({ ...link, expiresAt: link.expiresAt.toISOString() }, null, 2)}\n`);
        } else {
          out(`${link.url}\n`);
          err(
            `Send this link to an administrator of ${link.tenant} (Global, Application or Cloud Application Administrator).\n` +
              `It asks them to consent to app ${link.clientId}; it is valid until ${link.expiresAt.toISOString()}.\n` +
              `After consent Microsoft sends them to ${link.redirectUri}.\n`,
          );
        }
        return 0;
      }
      case "policy-script": {
        const key = onePositional(positionals, command, "<tenant key>");
        const config = readConfig(values.config, env, false);
        const script = policyScriptFor(config, key, { legacy: values.legacy === true });
        if (values.json) out(`${JSON.stringify({ tenant: key, model: values.legacy ? "applicationAccessPolicy" : "rbacForApplications", script })}\n`);
        else out(script);
        return 0;
      }
      case "verify": {
        const key = onePositional(positionals, command, "<tenant key>");
        const sendTest = values["send-test"];
        if (sendTest !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(sendTest)) throw new UsageError(`--send-test needs an email address, got "${sendTest}"`);
        const config = readConfig(values.config, env, true);
        if (!Object.hasOwn(config.tenants, key)) {
          err(`noreply-relay: no tenant "${key}" in the config (configured: ${Object.keys(config.tenants).join(", ") || "none"})\n`);
          return 1;
        }
        const factory = io.verifyAdapters ?? (await import("./adapters.js")).createVerifyAdapters;
        const adapters = await factory(config, { env, stderr: io.stderr });
        try {
          const report = await verifyTenant(config, key, { ...adapters.deps, clock }, {
            ...(sendTest !== undefined ? { sendTest } : {}),
            // A tenant configured with accessModel: rbac is verified the RBAC way without the flag.
            rbac: values.rbac === true || config.tenants[key]!.accessModel === "rbac",
          });
          out(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
          return report.ok ? 0 : 1;
        } finally {
          await adapters.close();
        }
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`noreply-relay: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof ConfigError || e instanceof ConsentSetupError || e instanceof PolicyScriptInputError || e instanceof UnsafeScriptValueError) {
      err(`noreply-relay: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  return 2;
}

function parse(argv: readonly string[]) {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      legacy: { type: "boolean" },
      rbac: { type: "boolean" },
      "send-test": { type: "string" },
      generate: { type: "boolean" },
    },
  });
  const [command, ...rest] = positionals;
  return { command, positionals: rest, values };
}

function noPositionals(positionals: readonly string[], command: string): void {
  if (positionals.length > 0) throw new UsageError(`${command} takes no arguments`);
}

function onePositional(positionals: readonly string[], command: string, what: string): string {
  if (positionals.length !== 1) throw new UsageError(`${command} needs exactly one argument: ${what}`);
  return positionals[0]!;
}

/**
 * `verify` talks to Entra, so every referenced secret file and variable must be there
 * (loadConfigFile checks them). The other commands need none of them, so they also work on
 * a laptop that has the config but not the production secrets.
 */
function readConfig(flag: string | undefined, env: NodeJS.ProcessEnv, checkSecrets: boolean): Config {
  const path = flag ?? env.NOREPLY_RELAY_CONFIG;
  if (!path) throw new UsageError("no config file: pass --config <file> or set NOREPLY_RELAY_CONFIG");
  if (checkSecrets) return loadConfigFile(path, env);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(path, [`(file): cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`]);
  }
  return parseConfig(text, path);
}

function tenants(config: Config, json: boolean, clock: Clock, out: (s: string) => unknown): number {
  const rows = listCredentialExpiry(config, clock.now()).map((r) => {
    const t = config.tenants[r.tenantKey]!;
    return { ...r, tenantId: t.tenantId, sender: t.sender, displayName: t.displayName };
  });
  if (json) {
    out(`${JSON.stringify(rows.map((r) => ({ ...r, expiresAt: r.expiresAt?.toISOString() })), null, 2)}\n`);
    return 0;
  }
  if (rows.length === 0) {
    out("no tenants configured\n");
    return 0;
  }
  const table = [
    ["TENANT", "TENANT ID", "SENDER", "CREDENTIAL", "CLIENT ID", "EXPIRES", "DAYS LEFT"],
    ...rows.map((r) => [
      r.tenantKey,
      r.tenantId,
      r.sender,
      `${r.credential}${r.source === "shared" ? " (shared)" : ""}`,
      r.clientId,
      r.expiresAt ? r.expiresAt.toISOString().slice(0, 10) : "-",
      r.daysLeft === undefined ? "-" : r.status === "expired" ? `EXPIRED (${r.daysLeft})` : r.status === "expiring" ? `${r.daysLeft} (renew!)` : String(r.daysLeft),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) out(`${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")}\n`);
  return 0;
}

async function hashKey(
  values: { generate?: boolean; json?: boolean },
  io: CliIo,
  out: (s: string) => unknown,
  err: (s: string) => unknown,
): Promise<number> {
  let key: string;
  if (values.generate) {
    // 32 random bytes; the prefix makes a leaked key recognisable to secret scanners and people.
    key = `nrr_${randomBytes(32).toString("base64url")}`;
  } else {
    const stdin = io.stdin ?? process.stdin;
    if (stdin.isTTY) err("Paste the API key, then press Enter and Ctrl-D:\n");
    let text = "";
    for await (const chunk of stdin as AsyncIterable<string | Buffer>) text += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    key = text.trim();
    if (key === "") throw new UsageError("no key on stdin (use --generate to make one)");
    if (key.length < 32) err("warning: this key is shorter than 32 characters; prefer `noreply-relay hash-key --generate`\n");
  }
  const keySha256 = createHash("sha256").update(key, "utf8").digest("hex");
  if (values.json) {
    out(`${JSON.stringify(values.generate ? { key, keySha256 } : { keySha256 })}\n`);
  } else if (values.generate) {
    out(`API key (shown only now; hand it to the caller and keep it as a secret):\n  ${key}\nkeySha256 for callers.<name>.keySha256 in the config:\n  ${keySha256}\n`);
  } else {
    out(`${keySha256}\n`);
  }
  return 0;
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(`noreply-relay: unexpected error: ${(e as Error).stack ?? String(e)}`);
      process.exitCode = 1;
    },
  );
}
