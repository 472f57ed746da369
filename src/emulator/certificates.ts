import { createHash, generateKeyPairSync, randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
// Must precede @peculiar/x509: it installs the Reflect metadata API tsyringe requires.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

type CryptoKeyPair = webcrypto.CryptoKeyPair;

// @peculiar/x509 needs a WebCrypto implementation; Node's is native and fast (no node-forge).
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ecdsa = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const rsa = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;

/** PEM material for the emulator's HTTPS listener. */
export interface TlsMaterial {
  /** The CA to trust (hand this to clients). */
  caPem: string;
  /** Server certificate followed by nothing else; the CA is not part of the chain sent. */
  certPem: string;
  keyPem: string;
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END ${label}-----\n`;
}

function serial(): string {
  // Positive, non-zero 16-byte serial as hex.
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString("hex");
}

/**
 * Generates a throw-away CA and a server certificate signed by it, valid for
 * localhost, 127.0.0.1 and ::1 (plus `extraHosts`). ECDSA P-256 keeps start-up in the
 * single-digit milliseconds, which matters because every test file starts its own emulator.
 */
export async function createTlsMaterial(extraHosts: readonly string[] = []): Promise<TlsMaterial> {
  const subtle = webcrypto.subtle;
  const pair = (): Promise<CryptoKeyPair> => subtle.generateKey(ecdsa, true, ["sign", "verify"]);
  const [caKeys, serverKeys] = await Promise.all([pair(), pair()]);
  const notBefore = new Date(Date.now() - 60 * 60 * 1000);
  const notAfter = new Date(Date.now() + 7 * 24 * 60 * 60 * 1000);

  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=noreply-relay M365 emulator CA, O=noreply-relay",
    notBefore,
    notAfter,
    keys: caKeys,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const names = new Map<string, x509.GeneralNameType>([
    ["localhost", "dns"],
    ["127.0.0.1", "ip"],
    ["::1", "ip"],
  ]);
  for (const h of extraHosts) {
    if (h === "" || h === "0.0.0.0" || h === "::") continue;
    names.set(h, isIP(h) ? "ip" : "dns");
  }

  const server = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: "CN=localhost",
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingKey: caKeys.privateKey,
    publicKey: serverKeys.publicKey,
    signingAlgorithm: ecdsa,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([...names].map(([value, type]) => ({ type, value }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });

  return {
    caPem: ca.toString("pem") + "\n",
    certPem: server.toString("pem") + "\n",
    keyPem: toPem(await subtle.exportKey("pkcs8", serverKeys.privateKey), "PRIVATE KEY"),
  };
}

/** A client certificate for an app registration, as tests and demos need it. */
export interface ClientCertificate {
  /** Public certificate (register this in the scenario under `apps[].certificates[].pem`). */
  certPem: string;
  /** PKCS#8 private key. */
  keyPem: string;
  /** Certificate followed by key: what `ClientCertificateCredential({ certificate })` expects. */
  pem: string;
  /** SHA-1 thumbprint, uppercase hex (what the Entra portal shows). */
  thumbprintSha1: string;
  /** Base64url SHA-1 / SHA-256 thumbprints, as they appear in `x5t` / `x5t#S256` headers. */
  x5t: string;
  x5tS256: string;
}

/**
 * Creates a self-signed RSA certificate for certificate-credential tests.
 * RSA because MSAL signs client assertions with RS256/PS256 only.
 */
export async function createClientCertificate(
  options: { subject?: string; validDays?: number; notBefore?: Date } = {},
): Promise<ClientCertificate> {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const subtle = webcrypto.subtle;
  const keys: CryptoKeyPair = {
    publicKey: await subtle.importKey("spki", publicKey.export({ type: "spki", format: "der" }), rsa, true, ["verify"]),
    privateKey: await subtle.importKey("pkcs8", privateKey.export({ type: "pkcs8", format: "der" }), rsa, true, ["sign"]),
  };
  const notBefore = options.notBefore ?? new Date(Date.now() - 60 * 60 * 1000);
  const notAfter = new Date(notBefore.getTime() + (options.validDays ?? 30) * 24 * 60 * 60 * 1000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: options.subject ?? "CN=noreply-relay test client",
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: rsa,
  });
  const certPem = cert.toString("pem") + "\n";
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const t = certificateThumbprints(certPem);
  return { certPem, keyPem, pem: certPem + keyPem, thumbprintSha1: t.sha1Hex, x5t: t.x5t, x5tS256: t.x5tS256 };
}

/** Thumbprints of a PEM certificate in the encodings Entra uses. */
export function certificateThumbprints(pem: string): { x5t: string; x5tS256: string; sha1Hex: string } {
  const der = new X509Certificate(pem).raw;
  const sha1 = createHash("sha1").update(der).digest();
  return {
    x5t: sha1.toString("base64url"),
    x5tS256: createHash("sha256").update(der).digest("base64url"),
    sha1Hex: sha1.toString("hex").toUpperCase(),
  };
}
