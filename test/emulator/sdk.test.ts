import { generateKeyPairSync } from "node:crypto";
import { ClientAssertionCredential, ClientCertificateCredential, ClientSecretCredential } from "@azure/identity";
import { AuthenticationHandler, Client, HTTPMessageHandler, type FetchOptions, type GraphError } from "@microsoft/microsoft-graph-client";
import { TokenCredentialAuthenticationProvider } from "@microsoft/microsoft-graph-client/authProviders/azureTokenCredentials/index.js";
import { SignJWT } from "jose";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClientCertificate, type ClientCertificate } from "../../src/emulator/certificates.js";
import { startEmulator, type Emulator } from "../../src/emulator/start-emulator.js";
import {
  APP,
  APP_DISABLED,
  APP_FOREIGN,
  CONTOSO,
  credentialOptions,
  EXPIRED_SECRET,
  FEDERATED_SUBJECT,
  GRAPH_SCOPE,
  jwtPayload,
  scenario,
  SECRET,
  UNKNOWN_TENANT,
} from "./fixtures.js";

let emu: Emulator;
let cert: ClientCertificate;

beforeAll(async () => {
  cert = await createClientCertificate({ subject: "CN=noreply-relay emulator test" });
  emu = await startEmulator({ scenario: scenario(cert) });
});
afterAll(() => emu.close());

/** Graph client wired the documented way: auth provider + custom host + CA-trusting dispatcher, no retries. */
function graphClient(credential: ClientSecretCredential): Client {
  const authProvider = new TokenCredentialAuthenticationProvider(credential, { scopes: [GRAPH_SCOPE] });
  const http = new HTTPMessageHandler();
  const auth = new AuthenticationHandler(authProvider);
  auth.setNext(http);
  return Client.initWithMiddleware({
    middleware: auth,
    baseUrl: emu.url,
    customHosts: new Set([new URL(emu.url).hostname]),
    // npm undici's Agent works as dispatcher for Node's built-in fetch; only the types differ.
    fetchOptions: { dispatcher: new Agent({ connect: { ca: emu.caPem } }) as unknown as FetchOptions["dispatcher"] },
  });
}

const tokenRequests = () => emu.state.requests({ kind: "token" }).length;

describe("@azure/identity against the emulator", () => {
  it("ClientSecretCredential gets a Graph token, and one credential asks Entra once for many getToken calls", async () => {
    const before = tokenRequests();
    const credential = new ClientSecretCredential(CONTOSO, APP, SECRET, credentialOptions(emu));
    const first = await credential.getToken(GRAPH_SCOPE);
    const more = await Promise.all(Array.from({ length: 5 }, () => credential.getToken(GRAPH_SCOPE)));
    for (const t of more) expect(t.token).toBe(first.token);
    expect(tokenRequests() - before).toBe(1);

    const claims = jwtPayload(first.token);
    expect(claims).toMatchObject({ aud: "https://graph.microsoft.com", tid: CONTOSO, appid: APP, azp: APP, roles: ["Mail.Send"], idtyp: "app" });
    expect((claims.exp as number) - (claims.iat as number)).toBe(3599);
  });

  it("the tenant can be given as a verified domain", async () => {
    const credential = new ClientSecretCredential("contoso.com", APP, SECRET, credentialOptions(emu));
    expect(jwtPayload((await credential.getToken(GRAPH_SCOPE)).token).tid).toBe(CONTOSO);
  });

  it("ClientCertificateCredential authenticates with a certificate registered on the app", async () => {
    const credential = new ClientCertificateCredential(CONTOSO, APP, { certificate: cert.pem }, credentialOptions(emu));
    const token = await credential.getToken(GRAPH_SCOPE);
    expect(jwtPayload(token.token)).toMatchObject({ appid: APP, appidacr: "2", tid: CONTOSO });
  });

  it("ClientCertificateCredential with an unregistered certificate gets AADSTS700027", async () => {
    const other = await createClientCertificate();
    const credential = new ClientCertificateCredential(CONTOSO, APP, { certificate: other.pem }, credentialOptions(emu));
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow(/AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application/);
  });

  it("ClientCertificateCredential with an expired registered certificate gets AADSTS700027 (key expired)", async () => {
    const expired = await createClientCertificate({ notBefore: new Date(Date.now() - 3 * 86_400_000), validDays: 1 });
    const appId = "88888888-8888-4888-8888-888888888888";
    emu.state.patchScenario({ apps: [{ clientId: appId, homeTenant: CONTOSO, certificates: [{ pem: expired.certPem }] }] });
    const credential = new ClientCertificateCredential(CONTOSO, appId, { certificate: expired.pem }, credentialOptions(emu));
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow(/AADSTS700027: Client assertion contains an invalid signature\. \[Reason - The key used is expired\./);
  });

  it("ClientAssertionCredential with a federated token from the registered issuer works", async () => {
    const credential = new ClientAssertionCredential(CONTOSO, APP, () => emu.state.mintFederatedToken({ subject: FEDERATED_SUBJECT }), credentialOptions(emu));
    expect(jwtPayload((await credential.getToken(GRAPH_SCOPE)).token)).toMatchObject({ appid: APP, roles: ["Mail.Send"] });
  });

  it("ClientAssertionCredential with a token of an unregistered issuer is refused with AADSTS700211", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const now = Math.floor(Date.now() / 1000);
    const foreign = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "other" })
      .setIssuer("https://oidc.example.net/cluster")
      .setSubject(FEDERATED_SUBJECT)
      .setAudience("api://AzureADTokenExchange")
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(privateKey);
    const credential = new ClientAssertionCredential(CONTOSO, APP, () => Promise.resolve(foreign), credentialOptions(emu));
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow(
      /AADSTS700211: No matching federated identity record found for presented assertion issuer 'https:\/\/oidc\.example\.net\/cluster'/,
    );
  });

  it("ClientAssertionCredential with the right issuer but another subject is refused with AADSTS700213", async () => {
    const credential = new ClientAssertionCredential(CONTOSO, APP, () => emu.state.mintFederatedToken({ subject: "system:serviceaccount:other:sa" }), credentialOptions(emu));
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow(/AADSTS700213/);
  });

  it.each([
    ["an invalid secret", CONTOSO, APP, "wrong-secret", /AADSTS7000215: Invalid client secret provided/],
    ["an expired secret", CONTOSO, APP, EXPIRED_SECRET, /AADSTS7000222: The provided client secret keys for app '11111111-2222-3333-4444-555555555555' are expired/],
    ["an app unknown to the tenant", CONTOSO, APP_FOREIGN, SECRET, /AADSTS700016: Application with identifier '66666666-6666-4666-8666-666666666666' was not found in the directory 'Contoso'/],
    ["a disabled app", CONTOSO, APP_DISABLED, SECRET, /AADSTS7000112: Application '22222222-2222-4222-8222-222222222222'\(Disabled app\) is disabled\./],
  ])("surfaces %s as the AADSTS error", async (_name, tenant, clientId, secret, expected) => {
    const credential = new ClientSecretCredential(tenant, clientId, secret, credentialOptions(emu));
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow(expected);
  });

  it("an unknown tenant fails at discovery in MSAL, and the discovery answer carries AADSTS90002", async () => {
    const credential = new ClientSecretCredential(UNKNOWN_TENANT, APP, SECRET, credentialOptions(emu));
    await expect(credential.getToken(GRAPH_SCOPE)).rejects.toThrow(/endpoints_resolution_error/);
    const discovery = emu.state.requests({ kind: "discovery", tenant: UNKNOWN_TENANT });
    expect(discovery.at(-1)).toMatchObject({ status: 400, errorCode: "AADSTS90002" });
  });
});

