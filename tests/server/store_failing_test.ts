/**
 * `/health` tells a store that is full, or that failed (a disk I/O error, a damaged or read-only
 * file), until a write commits a change again (or, when only a read failed, a read succeeds): not
 * cleared by a request that changed nothing, a read while writes fail or the health probe itself,
 * so that a monitor watching it does not see it flap.
 */
import assert from "node:assert/strict";
import type { EnqueueOutcome, NewCommand } from "../../src/store/mod.ts";
import { StoreError, StoreFullError, StoreUnavailableError } from "../../src/store/mod.ts";
import { FakeClock } from "../../src/clock.ts";
import { createApp } from "../../src/server/mod.ts";
import { PRUNE_INTERVAL_MS } from "../../src/server/output_pruning.ts";
import { RESULT_PRUNE_INTERVAL_MS } from "../../src/server/result_retention.ts";
import { openSqliteStore } from "../../src/store/sqlite.ts";
import { captureLogs } from "../agent/_helpers.ts";
import { until } from "../_until.ts";
import { json, makeDashboard, P, T0, type TestDashboard } from "./_helpers.ts";

const FAILED =
  "the database /srv/secret/status.db failed: a disk I/O error (SQLite: disk I/O error)";
const TIMED_OUT = "database postgres://db/status did not answer within 15 s (prune output); " +
  "the outcome is unknown";
const FULL = "the database /srv/secret/status.db is full: no space is left on its disk";

/** Makes the store's enqueue of the ids in `failing` fail with what `failure` makes. */
function failEnqueues(d: TestDashboard, failing: Set<string>, failure: () => Error): void {
  const enqueue = d.store.enqueue.bind(d.store);
  d.store.enqueue = (command: NewCommand, ...rest): Promise<EnqueueOutcome> =>
    failing.has(command.id) ? Promise.reject(failure()) : enqueue(command, ...rest);
}

function enqueue(d: TestDashboard, id: string): Promise<Response> {
  return d.admin("POST", P.enqueue, { id, agent_id: "a1", name: "echo hi" });
}

async function health(
  d: TestDashboard,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await d.dashboard.app.request("/health");
  return { status: response.status, body: await json(response) };
}

Deno.test("a full store stays full in /health until a write commits a change", async (t) => {
  await using d = await makeDashboard();
  failEnqueues(d, new Set(["c2"]), () => new StoreFullError(FULL));
  assert.equal((await enqueue(d, "c1")).status, 202);
  assert.equal((await enqueue(d, "c2")).status, 507);
  assert.equal((await health(d)).body.status, "store_full");

  await t.step(
    "a POST that succeeds without writing (a duplicate enqueue) clears nothing",
    async () => {
      const duplicate = await enqueue(d, "c1");
      assert.equal(duplicate.status, 202);
      assert.equal((await json(duplicate)).duplicate, true);
      const { status, body } = await health(d);
      assert.equal(status, 503);
      assert.equal(body.status, "store_full");
    },
  );

  await t.step("a write that committed a change clears it", async () => {
    assert.equal((await enqueue(d, "c3")).status, 202);
    const { status, body } = await health(d);
    assert.equal(status, 200);
    assert.deepEqual(body.store, { status: "ok" });
  });
});

Deno.test("a store that failed answers 503 and /health says so until a write succeeds", async (t) => {
  await using d = await makeDashboard();
  const failing = new Set(["c2"]);
  failEnqueues(d, failing, () => new StoreError(FAILED));
  assert.equal((await enqueue(d, "c1")).status, 202);

  await t.step("the failed call: 503 with Retry-After, without the file's name", async () => {
    const refused = await enqueue(d, "c2");
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("Retry-After"), "30");
    const body = await json(refused);
    assert.match(String(body.error), /the dashboard's store failed .*retry in 30 s/);
    assert.doesNotMatch(JSON.stringify(body), /srv/);
  });

  await t.step("/health: 503 store_failing, the error only to the admin token", async () => {
    const { status, body } = await health(d);
    assert.equal(status, 503);
    assert.equal(body.status, "store_failing");
    const store = body.store as Record<string, unknown>;
    assert.equal(store.status, "failing");
    assert.equal(typeof store.since, "string");
    assert.equal(store.error, undefined);
    const admin = await json(await d.admin("GET", "/health"));
    assert.equal((admin.store as Record<string, unknown>).error, FAILED);
  });

  await t.step("reads, duplicates and the health probe leave it failing", async () => {
    assert.equal((await d.admin("GET", "/api/v1/commands/c1")).status, 200);
    assert.equal((await json(await enqueue(d, "c1"))).duplicate, true);
    for (let i = 0; i < 3; i++) assert.equal((await health(d)).status, 503);
  });

  await t.step("another failure of the store is told with its own message", async () => {
    failing.add("c3");
    assert.equal((await enqueue(d, "c3")).status, 503);
    assert.equal((await health(d)).body.status, "store_failing");
  });

  await t.step("a write that committed a change ends it", async () => {
    failing.clear();
    assert.equal((await enqueue(d, "c4")).status, 202);
    const { status, body } = await health(d);
    assert.equal(status, 200);
    assert.equal(body.status, "ok");
  });
});

