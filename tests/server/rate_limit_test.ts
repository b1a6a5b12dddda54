import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { TokenBucketLimiter } from "../../src/server/rate_limit.ts";

Deno.test("TokenBucketLimiter allows a burst of perMinute, then one every 60/perMinute s", () => {
  const clock = new FakeClock();
  const limiter = new TokenBucketLimiter({ perMinute: 6, clock });
  for (let i = 0; i < 6; i++) assert.deepEqual(limiter.take("web-1"), { ok: true }, `take ${i}`);
  assert.deepEqual(limiter.take("web-1"), { ok: false, retryAfterSecs: 10 });
  clock.advance(9_999);
  assert.deepEqual(limiter.take("web-1"), { ok: false, retryAfterSecs: 1 }, "never below 1 s");
  clock.advance(1);
  assert.deepEqual(limiter.take("web-1"), { ok: true }, "one token refilled after 10 s");
  assert.equal(limiter.take("web-1").ok, false);
});

Deno.test("TokenBucketLimiter keeps one bucket per key and refills no more than its capacity", () => {
  const clock = new FakeClock();
  const limiter = new TokenBucketLimiter({ perMinute: 2, clock });
  assert.equal(limiter.take("a").ok, true);
  assert.equal(limiter.take("a").ok, true);
  assert.equal(limiter.take("a").ok, false);
  assert.equal(limiter.take("b").ok, true, "another key has its own bucket");
  clock.advance(10 * 60_000);
  assert.equal(limiter.take("a").ok, true);
  assert.equal(limiter.take("a").ok, true);
  assert.equal(limiter.take("a").ok, false, "ten idle minutes refill two tokens, not twenty");
});

Deno.test("TokenBucketLimiter bounds its buckets, dropping full ones first", () => {
  const clock = new FakeClock();
  const limiter = new TokenBucketLimiter({ perMinute: 60, clock, maxKeys: 2 });
  limiter.take("busy");
  for (let i = 0; i < 59; i++) limiter.take("busy");
  limiter.take("idle");
  clock.advance(1_000);
  limiter.take("new");
  assert.equal(limiter.size, 2);
  assert.equal(limiter.take("busy").ok, true, "one token refilled in the second");
  assert.equal(limiter.take("busy").ok, false, "the busy bucket was kept with its count");
});

Deno.test("TokenBucketLimiter full of busy buckets makes room for a tenth of new keys at once", () => {
  const clock = new FakeClock();
  const limiter = new TokenBucketLimiter({ perMinute: 10, clock, maxKeys: 1000 });
  for (let i = 0; i < 1000; i++) limiter.take(`busy-${i}`);
  assert.equal(limiter.size, 1000);
  limiter.take("new-0");
  assert.equal(limiter.size, 901, "the oldest tenth forgotten, not one: no sweep per new key");
  assert.equal(limiter.take("busy-999").ok, true);
  for (let i = 1; i < 99; i++) limiter.take(`new-${i}`);
  assert.equal(limiter.size, 999, "the next 98 new keys fit without a sweep");
  for (let i = 0; i < 8; i++) assert.equal(limiter.take("busy-999").ok, true);
  assert.equal(limiter.take("busy-999").ok, false, "a newer busy bucket kept its count");
});

Deno.test("TokenBucketLimiter refuses a rate that is not a number above 0", () => {
  const clock = new FakeClock();
  for (const perMinute of [0, -1, Infinity, NaN]) {
    assert.throws(
      () => new TokenBucketLimiter({ perMinute, clock }),
      new RegExp(`perMinute must be above 0, got ${perMinute}`),
    );
  }
});

Deno.test("TokenBucketLimiter.peek tells whether a token is left without taking it", () => {
  const clock = new FakeClock();
  const limiter = new TokenBucketLimiter({ perMinute: 2, clock });
  assert.deepEqual(limiter.peek("new"), { ok: true });
  assert.equal(limiter.size, 0, "no bucket is kept for a key only peeked at");
  limiter.take("a");
  assert.deepEqual(limiter.peek("a"), { ok: true });
  assert.deepEqual(limiter.peek("a"), { ok: true }, "peeking took nothing");
  limiter.take("a");
  assert.deepEqual(limiter.peek("a"), { ok: false, retryAfterSecs: 30 });
  clock.advance(30_000);
  assert.deepEqual(limiter.peek("a"), { ok: true }, "refilled as take would see it");
});