describe("Graph client against the emulator", () => {
  it("sends mail; the message is stored with what was sent", async () => {
    const graph = graphClient(new ClientSecretCredential(CONTOSO, APP, SECRET, credentialOptions(emu)));
    await graph.api("/users/noreply@contoso.com/sendMail").post({
      message: {
        subject: "Order 42 shipped",
        body: { contentType: "HTML", content: "<p>On its way</p>" },
        toRecipients: [{ emailAddress: { address: "alice@example.org", name: "Alice" } }],
        ccRecipients: [{ emailAddress: { address: "bob@example.org" } }],
        internetMessageHeaders: [{ name: "X-Relay-Id", value: "r-42" }],
        attachments: [{ "@odata.type": "#microsoft.graph.fileAttachment", name: "a.txt", contentType: "text/plain", contentBytes: "SGVsbG8gV29ybGQh" }],
      },
      saveToSentItems: false,
    });
    const [m] = emu.state.messages({ subject: "order 42" });
    expect(m).toMatchObject({
      sender: "noreply@contoso.com",
      tenantId: CONTOSO,
      appId: APP,
      toRecipients: [{ address: "alice@example.org", name: "Alice" }],
      ccRecipients: [{ address: "bob@example.org" }],
      body: { contentType: "html", content: "<p>On its way</p>" },
      internetMessageHeaders: [{ name: "X-Relay-Id", value: "r-42" }],
      attachments: [{ name: "a.txt", contentType: "text/plain", size: 12, isInline: false }],
      saveToSentItems: false,
    });
  });

  it("Graph errors reach the caller as GraphError with Graph's status, code and message", async () => {
    const graph = graphClient(new ClientSecretCredential(CONTOSO, APP, SECRET, credentialOptions(emu)));
    const error = (await graph
      .api("/users/nobody@contoso.com/sendMail")
      .post({ message: { subject: "x", toRecipients: [{ emailAddress: { address: "a@example.org" } }] } })
      .catch((e: unknown) => e)) as GraphError;
    expect(error.statusCode).toBe(404);
    expect(error.code).toBe("ErrorInvalidUser");
    expect(error.message).toBe("The requested user 'nobody@contoso.com' is invalid.");
    expect(error.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });
});
