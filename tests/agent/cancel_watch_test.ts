import assert from "node:assert/strict";
import { CANCEL_WAIT_DELAY_MS, CancelWatcher } from "../../src/agent/cancel_watch.ts";
import { FakeClock } from "../../src/agent/clock.ts";
import type { CancelWaitOutcome, DashboardClient } from "../../src/agent/client.ts";
import type { DeliveredCommand } from "../../src/protocol/mod.ts";

/** Lets the watcher's promise chain run between clock steps. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("a cancel-wait answered 429 without a Retry-After is asked again no sooner than a second later", async () => {
  const clock = new FakeClock();
  let asked = 0;
  const client = {
    cancelWait(): Promise<CancelWaitOutcome> {
      asked++;
      return Promise.resolve({ kind: "server", status: 429, message: "too many requests" });
    },
  } as unknown as DashboardClient;
  // A back-off whose delays are a few ms at most: the floor is what spaces the requests.
  const watcher = new CancelWatcher({
    client,
    clock,
    backoff: { initialSecs: 0.001, maxSecs: 0.002 },
    pollingTimeoutSecs: 30,
  });
  const done = new AbortController();
  const watching = watcher.watch(
    { id: "c1", name: "sleep 60", attempt: 1 } as unknown as DeliveredCommand,
    new AbortController(),
    done.signal,
  );
  clock.advance(CANCEL_WAIT_DELAY_MS);
  await settle();
  assert.equal(asked, 1);
  clock.advance(999);
  await settle();
  assert.equal(asked, 1, "not asked again within the second");
  clock.advance(1);
  await settle();
  assert.equal(asked, 2);
  done.abort();
  await watching;
});
