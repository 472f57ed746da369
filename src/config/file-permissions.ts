import { statSync } from "node:fs";
import type { Logger } from "pino";
import type { Config, CredentialConfig } from "./schema.js";

/*
 * At start-up: a file the config names that holds a secret or a key, readable by more than this
 * service, is worth a warning (it still starts: the file may be on a single-user host, and
 * refusing would turn a hardening hint into an outage).
 *
 * Which files: client secrets (secretFile, secondarySecretFile), certificate files (they hold
 * the private key), the consent state key, the Redis URL and password files, the /metrics
 * token and the SMTP door's TLS key. Not CA files (public) and not a workload identity's tokenFile: the platform (AKS)
 * mounts that short-lived token and sets its mode, so a warning could not be acted on.
 *
 * When is a file too open:
 * - any permission for others (mode & 0o007);
 * - write permission for the group (mode & 0o020);
 * - read for a group this process is not in. A group the process is in is accepted: that is how
 *   Kubernetes hands a Secret to a non-root container (defaultMode 0440, the files' group set to
 *   the pod's fsGroup, which the process holds), and our chart mounts its Secrets so
 *   (helm/noreply-relay/templates/deployment.yaml: defaultMode 288 = 0440, fsGroup 65532). The
 *   limit of this rule: on a host where the process's group has other members, a 0640 file in
 *   that group is not flagged.
 * Kubernetes mounts Secret volumes 0644 when no defaultMode is given (e.g. one added through the
 * chart's extraVolumes); the warning says what to set.
 */

/** One file the config names that holds a secret or key. */
export interface SecretFileRef {
  /** The config key that names it, e.g. `tenants.contoso.app.credential.secretFile`. */
  readonly key: string;
  readonly file: string;
}

/** A secret file readable by more than its owner and this process's groups. */
export interface OpenSecretFile {
  readonly file: string;
  /** Every config key naming this file. */
  readonly keys: readonly string[];
  /** The permission bits, octal, e.g. "0644". */
  readonly mode: string;
  /** Who besides the owner (and a group of this process's) may read or change it. */
  readonly openTo: readonly ("group" | "others")[];
}

/** Every file in `config` that holds a secret or a key, in config order. */
export function secretFileRefs(config: Config): SecretFileRef[] {
  const refs: SecretFileRef[] = [];
  const add = (key: string, file: string | undefined): void => {
    if (file !== undefined) refs.push({ key, file });
  };
  const credential = (c: CredentialConfig, where: string): void => {
    if (c.type === "secret") {
      add(`${where}.secretFile`, c.secretFile);
      add(`${where}.secondarySecretFile`, c.secondarySecretFile);
    } else if (c.type === "certificate") {
      add(`${where}.certificateFile`, c.certificateFile);
    }
  };
  if (config.app) credential(config.app.credential, "app.credential");
  for (const [key, tenant] of Object.entries(config.tenants)) {
    if (tenant.app) credential(tenant.app.credential, `tenants.${key}.app.credential`);
  }
  add("consent.stateSecretFile", config.consent?.stateSecretFile);
  add("store.urlFile", config.store.urlFile);
  add("store.passwordFile", config.store.passwordFile);
  add("metrics.tokenFile", config.metrics.tokenFile);
  if (config.smtp.enabled) add("smtp.tls.keyFile", config.smtp.tls?.keyFile);
  return refs;
}

export interface PermissionCheckOptions {
  /** The groups this process holds; default its effective and supplementary groups. */
  readonly groups?: readonly number[];
  /** Default process.platform: on Windows the mode bits mean nothing and nothing is checked. */
  readonly platform?: NodeJS.Platform;
}

function processGroups(): number[] {
  const groups = new Set<number>();
  if (typeof process.getegid === "function") groups.add(process.getegid());
  if (typeof process.getgroups === "function") for (const g of process.getgroups()) groups.add(g);
  return [...groups];
}

/**
 * The secret files of `config` that are open to more than this service, one entry per file.
 * A file that cannot be read is left to checkReferences (load-config.ts), which refuses it.
 */
export function openSecretFiles(config: Config, options: PermissionCheckOptions = {}): OpenSecretFile[] {
  if ((options.platform ?? process.platform) === "win32") return [];
  const mine = new Set(options.groups ?? processGroups());
  const byFile = new Map<string, string[]>();
  for (const ref of secretFileRefs(config)) {
    const keys = byFile.get(ref.file);
    if (keys === undefined) byFile.set(ref.file, [ref.key]);
    else keys.push(ref.key);
  }
  const open: OpenSecretFile[] = [];
  for (const [file, keys] of byFile) {
    let mode: number;
    let gid: number;
    try {
      // stat, not lstat: a Kubernetes Secret volume's files are symlinks into ..data/.
      ({ mode, gid } = statSync(file));
    } catch {
      continue;
    }
    const openTo: ("group" | "others")[] = [];
    if ((mode & 0o020) !== 0 || ((mode & 0o070) !== 0 && !mine.has(gid))) openTo.push("group");
    if ((mode & 0o007) !== 0) openTo.push("others");
    if (openTo.length > 0) open.push({ file, keys, mode: `0${(mode & 0o777).toString(8).padStart(3, "0")}`, openTo });
  }
  return open;
}

/** At most this many files get a line of their own; the rest are counted in one more. */
const MAX_LINES = 20;

const ADVICE =
  "make it readable by this service only: chmod 0400 (or 0440 with a group only this service is in); in Kubernetes set the Secret volume's defaultMode: 0440 and the pod's securityContext.fsGroup (the chart does both for the volumes it mounts; add them to extraVolumes)";

/**
 * Logs a warning for each secret file open to others (or to a group this process is not in):
 * the config key, the file, its mode and what to do. Never the content. Returns the files.
 */
export function warnOpenSecretFiles(config: Config, logger: Pick<Logger, "warn">, options: PermissionCheckOptions = {}): OpenSecretFile[] {
  const open = openSecretFiles(config, options);
  for (const f of open.slice(0, MAX_LINES)) {
    logger.warn(
      { event: "secret_file_permissions", key: f.keys[0], ...(f.keys.length > 1 ? { keys: f.keys } : {}), file: f.file, mode: f.mode, openTo: f.openTo },
      `${f.keys[0]}: the file ${f.file} holds a secret and is open to ${f.openTo.join(" and ")} (mode ${f.mode}); ${ADVICE}`,
    );
  }
  if (open.length > MAX_LINES) {
    logger.warn(
      { event: "secret_file_permissions", more: open.length - MAX_LINES },
      `${open.length - MAX_LINES} more secret files are open to group or others; ${ADVICE}`,
    );
  }
  return open;
}
