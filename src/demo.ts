import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { stringify as toYaml } from "yaml";
import { loadConfigFile } from "./config/load-config.js";
import { createTlsMaterial } from "./emulator/certificates.js";
import { startEmulator } from "./emulator/start-emulator.js";
import type { ScenarioInput } from "./emulator/scenario.js";
import { listenSettings, startServer } from "./server.js";
import { apiKeyDigest } from "./tenants/caller-directory.js";

/*
 * `npm run demo`: the Microsoft 365 emulator and the service wired to it, no account needed.
 * Everything it writes (config, CA, the app's secret) goes to a fresh temp directory that is
 * removed on Ctrl-C.
 *
 * `npm run demo -- --keep`: the same, but the files go to .demo/ in the working directory and
 * stay, and the emulator listens on a fixed port (8443, or EMULATOR_PORT), so the config stays
 * valid across runs: a second instance of the service, or a build run with `npm start`, can use
 * .demo/config-second.yaml (its SMTP door on a free port) against the running emulator.
 *
 * The SMTP door listens too (SMTP_PORT, default 2525; 0 when PORT is 0), with STARTTLS and a
 * certificate made for this run; the banner prints a `node -e` with nodemailer that sends
 * through it.
 */

const APP_ID = "de30de30-0000-4000-8000-000000000001";
const CONTOSO_ID = "c0a70500-0000-4000-8000-000000000001";
const FABRIKAM_ID = "fab41c00-0000-4000-8000-000000000002";

function scenario(secret: string): ScenarioInput {
  return {
    apps: [{ clientId: APP_ID, displayName: "noreply-relay (demo)", homeTenant: CONTOSO_ID, secrets: [{ value: secret }] }],
    tenants: [
      {
        id: CONTOSO_ID,
        displayName: "Contoso",
        domains: ["contoso.com"],
        mailboxes: [{ address: "noreply@contoso.com", displayName: "Contoso (no reply)" }],
        consents: [{ appId: APP_ID, roles: ["Mail.Send"] }],
      },
      {
        id: FABRIKAM_ID,
        displayName: "Fabrikam",
        domains: ["fabrikam.com"],
        mailboxes: [{ address: "noreply@fabrikam.com" }, { address: "alerts@fabrikam.com" }],
        consents: [{ appId: APP_ID, roles: ["Mail.Send"] }],
        // Fabrikam's Exchange admin scoped the app to alerts@ only: sends from noreply@ are refused.
        accessPolicies: [{ appId: APP_ID, allow: ["alerts@fabrikam.com"] }],
      },
    ],
  };
}

function curlSend(serviceUrl: string, apiKey: string, tenant: string): string {
  const body = JSON.stringify({ tenant, to: ["someone@example.com"], subject: `Hello from noreply-relay (${tenant})`, text: "It works." });
  return [
    `  curl -sS -w '\\nHTTP %{http_code}\\n' -X POST ${serviceUrl}/send \\`,
    `    -H 'Authorization: Bearer ${apiKey}' \\`,
    `    -H 'Content-Type: application/json' \\`,
    `    -d '${body}'`,
  ].join("\n");
}

/**
 * A one-line SMTP client (nodemailer, a dev dependency: run it in the repo) that logs in with
 * the tenant key and the API key over STARTTLS, trusting the demo's SMTP CA, and prints the reply.
 */
function nodemailerSend(port: number, apiKey: string, caFile: string): string {
  const transport = `{host:'127.0.0.1',port:${port},requireTLS:true,auth:{user:'contoso',pass:'${apiKey}'},tls:{ca:require('fs').readFileSync('${caFile}')}}`;
  const mail = "{from:'noreply@contoso.com',to:'someone@example.com',subject:'Hello over SMTP',text:'It works.'}";
  return [
    `  node -e "require('nodemailer').createTransport(${transport})`,
    `    .sendMail(${mail})`,
    "    .then((i) => console.log(i.response), (e) => { console.error(e.response ?? e.message); process.exitCode = 1; })\"",
  ].join(" \\\n");
}

