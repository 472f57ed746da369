import { randomUUID } from "node:crypto";

/*
 * Entra ID (AADSTS) error texts. The `error` values, HTTP statuses and message texts are the
 * ones Microsoft's token service returns, taken from real responses quoted in Microsoft docs
 * and public issue threads (sources next to each entry). Where no verbatim source was found
 * the entry says "approximation".
 */

/** One AADSTS error: OAuth `error`, HTTP status, and the text after "AADSTS<n>: ". */
export interface EntraErrorDef {
  code: number;
  status: number;
  error: string;
  text: string;
}

const def = (code: number, status: number, error: string, text: string): EntraErrorDef => ({ code, status, error, text });

const certDocs =
  "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{appId}'. " +
  "Review the documentation at https://docs.microsoft.com/en-us/graph/deployments to determine the corresponding service endpoint and " +
  "https://docs.microsoft.com/en-us/graph/api/application-get?view=graph-rest-1.0&tabs=http to build a query request URL, such as " +
  "'https://graph.microsoft.com/beta/applications/{appId}'";
const ficHint =
  "Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. " +
  "https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation";

/** Catalogue of the errors the emulator produces. `{name}` placeholders are filled by `entraError`. */
export const entraErrors = {
  // invalid_tenant 400 from discovery; invalid_request 400 from the token endpoint (Azure CLI / MSAL Python
  // issue threads quoting both bodies, e.g. Azure/azure-cli#22145, microsoftarchive/BatchAI#31).
  tenantNotFoundDiscovery: def(90002, 400, "invalid_tenant",
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
  tenantNotFound: def(90002, 400, "invalid_request",
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
  // 401 invalid_client (OfficeDev/microsoft-365-agents-toolkit#8621, Azure/sap-automation#418).
  invalidSecret: def(7000215, 401, "invalid_client",
    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{appId}'."),
  // 401 invalid_client (liprec/vsts-release-aas#119, dotnet/sign#849).
  expiredSecret: def(7000222, 401, "invalid_client",
    "The provided client secret keys for app '{appId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."),
  // 400 unauthorized_client (MicrosoftDocs/azure-docs#21690 for the text; status/error per the OAuth error table).
  appNotFound: def(700016, 400, "unauthorized_client",
    "Application with identifier '{appId}' was not found in the directory '{directory}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
  // 400 unauthorized_client (Worklytics/psoxy#74 quotes the body; text also in MicrosoftDocs/azure-docs#28469).
  appDisabled: def(7000112, 400, "unauthorized_client", "Application '{appId}'({appName}) is disabled."),
  // AADSTS7000229 (invalid_client 401) exists for an app whose home tenant lacks a service principal;
  // the emulator always creates the SP in the home tenant, so it never produces it.
  missingParameter: def(900144, 400, "invalid_request", "The request body must contain the following parameter: '{parameter}'."),
  missingCredential: def(7000218, 401, "invalid_client",
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
  unsupportedGrant: def(70003, 400, "unsupported_grant_type", "The app requested an unsupported grant type '{grantType}'."),
  // Client credentials need "<resource>/.default" (reference-error-codes: AADSTS1002012).
  invalidScope: def(1002012, 400, "invalid_scope",
    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
  resourceNotFound: def(500011, 400, "invalid_resource",
    "The resource principal named {resource} was not found in the tenant named {directory}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."),
  noTenantInfo: def(50059, 400, "invalid_request",
    "No tenant-identifying information found in either the request or implied by any provided credentials."),
  malformedAssertion: def(50027, 400, "invalid_request", "JWT token is invalid or malformed."),
  // 401 invalid_client (AzureAD/microsoft-authentication-library-for-js#8339, keycloak/keycloak#19425).
  certificateNotRegistered: def(700027, 401, "invalid_client",
    `The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', ${certDocs}]`),
  assertionBadSignature: def(700027, 401, "invalid_client",
    `Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{thumbprint}', ${certDocs}]`),
  certificateExpired: def(700027, 401, "invalid_client",
    `Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{thumbprint}', ${certDocs}]`),
  // Approximation: the app-id mismatch and audience texts below are paraphrased from AADSTS700021 / AADSTS50013.
  assertionWrongApp: def(700021, 401, "invalid_client",
    "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials ."),
  assertionWrongAudience: def(50013, 401, "invalid_client",
    "Assertion audience claim does not match the required value. The audience in the assertion was '{audience}' and the expected audience is '{expected}' or one of the Application Ids of this application."),
  assertionTime: def(700024, 400, "invalid_client",
    "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials ."),
  // Workload identity federation, 401 invalid_client (Azure/azure-workload-identity#1200 for 700211; 700212/700213 same shape).
  ficIssuer: def(700211, 401, "invalid_client", `No matching federated identity record found for presented assertion issuer '{issuer}'. ${ficHint}`),
  ficAudience: def(700212, 401, "invalid_client", `No matching federated identity record found for presented assertion audience '{audience}'. ${ficHint}`),
  ficSubject: def(700213, 401, "invalid_client", `No matching federated identity record found for presented assertion subject '{subject}'. ${ficHint}`),
  // Approximation: external issuers' keys are not fetched by the emulator.
  externalOidcFailed: def(50166, 400, "invalid_request", "Request to External OIDC endpoint failed."),
  ficBadSignature: def(50013, 401, "invalid_client", "Assertion failed signature validation. [Reason - The key was not found.]"),
  // Entra's outage answer: 503 temporarily_unavailable with AADSTS90033, verbatim in
  // https://github.com/Azure/azure-sdk-for-python/issues/14241 (MsodsServiceUnavailable in
  // https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes). Token-endpoint
  // faults with another 5xx send this body with their status: approximation, no public body found.
  transient: def(90033, 503, "temporarily_unavailable", "A transient error has occurred. Please try again."),
  // AADSTS90055 TenantThrottlingError, "There are too many incoming requests" (reference-error-codes).
  // Approximation: the status (429) and the `error` value of a real answer were not found in a public source.
  throttled: def(90055, 429, "temporarily_unavailable", "There are too many incoming requests. Please try again later."),
} as const;

/** The JSON body Entra sends on token/discovery errors. */
export interface EntraErrorBody {
  error: string;
  error_description: string;
  error_codes: number[];
  timestamp: string;
  trace_id: string;
  correlation_id: string;
  error_uri: string;
}

/** Entra's "2023-05-06 06:03:00Z" timestamp format. */
export function entraTimestamp(d = new Date()): string {
  return d.toISOString().replace("T", " ").replace(/\.\d{3}Z$/, "Z");
}

/** Builds status + body for an AADSTS error, with Entra's `\r\n`-separated trailer in `error_description`. */
export function entraError(
  e: EntraErrorDef,
  values: Record<string, string> = {},
  correlationId: string = randomUUID(),
): { status: number; body: EntraErrorBody } {
  const text = e.text.replace(/\{(\w+)\}/g, (m, k: string) => values[k] ?? m);
  const traceId = randomUUID();
  const timestamp = entraTimestamp();
  return {
    status: e.status,
    body: {
      error: e.error,
      error_description: `AADSTS${e.code}: ${text}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
      error_codes: [e.code],
      timestamp,
      trace_id: traceId,
      correlation_id: correlationId,
      error_uri: `https://login.microsoftonline.com/error?code=${e.code}`,
    },
  };
}
