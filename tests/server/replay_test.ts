import assert from "node:assert/strict";
import { FakeClock } from "../../src/clock.ts";
import { REPLAY_WINDOW_SECS } from "../../src/protocol/mod.ts";
import { createApp, type DashboardApp } from "../../src/server/mod.ts";
import { ReplayCache } from "../../src/server/replay.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, agentHeaders, P, T0, TOKEN } from "./_helpers.ts";

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

Deno.test("ReplayCache: an id forgotten early cannot be replayed while its timestamp is accepted", () => {
  const clock = new FakeClock(1_000_000);
  const cache = new ReplayCache({ windowMs: 60_000, clock, maxEntries: 2 });
  const sent = clock.now();
  assert.equal(cache.remember("a\nr-1", sent), true);
  clock.advance(1000);
  assert.equal(cache.remember("b\nr-1", clock.now()), true);
  assert.equal(cache.remember("b\nr-2", clock.now()), true, "forgets a's r-1 early");
  assert.equal(cache.size, 2);
  assert.equal(cache.floors, 1);
  assert.equal(cache.remember("a\nr-1", sent), false, "its replay is refused by a's floor");
  assert.equal(cache.remember("a\nr-9", sent), false, "as is any request of a sent no later");
  assert.equal(cache.remember("a\nr-2", clock.now()), true, "a's next request passes");
  assert.equal(cache.remember("c\nr-1", sent), true, "another agent's floor is its own");
  // Without a timestamp (an unsigned guard's caller) nothing stops the forgotten id.
  const bare = new ReplayCache({ windowMs: 60_000, clock, maxEntries: 1 });
  bare.remember("a\nr-1");
  bare.remember("a\nr-2");
  assert.equal(bare.remember("a\nr-1"), true);
});

Deno.test("ReplayCache drops a floor once the forgotten id's own window has passed", () => {
  const clock = new FakeClock(1_000_000);
  const cache = new ReplayCache({ windowMs: 60_000, clock, maxEntries: 1 });
  const sent = clock.now();
  cache.remember("a\nr-1", sent);
  cache.remember("b\nr-1", clock.now());
  assert.equal(cache.floors, 1);
  clock.advance(59_999);
  cache.remember("b\nr-2", clock.now());
  assert.equal(cache.remember("a\nr-1", sent), false, "still within the forgotten id's window");
  clock.advance(6_001);
  // (Step 4 would refuse a timestamp this old; the cache alone no longer has a reason to.)
  assert.equal(cache.remember("a\nr-1", sent), true, "a's floor was swept after that window");
});

Deno.test("ReplayCache.restore: ids kept before a restart are refused until they expire, within the bound", () => {
  const clock = new FakeClock(1_000_000);
  const cache = new ReplayCache({ windowMs: 60_000, clock, maxEntries: 2 });
  cache.restore("a\nold", clock.now(), 1);
  cache.restore("a\nr-1", clock.now() + 10_000, 500_000);
  cache.restore("b\nr-1", clock.now() + 20_000, 600_000);
  cache.restore("b\nr-2", clock.now() + 30_000, 700_000);
  assert.equal(cache.size, 2, "the bound holds; an expired id is not restored");
  assert.equal(cache.remember("b\nr-1", 600_000), false, "a restored id is a replay");
  assert.equal(cache.remember("a\nr-1", 500_000), false, "one forgotten early: its scope's floor");
  assert.equal(cache.remember("a\nr-2", 500_001), true);
  clock.advance(30_000);
  assert.equal(cache.remember("b\nr-2", 700_000), true, "its kept window has passed");
});

Deno.test("a dashboard restarted on the same SQLite file still refuses a request accepted before", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-replay-" });
  const path = `${dir}/status.db`;
  const clock = new FakeClock(T0);
  // One signed enqueue without a command id, captured as sent: replayed, it would enqueue again.
  const body = JSON.stringify({ name: "echo once" });
  const headers = {
    ...agentHeaders({
      method: "POST",
      path: P.enqueue,
      bodyText: body,
      now: clock.now(),
      requestId: "r-1",
    }),
    "Content-Type": "application/json",
  };
  const send = (app: DashboardApp) => app.app.request(P.enqueue, { method: "POST", headers, body });
  const start = () => {
    const store = openSqliteStore(path, { create: true });
    const app = createApp({ store, clock, adminToken: ADMIN_TOKEN, autoExpireLeases: false });
    return { store, app };
  };
  try {
    {
      const { store, app } = start();
      await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: clock.now() });
      const first = await send(app);
      assert.equal(first.status, 202, await first.text());
      await app.close();
      await store.close();
    }
    clock.advance(30_000);
    const { store, app } = start();
    try {
      const replay = await send(app);
      assert.equal(replay.status, 409, "the replay after the restart is refused");
      assert.match(String((await replay.json()).error), /^replay detected/);
      assert.equal((await store.listCommands({ limit: 10 })).length, 1, "enqueued once");
      const fresh = await app.app.request(P.enqueue, {
        method: "POST",
        headers: {
          ...agentHeaders({ method: "POST", path: P.enqueue, bodyText: body, now: clock.now() }),
          "Content-Type": "application/json",
        },
        body,
      });
      assert.equal(fresh.status, 202, "a new request id of the agent passes");
    } finally {
      await app.close();
      await store.close();
    }
    // Past the window (660 s after it was accepted), the id is forgotten, as by one dashboard.
    clock.advance(REPLAY_WINDOW_SECS * 1000);
    const kept = openSqliteStore(path);
    try {
      assert.deepEqual(await kept.keptRequestIds(clock.now()), []);
    } finally {
      await kept.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
