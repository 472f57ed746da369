import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type * as Identity from "@azure/identity";
import type { ClientSecretCredentialOptions, TokenCredential } from "@azure/identity";
import type { CredentialConfig } from "../config/schema.js";
import { RelayError } from "../core/problems.js";
import type { TokenTarget } from "../core/ports.js";

type SecretCredentialConfig = Extract<CredentialConfig, { type: "secret" }>;
type HttpClient = NonNullable<ClientSecretCredentialOptions["httpClient"]>;

type IdentityModule = typeof Identity;
let identity: IdentityModule | undefined;
let loading: Promise<IdentityModule> | undefined;

/**
 * Loads @azure/identity (with MSAL, a fifth of the service's start-up), once. The token
 * provider awaits it before its first credential, and server.ts starts it right after the
 * service listens: readiness does not wait for it, and neither does the first send, usually.
 */
export function loadIdentity(): Promise<void> {
  loading ??= import("@azure/identity").then((m) => (identity = m));
  return loading.then(() => undefined);
}

/** Which of a secret credential's two secrets a credential object was built with. */
export type SecretSlot = "primary" | "secondary";

// Hosts whose instance metadata MSAL has built in; for them instance discovery costs nothing
// and keeps MSAL's authority validation, so it stays on. Any other host (the emulator, a
// private cloud) is trusted as configured.
const MICROSOFT_AUTHORITY_HOSTS = new Set([
  "login.microsoftonline.com",
  "login.microsoft.com",
  "login.windows.net",
  "login.microsoftonline.us",
  "login.usgovcloudapi.net",
  "login.partner.microsoftonline.cn",
  "login.chinacloudapi.cn",
  "login.microsoftonline.de",
  "login.sovcloud-identity.fr",
  "login.sovcloud-identity.de",
  "login.sovcloud-identity.sg",
]);

// Microsoft Graph in the global and national clouds; each issues tokens for its own audience.
const MICROSOFT_GRAPH_HOSTS = new Set([
  "graph.microsoft.com",
  "graph.microsoft.us",
  "dod-graph.microsoft.us",
  "microsoftgraph.chinacloudapi.cn",
  "graph.microsoft.de",
]);

/**
 * The scope of the Graph token: `{graphBaseUrl}/.default` for Microsoft's Graph hosts. Any
 * other graphBaseUrl (an egress proxy, the emulator) stands in for global Graph, whose
 * audience the token must still carry.
 */
export function graphScope(graphBaseUrl: string): string {
  const url = new URL(graphBaseUrl);
  return MICROSOFT_GRAPH_HOSTS.has(url.host.toLowerCase()) ? `${url.origin}/.default` : "https://graph.microsoft.com/.default";
}

/** Whether `authorityHost` is one of Microsoft's own Entra ID hosts. */
export function isMicrosoftAuthorityHost(authorityHost: string): boolean {
  return MICROSOFT_AUTHORITY_HOSTS.has(new URL(authorityHost).host.toLowerCase());
}

/**
 * A stable key for (authority, tenant, app, credential config). A config reload that leaves
 * these unchanged yields the same key, so the credential and its token cache survive it.
 * `expiresAt` is left out: it only feeds a gauge.
 */
