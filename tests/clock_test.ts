import assert from "node:assert/strict";
import { longTimers, MAX_TIMER_MS, type RuntimeTimers, timeoutSignal } from "../src/clock.ts";

/** Runtime timers that refuse a delay the runtime would fire at once, and fire when told. */
function fakeRuntime() {
  const armed = new Map<number, { fn: () => void; ms: number }>();
  let next = 0;
  const runtime: RuntimeTimers = {
    setTimeout(fn, ms) {
      assert.ok(ms <= MAX_TIMER_MS, `a runtime timer of ${ms} ms fires at once`);
      armed.set(++next, { fn, ms });
      return next;
    },
    clearTimeout(id) {
      armed.delete(id as number);
    },
  };
  const fire = () => {
    const [[id, timer]] = armed;
    armed.delete(id);
    timer.fn();
    return timer.ms;
  };
  return { runtime, armed, fire };
}

Deno.test("the system clock keeps a timer longer than a runtime timer can hold", async (t) => {
  await t.step("a 30-day timer fires after 30 days, in steps", () => {
    const { runtime, armed, fire } = fakeRuntime();
    const timers = longTimers(runtime);
    let fired = false;
    const days30 = 30 * 86_400_000;
    timers.setTimeout(() => fired = true, days30);
    let waited = 0;
    while (!fired) waited += fire();
    assert.equal(waited, days30);
    assert.equal(armed.size, 0);
  });

  await t.step("clearing it clears the step that is armed", () => {
    const { runtime, armed, fire } = fakeRuntime();
    const timers = longTimers(runtime);
    let fired = false;
    const id = timers.setTimeout(() => fired = true, 3 * MAX_TIMER_MS);
    fire();
    timers.clearTimeout(id);
    assert.equal(armed.size, 0);
    assert.equal(fired, false);
  });

  await t.step("a short timer is the runtime's own", () => {
    const { runtime, armed } = fakeRuntime();
    const timers = longTimers(runtime);
    const id = timers.setTimeout(() => {}, 1000);
    assert.equal(armed.get(id as number)?.ms, 1000);
    timers.clearTimeout(id);
    assert.equal(armed.size, 0);
  });
});

Deno.test("timeoutSignal keeps a delay beyond the runtime's longest, in steps", async (t) => {
  await t.step("30 days is not over at once (AbortSignal.timeout's was)", async () => {
    const signal = timeoutSignal(30 * 86_400_000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(signal.aborted, false);
  });

  await t.step("steps add up to the delay, then a TimeoutError", async () => {
    const started = performance.now();
    const signal = timeoutSignal(60, 20);
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
    assert.ok(performance.now() - started >= 55, "not before its three steps");
    assert.equal((signal.reason as DOMException).name, "TimeoutError");
  });
});
