/**
 * `GET /health` needs no token, so what it says of a store that failed is only its state: the
 * store's own error names the database's file or host, which only the admin token (or dev mode)
 * may read.
 */
import assert from "node:assert/strict";
import { checkHealth } from "../../src/operator/mod.ts";
import { StoreFullError, StoreUnavailableError } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, json, makeDashboard, type TestDashboard } from "./_helpers.ts";

const DOWN =
  "database postgres://db.internal.example:5432/status is unavailable (ping): ECONNREFUSED";
const FULL = "the database /srv/secret/status.db is full: no space is left on its disk";

function health(d: TestDashboard, token?: string, remote = "192.0.2.7"): Promise<Response> {
  return Promise.resolve(d.dashboard.app.fetch(
    new Request("http://localhost/health", {
      headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
    }),
    { remoteAddr: { transport: "tcp", hostname: remote, port: 50_000 } },
  ));
}

async function storeOf(response: Response): Promise<Record<string, unknown>> {
  assert.equal(response.status, 503);
  return (await json(response)).store as Record<string, unknown>;
}

Deno.test("/health names what failed in the store only to the admin token", async (t) => {
  await t.step("a store that went away: its state and since for anyone", async () => {
    await using d = await makeDashboard();
    d.dashboard.availability.observe(new StoreUnavailableError(DOWN));
    const store = await storeOf(await health(d));
    assert.equal(store.status, "down");
    assert.equal(typeof store.since, "string");
    assert.equal(store.error, undefined);
    assert.doesNotMatch(JSON.stringify(store), /internal\.example|postgres/);
    assert.equal((await storeOf(await health(d, ADMIN_TOKEN))).error, DOWN);
  });

  await t.step("a full store: the same", async () => {
    await using d = await makeDashboard();
    d.store.enqueue = () => Promise.reject(new StoreFullError(FULL));
    const refused = await d.admin("POST", "/api/v1/agent/commands/enqueue", {
      agent_id: "a1",
      name: "echo hi",
    });
    assert.equal(refused.status, 507);
    assert.doesNotMatch(JSON.stringify(await json(refused)), /srv/);
    const store = await storeOf(await health(d));
    assert.equal(store.status, "full");
    assert.equal(typeof store.since, "string");
    assert.equal(store.error, undefined);
    assert.equal((await storeOf(await health(d, ADMIN_TOKEN))).error, FULL);
  });

  await t.step("a wrong token reads nothing more, and counts as a guess of the token", async () => {
    await using d = await makeDashboard();
    d.dashboard.availability.observe(new StoreUnavailableError(DOWN));
    for (let i = 0; i < 60; i++) {
      assert.equal((await storeOf(await health(d, `wrong-${i}`))).error, undefined);
    }
    // Out of guesses: not even the right token is compared (else /health would tell it apart).
    assert.equal((await storeOf(await health(d, ADMIN_TOKEN))).error, undefined);
    assert.equal((await storeOf(await health(d, ADMIN_TOKEN, "192.0.2.8"))).error, DOWN);
  });

  await t.step("status health, given the admin token, says what failed", async () => {
    await using d = await makeDashboard();
    d.dashboard.availability.observe(new StoreUnavailableError(DOWN));
    const report = await checkHealth({
      dashboardUrl: "http://localhost",
      adminToken: ADMIN_TOKEN,
      fetch: (input, init) => Promise.resolve(d.dashboard.app.fetch(new Request(input, init))),
    });
    assert.equal(report.ok, false);
    assert.match(report.checks[0].message, /its store is down since \S+: database postgres:/);
  });

  await t.step("dev mode: as open as its API", async () => {
    await using d = await makeDashboard({ devMode: true });
    d.dashboard.availability.observe(new StoreUnavailableError(DOWN));
    assert.equal((await storeOf(await health(d))).error, DOWN);
  });
});
