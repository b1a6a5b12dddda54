import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { LastSeen } from "../../src/server/last_seen.ts";
import { StoreHealth } from "../../src/server/store_health.ts";

function recorder() {
  const writes: Array<Map<string, number>> = [];
  return {
    writes,
    store: {
      touchAgents(batch: ReadonlyMap<string, number>) {
        writes.push(new Map(batch));
        return Promise.resolve();
      },
    },
  };
}

Deno.test("last-seen times are written in one batch per interval, not per request", async () => {
  const clock = new FakeClock(1_000_000);
  const { writes, store } = recorder();
  const seen = new LastSeen({
    store,
    clock,
    storeHealth: new StoreHealth(clock),
    flushMs: 60_000,
    max: 100,
  });
  seen.seen("a");
  clock.advance(10);
  seen.seen("b");
  seen.seen("a");
  assert.equal(writes.length, 0, "nothing is written before the interval");
  assert.equal(seen.get("a"), 1_000_010);
  await clock.advanceAsync(60_000);
  assert.deepEqual(writes, [new Map([["a", 1_000_010], ["b", 1_000_010]])]);
  await clock.advanceAsync(120_000);
  assert.equal(writes.length, 1, "no timer while nothing is unwritten");
  seen.stop();
  seen.seen("c");
  await clock.advanceAsync(120_000);
  assert.equal(writes.length, 1, "no timer after stop");
  await seen.flush();
  assert.deepEqual(writes[1], new Map([["c", 1_180_010]]));
});

Deno.test("last-seen keeps at most max agents in memory and writes when that many wait", async () => {
  const clock = new FakeClock(0);
  const { writes, store } = recorder();
  const seen = new LastSeen({
    store,
    clock,
    storeHealth: new StoreHealth(clock),
    flushMs: 1000,
    max: 2,
  });
  seen.seen("a");
  seen.seen("b");
  await Promise.resolve();
  assert.equal(writes.length, 1, "a full batch is written at once");
  seen.seen("c");
  assert.equal(seen.size, 2);
  assert.equal(seen.get("a"), null, "the least recently seen is forgotten");
  assert.equal(seen.get("c"), 0);
  seen.noteWaitHash("c", "v1");
  assert.equal(seen.lastWaitHash("c"), "v1");
  assert.equal(seen.lastWaitHash("a"), undefined);
  seen.stop();
  await seen.flush();
});

Deno.test("last-seen forgets an agent's wait hash with its time, so both stay within max", async () => {
  const clock = new FakeClock(0);
  const { store } = recorder();
  const seen = new LastSeen({
    store,
    clock,
    storeHealth: new StoreHealth(clock),
    flushMs: 1000,
    max: 2,
  });
  for (let i = 0; i < 1000; i++) {
    seen.seen(`agent-${i}`);
    seen.noteWaitHash(`agent-${i}`, `v${i}`);
  }
  assert.equal(seen.size, 2);
  assert.equal(seen.lastWaitHash("agent-999"), "v999");
  assert.equal(seen.lastWaitHash("agent-998"), "v998");
  assert.equal(seen.lastWaitHash("agent-0"), undefined, "forgotten with its time");
  seen.noteWaitHash("never-seen", "v1");
  assert.equal(seen.lastWaitHash("never-seen"), undefined, "an agent not kept keeps no hash");
  seen.stop();
  await seen.flush();
});

Deno.test("on a shared store, an agent first seen here is written within a second, and the agents holding a wait here at every interval", async () => {
  const clock = new FakeClock(0);
  const { writes, store } = recorder();
  let held: string[] = [];
  const seen = new LastSeen({
    store,
    clock,
    storeHealth: new StoreHealth(clock),
    flushMs: 30_000,
    max: 100,
    held: () => held,
  });
  seen.seen("a");
  held = ["a"]; // its wait is open
  await clock.advanceAsync(999);
  assert.equal(writes.length, 0);
  await clock.advanceAsync(1);
  assert.deepEqual(writes, [new Map([["a", 1000]])], "an agent new here is written at once");
  seen.seen("b"); // not waiting
  seen.seen("a");
  await clock.advanceAsync(1000);
  assert.deepEqual(writes[1], new Map([["b", 1000], ["a", 2000]]), "so is another one");
  await clock.advanceAsync(29_999);
  assert.equal(writes.length, 2, "then nothing before the interval");
  await clock.advanceAsync(1);
  assert.deepEqual(writes[2], new Map([["a", 32_000]]), "held: seen at each write");
  await clock.advanceAsync(30_000);
  assert.deepEqual(writes[3], new Map([["a", 62_000]]), "written again while it is held");
  held = [];
  await clock.advanceAsync(120_000);
  assert.equal(writes.length, 4, "no timer once nothing is held or unwritten");
  seen.stop();
  await seen.flush();
});
