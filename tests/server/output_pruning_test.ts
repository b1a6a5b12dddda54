import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { OutputPruner, PRUNE_INTERVAL_MS } from "../../src/server/output_pruning.ts";
import { openSqliteStore } from "../../src/store/mod.ts";

Deno.test("live output older than the retention is pruned once a minute until closed", async () => {
  const clock = new FakeClock(10_000_000);
  const cutoffs: number[] = [];
  const pruner = new OutputPruner({
    store: {
      pruneOutput(before: number) {
        cutoffs.push(before);
        return Promise.resolve({ chunks: 0, more: false });
      },
    },
    clock,
    retentionMs: 600_000,
  });
  pruner.start();
  await clock.advanceAsync(PRUNE_INTERVAL_MS - 1);
  assert.deepEqual(cutoffs, []);
  await clock.advanceAsync(1);
  assert.deepEqual(cutoffs, [10_060_000 - 600_000]);
  await clock.advanceAsync(PRUNE_INTERVAL_MS);
  assert.equal(cutoffs.length, 2);
  pruner.close();
  await clock.advanceAsync(10 * PRUNE_INTERVAL_MS);
  assert.equal(cutoffs.length, 2, "no pruning after close");
  assert.equal(await pruner.prune(), 0, "pruning on demand still works");
  assert.equal(cutoffs.at(-1), 10_720_000 - 600_000);
});

Deno.test("a backlog of live output larger than a batch is pruned whole, batch by batch", async (t) => {
  const clock = new FakeClock(10_000_000);
  await using store = openSqliteStore(":memory:");
  const keep = { headBytes: 1_000_000, tailBytes: 1_000_000 };
  // 3 final commands of 5 chunks each, and an open one whose chunks stay.
  for (const id of ["c1", "c2", "c3", "open"]) {
    await store.enqueue({ id, agentId: "a1", name: "echo", params: {}, fingerprint: id, now: 0 });
    for (let i = 0; i < 5; i++) {
      const data = new Uint8Array([i]);
      await store.appendOutput({
        commandId: id,
        attempt: 1,
        stream: "stdout",
        offset: i,
        data,
        now: 0,
        keep,
      });
    }
  }
  for (const id of ["c1", "c2", "c3"]) await store.cancel(id, 1000);
  const calls: number[] = [];
  const pruner = new OutputPruner({
    store: {
      async pruneOutput(before, limit) {
        const outcome = await store.pruneOutput(before, limit);
        calls.push(outcome.chunks);
        return outcome;
      },
    },
    clock,
    retentionMs: 600_000,
    batch: 4,
  });

  await t.step("one pruning deletes all of it, at most a batch a call", async () => {
    assert.equal(await pruner.prune(), 15);
    assert.deepEqual(calls, [4, 4, 4, 3]);
    for (const id of ["c1", "c2", "c3"]) assert.deepEqual(await store.listOutput(id), [], id);
    assert.equal((await store.listOutput("open")).length, 5, "not final: kept");
  });

  await t.step("a pruning asked for while one is under way joins it", async () => {
    calls.length = 0;
    const [first, second] = await Promise.all([pruner.prune(), pruner.prune()]);
    assert.deepEqual([first, second, calls], [0, 0, [0]]);
  });

  await t.step("a bad batch is refused", () => {
    for (const batch of [0, 1.5, -1]) {
      assert.throws(
        () => new OutputPruner({ store, clock, retentionMs: 1, batch }),
        new RangeError(`batch must be a whole number from 1, got ${batch}`),
      );
    }
  });
});
