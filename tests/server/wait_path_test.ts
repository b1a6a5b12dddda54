/**
 * The cheap wait path: agents cached with invalidation across processes, last-seen times written
 * in batches, one commit per wake-up, and the long-polls answered outside Hono.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { createApp } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import {
  ADMIN_TOKEN,
  agentHeaders,
  FakeClock,
  json,
  makeDashboard,
  P,
  postWithBodyHeldBack,
  T0,
  TOKEN,
  TOKEN2,
} from "./_helpers.ts";

/**
 * A SQLite file in a new directory, opened twice: the dashboard's store, and another connection as
 * `status agents ... --db` in another process would make. Agent `a1` has {@link TOKEN}.
 */
async function fileWithTwoConnections() {
  const dir = await Deno.makeTempDir({ prefix: "status-rotate-" });
  const path = `${dir}/status.db`;
  const store = openSqliteStore(path);
  const cli = openSqliteStore(path);
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  return {
    store,
    cli,
    async [Symbol.asyncDispose]() {
      await cli.close();
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a token rotated by another process is refused old and accepted new at once", async () => {
  await using file = await fileWithTwoConnections();
  const { store, cli } = file;
  const dashboard = createApp({ store, adminToken: ADMIN_TOKEN, autoExpireLeases: false });
  try {
    const enqueue = (token: string, id: string) => {
      const body = JSON.stringify({ id, name: "echo" });
      const headers = agentHeaders({
        path: P.enqueue,
        body: {},
        bodyText: body,
        token,
        now: Date.now(),
      });
      return Promise.resolve(
        dashboard.app.request(P.enqueue, { method: "POST", headers, body }),
      );
    };
    const before = await enqueue(TOKEN, "c1");
    assert.equal(before.status, 202, "the agent is cached with its first token");
    await before.body?.cancel();

    const rotated = "rotated-token-0123456789abcdefghijklmnopqrst";
    assert.equal(await cli.setAgentToken("a1", rotated), true);
    const old = await enqueue(TOKEN, "c2");
    assert.equal(old.status, 401);
    assert.match((await json(old)).error as string, /bearer token is wrong/);
    const fresh = await enqueue(rotated, "c3");
    assert.equal(fresh.status, 202);
    await fresh.body?.cancel();

    await cli.removeAgent("a1", Date.now());
    const removed = await enqueue(rotated, "c4");
    assert.equal(removed.status, 401);
    // The right token, refused: the removal is seen (an unknown id is answered as a wrong token).
    assert.match((await json(removed)).error as string, /^agent id or bearer token is wrong/);
  } finally {
    await dashboard.close();
  }
});

Deno.test("a wait held with a token that another process rotates or removes ends within a look", async (t) => {
  await using file = await fileWithTwoConnections();
  const { store, cli } = file;
  const clock = new FakeClock(Date.now());
  const dashboard = createApp({
    store,
    adminToken: ADMIN_TOKEN,
    autoExpireLeases: false,
    clock,
    otherWritersLookMs: 1000,
  });
  const hold = (token: string) => {
    const path = P.wait("default", 30);
    const headers = agentHeaders({ path, bodyText: "", token, now: clock.now() });
    return Promise.resolve(dashboard.app.request(path, { headers }));
  };
  // Ended by the look the clock's next second makes, not by the wait's own 30 s timeout (no
  // bound on speed beyond that: the machine may be busy).
  const endedByTheLook = async (held: Promise<Response>) => {
    const started = performance.now();
    clock.advance(1000);
    const response = await held;
    const tookMs = performance.now() - started;
    assert.equal(response.status, 204);
    assert.ok(tookMs < 10_000, `ended ${tookMs.toFixed(0)} ms after the look`);
  };
  try {
    await t.step("another process's unrelated commit leaves the wait open", async () => {
      const held = hold(TOKEN);
      await until(() => dashboard.hub.isWaiting("a1"), "the wait is held");
      await cli.addAgent({ id: "a2", token: TOKEN2, scopes: AGENT_SCOPES, now: clock.now() });
      clock.advance(1000);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(dashboard.hub.isWaiting("a1"), true);
      // Answered by a command: the wait was still the agent's.
      await cli.enqueue({
        id: "c1",
        agentId: "a1",
        name: "echo",
        params: {},
        fingerprint: "c1",
        now: clock.now(),
      });
      dashboard.hub.notify("a1");
      assert.equal((await held).status, 200);
    });

    await t.step("rotated: the wait ends with no command at the next look", async () => {
      const held = hold(TOKEN);
      await until(() => dashboard.hub.isWaiting("a1"), "the wait is held");
      const rotated = "rotated-token-0123456789abcdefghijklmnopqrst";
      assert.equal(await cli.setAgentToken("a1", rotated), true);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(dashboard.hub.isWaiting("a1"), true, "not before the look");
      await endedByTheLook(held);
      await cli.enqueue({
        id: "c2",
        agentId: "a1",
        name: "echo",
        params: {},
        fingerprint: "c2",
        now: clock.now(),
      });
      const fresh = await hold(rotated);
      assert.equal(fresh.status, 200, "the new token's wait gets the command");
      assert.equal((await fresh.json()).id, "c2");
    });

    await t.step(
      "removed: the wait ends, and followers hear of its commands, at the next look",
      async () => {
        const held = hold("rotated-token-0123456789abcdefghijklmnopqrst");
        await until(() => dashboard.hub.isWaiting("a1"), "the wait is held");
        // A follower of c2 (an event stream, a run) reads it again when told it changed.
        let told = 0;
        using _follower = { [Symbol.dispose]: dashboard.events.subscribe("c2", () => told++) };
        const removed = await cli.removeAgent("a1", clock.now());
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(told, 0, "not before the look");
        assert.deepEqual(
          removed?.ended.map((c) => c.id),
          ["c1", "c2"],
          "the commands it was handed",
        );
        await endedByTheLook(held);
        assert.equal(told, 1, "told at the look");
        assert.equal((await store.getCommand("c2"))?.status, "cancelled");
      },
    );
  } finally {
    await dashboard.close();
  }
});

Deno.test("a request whose body arrives after another process rotated its token is refused", async () => {
  await using file = await fileWithTwoConnections();
  const { store, cli } = file;
  const clock = new FakeClock(Date.now());
  const dashboard = createApp({
    store,
    adminToken: ADMIN_TOKEN,
    autoExpireLeases: false,
    clock,
    otherWritersLookMs: 1000,
  });
  try {
    // A read answers once the writes of the dashboard's start are committed (the file unlocked).
    await store.getAgent("a1");
    const body = { id: "slow", name: "echo" };
    const bodyText = JSON.stringify(body);
    const headers = agentHeaders({ path: P.enqueue, body, bodyText, now: clock.now() });
    const answer = await postWithBodyHeldBack(
      dashboard.app,
      P.enqueue,
      headers,
      bodyText,
      async () => {
        const rotated = "rotated-token-0123456789abcdefghijklmnopqrst";
        assert.equal(await cli.setAgentToken("a1", rotated), true);
        clock.advance(1000); // the dashboard's look at the file
      },
    );
    assert.equal(answer.status, 401);
    assert.match((await json(answer)).error as string, /^agent id or bearer token is wrong/);
    assert.equal(await store.getCommand("slow"), null);
  } finally {
    await dashboard.close();
  }
});

Deno.test("last-seen times are kept in memory and written in one batch, never on a wait", async () => {
  await using d = await makeDashboard();
  const batches: [string, number][][] = [];
  const touchAgents = d.store.touchAgents.bind(d.store);
  d.store.touchAgents = (seen) => {
    const batch = [...seen].map(([id, at]): [string, number] => [id, at]);
    batches.push(batch);
    return touchAgents(batch);
  };
  d.store.touchAgent = () => Promise.reject(new Error("no single-agent writes"));
  for (const [agentId, id] of [["a1", "c1"], ["a2", "c2"]]) {
    const enqueued = await d.admin("POST", P.enqueue, { agent_id: agentId, id, name: "echo" });
    assert.equal(enqueued.status, 202);
    await enqueued.body?.cancel();
  }
  d.clock.advance(1000);
  const delivered = await d.agent({ path: P.wait() });
  assert.equal(delivered.status, 200);
  await delivered.body?.cancel();
  d.clock.advance(1000);
  const refused = await d.agent({ path: P.wait(), agentId: "a2", token: "unused" });
  assert.equal(refused.status, 401, "a wrong token is refused and not seen");
  await refused.body?.cancel();
  const a2 = await d.agent({ path: "/api/v1/agent/ping", agentId: "a2", token: TOKEN2 });
  assert.equal(a2.status, 200);
  await a2.body?.cancel();
  assert.deepEqual(batches, [], "no store write on the request path");

  const listed = await json(await d.admin("GET", "/api/v1/agents"));
  const seen = Object.fromEntries(
    (listed.agents as { id: string; last_seen_at: string | null }[]).map((a) => [
      a.id,
      a.last_seen_at,
    ]),
  );
  assert.deepEqual(seen, {
    a1: new Date(T0 + 1000).toISOString(),
    a2: new Date(T0 + 2000).toISOString(),
  }, "the listing merges the fresh in-memory times");
  assert.equal((await d.store.getAgent("a1"))?.lastSeenAt, null, "not written yet");

  await d.dashboard.flushLastSeen();
  assert.deepEqual(batches, [[["a1", T0 + 1000], ["a2", T0 + 2000]]], "one batch for all");
  assert.equal((await d.store.getAgent("a2"))?.lastSeenAt, T0 + 2000);
  await d.dashboard.flushLastSeen();
  assert.equal(batches.length, 1, "nothing new, nothing written");

  d.clock.advance(1000);
  const again = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 1 } });
  assert.equal(again.status, 200);
  await again.body?.cancel();
  await d.dashboard.close();
  assert.deepEqual(batches.at(-1), [["a1", T0 + 3000]], "written at close");
});

