/**
 * The fleet over the network: one agent process per agent id (409 for a second one, takeover
 * after the first stops), `GET /api/v1/agents` with states, heartbeats and running commands, and
 * token management over the operator API.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { parseServerSentEvents } from "../../src/operator/mod.ts";
import {
  ADMIN_TOKEN,
  agentHeaders,
  json,
  makeDashboard,
  P,
  reportBody,
  TOKEN,
  TOKEN2,
} from "./_helpers.ts";

Deno.test("a second agent process with one id is refused with 409 and may take over later", async (t) => {
  await using d = await makeDashboard();
  const wait = (instance: string, timeout = 5) =>
    d.agent({ path: P.wait("default", timeout), headers: { "X-Agent-Instance": instance } });

  const first = wait("instance-a"); // held open
  await until(() => d.dashboard.hub.isWaiting("a1"), "the first agent waits");

  await t.step("while the first waits, the second is refused and told why", async () => {
    const second = await wait("instance-b");
    assert.equal(second.status, 409);
    const body = await json(second);
    assert.match(String(body.error), /already connected from another process/);
    assert.match(String(body.error), /two machines configured with one AGENT_ID/);
    assert.equal((body.details as Record<string, unknown>).connected_instance, "instance-a");
  });

  await t.step("the first one's wait ends", async () => {
    d.dashboard.hub.close(); // answers the held wait with 204
    assert.equal((await first).status, 204);
  });

  await t.step("right after the first's wait ended, the second is still refused", async () => {
    assert.equal((await wait("instance-b")).status, 409);
  });

  await t.step("after the first's wait timeout has passed, the second takes over", async () => {
    d.clock.advance(5_001);
    const taken = await d.agent({
      path: P.wait("default", 1),
      headers: { "X-Agent-Instance": "instance-b" },
    });
    // The hub is closed, so the wait ends at once, but it was accepted: not 409.
    assert.notEqual(taken.status, 409);
    await taken.body?.cancel();
    const back = await wait("instance-a");
    assert.equal(back.status, 409, "now the first one is the second");
    await back.body?.cancel();
  });

  await t.step("a malformed instance id is a 400", async () => {
    const bad = await wait("bad instance!");
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  });
});

Deno.test("GET /api/v1/agents shows state, version, heartbeat and the running command", async () => {
  await using d = await makeDashboard({ offlineAfterSecs: 60 });
  const heartbeat = await d.agent({
    path: "/api/v1/agent/heartbeat",
    body: {
      agent_id: "a1",
      timestamp: "2026-01-12T10:00:00.000Z",
      cpu_percent: 3.5,
      load_avg: [0.1, 0.2, 0.3],
      version: "9.9.9",
      deployment_hash: "dep-1",
      instance_id: "i-1",
    },
  });
  assert.equal(heartbeat.status, 200);
  const foreign = await d.agent({ path: "/api/v1/agent/heartbeat", body: { agent_id: "a2" } });
  assert.equal(foreign.status, 403);
  await foreign.body?.cancel();

  await d.admin("POST", P.enqueue, { id: "r1", name: "sleep 5", agent_id: "a1" });
  assert.equal((await d.agent({ path: P.wait() })).status, 200);
  await d.agent({ path: P.ack, body: { command_id: "r1", attempt: 1 } });

  const list = async () =>
    Object.fromEntries(
      ((await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
        Record<string, unknown>
      >).map((a) => [a.id, a]),
    );
  const agents = await list();
  const a1 = agents.a1;
  assert.equal(a1.state, "online");
  assert.equal(a1.version, "9.9.9");
  assert.equal(a1.deployment_hash, "dep-1");
  assert.equal(a1.instance_id, "i-1");
  assert.deepEqual((a1.heartbeat as Record<string, unknown>).load_avg, [0.1, 0.2, 0.3]);
  assert.equal((a1.running as Record<string, unknown>).id, "r1");
  assert.equal((a1.running as Record<string, unknown>).status, "running");
  assert.equal(agents.a2.state, "offline", "never seen");
  assert.equal(agents.a2.running, null);
  assert.ok(!JSON.stringify(agents).includes(TOKEN), "no token is ever listed");

  d.clock.advance(61_000);
  assert.equal((await list()).a1.state, "offline");
});

Deno.test("an agent that stops after the dashboard's clock stepped back goes offline on time, its last sighting not ahead of the clock", async () => {
  // The store keeps the latest last-seen time: after a step back it lay ahead of the clock, and
  // an agent that had stopped was "online" for as long as the step (an hour here).
  await using d = await makeDashboard({ offlineAfterSecs: 60 });
  const list = async () =>
    Object.fromEntries(
      ((await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
        Record<string, unknown>
      >).map((a) => [a.id, a]),
    );
  const heartbeat = await d.agent({ path: "/api/v1/agent/heartbeat", body: { agent_id: "a1" } });
  assert.equal(heartbeat.status, 200);
  await d.dashboard.flushLastSeen();
  d.clock.wallStepMs = -3_600_000;
  d.clock.advance(30_000);
  let a1 = (await list()).a1;
  assert.equal(a1.state, "online", "seen 30 s ago");
  assert.equal(a1.last_seen_at, new Date(d.clock.now() - 30_000).toISOString());
  d.clock.advance(31_000);
  a1 = (await list()).a1;
  assert.equal(a1.state, "offline", "not seen for 61 s, whatever the wall clock did");
  assert.ok(Date.parse(a1.last_seen_at as string) <= d.clock.now(), String(a1.last_seen_at));
  // An enqueue says so too.
  const enqueued = await json(
    await d.admin("POST", P.enqueue, { id: "s1", name: "uptime", agent_id: "a1" }),
  );
  assert.match(String(enqueued.warning), /^agent a1 is offline \(last seen 61 s ago/);
});

Deno.test("a heartbeat's figures are kept as sent, but a __proto__ key at its top is dropped", async () => {
  await using d = await makeDashboard();
  // As JSON.parse reads it: an own key "__proto__", which an object spread does not copy.
  const heartbeat = await d.agent({
    path: "/api/v1/agent/heartbeat",
    body: '{"__proto__":{"polluted":1},"cpu_percent":5,"constructor":3,' +
      '"memory":{"__proto__":{"deep":2},"used_percent":7}}',
  });
  assert.equal(heartbeat.status, 200);
  await heartbeat.body?.cancel();
  const agents = (await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
    Record<string, unknown>
  >;
  const figures = agents.find((agent) => agent.id === "a1")!.heartbeat;
  assert.equal(
    JSON.stringify(figures),
    '{"cpu_percent":5,"constructor":3,"memory":{"__proto__":{"deep":2},"used_percent":7}}',
  );
});

Deno.test("GET /api/v1/agents shows each agent's command however many the fleet has in hand", async (t) => {
  await using d = await makeDashboard();
  const now = d.clock.now();
  const put = async (id: string, agentId: string) => {
    await d.store.enqueue({ id, agentId, name: "sleep 9", params: {}, fingerprint: id, now });
    const claimed = await d.store.claimNext({
      agentId,
      deploymentHash: "default",
      now,
      deliveryLeaseMs: 60_000,
    });
    assert.equal(claimed?.id, id);
  };
  const ack = (commandId: string, agentId: string) =>
    d.store.ack({ commandId, agentId, attempt: 1, now, defaultTimeoutSecs: 60 });
  // a1's command was delivered before the 10,000 of a2 (more than the old lists of 10,000 held).
  await put("a1-first", "a1");
  for (let i = 0; i < 10_000; i++) await put(`a2-${i}`, "a2");
  const running = async (query: string) =>
    Object.fromEntries(
      ((await json(await d.admin("GET", `/api/v1/agents${query}`))).agents as Array<
        Record<string, unknown>
      >).map((a) => [a.id, a.running as { id: string; status: string } | null]),
    );

  await t.step("an agent whose command is older than 10,000 others still shows it", async () => {
    assert.deepEqual(await running("?limit=1"), {
      a1: {
        id: "a1-first",
        name: "sleep 9",
        status: "delivered",
        attempt: 1,
        delivered_at: "2026-01-12T10:00:00.000Z",
      },
    });
    assert.equal((await running("")).a1?.id, "a1-first", "also in the list of every agent");
  });

  await t.step("a running command before a delivered one, the oldest running first", async () => {
    assert.equal((await running("?after=a1")).a2?.id, "a2-9999", "the newest delivered");
    await ack("a2-5", "a2");
    await ack("a2-7", "a2");
    assert.deepEqual((await running("")).a2, {
      id: "a2-5",
      name: "sleep 9",
      status: "running",
      attempt: 1,
      delivered_at: "2026-01-12T10:00:00.000Z",
    });
  });
});

Deno.test("GET /api/v1/agents gives a page by id with limit and after, and every agent without", async (t) => {
  const ids = ["a1", "a2", "b-1", "b.2", "c:3", "web-10", "web-9"];
  await using d = await makeDashboard({
    agents: Object.fromEntries(ids.map((id) => [id, { token: `${TOKEN}-${id}` }])),
  });
  // How many agents each listing read from the store (set before the dashboard first calls it).
  const read: number[] = [];
  const listAgents = d.store.listAgents.bind(d.store);
  d.store.listAgents = async (...args) => {
    const agents = await listAgents(...args);
    read.push(agents.length);
    return agents;
  };
  const page = async (query: string) => {
    const response = await d.admin("GET", `/api/v1/agents${query}`);
    assert.equal(response.status, 200);
    const body = await json(response);
    return {
      ids: (body.agents as Array<{ id: string }>).map((agent) => agent.id),
      next: body.next_after as string | undefined,
      keys: Object.keys(body),
    };
  };

  await t.step("without limit: every agent, and the answer's shape as before", async () => {
    const all = await page("");
    assert.deepEqual(all.ids, ids);
    assert.deepEqual(all.keys, ["agents"]);
  });

  await t.step("pages of limit, each naming the next page's after until the last", async () => {
    const seen: string[] = [];
    let query = "?limit=3";
    const nexts: Array<string | undefined> = [];
    for (let i = 0; i < 5; i++) {
      const got = await page(query);
      seen.push(...got.ids);
      nexts.push(got.next);
      if (got.next === undefined) break;
      query = `?limit=3&after=${encodeURIComponent(got.next)}`;
    }
    assert.deepEqual(seen, ids, "each agent once, in order");
    assert.deepEqual(nexts, ["b-1", "web-10", undefined]);
    // A page that ends exactly at the last agent names no next one.
    assert.deepEqual(await page("?limit=7"), { ids, next: undefined, keys: ["agents"] });
  });

  await t.step("after alone: every agent after that id (one that is not there too)", async () => {
    assert.deepEqual((await page("?after=b.2")).ids, ["c:3", "web-10", "web-9"]);
    assert.deepEqual((await page("?after=b")).ids, ["b-1", "b.2", "c:3", "web-10", "web-9"]);
    assert.deepEqual((await page("?after=zzz")).ids, []);
  });

  await t.step("a page reads only its agents (and the next one) from the store", async () => {
    read.length = 0;
    assert.deepEqual((await page("?limit=2&after=a2")).ids, ["b-1", "b.2"]);
    assert.deepEqual((await page("?limit=2")).ids, ["a1", "a2"]);
    assert.deepEqual((await page("")).ids, ids);
    // Old behaviour: every agent was read, then sliced: [7, 7, 7].
    assert.deepEqual(read, [3, 3, 7]);
  });

  await t.step("a bad limit or after, or a mistyped parameter, is a 400 naming it", async () => {
    for (
      const [query, message] of [
        ["?limit=0", 'query "limit": must be a whole number from 1 to 1000'],
        ["?limit=1001", 'query "limit": must be a whole number from 1 to 1000'],
        ["?limit=2.5", 'query "limit": must be a whole number from 1 to 1000'],
        [
          "?after=a%20b",
          'query "after": must be 1–128 characters of A-Z a-z 0-9 . _ : -, not only dots',
        ],
        ["?limit=1&limit=2", 'query "limit": is given 2 times; a list takes one value of it'],
        [
          "?limits=2",
          'query "limits": is not a parameter of this list (did you mean "limit"?); the parameters are limit, after',
        ],
      ]
    ) {
      const response = await d.admin("GET", `/api/v1/agents${query}`);
      assert.equal(response.status, 400, query);
      assert.equal((await json(response)).error, message);
    }
  });
});

Deno.test("tokens are added, rotated and removed over the operator API", async () => {
  await using d = await makeDashboard();
  const added = await d.admin("POST", "/api/v1/agents", { id: "web-9", scopes: ["commands:wait"] });
  assert.equal(added.status, 201);
  const { token, scopes } = await json(added);
  assert.equal(typeof token, "string");
  assert.deepEqual(scopes, ["commands:wait"]);

  const signedWith = (tok: string) => {
    const path = "/api/v1/agent/ping";
    return d.dashboard.app.request(path, {
      headers: agentHeaders({
        path,
        agentId: "web-9",
        token: tok,
        bodyText: "",
        now: d.clock.now(),
      }),
    });
  };
  const ping = await signedWith(String(token));
  assert.equal(ping.status, 200);
  assert.equal((await json(ping)).agent_id, "web-9");

  assert.equal((await d.admin("POST", "/api/v1/agents", { id: "web-9" })).status, 409);
  assert.equal((await d.admin("POST", "/api/v1/agents", { id: "bad id" })).status, 400);
  const own = await d.admin("POST", "/api/v1/agents", { id: "web-8", token: "mine" });
  assert.equal(own.status, 400, "a token of one's own is refused, not replaced in silence");
  assert.match(String((await json(own)).error), /token/);
  const fleet = (await json(await d.admin("GET", "/api/v1/agents"))).agents as { id: string }[];
  assert.ok(!fleet.some((agent) => agent.id === "web-8"), "nothing was added");
  assert.equal(
    (await d.admin("POST", "/api/v1/agents", { id: "x", scopes: ["root"] })).status,
    400,
  );

  const rotated = await d.admin("POST", "/api/v1/agents/web-9/rotate");
  assert.equal(rotated.status, 200);
  const newToken = String((await json(rotated)).token);
  assert.notEqual(newToken, token);
  assert.equal((await signedWith(String(token))).status, 401, "the old token stops working");
  assert.equal((await signedWith(newToken)).status, 200);
  assert.equal((await d.admin("POST", "/api/v1/agents/nope/rotate")).status, 404);

  const anonymous = await d.dashboard.app.request("/api/v1/agents/web-9", { method: "DELETE" });
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
  assert.equal((await d.admin("DELETE", "/api/v1/agents/web-9")).status, 200);
  assert.equal((await d.admin("DELETE", "/api/v1/agents/web-9")).status, 404);
  assert.equal((await signedWith(newToken)).status, 401);
});

Deno.test("removing an agent cancels its queued, delivered and running commands at once and says how many", async (t) => {
  // The clock never moves: only the removal's own events can wake the follower (no re-read).
  await using d = await makeDashboard();
  const enqueue = async (id: string, agentId = "a1") => {
    const enqueued = await d.admin("POST", P.enqueue, { id, agent_id: agentId, name: "sleep 9" });
    assert.equal(enqueued.status, 202);
    await enqueued.body?.cancel();
  };
  const take = async (id: string) => {
    const waited = await d.agent({ path: P.wait() });
    assert.equal((await json(waited)).id, id);
  };
  await enqueue("running");
  await take("running");
  const acked = await d.agent({ path: P.ack, body: { command_id: "running", attempt: 1 } });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();
  await enqueue("delivered");
  await take("delivered");
  await enqueue("done");
  await take("done");
  const reported = await d.agent({ path: P.report, body: reportBody("done") });
  assert.equal(reported.status, 200);
  await reported.body?.cancel();
  await enqueue("queued");
  await enqueue("other", "a2");
  const command = async (id: string) => await json(await d.admin("GET", `/api/v1/commands/${id}`));
  const finished = async () => {
    const text = await (await d.admin("GET", "/metrics")).text();
    return Number(
      /^status_commands_finished_total\{status="cancelled"\} (\d+)$/m.exec(text)?.[1] ?? 0,
    );
  };
  assert.equal(await finished(), 0);

  // A follower of the running command (as `status result --follow` reads it) is told at once.
  const controller = new AbortController();
  const stream = await d.dashboard.app.request("/api/v1/commands/running/events", {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    signal: controller.signal,
  });
  assert.equal(stream.status, 200);
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  const followed = (async () => {
    for await (const event of parseServerSentEvents(stream.body!)) {
      events.push({ event: event.event, data: JSON.parse(event.data) });
      if (event.event === "end") break;
    }
  })();
  using _closes = { [Symbol.dispose]: () => controller.abort() };
  await until(() => d.dashboard.events.size > 0, "the follower listens");

  const removed = await d.admin("DELETE", "/api/v1/agents/a1");
  assert.equal(removed.status, 200);
  await t.step("the answer counts the commands ended", async () => {
    assert.deepEqual(await json(removed), { removed: true, id: "a1", commands_ended: 3 });
  });
  await t.step("each is cancelled, and says the agent was removed and when it stood", async () => {
    for (
      const [id, stage] of [
        ["queued", /^agent a1 was removed while it was queued; it never ran$/],
        [
          "delivered",
          /^agent a1 was removed after attempt 1 was delivered and before it was acked$/,
        ],
        ["running", /^agent a1 was removed while attempt 1 was running; /],
      ] as const
    ) {
      const view = await command(id);
      assert.equal(view.status, "cancelled", id);
      assert.match(String(view.error), stage, id);
      assert.equal(view.lease_expires_at, null, id);
      assert.equal(typeof view.completed_at, "string", id);
      assert.equal(view.cancel_requested, false, id);
    }
  });
  await t.step("a final command and another agent's are left alone", async () => {
    assert.equal((await command("done")).status, "success");
    assert.equal((await command("done")).error, null);
    assert.equal((await command("other")).status, "queued");
  });
  await t.step("the follower gets the end with the status and the reason", async () => {
    await until(() => events.at(-1)?.event === "end", "the follower is told the command ended");
    await followed;
    assert.deepEqual(events.map((e) => e.event), ["status", "end"]);
    const end = events.at(-1)!;
    assert.equal(end.data.status, "cancelled");
    assert.match(String(end.data.error), /^agent a1 was removed while attempt 1 was running/);
  });
  await t.step("the metrics count them as finished", async () => {
    assert.equal(await finished(), 3);
  });
  await t.step("another agent's removal counts its own; one with none says 0", async () => {
    const again = await d.admin("DELETE", "/api/v1/agents/a2");
    assert.deepEqual(await json(again), { removed: true, id: "a2", commands_ended: 1 });
    const added = await d.admin("POST", "/api/v1/agents", { id: "idle" });
    await added.body?.cancel();
    const idle = await d.admin("DELETE", "/api/v1/agents/idle");
    assert.deepEqual(await json(idle), { removed: true, id: "idle", commands_ended: 0 });
  });
});

Deno.test("a wait held with a token that is then rotated or removed ends with no command", async (t) => {
  for (
    const [change, path, method] of [
      ["rotated", "/api/v1/agents/a1/rotate", "POST"],
      ["removed", "/api/v1/agents/a1", "DELETE"],
    ] as const
  ) {
    await t.step(change, async () => {
      await using d = await makeDashboard();
      const held = d.agent({ path: P.wait("default", 30) });
      await until(() => d.dashboard.hub.isWaiting("a1"), "the wait is held");
      assert.equal((await d.admin(method, path)).status, 200);
      assert.equal((await held).status, 204, "answered at once, with no command");
      assert.equal(d.dashboard.hub.isWaiting("a1"), false);
      if (change === "rotated") {
        // A command enqueued now waits in the queue for a wait with the new token.
        const id = "after-rotate";
        const enqueued = await d.admin("POST", P.enqueue, {
          id,
          agent_id: "a1",
          name: "echo hi",
          params: {},
        });
        assert.equal(enqueued.status, 202);
        const command = await json(await d.admin("GET", `/api/v1/commands/${id}`));
        assert.equal(command.status, "queued");
      }
    });
  }
});

Deno.test("a cancel-wait held with a token that is then rotated or removed ends with no cancel", async (t) => {
  for (
    const [change, path, method] of [
      ["rotated", "/api/v1/agents/a1/rotate", "POST"],
      ["removed", "/api/v1/agents/a1", "DELETE"],
    ] as const
  ) {
    await t.step(change, async () => {
      await using d = await makeDashboard();
      const enqueued = await d.admin("POST", P.enqueue, {
        id: "c1",
        agent_id: "a1",
        name: "sleep 9",
      });
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      await (await d.agent({ path: P.wait("default", 1) })).body?.cancel();
      const held = d.agent({ path: "/api/v1/agent/commands/c1/cancel-wait?timeout=30" });
      await until(() => d.dashboard.cancelWaiters.size === 1, "the cancel-wait is held");
      assert.equal((await d.admin(method, path)).status, 200);
      // The cancel comes after the change: the old token must not hear of it. (A removal has
      // ended the command already: the cancel finds it final.)
      const cancel = await d.admin("POST", "/api/v1/commands/c1/cancel");
      assert.equal(cancel.status, change === "removed" ? 409 : 202);
      await cancel.body?.cancel();
      const answer = await held;
      assert.equal(answer.status, 204, "answered with no cancel");
      await answer.body?.cancel();
      assert.equal(d.dashboard.cancelWaiters.size, 0);
    });
  }
});

Deno.test("a wait or cancel-wait whose token was read just before a rotation or removal is not held after it", async (t) => {
  // The store commits in groups: a write made in this turn (here a registration) opens one, and the
  // wait's read of its agent and the rotation's write both join it. The rotation ends the agent's
  // waits once its write is committed, which may come before the wait, read with the old token,
  // is held.
  for (
    const [change, path, method] of [
      ["rotated", "/api/v1/agents/a1/rotate", "POST"],
      ["removed", "/api/v1/agents/a1", "DELETE"],
    ] as const
  ) {
    await t.step(`wait, ${change}`, async () => {
      await using d = await makeDashboard();
      const app = d.dashboard.app;
      const grouped = d.store.ensureAgent("other", d.clock.now());
      const headers = agentHeaders({
        path: P.wait("default", 30),
        bodyText: "",
        now: d.clock.now(),
      });
      const held = Promise.resolve(app.request(P.wait("default", 30), { headers }));
      const changed = app.request(path, {
        method,
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      let answered = false;
      void held.then(() => answered = true);
      await grouped;
      assert.equal((await changed).status, 200);
      const hub = d.dashboard.hub;
      await until(() => answered || hub.isWaiting("a1"), "the wait is answered or held");
      assert.equal(hub.isWaiting("a1"), false, "not held after the change");
      const answer = await held;
      assert.equal(answer.status, 204, "answered at once, with no command");
      await answer.body?.cancel();
    });

    await t.step(`cancel-wait, ${change}`, async () => {
      await using d = await makeDashboard();
      const app = d.dashboard.app;
      const enqueued = await d.admin("POST", P.enqueue, {
        id: "c1",
        agent_id: "a1",
        name: "sleep 9",
      });
      assert.equal(enqueued.status, 202);
      await (await d.agent({ path: P.wait("default", 1) })).body?.cancel();
      const cancelWait = "/api/v1/agent/commands/c1/cancel-wait?timeout=30";
      const grouped = d.store.ensureAgent("other", d.clock.now());
      const headers = agentHeaders({ path: cancelWait, bodyText: "", now: d.clock.now() });
      const held = Promise.resolve(app.request(cancelWait, { headers }));
      const changed = app.request(path, {
        method,
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      let answered = false;
      void held.then(() => answered = true);
      await grouped;
      assert.equal((await changed).status, 200);
      const waiters = d.dashboard.cancelWaiters;
      await until(() => answered || waiters.size > 0, "the cancel-wait is answered or held");
      assert.equal(waiters.size, 0, "not held after the change");
      const answer = await held;
      assert.equal(answer.status, 204, "answered at once, with no cancel");
      await answer.body?.cancel();
    });
  }
});

Deno.test("a signed heartbeat is held to its own 16 KiB limit, whatever read its body first", async (t) => {
  await using d = await makeDashboard();
  const heartbeatOf = (size: number) => {
    const body = JSON.stringify({ pad: "" });
    return JSON.stringify({ pad: "x".repeat(size - body.length) });
  };
  const send = (body: string) => d.agent({ path: "/api/v1/agent/heartbeat", body });

  await t.step("16,384 bytes are recorded", async () => {
    const body = heartbeatOf(16 * 1024);
    assert.equal(body.length, 16 * 1024);
    const response = await send(body);
    assert.equal(response.status, 200, await response.clone().text());
    await response.body?.cancel();
  });

  for (const size of [16 * 1024 + 1, 1_000_000, 1024 * 1024 + 100_000, 17 * 1024 * 1024]) {
    await t.step(`${size} bytes → 413 naming 16384 bytes, nothing recorded`, async () => {
      const response = await send(heartbeatOf(size));
      const answer = await json(response);
      assert.equal(response.status, 413);
      assert.equal(answer.error, "request body is larger than 16384 bytes");
      assert.equal((answer.details as { limit_bytes: number }).limit_bytes, 16384);
    });
  }

  const agents = (await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
    Record<string, unknown>
  >;
  const a1 = agents.find((agent) => agent.id === "a1")!;
  assert.equal((a1.heartbeat as { pad: string }).pad.length, 16 * 1024 - 10);
});

Deno.test("only a request that passes authentication counts as the agent being seen", async (t) => {
  await using d = await makeDashboard();
  const a2 = async () =>
    ((await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
      Record<string, unknown>
    >).find((agent) => agent.id === "a2")!;

  await t.step("a wrong or missing token, or a bad signature, is 401 and not seen", async () => {
    const refused = [
      await d.agent({ path: "/api/v1/agent/ping", agentId: "a2", token: "wrong" }),
      await d.agent({
        path: "/api/v1/agent/ping",
        agentId: "a2",
        headers: { Authorization: undefined },
      }),
      await d.agent({
        path: "/api/v1/agent/ping",
        agentId: "a2",
        headers: { "X-Agent-Signature": "AAAA" },
      }),
      await d.agent({ path: P.wait(), agentId: "a2", token: "wrong" }),
      await d.agent({ path: "/api/v1/agent/heartbeat", agentId: "a2", token: "wrong", body: {} }),
    ];
    for (const response of refused) {
      assert.equal(response.status, 401);
      await response.body?.cancel();
    }
    const agent = await a2();
    assert.equal(agent.last_seen_at, null);
    assert.equal(agent.state, "offline");
    await d.dashboard.flushLastSeen();
    assert.equal((await d.store.getAgent("a2"))?.lastSeenAt, null);
    const enqueued = await json(
      await d.admin("POST", P.enqueue, { id: "for-a2", name: "echo hi", agent_id: "a2" }),
    );
    assert.match(String(enqueued.warning), /agent a2 has never connected/);
  });

  await t.step("its own signed request is", async () => {
    const response = await d.agent({ path: "/api/v1/agent/ping", agentId: "a2", token: TOKEN2 });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const agent = await a2();
    assert.equal(agent.last_seen_at, new Date(d.clock.now()).toISOString());
    assert.equal(agent.state, "online");
  });
});

Deno.test("an agent removed and added again starts unseen, not with the removed one's last request", async () => {
  // The dashboard kept the removed agent's last-seen time in memory: the new one showed it as its
  // last_seen_at (before its created_at), counted as online, and the time was written into its row.
  await using d = await makeDashboard();
  const added = await json(await d.admin("POST", "/api/v1/agents", { id: "web-7" }));
  const path = "/api/v1/agent/ping";
  const ping = await d.dashboard.app.request(path, {
    headers: agentHeaders({
      path,
      agentId: "web-7",
      token: String(added.token),
      bodyText: "",
      now: d.clock.now(),
    }),
  });
  assert.equal(ping.status, 200);
  await ping.body?.cancel();
  const web7 = async () =>
    ((await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
      Record<string, unknown>
    >).find((agent) => agent.id === "web-7")!;
  assert.equal((await web7()).state, "online");

  assert.equal((await d.admin("DELETE", "/api/v1/agents/web-7")).status, 200);
  assert.equal((await d.admin("POST", "/api/v1/agents", { id: "web-7" })).status, 201);
  const again = await web7();
  assert.equal(again.last_seen_at, null);
  assert.equal(again.state, "offline");
  await d.dashboard.flushLastSeen();
  assert.equal((await d.store.getAgent("web-7"))?.lastSeenAt, null);
  const enqueued = await json(
    await d.admin("POST", P.enqueue, { name: "echo hi", agent_id: "web-7" }),
  );
  assert.match(String(enqueued.warning), /agent web-7 has never connected/);
});