async function main(): Promise<void> {
  const { port, logLevel } = listenSettings(process.env);
  const keep = process.argv.slice(2).includes("--keep");
  // Only this machine can reach the demo unless HOST says otherwise.
  const host = process.env.HOST ?? "127.0.0.1";
  const emulatorPort = Number(process.env.EMULATOR_PORT ?? (keep ? "8443" : "0"));
  const smtpPort = Number(process.env.SMTP_PORT ?? (port === 0 ? "0" : "2525"));

  const secret = randomBytes(24).toString("base64url");
  const apiKey = `demo-${randomBytes(18).toString("base64url")}`;
  const emulator = await startEmulator({ port: emulatorPort, scenario: scenario(secret) });
  const dir = keep ? resolve(".demo") : await mkdtemp(join(tmpdir(), "noreply-relay-demo-"));
  if (keep) await mkdir(dir, { recursive: true, mode: 0o700 });
  const configPath = join(dir, "config.yaml");
  await writeFile(join(dir, "ca.pem"), emulator.caPem);
  await writeFile(join(dir, "client-secret"), secret, { mode: 0o600 });
  // The SMTP door's certificate (localhost, 127.0.0.1, ::1), signed by a CA made for this run.
  const smtpTls = await createTlsMaterial();
  await writeFile(join(dir, "smtp-ca.pem"), smtpTls.caPem);
  await writeFile(join(dir, "smtp-cert.pem"), smtpTls.certPem);
  await writeFile(join(dir, "smtp-key.pem"), smtpTls.keyPem, { mode: 0o600 });
  const expiresAt = new Date(Date.now() + 365 * 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
  const configFor = (smtpListenPort: number) => ({
    cloud: { authorityHost: emulator.url, graphBaseUrl: emulator.url },
    tls: { caFile: join(dir, "ca.pem") },
    app: { clientId: APP_ID, credential: { type: "secret", secretFile: join(dir, "client-secret"), expiresAt } },
    tenants: {
      contoso: { tenantId: CONTOSO_ID, sender: "noreply@contoso.com", displayName: "Contoso" },
      fabrikam: { tenantId: FABRIKAM_ID, sender: "noreply@fabrikam.com", displayName: "Fabrikam" },
    },
    callers: { demo: { keySha256: apiKeyDigest(apiKey), tenants: ["*"], admin: true } },
    smtp: { enabled: true, port: smtpListenPort, tls: { certFile: join(dir, "smtp-cert.pem"), keyFile: join(dir, "smtp-key.pem") } },
  });
  await writeFile(configPath, toYaml(configFor(smtpPort)));
  // With --keep: the same for a second instance beside the demo (a build of your own). Its SMTP
  // door takes a free port (it logs which): the demo's is taken, and the config file is the only
  // place the port is set.
  const secondConfigPath = join(dir, "config-second.yaml");
  if (keep) await writeFile(secondConfigPath, toYaml(configFor(0)));
  const config = loadConfigFile(configPath);
  const logger = pino({ level: logLevel, base: { service: "noreply-relay" } });

  let server;
  try {
    server = await startServer({ config, logger, port, host });
  } catch (err) {
    await emulator.close();
    if (!keep) await rm(dir, { recursive: true, force: true });
    const busy = (err as NodeJS.ErrnoException).code === "EADDRINUSE";
    console.error(
      busy
        ? `Port ${port} or ${smtpPort} is in use: run with PORT=8081 SMTP_PORT=2526 npm run demo (or stop what uses it).`
        : `The demo could not start: ${(err as Error).message}`,
    );
    process.exit(1);
  }
  const url = host === "0.0.0.0" || host === "::" ? `http://127.0.0.1:${new URL(server.url).port}` : server.url;
  const hasDocs = true; // the service registers GET /docs (src/http/optional-routes.ts)
  const smtpBound = server.smtp?.submission ?? smtpPort;

  const out = [
    "",
    "  noreply-relay demo: the service and a local Microsoft 365 emulator (Entra ID + Graph)",
    "  ───────────────────────────────────────────────────────────────────────────────────",
    `  Service           ${url}   (plain HTTP on this machine)`,
    `  SMTP              127.0.0.1:${smtpBound}   (STARTTLS, its own CA: ${join(dir, "smtp-ca.pem")})`,
    `  M365 emulator     ${emulator.url}   (HTTPS, its own CA: ${join(dir, "ca.pem")})`,
    "",
    `  Demo API key      ${apiKey}`,
    "  Tenants           contoso   sends from noreply@contoso.com",
    "                    fabrikam  sends from noreply@fabrikam.com, but Fabrikam's access policy",
    "                              allows the app only alerts@fabrikam.com, so Graph refuses it",
    "",
    "  Send a message (202 Accepted):",
    curlSend(url, apiKey, "contoso"),
    "",
    "  See a refusal (403 policy_denied):",
    curlSend(url, apiKey, "fabrikam"),
    "",
    "  Send over SMTP (username = tenant key, password = API key; prints the 250 reply):",
    nodemailerSend(smtpBound, apiKey, join(dir, "smtp-ca.pem")),
    "",
    "  Messages the emulator received:",
    `    in a browser   ${emulator.url}/_emulator/   (accept the self-signed certificate)`,
    `    as JSON        curl -sS --cacert ${join(dir, "ca.pem")} ${emulator.url}/_emulator/messages`,
    "",
    `  Metrics           ${url}/metrics`,
    ...(hasDocs ? [`  API docs          ${url}/docs   (try POST /send with the key above)`] : []),
    `  Config            ${configPath}`,
    ...(keep
      ? [
          "",
          "  Another instance on the same emulator (a build of your own, for example):",
          `    npm run build && PORT=8081 NOREPLY_RELAY_CONFIG=${secondConfigPath} node dist/server.js`,
          "",
          "  Request log lines (JSON) follow below. Ctrl-C stops the demo; .demo/ stays for the next --keep run.",
        ]
      : ["", "  Request log lines (JSON) follow below. Ctrl-C stops everything and removes the temp files."]),
    "",
  ];
  console.log(out.join("\n"));

  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log("\n  Stopping the demo…");
    server
      .stop(5_000)
      .then(() => emulator.close())
      .then(() => (keep ? undefined : rm(dir, { recursive: true, force: true })))
      .then(
        () => process.exit(0),
        (err: unknown) => {
          console.error(err);
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err: unknown) => {
  console.error("The demo could not start:", err instanceof Error ? err.message : err);
  process.exit(1);
});