Deno.test("last-seen times are flushed by one timer at the configured interval", async () => {
  await using d = await makeDashboard({ lastSeenFlushMs: 50 });
  let writes = 0;
  const touchAgents = d.store.touchAgents.bind(d.store);
  d.store.touchAgents = (seen) => {
    writes++;
    return touchAgents(seen);
  };
  for (let i = 0; i < 5; i++) {
    const response = await d.agent({ path: P.ack, body: { command_id: "none", attempt: 1 } });
    assert.equal(response.status, 404);
    await response.body?.cancel();
  }
  await d.clock.advanceAsync(49);
  assert.equal(writes, 0, "not before the interval");
  await d.clock.advanceAsync(1);
  assert.equal(writes, 1, "five requests, one write");
  await d.clock.advanceAsync(1_000);
  assert.equal(writes, 1, "nothing more to write, no timer");
  assert.equal((await d.store.getAgent("a1"))?.lastSeenAt, T0);
});

Deno.test("an enqueue for a waiting agent is inserted and claimed in one transaction", async () => {
  await using d = await makeDashboard();
  let claims = 0;
  const claimNext = d.store.claimNext.bind(d.store);
  d.store.claimNext = (request) => {
    claims++;
    return claimNext(request);
  };
  const combined: (string | undefined)[] = [];
  const enqueue = d.store.enqueue.bind(d.store);
  d.store.enqueue = (command, claim) => {
    combined.push(claim?.deploymentHash);
    return enqueue(command, claim);
  };
  const order: string[] = [];
  const waiting = d.agent({ path: P.wait("dep-1", 30) }).then((response) => {
    order.push("wait");
    return response;
  });
  await until(() => d.dashboard.hub.size > 0, "the agent waits", 10_000, 1);
  claims = 0;
  const enqueued = await d.agent({ path: P.enqueue, body: { id: "c1", name: "echo" } });
  order.push("enqueue");
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const delivered = await waiting;
  assert.equal(delivered.status, 200);
  assert.equal((await json(delivered)).id, "c1");
  assert.deepEqual(combined, ["dep-1"], "the enqueue claimed for the wait on dep-1");
  assert.equal(claims, 0, "no separate claim transaction");
  assert.deepEqual(order, ["wait", "enqueue"], "the wait is answered first");
  assert.equal((await d.store.getCommand("c1"))?.status, "delivered");

  // No wait open: a plain enqueue, claimed by the next wait.
  const later = await d.agent({ path: P.enqueue, body: { id: "c2", name: "echo" } });
  await later.body?.cancel();
  assert.equal(combined.at(-1), undefined);
  const next = await d.agent({ path: P.wait() });
  assert.equal((await json(next)).id, "c2");
});