Deno.test("a store that only a read found failing works again at a read that succeeds", async (t) => {
  await using d = await makeDashboard();
  const damaged = new Set(["c1"]);
  const getCommand = d.store.getCommand.bind(d.store);
  d.store.getCommand = (id: string) =>
    damaged.has(id) ? Promise.reject(new StoreError(FAILED)) : getCommand(id);
  const failing = new Set<string>();
  failEnqueues(d, failing, () => new StoreError(FAILED));
  for (const id of ["c1", "c2"]) assert.equal((await enqueue(d, id)).status, 202);

  await t.step("the failed read: 503, and /health failing however often it is asked", async () => {
    assert.equal((await d.admin("GET", "/api/v1/commands/c1")).status, 503);
    for (let i = 0; i < 3; i++) assert.equal((await health(d)).body.status, "store_failing");
  });

  await t.step("another read that succeeds ends it", async () => {
    assert.equal((await d.admin("GET", "/api/v1/commands/c2")).status, 200);
    assert.equal((await health(d)).status, 200);
  });

  await t.step("once a write failed too, a read no longer ends it; a write does", async () => {
    assert.equal((await d.admin("GET", "/api/v1/commands/c1")).status, 503);
    failing.add("c3");
    assert.equal((await enqueue(d, "c3")).status, 503);
    assert.equal((await d.admin("GET", "/api/v1/commands/c2")).status, 200);
    assert.equal((await health(d)).body.status, "store_failing");
    assert.equal((await enqueue(d, "c4")).status, 202);
    assert.equal((await health(d)).status, 200);
  });
});

Deno.test("an error that is not the store's is a 500 and leaves /health ok", async () => {
  await using d = await makeDashboard();
  failEnqueues(d, new Set(["c1"]), () => new TypeError("x is undefined"));
  const failed = await enqueue(d, "c1");
  assert.equal(failed.status, 500);
  assert.match(String((await json(failed)).error), /internal error/);
  assert.equal((await health(d)).status, 200);
});

Deno.test("a pruning that fails tells /health, as a failed write does, until a write succeeds", async (t) => {
  using logs = captureLogs();
  await using d = await makeDashboard({ autoExpireLeases: true });
  let failing = true;
  let failure: () => Error = () => new StoreError(FAILED);
  const pruneOutput = d.store.pruneOutput.bind(d.store);
  d.store.pruneOutput = (before: number, limit: number) =>
    failing ? Promise.reject(failure()) : pruneOutput(before, limit);
  assert.equal((await enqueue(d, "c1")).status, 202);
  assert.equal((await health(d)).status, 200);

  await t.step("the live output's pruning fails: /health 503 store_failing", async () => {
    await d.clock.advanceAsync(PRUNE_INTERVAL_MS);
    const { status, body } = await health(d);
    assert.equal(status, 503);
    assert.equal(body.status, "store_failing");
    assert.ok(logs.has(/^could not prune live output: /), logs.messages().join("\n"));
  });

  await t.step("a pruning that deletes nothing, or the health probe, does not end it", async () => {
    failing = false;
    await d.clock.advanceAsync(PRUNE_INTERVAL_MS);
    for (let i = 0; i < 3; i++) assert.equal((await health(d)).body.status, "store_failing");
  });

  await t.step("a write that committed a change ends it", async () => {
    assert.equal((await enqueue(d, "c2")).status, 202);
    assert.equal((await health(d)).status, 200);
  });

  await t.step(
    "a pruning the store could not finish now (a timeout) leaves /health ok",
    async () => {
      failure = () => new StoreUnavailableError(TIMED_OUT);
      failing = true;
      await d.clock.advanceAsync(PRUNE_INTERVAL_MS);
      assert.ok(logs.has(/^could not prune live output: /), logs.messages().join("\n"));
      for (let i = 0; i < 3; i++) assert.equal((await health(d)).status, 200);
    },
  );
});

Deno.test("a result retention that fails tells /health, from the pruning at start", async () => {
  using logs = captureLogs();
  const clock = new FakeClock(T0);
  await using store = openSqliteStore(":memory:");
  store.pruneCommands = () => Promise.reject(new StoreError(FAILED));
  const dashboard = createApp({
    store,
    devMode: true,
    clock,
    resultRetentionDays: 1,
    runSweepMs: 0,
    otherWritersLookMs: RESULT_PRUNE_INTERVAL_MS,
  });
  try {
    await until(() => logs.has(/^could not delete old results: /), "the pruning at start failed");
    const response = await dashboard.app.request("/health");
    assert.equal(response.status, 503);
    assert.equal((await json(response)).status, "store_failing");
  } finally {
    await dashboard.close();
  }
});

Deno.test("a sweep of the runs that fails tells /health, from the one at start, until one reads again", async () => {
  using logs = captureLogs();
  const clock = new FakeClock(T0);
  await using store = openSqliteStore(":memory:");
  let failing = true;
  const listOpenRunIds = store.listOpenRunIds.bind(store);
  store.listOpenRunIds = (limit: number) =>
    failing ? Promise.reject(new StoreError(FAILED)) : listOpenRunIds(limit);
  // No lease timer: its reads would end a failing store that only a read found.
  const dashboard = createApp({
    store,
    devMode: true,
    clock,
    runSweepMs: 5000,
    autoExpireLeases: false,
  });
  const health = async () => {
    const response = await dashboard.app.request("/health");
    return { status: response.status, body: await json(response) };
  };
  try {
    await until(() => logs.has(/^could not resume the open runs: /), "the sweep at start failed");
    assert.equal((await health()).body.status, "store_failing");
    await clock.advanceAsync(5000);
    await until(() => logs.has(/^could not step the open runs: /), "the next sweep failed too");
    assert.equal((await health()).body.status, "store_failing");
    failing = false;
    await clock.advanceAsync(5000);
    await until(async () => (await health()).status === 200, "the next sweep's read ends it");
  } finally {
    await dashboard.close();
  }
});
