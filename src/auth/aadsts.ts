/**
 * Entra ID (AADSTS) error codes an app-only token request can meet, each with a short
 * statement of what it means and what an operator does about it. Used in problem details,
 * by the CLI `verify` command and docs/troubleshooting.md.
 */
export interface AadstsAdvice {
  /** What Entra says, in a few words. */
  readonly summary: string;
  /** What to do about it. */
  readonly action: string;
}

export const AADSTS_ADVICE: Readonly<Record<string, AadstsAdvice>> = Object.freeze({
  "7000215": {
    summary: "the client secret is invalid",
    action:
      "Put the secret's Value (not its Secret ID) in secretFile/secretEnv, or create a new secret on the app registration.",
  },
  "7000222": {
    summary: "the client secret has expired",
    action:
      "Create a new client secret on the app registration and update secretFile/secretEnv (secondarySecretFile lets you rotate without downtime).",
  },
  "700016": {
    summary: "the app is not present in the tenant",
    action:
      "A tenant admin must grant admin consent to the app in that tenant (see the consent URL), or check clientId and tenantId.",
  },
  "7000229": {
    summary: "the app has no service principal in the tenant",
    action: "A tenant admin must grant admin consent to the app in that tenant, which creates its service principal.",
  },
  "90002": {
    summary: "the tenant does not exist",
    action: "Check tenantId: use the tenant's GUID or one of its verified domains, in the same cloud as authorityHost.",
  },
  "900023": {
    summary: "the tenant identifier is malformed",
    action: "Set tenantId to the tenant's GUID or a verified domain.",
  },
  "50059": {
    summary: "no tenant was identified",
    action: "Set tenantId to the customer's tenant GUID or verified domain (not common or organizations).",
  },
  "7000112": {
    summary: "the app is disabled in the tenant",
    action:
      "A tenant admin must enable the app again (Enterprise applications → the app → Properties → Enabled for users to sign in).",
  },
  "700027": {
    summary: "the client certificate is not registered on the app, or has expired",
    action:
      "Upload the certificate's public part to the app registration (Certificates & secrets) or renew it and update certificateFile.",
  },
  "700024": {
    summary: "the federated token is outside its validity period",
    action: "Make sure tokenFile is the projected service-account token that the platform keeps refreshing, and that the clock is right.",
  },
  "70021": {
    summary: "no federated credential on the app matches the presented token",
    action:
      "Add a federated credential to the app whose issuer, subject and audience match the workload's service-account token.",
  },
  "700211": {
    summary: "no federated credential on the app matches the token's issuer",
    action: "Fix the federated credential's issuer: it must equal the cluster's OIDC issuer URL exactly.",
  },
  "700213": {
    summary: "no federated credential on the app matches the token's subject",
    action: "Fix the federated credential's subject: system:serviceaccount:<namespace>:<service account>.",
  },
  "700212": {
    summary: "no federated credential on the app matches the token's audience",
    action: "Use audience api://AzureADTokenExchange on both the federated credential and the projected token.",
  },
  "53003": {
    summary: "a Conditional Access policy blocked the app",
    action: "A tenant admin must exclude the app from the Conditional Access policy for workload identities, or allow this network.",
  },
  "500011": {
    summary: "Microsoft Graph is not available in the tenant",
    action: "Check graphBaseUrl: it must be the Graph endpoint of the same cloud as authorityHost.",
  },
  "1002012": {
    summary: "the requested scope is invalid",
    action: "Check graphBaseUrl: the service requests the scope {graphBaseUrl}/.default.",
  },
});

/*
 * AADSTS codes that mean "Entra had a problem", not "your credential is wrong". They are only a
 * fallback: the HTTP status and the OAuth `error` decide first (see tokenOutcome in
 * identity-http-client.ts), because an outage answers 503 `temporarily_unavailable` whatever
 * its code. The codes matter where no status is at hand, e.g. when MSAL replays an earlier
 * answer from its throttling cache.
 * - 90033 MsodsServiceUnavailable, "A transient error has occurred. Please try again.", sent as
 *   503 temporarily_unavailable: https://github.com/Azure/azure-sdk-for-python/issues/14241
 *   and https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
 * - 50033 RetryableError, "a transient error not related to the database operations" (same
 *   reference page); seen as `temporarily_unavailable: 50033` in
 *   https://github.com/AzureAD/microsoft-authentication-library-for-js/issues/4019
 * - 90024 RequestBudgetExceededError, "A transient error has occurred. Try again." (reference page).
 * - 90041: named transient by the review behind issue 12; no public source was found for it.
 *   Treating it as transient is the safe side: the caller retries instead of the tenant failing
 *   hard and being remembered as rejected.
 */
const TRANSIENT_AADSTS: ReadonlySet<string> = new Set(["50033", "90024", "90033", "90041"]);

/** Whether an AADSTS code stands for a transient Entra failure (an outage), not a refusal. */
export function isTransientAadsts(code: string | undefined): boolean {
  return code !== undefined && TRANSIENT_AADSTS.has(code);
}

const AADSTS_PATTERN = /AADSTS(\d{4,8})/;

/** The first AADSTS code in a text (an SDK error message or an Entra error description). */
export function parseAadsts(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  return AADSTS_PATTERN.exec(text)?.[1];
}

/** Which app and tenant an Entra refusal was about, for the problem detail. */
export interface RefusalSubject {
  readonly clientId: string;
  readonly tenantId: string;
}

/**
 * A problem detail that says what Entra refused and what to do, e.g. "Entra ID rejected app
 * 1111… in tenant contoso.com: the client secret has expired (AADSTS7000222). Create a new…".
 */
export function describeAadsts(code: string, subject: RefusalSubject): string {
  const advice = AADSTS_ADVICE[code];
  const head = `Entra ID rejected app ${subject.clientId} in tenant ${subject.tenantId}`;
  if (advice === undefined) return `${head} (AADSTS${code}). Look the code up at https://login.microsoftonline.com/error?code=${code}.`;
  return `${head}: ${advice.summary} (AADSTS${code}). ${advice.action}`;
}