Deno.test("the long-polls answer outside Hono with a Date header and JSON errors", async (t) => {
  await using d = await makeDashboard();
  await t.step("a bad deployment hash or timeout is 400", async () => {
    const hash = await d.agent({ path: "/api/v1/agent/commands/wait/a%20b?timeout=1" });
    assert.equal(hash.status, 400);
    assert.equal(hash.headers.get("Content-Type"), "application/json");
    assert.equal(hash.headers.get("Date"), new Date(T0).toUTCString());
    assert.match((await json(hash)).error as string, /deployment_hash/);
    const timeout = await d.agent({ path: "/api/v1/agent/commands/wait/d?timeout=soon" });
    assert.equal(timeout.status, 400);
    assert.match((await json(timeout)).error as string, /query "timeout"/);
    // Decimal seconds only: Number() read 0x10 as 16 s and 1e2 as 100 s.
    for (const odd of ["0x10", "1e2", "0b1", "1_0"]) {
      const response = await d.agent({ path: `/api/v1/agent/commands/wait/d?timeout=${odd}` });
      assert.equal(response.status, 400, odd);
      await response.body?.cancel();
    }
  });
  await t.step(
    "a near-miss of timeout is 400 naming it; other parameters are ignored",
    async () => {
      for (
        const path of ["/api/v1/agent/commands/wait/d", "/api/v1/agent/commands/c9/cancel-wait"]
      ) {
        for (const typo of ["timout", "Timeout", "timeouts", "time"]) {
          const response = await d.agent({ path: `${path}?${typo}=5` });
          assert.equal(response.status, 400, `${path} ${typo}`);
          const error = (await json(response)).error as string;
          assert.match(error, new RegExp(`^query "${typo}": is not a parameter of this wait`));
          assert.match(error, /did you mean "timeout"\?/);
        }
      }
      // An unrelated parameter (a cache-buster) is still ignored: the wait delivers.
      const enqueued = await d.agent({ path: P.enqueue, body: { id: "cb1", name: "echo" } });
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      const delivered = await d.agent({
        path: "/api/v1/agent/commands/wait/default?timeout=1&cb=7",
      });
      assert.equal(delivered.status, 200);
      assert.equal((await json(delivered)).id, "cb1");
    },
  );
  await t.step("a timeout ends the wait with 204 after N to N + 1 s", async () => {
    const started = performance.now();
    const response = await d.agent({ path: P.wait("default", 1) });
    const elapsed = performance.now() - started;
    assert.equal(response.status, 204);
    assert.ok(response.headers.get("Date"));
    assert.ok(elapsed >= 990 && elapsed < 2500, `ended after ${elapsed.toFixed(0)} ms`);
    assert.equal(d.dashboard.hub.timeoutArmedAt, null, "no timer left while no wait is open");
  });
  await t.step("paths beside the long-polls still reach Hono's 404", async () => {
    for (const path of ["/api/v1/agent/commands/wait/", "/api/v1/agent/commands/wait/a/b"]) {
      const response = await d.agent({ path });
      assert.equal(response.status, 404, path);
      assert.match((await json(response)).error as string, /no route/);
    }
  });
});
