import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { ReplayCache } from "../../src/server/replay.ts";

Deno.test("ReplayCache refuses an id seen within the window and accepts it after", () => {
  const clock = new FakeClock();
  const cache = new ReplayCache({ windowMs: 1000, clock });
  assert.equal(cache.remember("a\nr-1"), true);
  assert.equal(cache.remember("a\nr-1"), false, "a replay within the window");
  assert.equal(cache.remember("b\nr-1"), true, "ids are scoped by the caller");
  clock.advance(999);
  assert.equal(cache.remember("a\nr-1"), false, "still within the window");
  clock.advance(1);
  assert.equal(cache.remember("a\nr-1"), true, "the window has passed");
});

Deno.test("ReplayCache forgets expired ids as it goes, without a timer", () => {
  const clock = new FakeClock();
  const cache = new ReplayCache({ windowMs: 1000, clock });
  for (let i = 0; i < 5; i++) cache.remember(`id-${i}`);
  assert.equal(cache.size, 5);
  clock.advance(1000);
  cache.remember("later");
  assert.equal(cache.size, 1, "the expired ids were swept by the insert");
});

Deno.test("ReplayCache keeps at most maxEntries, forgetting the oldest first", () => {
  const clock = new FakeClock();
  const cache = new ReplayCache({ windowMs: 60_000, clock, maxEntries: 3 });
  for (const id of ["a", "b", "c", "d"]) {
    cache.remember(id);
    clock.advance(1);
  }
  assert.equal(cache.size, 3);
  assert.equal(cache.remember("a"), true, "the oldest was forgotten early");
  assert.equal(cache.remember("d"), false, "the newest is still remembered");
});

Deno.test("ReplayCache refuses a window or a bound that is not above 0", () => {
  const clock = new FakeClock();
  assert.throws(() => new ReplayCache({ windowMs: 0, clock }), /windowMs must be above 0, got 0/);
  assert.throws(
    () => new ReplayCache({ windowMs: 1, clock, maxEntries: 0 }),
    /maxEntries must be above 0, got 0/,
  );
});
