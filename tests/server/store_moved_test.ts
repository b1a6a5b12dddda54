/**
 * A dashboard whose SQLite file is removed or replaced while it runs (a clean-up script, a restore
 * that moves a backup into place): SQLite would go on writing to a file no one opens again.
 */
import assert from "node:assert/strict";
import { createApp } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, agentHeaders, FakeClock, P, T0, TOKEN } from "./_helpers.ts";

Deno.test("a dashboard whose database file is moved away is down (503) until the file is back, and loses nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-moved-" });
  const path = `${dir}/status.db`;
  const store = openSqliteStore(path);
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
  const clock = new FakeClock(T0);
  const dashboard = createApp({
    store,
    clock,
    autoExpireLeases: false,
    adminToken: ADMIN_TOKEN,
    devMode: false,
  });
  const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
  const enqueue = (id: string) =>
    dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { ...admin, "Content-Type": "application/json" },
      body: JSON.stringify({ id, name: "uptime", agent_id: "a1" }),
    });
  const wait = () =>
    dashboard.app.request(P.wait("default", 1), {
      headers: agentHeaders({ path: P.wait("default", 1), bodyText: "", now: clock.now() }),
    });
  try {
    assert.equal((await enqueue("c1")).status, 202);
    await Deno.rename(path, `${path}.moved`);

    const health = await dashboard.app.request("/health", { headers: admin });
    assert.equal(health.status, 503);
    const body = await health.json();
    assert.equal(body.status, "unavailable");
    assert.equal(body.store.status, "down");
    assert.match(body.store.error, /status\.db was removed while the store had it open/);

    const refused = await enqueue("c2");
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("Retry-After"), "2");
    assert.equal(
      (await refused.json()).error,
      "the dashboard's database is unavailable; retry later",
    );
    const delivery = await wait();
    assert.equal(delivery.status, 503, await delivery.text());
    assert.equal((await store.getCommand("c1"))?.status, "queued");

    await Deno.rename(`${path}.moved`, path);
    await clock.advanceAsync(250); // the next probe finds the file again
    assert.equal((await dashboard.app.request("/health")).status, 200);
    assert.equal((await enqueue("c2")).status, 202);
    const delivered = await wait();
    assert.equal(delivered.status, 200);
    assert.equal((await delivered.json()).id, "c1");
  } finally {
    await dashboard.close();
    await store.close();
  }
  await using again = openSqliteStore(path);
  assert.equal((await again.getCommand("c1"))?.attempt, 1);
  assert.equal((await again.getCommand("c2"))?.status, "queued");
  await Deno.remove(dir, { recursive: true });
});
