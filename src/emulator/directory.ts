import { X509Certificate, type KeyObject } from "node:crypto";
import { certificateThumbprints } from "./certificates.js";
import { stableGuid, type AppConfig, type MailboxConfig, type Scenario, type TenantConfig } from "./scenario.js";

/** A registered app certificate, indexed by both thumbprint encodings. */
export interface RegisteredCertificate {
  x5t: string;
  x5tS256: string;
  publicKey: KeyObject;
  notBefore: Date;
  expiresAt: Date;
}

/** A mailbox with its tenant, as lookups return it. */
export interface MailboxEntry {
  tenant: TenantConfig;
  mailbox: MailboxConfig;
}

/**
 * Read-only index over a validated scenario: every lookup the hot paths need is a Map get.
 * Rebuilt whenever the scenario changes, so it never has to be invalidated piecemeal.
 */
export class Directory {
  readonly scenario: Scenario;
  private readonly tenants = new Map<string, TenantConfig>();
  private readonly apps = new Map<string, AppConfig>();
  private readonly mailboxes = new Map<string, MailboxEntry>();
  private readonly consents = new Map<string, readonly string[]>();
  private readonly policies = new Map<string, { allow?: Set<string>; deny?: Set<string> }>();
  /** tenant|app → the scopes of its `Application Mail.Send` assignments (undefined = organization-wide). */
  private readonly mailSendScopes = new Map<string, (Set<string> | undefined)[]>();
  private readonly certificates = new Map<string, Map<string, RegisteredCertificate>>();

  constructor(scenario: Scenario) {
    this.scenario = scenario;
    for (const tenant of scenario.tenants) {
      this.tenants.set(tenant.id.toLowerCase(), tenant);
      for (const d of tenant.domains) this.tenants.set(d.toLowerCase(), tenant);
      for (const mailbox of tenant.mailboxes) {
        const entry = { tenant, mailbox };
        for (const key of [mailbox.address, mailbox.id, ...mailbox.aliases]) this.mailboxes.set(key.toLowerCase(), entry);
      }
      for (const c of tenant.consents) this.consents.set(`${tenant.id.toLowerCase()}|${c.appId.toLowerCase()}`, c.roles);
      for (const p of tenant.accessPolicies) {
        const lower = (xs: string[] | undefined) => (xs === undefined ? undefined : new Set(xs.map((x) => x.toLowerCase())));
        this.policies.set(`${tenant.id.toLowerCase()}|${p.appId.toLowerCase()}`, { allow: lower(p.allow), deny: lower(p.deny) });
      }
      for (const a of tenant.roleAssignments) {
        if (a.role.toLowerCase() !== "application mail.send") continue;
        const key = `${tenant.id.toLowerCase()}|${a.appId.toLowerCase()}`;
        const scopes = this.mailSendScopes.get(key) ?? [];
        scopes.push(a.mailboxes === undefined ? undefined : new Set(a.mailboxes.map((m) => m.toLowerCase())));
        this.mailSendScopes.set(key, scopes);
      }
    }
    for (const app of scenario.apps) {
      this.apps.set(app.clientId.toLowerCase(), app);
      const certs = new Map<string, RegisteredCertificate>();
      for (const c of app.certificates) {
        const x = new X509Certificate(c.pem);
        const t = certificateThumbprints(c.pem);
        const reg: RegisteredCertificate = {
          x5t: t.x5t,
          x5tS256: t.x5tS256,
          publicKey: x.publicKey,
          notBefore: new Date(x.validFrom),
          expiresAt: c.expiresAt ?? new Date(x.validTo),
        };
        certs.set(`x5t:${t.x5t}`, reg);
        certs.set(`x5t#S256:${t.x5tS256}`, reg);
      }
      this.certificates.set(app.clientId.toLowerCase(), certs);
    }
  }

  /** Tenant by GUID or verified domain, case-insensitive. */
  tenant(idOrDomain: string): TenantConfig | undefined {
    return this.tenants.get(idOrDomain.toLowerCase());
  }

  app(clientId: string): AppConfig | undefined {
    return this.apps.get(clientId.toLowerCase());
  }

  /** Mailbox by primary address, alias or object id, across all tenants. */
  mailbox(idOrAddress: string): MailboxEntry | undefined {
    return this.mailboxes.get(idOrAddress.toLowerCase());
  }

  /**
   * Whether the app has a service principal in the tenant: always in its home tenant,
   * elsewhere only where a consent entry exists (that is how an SP gets into a foreign tenant).
   */
  hasServicePrincipal(tenantId: string, app: AppConfig): boolean {
    return app.homeTenant?.toLowerCase() === tenantId.toLowerCase() || this.consents.has(`${tenantId.toLowerCase()}|${app.clientId.toLowerCase()}`);
  }

  /** Graph application permissions consented for the app in the tenant. */
  roles(tenantId: string, appId: string): readonly string[] {
    return this.consents.get(`${tenantId.toLowerCase()}|${appId.toLowerCase()}`) ?? [];
  }

  /** ApplicationAccessPolicy semantics: no policy = every mailbox of the tenant. */
  mayAccess(tenantId: string, appId: string, mailbox: MailboxConfig): boolean {
    const p = this.policies.get(`${tenantId.toLowerCase()}|${appId.toLowerCase()}`);
    if (p === undefined) return true;
    const keys = [mailbox.address, mailbox.id, ...mailbox.aliases].map((k) => k.toLowerCase());
    if (p.allow !== undefined) return keys.some((k) => p.allow!.has(k));
    return !keys.some((k) => p.deny!.has(k));
  }

  /**
   * The app's RBAC for Applications `Application Mail.Send` grant for a mailbox: `inScope`,
   * `outOfScope` (the app has such assignments, none covering this mailbox) or `none`.
   */
  rbacMailSend(tenantId: string, appId: string, mailbox: MailboxConfig): "inScope" | "outOfScope" | "none" {
    const scopes = this.mailSendScopes.get(`${tenantId.toLowerCase()}|${appId.toLowerCase()}`);
    if (scopes === undefined) return "none";
    const keys = [mailbox.address, mailbox.id, ...mailbox.aliases].map((k) => k.toLowerCase());
    return scopes.some((scope) => scope === undefined || keys.some((k) => scope.has(k))) ? "inScope" : "outOfScope";
  }

  /** Registered certificate of the app by `x5t` (SHA-1) or `x5t#S256` thumbprint. */
  certificate(appId: string, header: { x5t?: string; "x5t#S256"?: string }): RegisteredCertificate | undefined {
    const certs = this.certificates.get(appId.toLowerCase());
    if (certs === undefined) return undefined;
    if (header["x5t#S256"] !== undefined) return certs.get(`x5t#S256:${header["x5t#S256"]}`);
    if (header.x5t !== undefined) return certs.get(`x5t:${header.x5t}`);
    return undefined;
  }

  /** Object id of the app's service principal in a tenant (stable, used as `oid`/`sub`). */
  servicePrincipalId(tenantId: string, appId: string): string {
    return stableGuid(`sp/${tenantId.toLowerCase()}/${appId.toLowerCase()}`);
  }
}
