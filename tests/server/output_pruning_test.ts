import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { OutputPruner, PRUNE_INTERVAL_MS } from "../../src/server/output_pruning.ts";

Deno.test("live output older than the retention is pruned once a minute until closed", async () => {
  const clock = new FakeClock(10_000_000);
  const cutoffs: number[] = [];
  const pruner = new OutputPruner({
    store: {
      pruneOutput(before: number) {
        cutoffs.push(before);
        return Promise.resolve(0);
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
