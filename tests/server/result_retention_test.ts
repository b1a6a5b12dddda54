import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { createApp } from "../../src/server/mod.ts";
import { RESULT_PRUNE_INTERVAL_MS, ResultPruner } from "../../src/server/result_retention.ts";
import { openSqliteStore, type PruneCommandsOutcome } from "../../src/store/mod.ts";
import { json, makeDashboard, T0 } from "./_helpers.ts";

const DAY_MS = 86_400_000;

/** A store whose every call is recorded and answered from `answers` (then: nothing left). */
function fakeStore(answers: PruneCommandsOutcome[] = []) {
  const calls: Array<[number, number]> = [];
  return {
    calls,
    pruneCommands(before: number, limit: number) {
      calls.push([before, limit]);
      return Promise.resolve(answers.shift() ?? { commands: 0, runs: 0, more: false });
    },
  };
}

Deno.test("the result pruner prunes at start, batch after batch, then hourly until closed", async () => {
  const clock = new FakeClock(T0);
  const store = fakeStore([
    { commands: 2, runs: 0, more: true },
    { commands: 1, runs: 1, more: false },
  ]);
  const pruner = new ResultPruner({ store, clock, retentionDays: 30, batch: 2 });
  pruner.start();
  assert.deepEqual(await pruner.prune(), { commands: 3, runs: 1 }, "joins the start's pruning");
  assert.deepEqual(store.calls, [[T0 - 30 * DAY_MS, 2], [T0 - 30 * DAY_MS, 2]]);
  await clock.advanceAsync(RESULT_PRUNE_INTERVAL_MS - 1);
  assert.equal(store.calls.length, 2);
  await clock.advanceAsync(1);
  assert.deepEqual(store.calls.at(-1), [T0 + RESULT_PRUNE_INTERVAL_MS - 30 * DAY_MS, 2]);
  await pruner.close();
  await clock.advanceAsync(10 * RESULT_PRUNE_INTERVAL_MS);
  assert.equal(store.calls.length, 3, "no pruning after close");
  assert.equal(clock.pending, 0, "no timer left");
});

Deno.test("closing the result pruner waits for its batch and starts no other", async () => {
  const clock = new FakeClock(T0);
  let release!: () => void;
  let calls = 0;
  const pruner = new ResultPruner({
    store: {
      pruneCommands() {
        calls++;
        return new Promise((resolve) => {
          release = () => resolve({ commands: 1000, runs: 0, more: true });
        });
      },
    },
    clock,
    retentionDays: 1,
  });
  pruner.start();
  let closed = false;
  const closing = pruner.close().then(() => closed = true);
  await Promise.resolve();
  assert.equal(closed, false, "the batch under way is waited for");
  release();
  await closing;
  assert.equal(calls, 1, "more was left, but the pruner was closed");
});

Deno.test("the result pruner refuses a retention or a batch that is not a whole number from 1", () => {
  const clock = new FakeClock(T0);
  const store = fakeStore();
  for (const retentionDays of [0, -1, 1.5, NaN]) {
    assert.throws(() => new ResultPruner({ store, clock, retentionDays }), RangeError);
  }
  assert.throws(() => new ResultPruner({ store, clock, retentionDays: 1, batch: 0 }), RangeError);
});

Deno.test("the dashboard deletes commands final for more than RESULT_RETENTION_DAYS at start and hourly, and stops at close", async () => {
  const clock = new FakeClock(T0);
  await using store = openSqliteStore(":memory:");
  const final = async (id: string, at: number) => {
    await store.enqueue({ id, agentId: "a1", name: "echo", params: {}, fingerprint: id, now: at });
    await store.cancel(id, at);
  };
  await final("before-start", T0 - 2 * DAY_MS);
  // Kept at start, a day old by the first hourly pruning.
  await final("recent", T0 - DAY_MS + RESULT_PRUNE_INTERVAL_MS / 2);
  await store.enqueue({
    id: "open",
    agentId: "a1",
    name: "echo",
    params: {},
    fingerprint: "o",
    now: T0 - 9 * DAY_MS,
  });
  const dashboard = createApp({
    store,
    devMode: true,
    clock,
    resultRetentionDays: 1,
    runSweepMs: 0,
    otherWritersLookMs: RESULT_PRUNE_INTERVAL_MS,
  });
  try {
    assert.deepEqual(await dashboard.pruneResults(), { commands: 1, runs: 0 }, "at start");
    const gone = await dashboard.app.request("/api/v1/commands/before-start");
    assert.equal(gone.status, 404);
    assert.equal((await json(gone)).error !== undefined, true);
    assert.equal((await dashboard.app.request("/api/v1/commands/recent")).status, 200);

    await clock.advanceAsync(RESULT_PRUNE_INTERVAL_MS - 1);
    assert.equal((await store.getCommand("recent"))?.status, "cancelled", "not a day old yet");
    await clock.advanceAsync(1);
    assert.equal(await store.getCommand("recent"), null, "pruned by the hourly timer");
    assert.equal((await store.getCommand("open"))?.status, "queued", "not final: kept");

    await dashboard.close();
    await final("after-close", clock.now() - 2 * DAY_MS);
    await clock.advanceAsync(2 * RESULT_PRUNE_INTERVAL_MS);
    assert.equal(
      (await store.getCommand("after-close"))?.status,
      "cancelled",
      "no timer after close",
    );
  } finally {
    await dashboard.close();
  }
});

Deno.test("the dashboard keeps every command when RESULT_RETENTION_DAYS is 0 (the default)", async () => {
  await using d = await makeDashboard({
    autoExpireLeases: true,
    otherWritersLookMs: RESULT_PRUNE_INTERVAL_MS,
  });
  await d.store.enqueue({
    id: "c1",
    agentId: "a1",
    name: "echo",
    params: {},
    fingerprint: "c1",
    now: T0 - 3650 * DAY_MS,
  });
  await d.store.cancel("c1", T0 - 3650 * DAY_MS);
  await d.clock.advanceAsync(2 * RESULT_PRUNE_INTERVAL_MS);
  assert.deepEqual(await d.dashboard.pruneResults(), { commands: 0, runs: 0 });
  assert.equal((await d.store.getCommand("c1"))?.status, "cancelled");
});

Deno.test("createApp refuses a result retention that is not whole days from 0 to 3650", async () => {
  await using store = openSqliteStore(":memory:");
  for (const resultRetentionDays of [-1, 1.5, 3651]) {
    assert.throws(() => createApp({ store, devMode: true, resultRetentionDays }), {
      name: "RangeError",
      message:
        `resultRetentionDays must be a whole number from 0 to 3650, got ${resultRetentionDays}`,
    });
  }
});
