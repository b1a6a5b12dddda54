import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { json, makeDashboard, P, T0, TOKEN2 } from "./_helpers.ts";

Deno.test("a command nobody takes expires at its TTL, reported like any final status", async (t) => {
  await using d = await makeDashboard({ queueTtlSecs: 600 });
  await t.step("the enqueue answer says when it expires", async () => {
    const response = await d.admin("POST", P.enqueue, {
      id: "ttl-1",
      name: "echo late",
      agent_id: "a1",
      params: { ttl_secs: 5 },
    });
    assert.equal(response.status, 202);
    const answer = await json(response);
    assert.equal(answer.expires_at, new Date(T0 + 5_000).toISOString());
    const other = await json(
      await d.admin("POST", P.enqueue, { id: "ttl-2", name: "echo", agent_id: "a1" }),
    );
    assert.equal(other.expires_at, new Date(T0 + 600_000).toISOString(), "the dashboard default");
  });
  await t.step("bad ttl_secs are refused naming the field", async () => {
    for (const ttl of [0, -1, 1.5, 30 * 86_400 + 1, "5"]) {
      const response = await d.admin("POST", P.enqueue, {
        name: "echo",
        agent_id: "a1",
        params: { ttl_secs: ttl },
      });
      assert.equal(response.status, 400, `ttl_secs ${ttl}`);
      assert.match((await json(response)).error as string, /field "params.ttl_secs"/);
    }
  });
  await t.step(
    "at its expiry it becomes expired, with the reason, and is never delivered",
    async () => {
      d.clock.advance(5_000);
      const outcome = await d.dashboard.expireLeases();
      assert.deepEqual(outcome.expired.map((c) => c.id), ["ttl-1"]);
      const command = await json(await d.admin("GET", "/api/v1/commands/ttl-1"));
      assert.equal(command.status, "expired");
      assert.equal(command.completed_at, new Date(T0 + 5_000).toISOString());
      assert.match(
        command.error as string,
        /no agent took it within its queue expiry of 5 s \(agent a1\); it never ran/,
      );
      const wait = await d.agent({ path: P.wait("default", 1) });
      assert.equal(wait.status, 200);
      assert.equal((await json(wait)).id, "ttl-2", "the expired command is not delivered");
      const cancel = await d.admin("POST", "/api/v1/commands/ttl-1/cancel");
      assert.equal(cancel.status, 409, "expired is final");
      await cancel.body?.cancel();
      const listed = await json(await d.admin("GET", "/api/v1/commands?status=expired"));
      assert.deepEqual((listed.commands as Array<{ id: string }>).map((c) => c.id), ["ttl-1"]);
    },
  );
});

Deno.test("the dashboard's timer expires a queued command without any request", async () => {
  await using d = await makeDashboard({ realClock: true, autoExpireLeases: true });
  const response = await d.admin("POST", P.enqueue, {
    id: "soon",
    name: "echo",
    agent_id: "a1",
    params: { ttl_secs: 1 },
  });
  assert.equal(response.status, 202);
  await response.body?.cancel();
  await until(
    async () => (await d.store.getCommand("soon"))?.status === "expired",
    "the command expired",
    15_000,
    50,
  );
});

Deno.test("an enqueue warns when its agent cannot take the command now", async (t) => {
  await using d = await makeDashboard();
  const waiting = (agentId: string) => until(() => d.dashboard.hub.isWaiting(agentId), agentId);
  const enqueue = async (agentId: string, params: Record<string, unknown> = {}) => {
    const response = await d.admin("POST", P.enqueue, { name: "echo", agent_id: agentId, params });
    assert.equal(response.status, 202);
    return (await json(response)).warning as string | undefined;
  };
  await t.step("an agent that never connected", async () => {
    assert.match(
      (await enqueue("a1")) ?? "",
      /^agent a1 has never connected to this dashboard; the command waits in the queue until it does \(it expires at 2026-01-12T11:00:00.000Z\)$/,
    );
  });
  await t.step("an agent waiting on the command's hash: no warning", async () => {
    const wait = d.agent({ path: P.wait("dep-1", 5), agentId: "a2", token: TOKEN2 });
    await waiting("a2");
    assert.equal(await enqueue("a2", { deployment_hash: "dep-1" }), undefined);
    await (await wait).body?.cancel();
  });
  await t.step("an agent waiting on another deployment hash", async () => {
    const wait = d.agent({ path: P.wait("dep-1", 1), agentId: "a2", token: TOKEN2 });
    await waiting("a2");
    assert.match(
      (await enqueue("a2", { deployment_hash: "dep-2" })) ?? "",
      /^agent a2 is waiting for deployment dep-1, not dep-2; the command waits in the queue for a wait on dep-2 \(it expires at /,
    );
    await (await wait).body?.cancel(); // its timeout ends it
    d.clock.advance(6_000);
  });
  await t.step("an agent seen recently but between two waits: no warning", async () => {
    assert.equal(await enqueue("a2"), undefined);
  });
  await t.step("between two waits, a hash other than its latest wait's", async () => {
    assert.match(
      (await enqueue("a2", { deployment_hash: "dep-2" })) ?? "",
      /^agent a2 last waited for deployment dep-1, not dep-2; the command waits in the queue for a wait on dep-2 \(it expires at /,
    );
  });
  await t.step("an agent not seen for OFFLINE_AFTER_SECS (90 s) is offline", async () => {
    d.clock.advance(151_000);
    assert.match((await enqueue("a2")) ?? "", /^agent a2 is offline \(last seen 1\d\d s ago, at /);
  });
});

Deno.test("in dev mode an enqueue for a misspelled agent is queued with a warning", async () => {
  await using d = await makeDashboard({ devMode: true });
  for (const headers of [{}, { "X-Agent-Id": "tset-agent" }] as Record<string, string>[]) {
    const response = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify({ name: "echo hi", agent_id: "tset-agent" }),
    });
    assert.equal(response.status, 202);
    assert.match(
      (await json(response)).warning as string,
      /agent tset-agent has never connected to this dashboard/,
      "an operator's curl with X-Agent-Id is not the agent connecting",
    );
  }
});

Deno.test("an enqueue handed to one of two open waits (another hash) gives no warning", async () => {
  await using d = await makeDashboard();
  const agent = { agentId: "a2", token: TOKEN2 };
  const onOne = d.agent({ path: P.wait("dep-1", 1), ...agent });
  await until(() => d.dashboard.hub.isWaiting("a2"), "the dep-1 wait is open");
  const onTwo = d.agent({ path: P.wait("dep-2", 5), ...agent });
  await until(
    () => d.dashboard.hub.waitingHashes("a2").includes("dep-2"),
    "the dep-2 wait is open",
  );
  const response = await d.admin("POST", P.enqueue, {
    id: "to-two",
    name: "echo",
    agent_id: "a2",
    params: { deployment_hash: "dep-2" },
  });
  assert.equal(response.status, 202);
  // It was delivered at once: "a2 is waiting for deployment dep-1, not dep-2" was untrue.
  assert.equal((await json(response)).warning, undefined);
  const delivered = await onTwo;
  assert.equal(delivered.status, 200);
  assert.equal((await json(delivered)).id, "to-two");
  d.clock.advance(2_000);
  assert.equal((await onOne).status, 204);
});
