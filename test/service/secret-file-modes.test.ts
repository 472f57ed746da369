import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnServer } from "../support/child-server.js";
import { APP_ID } from "../support/fixtures.js";

/* The server process (src/server.ts main) warns at start-up about secret files others can read. */

describe.skipIf(process.platform === "win32")("secret file modes at start-up (src/server.ts)", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "noreply-relay-modes-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("when the client secret file is world-readable and the consent key is not, then the process starts and logs one warning, for the secret file", async () => {
    const secret = `secret-${Date.now()}`;
    const secretFile = join(dir, "client-secret");
    const stateFile = join(dir, "state-key");
    await writeFile(secretFile, secret);
    await chmod(secretFile, 0o644);
    await writeFile(stateFile, "consent-state-key-for-tests-0123456789abcdef");
    await chmod(stateFile, 0o600);
    const configPath = join(dir, "config.json");
    await writeFile(
      configPath,
      JSON.stringify({
        app: { clientId: APP_ID, credential: { type: "secret", secretFile } },
        consent: { stateSecretFile: stateFile },
        tenants: { contoso: { tenantId: "contoso.com", sender: "noreply@contoso.com" } },
        callers: {},
      }),
    );

    const server = spawnServer({ NOREPLY_RELAY_CONFIG: configPath });
    try {
      await server.listening();
      const lines = server.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
      const warnings = lines.filter((l) => l.event === "secret_file_permissions");
      expect(warnings).toEqual([
        expect.objectContaining({ level: 40, key: "app.credential.secretFile", file: secretFile, mode: "0644", openTo: expect.arrayContaining(["others"]) }),
      ]);
      expect(server.stdout.join("\n")).not.toContain(secret);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });
});
