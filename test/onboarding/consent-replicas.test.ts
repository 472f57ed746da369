import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { consentRoutes } from "../../src/http/consent-routes.js";
import { createConsentState } from "../../src/onboarding/consent.js";
import { describeWithTool } from "../support/external-tools.js";
import { APP_ID, CONTOSO } from "../support/fixtures.js";
import { metricValue, startHarness, type Harness, type Replica } from "../support/harness.js";
import { startTestRedis, type TestRedis } from "../support/redis-server.js";
import { STATE_KEY } from "./fixtures.js";

/**
 * Two replicas on one real redis-server (`store.type: redis`): a consent link is accepted once
 * across them, as an admin's browser may reach either pod behind the load balancer.
 */

describeWithTool("redis-server", "admin consent on several replicas with the Redis store", () => {
  let redis: TestRedis;
  let h: Harness;
  let r2: Replica;

  beforeAll(async () => {
    redis = await startTestRedis();
    h = await startHarness({
      logLevel: "warn",
      routes: [consentRoutes],
      beforeLoad: (dir) => writeFile(join(dir, "state-key"), STATE_KEY, { mode: 0o600 }),
      configure: (c, dir) => {
        c.store = { type: "redis", url: redis.url, keyPrefix: "consent-test:", connectTimeoutSeconds: 5 };
        c.consent = { stateSecretFile: join(dir, "state-key") };
      },
    });
    r2 = await h.replica();
  });

  afterAll(async () => {
    await h?.close();
    await redis?.stop();
  });

  function callbackPath(state: string): string {
    return `/consent/callback?${new URLSearchParams({ admin_consent: "True", tenant: CONTOSO.id, state }).toString()}`;
  }

  it("when a consent callback was accepted by one replica, then the same state on the other replica is refused as already used", async () => {
    const state = createConsentState({ tenant: CONTOSO.id, tenantKey: "contoso", clientId: APP_ID, key: Buffer.from(STATE_KEY), now: Date.now(), ttlSeconds: 600 });
    const first = await h.get(callbackPath(state));
    expect(first.status).toBe(200);
    expect(first.text).toContain("Consent granted");

    const again = await r2.get(callbackPath(state));
    expect(again.status).toBe(400);
    expect(again.text).toContain("This consent link has already been used");
    expect(again.text).not.toContain("Consent granted");
    const metrics = await r2.relay.service.registry.metrics();
    expect(metricValue(metrics, "noreply_relay_consent_callbacks_total", { outcome: "invalid_state" })).toBe(1);
    expect(metricValue(metrics, "noreply_relay_consent_callbacks_total", { outcome: "granted" })).toBe(0);
    expect(h.logs.records()).toContainEqual(expect.objectContaining({ event: "consent_callback", outcome: "invalid_state", reason: "replayed", replica: 2 }));
  });

  it("when two replicas get the same state at the same moment, then exactly one grants it", async () => {
    const state = createConsentState({ tenant: CONTOSO.id, tenantKey: "contoso", clientId: APP_ID, key: Buffer.from(STATE_KEY), now: Date.now(), ttlSeconds: 600 });
    const answers = await Promise.all([h.get(callbackPath(state)), r2.get(callbackPath(state)), h.get(callbackPath(state)), r2.get(callbackPath(state))]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 400, 400, 400]);
  });
});
