/**
 * A dashboard whose SQLite file another process holds the write lock of (`status agents add --db`
 * in a long transaction, a script, a backup tool writing).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ConfigError } from "../../src/errors.ts";
import { createApp, startServer } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore, StoreUnavailableError } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, FakeClock, P, T0, TOKEN } from "./_helpers.ts";

Deno.test("a write refused for another process's lock is 503 with Retry-After, then goes through", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-locked-" });
  const path = `${dir}/status.db`;
  const store = openSqliteStore(path, { busyTimeoutMs: 50 });
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: T0 });
  const clock = new FakeClock(T0);
  const dashboard = createApp({
    store,
    clock,
    autoExpireLeases: false,
    adminToken: ADMIN_TOKEN,
    devMode: false,
  });
  const other = new DatabaseSync(path);
  const enqueue = (id: string) =>
    dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ id, name: "uptime", agent_id: "a1" }),
    });
  try {
    await store.getCommand("c0"); // after the commit of what the dashboard wrote as it started
    other.exec("PRAGMA busy_timeout = 5000");
    other.exec("BEGIN IMMEDIATE");
    await assert.rejects(
      store.addAgent({ id: "a9", token: null, scopes: [], now: T0 }),
      (error: Error) =>
        error instanceof StoreUnavailableError &&
        /database .*status\.db is locked by another process \(waited 50 ms/.test(error.message),
    );
    const refused = await enqueue("c1");
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("Retry-After"), "2");
    const refusal = await refused.json();
    assert.match(refusal.error, /database is unavailable; retry later/);
    // As every other 429/503/507 that asks to wait: the body says it too.
    assert.deepEqual(refusal.details, { retry_after_secs: 2 });
    assert.equal((await dashboard.app.request("/health")).status, 503);
    other.exec("ROLLBACK");
    await clock.advanceAsync(250); // the next probe finds the store again
    assert.equal((await dashboard.app.request("/health")).status, 200);
    const accepted = await enqueue("c1");
    assert.equal(accepted.status, 202, await accepted.text());
    assert.equal((await store.getCommand("c1"))?.status, "queued");
  } finally {
    other.close();
    await dashboard.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second dashboard on the SQLite file one serves is refused at start, naming why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-two-" });
  try {
    const db = `${dir}/status.db`;
    const options = { db, port: 0, availableDescriptors: "plenty" as const };
    await using _first = await startServer(options);
    const error = await startServer(options).catch((e) => e);
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(
      error.message,
      /cannot open database .*status\.db: another dashboard \(status serve\) is using it/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
