import { describe, expect, it } from "vitest";
import { AADSTS_ADVICE, describeAadsts, parseAadsts } from "../../src/auth/aadsts.js";
import { credentialFingerprint, graphScope, isMicrosoftAuthorityHost } from "../../src/auth/credential-factory.js";
import { aadstsFromBody } from "../../src/auth/identity-http-client.js";
import type { TokenTarget } from "../../src/core/ports.js";

describe("AADSTS codes", () => {
  it("when an SDK message carries an AADSTS code, then it is found", () => {
    expect(parseAadsts("AuthenticationRequiredError: AADSTS7000222: The provided client secret keys for app '1' are expired.")).toBe("7000222");
    expect(parseAadsts("network error")).toBeUndefined();
  });

  it("when Entra's error body has error_codes, then the first one is taken", () => {
    expect(aadstsFromBody(JSON.stringify({ error: "invalid_client", error_codes: [7000215], error_description: "AADSTS7000215: Invalid" }))).toBe("7000215");
    expect(aadstsFromBody(JSON.stringify({ error: "invalid_tenant", error_description: "AADSTS90002: Tenant 'x' not found." }))).toBe("90002");
    expect(aadstsFromBody("<html>")).toBeUndefined();
  });

  it("when a code is known, then the detail says what happened and what to do", () => {
    expect(describeAadsts("7000222", { clientId: "app", tenantId: "contoso.com" })).toBe(
      `Entra ID rejected app app in tenant contoso.com: the client secret has expired (AADSTS7000222). ${AADSTS_ADVICE["7000222"]!.action}`,
    );
    expect(describeAadsts("123456", { clientId: "app", tenantId: "t" })).toContain("login.microsoftonline.com/error?code=123456");
  });

  it("when the table is read, then it covers the codes operators meet", () => {
    for (const code of ["7000215", "7000222", "700016", "90002", "7000112", "700027", "700024", "70021", "7000229", "53003", "50059"]) {
      expect(AADSTS_ADVICE[code], code).toBeDefined();
    }
  });
});

describe("credential identity", () => {
  const target = (over: Partial<TokenTarget> = {}): TokenTarget => ({
    tenantKey: "contoso",
    tenantId: "contoso.com",
    app: { clientId: "11111111-2222-3333-4444-555555555555", credential: { type: "secret", secretFile: "/run/s", expiresAt: new Date(0) } },
    ...over,
  });

  it("when only the credential's expiresAt changes, then the fingerprint stays; when the secret file changes, then it differs", () => {
    const base = credentialFingerprint(target(), "https://login.microsoftonline.com");
    const later = target({ app: { clientId: "11111111-2222-3333-4444-555555555555", credential: { type: "secret", secretFile: "/run/s", expiresAt: new Date(1) } } });
    const moved = target({ app: { clientId: "11111111-2222-3333-4444-555555555555", credential: { type: "secret", secretFile: "/run/t" } } });
    expect(credentialFingerprint(later, "https://login.microsoftonline.com")).toBe(base);
    expect(credentialFingerprint(moved, "https://login.microsoftonline.com")).not.toBe(base);
    expect(credentialFingerprint(target(), "https://login.microsoftonline.us")).not.toBe(base);
  });

  it("when the authority is Microsoft's, then instance discovery stays on; for other hosts it is off", () => {
    expect(isMicrosoftAuthorityHost("https://login.microsoftonline.com")).toBe(true);
    expect(isMicrosoftAuthorityHost("https://login.microsoftonline.us")).toBe(true);
    expect(isMicrosoftAuthorityHost("https://127.0.0.1:8443")).toBe(false);
  });

  it("when graphBaseUrl is a Microsoft Graph host, then the scope is its .default; a stand-in host gets global Graph's", () => {
    expect(graphScope("https://graph.microsoft.com")).toBe("https://graph.microsoft.com/.default");
    expect(graphScope("https://graph.microsoft.us")).toBe("https://graph.microsoft.us/.default");
    expect(graphScope("https://127.0.0.1:8443")).toBe("https://graph.microsoft.com/.default");
  });
});