export function credentialFingerprint(target: TokenTarget, authorityHost: string): string {
  const { expiresAt: _expiresAt, ...credential } = target.app.credential;
  const canonical = JSON.stringify([
    authorityHost.toLowerCase(),
    target.tenantKey,
    target.tenantId.toLowerCase(),
    target.app.clientId.toLowerCase(),
    Object.entries(credential).sort(([a], [b]) => a.localeCompare(b)),
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}

export interface CredentialBuildContext {
  readonly authorityHost: string;
  readonly httpClient: HttpClient;
  readonly env: NodeJS.ProcessEnv;
}

/**
 * A target's credential as read from its secret, certificate or token file: the
 * @azure/identity credential objects are made from it without reading anything again.
 */
export interface BuiltCredential {
  /**
   * A new credential object for the target's tenant only, with its own MSAL application and
   * caches. For the requests that must reach Entra ID whatever MSAL remembers: after Graph
   * refused the token, after an outage (MSAL's throttling memory), or when MSAL's cache answered.
   */
  create(): TokenCredential;
  /**
   * Same for every target whose app, authority, credential and secret are the same, whatever
   * the tenant: such targets share one credential object (see createMultiTenant).
   */
  readonly materialKey: string;
  /**
   * A credential object for every tenant of the app (`getToken(scope, { tenantId })`): one
   * MSAL application, so the client objects are built once per app rather than once per token
   * request, and MSAL keeps the authority's metadata instead of asking for it again each time.
   * `httpClient` routes each request to the recorder of the tenant asking (IdentityHttpRouter).
   */
  createMultiTenant(httpClient: HttpClient): TokenCredential;
  readonly slot: SecretSlot;
  /** SHA-256 of the secret used, to notice a rotated secret file. */
  readonly secretHash?: string;
}

/**
 * Reads the credential material of a target. Secrets and certificates are read now; a
 * workload-identity token file is read on every token request (the platform rotates it).
 * Throws RelayError `credential_rejected` when a referenced file or variable cannot be read.
 */
export function buildCredential(target: TokenTarget, slot: SecretSlot, ctx: CredentialBuildContext): BuiltCredential {
  if (identity === undefined) throw new Error("buildCredential before loadIdentity(): the token provider loads @azure/identity first");
  const { ClientAssertionCredential, ClientCertificateCredential, ClientSecretCredential } = identity;
  const { tenantId, app } = target;
  const options: ClientSecretCredentialOptions = {
    authorityHost: ctx.authorityHost,
    // Instance discovery calls a Microsoft endpoint to validate the authority; a host that is
    // not Microsoft's (the emulator, a private cloud) must skip it. Microsoft hosts keep it.
    disableInstanceDiscovery: !isMicrosoftAuthorityHost(ctx.authorityHost),
    httpClient: ctx.httpClient,
    // Token requests are idempotent, so one quick retry of a reset or 5xx is safe; the caller's
    // deadline bounds the wait anyway.
    retryOptions: { maxRetries: 1, retryDelayInMs: 300, maxRetryDelayInMs: 2_000 },
  };
  // Any tenant may be asked for: which one is the token provider's decision, per request.
  const shared = (httpClient: HttpClient): ClientSecretCredentialOptions => ({ ...options, httpClient, additionallyAllowedTenants: ["*"] });
  const key = (...material: readonly unknown[]): string =>
    createHash("sha256")
      .update(JSON.stringify([ctx.authorityHost.toLowerCase(), app.clientId.toLowerCase(), ...material]))
      .digest("hex");
  const credential = app.credential;
  switch (credential.type) {
    case "secret": {
      const secret = readSecret(target, credential, slot, ctx.env);
      const secretHash = hashSecret(secret);
      return {
        create: () => new ClientSecretCredential(tenantId, app.clientId, secret, options),
        materialKey: key("secret", slot, secretHash),
        createMultiTenant: (httpClient) => new ClientSecretCredential(tenantId, app.clientId, secret, shared(httpClient)),
        slot,
        secretHash,
      };
    }
    case "certificate": {
      const pem = readLocal(target, "certificateFile", () => readFileSync(credential.certificateFile, "utf8"));
      const sendCertificateChain = credential.sendCertificateChain;
      return {
        create: () => new ClientCertificateCredential(tenantId, app.clientId, { certificate: pem }, { ...options, sendCertificateChain }),
        materialKey: key("certificate", hashSecret(pem), sendCertificateChain === true),
        createMultiTenant: (httpClient) => new ClientCertificateCredential(tenantId, app.clientId, { certificate: pem }, { ...shared(httpClient), sendCertificateChain }),
        slot: "primary",
      };
    }
    case "workloadIdentity": {
      const tokenFile = credential.tokenFile;
      const getAssertion = async (): Promise<string> => (await readFile(tokenFile, "utf8")).trim();
      return {
        create: () => new ClientAssertionCredential(tenantId, app.clientId, getAssertion, options),
        materialKey: key("workloadIdentity", tokenFile),
        createMultiTenant: (httpClient) => new ClientAssertionCredential(tenantId, app.clientId, getAssertion, shared(httpClient)),
        slot: "primary",
      };
    }
  }
}

/** Whether a secret credential has a secondary secret to fall back to. */
export function hasSecondarySecret(credential: CredentialConfig): boolean {
  return credential.type === "secret" && (credential.secondarySecretFile !== undefined || credential.secondarySecretEnv !== undefined);
}

/** SHA-256 of the primary secret as it is now, or undefined when it cannot be read. */
export function currentPrimarySecretHash(target: TokenTarget, env: NodeJS.ProcessEnv): string | undefined {
  const credential = target.app.credential;
  if (credential.type !== "secret") return undefined;
  try {
    return hashSecret(readSecret(target, credential, "primary", env));
  } catch {
    return undefined;
  }
}

function readSecret(target: TokenTarget, credential: SecretCredentialConfig, slot: SecretSlot, env: NodeJS.ProcessEnv): string {
  const file = slot === "primary" ? credential.secretFile : credential.secondarySecretFile;
  const variable = slot === "primary" ? credential.secretEnv : credential.secondarySecretEnv;
  const fileKey = slot === "primary" ? "secretFile" : "secondarySecretFile";
  const envKey = slot === "primary" ? "secretEnv" : "secondarySecretEnv";
  let secret: string | undefined;
  if (file !== undefined) {
    secret = readLocal(target, fileKey, () => readFileSync(file, "utf8"));
  } else if (variable !== undefined) {
    secret = env[variable];
    if (secret === undefined || secret.trim() === "") {
      throw new RelayError(
        "credential_rejected",
        `The client secret of app ${target.app.clientId} for tenant ${target.tenantKey} is missing: environment variable ${variable} (${envKey}) is not set.`,
      );
    }
  }
  secret = secret?.trim();
  if (!secret) {
    throw new RelayError(
      "credential_rejected",
      `The client secret of app ${target.app.clientId} for tenant ${target.tenantKey} is empty: check ${file !== undefined ? fileKey : envKey}.`,
    );
  }
  return secret;
}

function readLocal(target: TokenTarget, key: string, read: () => string): string {
  try {
    return read();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new RelayError(
      "credential_rejected",
      `The credential of app ${target.app.clientId} for tenant ${target.tenantKey} cannot be used: ${key} cannot be read (${code}).`,
    );
  }
}

function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}
