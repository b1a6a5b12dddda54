import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { json, makeDashboard, P, reportBody, T0, TOKEN2 } from "./_helpers.ts";

type Delivered = { id: string; attempt: number; lease_expires_at: string };

async function enqueue(
  d: Awaited<ReturnType<typeof makeDashboard>>,
  body: Record<string, unknown>,
  expected = 202,
) {
  const response = await d.agent({ path: P.enqueue, body });
  const answer = await json(response);
  assert.equal(response.status, expected, JSON.stringify(answer));
  return answer;
}

async function waitFor(d: Awaited<ReturnType<typeof makeDashboard>>, hash = "default") {
  const response = await d.agent({ path: P.wait(hash) });
  assert.equal(response.status, 200);
  return await response.json() as Delivered;
}

async function status(d: Awaited<ReturnType<typeof makeDashboard>>, id: string) {
  const response = await d.admin("GET", `/api/v1/commands/${id}`);
  assert.equal(response.status, 200);
  return await json(response);
}

Deno.test("an unacked delivery goes back to the queue after the delivery lease", async () => {
  await using d = await makeDashboard({ ackTimeoutSecs: 30 });
  await enqueue(d, { id: "c1", name: "echo hi" });
  const first = await waitFor(d);
  assert.equal(first.attempt, 1);
  assert.equal(first.lease_expires_at, new Date(T0 + 30_000).toISOString());
  assert.equal((await status(d, "c1")).status, "delivered");

  d.clock.advance(29_999);
  assert.deepEqual((await d.dashboard.expireLeases()).requeued, []);
  d.clock.advance(1);
  const expired = await d.dashboard.expireLeases();
  assert.deepEqual(expired.requeued.map((c) => [c.id, c.attempt]), [["c1", 2]]);

  const again = await waitFor(d);
  assert.equal(again.id, "c1");
  assert.equal(again.attempt, 2);
});

Deno.test("an acked command is kept until its execution lease ends", async () => {
  await using d = await makeDashboard({ ackTimeoutSecs: 30 });
  await enqueue(d, { id: "c1", name: "sleep 100", params: { timeout_secs: 100 } });
  await waitFor(d);
  d.clock.advance(1000);
  const ack = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 1 } });
  assert.deepEqual(await json(ack), {
    acked: true,
    lease_expires_at: new Date(T0 + 1000 + 160_000).toISOString(),
  });
  assert.equal((await status(d, "c1")).status, "running");

  d.clock.advance(60_000);
  assert.deepEqual((await d.dashboard.expireLeases()).requeued, [], "past the delivery lease");
  d.clock.advance(99_999);
  assert.deepEqual((await d.dashboard.expireLeases()).requeued, []);
  d.clock.advance(1);
  const expired = await d.dashboard.expireLeases();
  assert.deepEqual(expired.requeued.map((c) => c.id), ["c1"]);
  assert.equal((await status(d, "c1")).attempt, 2);
});

Deno.test("a command is lost after max_attempts deliveries without a report", async () => {
  await using d = await makeDashboard({ ackTimeoutSecs: 10, maxAttempts: 3 });
  await enqueue(d, { id: "c1", name: "echo hi" });
  for (let attempt = 1; attempt <= 3; attempt++) {
    const delivered = await waitFor(d);
    assert.equal(delivered.attempt, attempt);
    d.clock.advance(10_000);
    await d.dashboard.expireLeases();
  }
  const lost = await status(d, "c1");
  assert.equal(lost.status, "lost");
  assert.equal(lost.attempt, 3);
  assert.equal(lost.completed_at, new Date(T0 + 30_000).toISOString());
  const nothing = await d.agent({ path: P.wait("default", 1) });
  assert.equal(nothing.status, 204, "a lost command is not delivered again");
});

Deno.test("a requeued command wakes a waiting agent at once", async () => {
  await using d = await makeDashboard({ ackTimeoutSecs: 10 });
  await enqueue(d, { id: "c1", name: "echo hi" });
  await waitFor(d);
  const waiting = d.agent({ path: P.wait("default", 30) });
  await until(() => d.dashboard.hub.size === 1, "the agent waits");
  d.clock.advance(10_000);
  await d.dashboard.expireLeases();
  const response = await waiting;
  assert.equal(response.status, 200);
  assert.equal((await response.json() as Delivered).attempt, 2);
});

Deno.test("acks: stale attempt → 409, unknown or another agent's → the same 404", async (t) => {
  await using d = await makeDashboard({ ackTimeoutSecs: 10 });
  await enqueue(d, { id: "c1", name: "echo hi" });
  await waitFor(d);
  d.clock.advance(10_000);
  await d.dashboard.expireLeases();
  await waitFor(d);
  await t.step("the first attempt is no longer current", async () => {
    const response = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 1 } });
    const body = await json(response);
    assert.equal(response.status, 409);
    assert.equal(
      body.error,
      "attempt 1 of command c1 is no longer current (the current attempt is 2, delivered)",
    );
  });
  await t.step("an attempt never delivered, or a command never delivered, says so", async () => {
    const later = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 3 } });
    assert.equal(later.status, 409);
    assert.equal(
      (await json(later)).error,
      "attempt 3 of command c1 was never delivered (last delivered: 2)",
    );
    await enqueue(d, { id: "q1", name: "echo queued" });
    const queued = await d.agent({ path: P.ack, body: { command_id: "q1", attempt: 1 } });
    const body = await json(queued);
    assert.equal(queued.status, 409);
    assert.equal(
      body.error,
      "command q1 was never delivered (it is queued); only a delivered attempt is acked",
    );
    assert.deepEqual(body.details, { status: "queued", attempt: 1 });
  });
  await t.step("the current attempt is acked, twice", async () => {
    for (let i = 0; i < 2; i++) {
      const response = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 2 } });
      assert.equal(response.status, 200);
      await response.body?.cancel();
    }
  });
  await t.step("unknown and foreign commands get the same answer", async () => {
    const unknown = await d.agent({ path: P.ack, body: { command_id: "nope", attempt: 1 } });
    assert.equal(unknown.status, 404);
    assert.deepEqual(await json(unknown), { error: "command nope does not exist" });
    const foreign = await d.agent({
      path: P.ack,
      body: { command_id: "c1", attempt: 2 },
      agentId: "a2",
      token: TOKEN2,
    });
    assert.equal(foreign.status, 404);
    assert.deepEqual(await json(foreign), { error: "command c1 does not exist" });
  });
  await t.step("a command already final says so", async () => {
    const reported = await d.agent({ path: P.report, body: reportBody("c1", { attempt: 2 }) });
    assert.equal(reported.status, 200);
    await reported.body?.cancel();
    const response = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 2 } });
    assert.equal(response.status, 409);
    assert.equal(
      (await json(response)).error,
      "command c1 is already success; attempt 2 is no longer current",
    );
  });
});

Deno.test("reports: the first final result wins, repeats are duplicates", async (t) => {
  await using d = await makeDashboard();
  await enqueue(d, { id: "c1", name: "echo hi" });
  await waitFor(d);
  await t.step("accepted, and stored with its result", async () => {
    const response = await d.agent({ path: P.report, body: reportBody("c1") });
    assert.deepEqual(await json(response), { accepted: true });
    const stored = await status(d, "c1");
    assert.equal(stored.status, "success");
    assert.deepEqual(stored.result, reportBody("c1").result);
    assert.equal(stored.started_at, "2026-01-12T10:00:05.120Z");
    assert.equal(stored.completed_at, "2026-01-12T10:00:05.124Z");
  });
  await t.step("a repeat is a duplicate and changes nothing", async () => {
    const response = await d.agent({
      path: P.report,
      body: reportBody("c1", { status: "failed", result: null, error: "boom" }),
    });
    assert.deepEqual(await json(response), { accepted: true, duplicate: true });
    assert.equal((await status(d, "c1")).status, "success");
    // Once it has a report, any other is that duplicate, whatever attempt it names (never
    // delivered ones included), as docs/protocol.md §2 says: an agent sending its result again
    // is told it arrived.
    const undelivered = await d.agent({ path: P.report, body: reportBody("c1", { attempt: 9 }) });
    assert.deepEqual(await json(undelivered), { accepted: true, duplicate: true });
  });
  await t.step("unknown and another agent's → the same 404, never delivered → 409", async () => {
    const unknown = await d.agent({ path: P.report, body: reportBody("nope") });
    assert.equal(unknown.status, 404);
    assert.deepEqual(await json(unknown), { error: "command nope does not exist" });
    const foreign = await d.agent({
      path: P.report,
      body: reportBody("c1"),
      agentId: "a2",
      token: TOKEN2,
    });
    assert.equal(foreign.status, 404);
    assert.deepEqual(await json(foreign), { error: "command c1 does not exist" });
    await enqueue(d, { id: "c2", name: "echo queued" });
    const early = await d.agent({ path: P.report, body: reportBody("c2") });
    assert.equal(early.status, 409);
    assert.match((await json(early)).error as string, /never delivered/);
  });
});

Deno.test("a late report of an earlier attempt is accepted and stops redelivery", async () => {
  await using d = await makeDashboard({ ackTimeoutSecs: 10 });
  await enqueue(d, { id: "c1", name: "echo hi" });
  await waitFor(d);
  d.clock.advance(10_000);
  await d.dashboard.expireLeases();
  assert.equal((await status(d, "c1")).status, "queued");
  const late = await d.agent({ path: P.report, body: reportBody("c1", { attempt: 1 }) });
  assert.deepEqual(await json(late), { accepted: true });
  const nothing = await d.agent({ path: P.wait("default", 1) });
  assert.equal(nothing.status, 204);
});

Deno.test("enqueue is idempotent on id: same body → duplicate, different body → 409", async () => {
  await using d = await makeDashboard();
  const body = { id: "c1", name: "echo hi", params: { priority: "high", timeout_secs: 5 } };
  const first = await enqueue(d, body);
  assert.equal(first.id, "c1");
  assert.equal(first.duplicate, undefined);
  const again = await enqueue(d, {
    params: { timeout_secs: 5, priority: "high" },
    name: "echo hi",
    id: "c1",
  });
  assert.equal(again.duplicate, true, "key order does not matter");
  assert.equal(again.expires_at, first.expires_at);
  const conflict = await enqueue(d, { ...body, name: "echo other" }, 409);
  assert.match(conflict.error as string, /command c1 already exists with a different body/);
  const generated = await enqueue(d, { name: "echo generated" });
  assert.match(generated.id as string, /^[0-9a-f-]{36}$/);
});

Deno.test("cancel: queued → 200 cancelled, delivered → 202 requested, final → 409", async (t) => {
  await using d = await makeDashboard({ ackTimeoutSecs: 10 });
  await enqueue(d, { id: "q", name: "echo queued", params: { priority: "low" } });
  await enqueue(d, { id: "d", name: "echo delivered", params: { priority: "high" } });
  await waitFor(d);
  await t.step("queued", async () => {
    const response = await d.admin("POST", "/api/v1/commands/q/cancel", {});
    const body = await json(response);
    assert.equal(response.status, 200);
    assert.equal(body.cancelled, true);
    assert.equal((body.command as Record<string, unknown>).status, "cancelled");
  });
  await t.step("delivered: the flag is visible in the command", async () => {
    const response = await d.admin("POST", "/api/v1/commands/d/cancel");
    const body = await json(response);
    assert.equal(response.status, 202);
    assert.equal(body.cancel_requested, true);
    assert.equal((await status(d, "d")).cancel_requested, true);
  });
  await t.step("final", async () => {
    const response = await d.admin("POST", "/api/v1/commands/q/cancel");
    assert.equal(response.status, 409);
    assert.match((await json(response)).error as string, /already cancelled/);
  });
  await t.step("unknown", async () => {
    const response = await d.admin("POST", "/api/v1/commands/nope/cancel");
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });
  await t.step("a cancel-requested command is not redelivered when its lease ends", async () => {
    d.clock.advance(10_000);
    const expired = await d.dashboard.expireLeases();
    assert.deepEqual(expired.cancelled.map((c) => c.id), ["d"]);
    const ended = await status(d, "d");
    assert.equal(ended.status, "cancelled");
    // The dashboard ended it, not the agent: the error says so, as for lost and expired.
    assert.equal(
      ended.error,
      "cancel requested while attempt 1 was delivered; its lease ended without a report, so the " +
        "dashboard ended it (the agent never confirmed it stopped)",
    );
    assert.equal((await status(d, "q")).error, null, "cancelled while queued: nothing to explain");
  });
  await t.step(
    "a late report of the cancelled command replaces the dashboard's reason",
    async () => {
      const late = await d.agent({
        path: P.report,
        body: reportBody("d", { status: "cancelled", result: null, error: "stopped by SIGTERM" }),
      });
      assert.equal(late.status, 200);
      await late.body?.cancel();
      assert.equal((await status(d, "d")).error, "stopped by SIGTERM");
    },
  );
});

Deno.test("operator API lists commands newest first and agents with their state", async (t) => {
  await using d = await makeDashboard();
  await enqueue(d, { id: "c1", name: "echo 1" });
  d.clock.advance(1);
  await enqueue(d, { id: "c2", name: "echo 2" });
  const c3 = await d.admin("POST", P.enqueue, {
    id: "c3",
    name: "echo 3",
    agent_id: "a2",
    params: { deployment_hash: "dep-x" },
  });
  assert.equal(c3.status, 202);
  await c3.body?.cancel();
  await t.step("commands, filtered", async () => {
    const ids = async (query: string) => {
      const response = await d.admin("GET", `/api/v1/commands${query}`);
      assert.equal(response.status, 200);
      return ((await json(response)).commands as Array<{ id: string }>).map((c) => c.id);
    };
    assert.deepEqual(await ids(""), ["c3", "c2", "c1"]);
    assert.deepEqual(await ids("?agent_id=a1"), ["c2", "c1"]);
    assert.deepEqual(await ids("?agent_id=a1&limit=1"), ["c2"]);
    assert.deepEqual(await ids("?status=delivered"), []);
    const bad = await d.admin("GET", "/api/v1/commands?status=weird");
    assert.equal(bad.status, 400);
    assert.match((await json(bad)).error as string, /query "status"/);
    for (const limit of ["0", "1001", "99999999", "1e3", "-1", "ten"]) {
      const badLimit = await d.admin("GET", `/api/v1/commands?limit=${limit}`);
      assert.equal(badLimit.status, 400, `limit=${limit}`);
      assert.equal(
        (await json(badLimit)).error,
        `query "limit": must be a whole number from 1 to 1000`,
      );
    }
    assert.deepEqual(await ids("?limit=1000"), ["c3", "c2", "c1"]);
  });
  await t.step("one command with every field of PROTOCOL §3", async () => {
    const command = await status(d, "c1");
    for (
      const field of [
        "id",
        "agent_id",
        "name",
        "params",
        "status",
        "attempt",
        "created_at",
        "delivered_at",
        "completed_at",
        "result",
        "error",
      ]
    ) assert.ok(field in command, `has ${field}`);
    assert.equal(command.created_at, new Date(T0).toISOString());
    const missing = await d.admin("GET", "/api/v1/commands/nope");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  });
  await t.step("agents: last seen, waiting, queued; never tokens", async () => {
    const waiting = d.agent({ path: P.wait("other-hash", 1), agentId: "a2", token: TOKEN2 });
    await until(() => d.dashboard.hub.isWaiting("a2"), "a2 waits");
    const response = await d.admin("GET", "/api/v1/agents");
    const body = await json(response);
    assert.ok(!JSON.stringify(body).includes("agent-token"), "no token in the answer");
    const agents = body.agents as Array<Record<string, unknown>>;
    assert.deepEqual(agents.map((a) => [a.id, a.queued, a.waiting]), [
      ["a1", 2, false],
      ["a2", 1, true],
    ]);
    assert.equal(agents[0].last_seen_at, new Date(T0 + 1).toISOString());
    assert.equal((await waiting).status, 204, "a command for another hash is not delivered");
    await (await waiting).body?.cancel();
  });
  await t.step("health", async () => {
    const body = await json(await d.dashboard.app.request("/health"));
    assert.equal(body.status, "ok");
    assert.equal(body.dev_mode, false);
  });
});

Deno.test("health's uptime counts the time the dashboard ran, whatever its wall clock did", async (t) => {
  // It was the wall time since the start: a clock set back an hour (NTP, a resumed VM) said 0 s
  // for that hour, and one set forward added the hour.
  for (const stepMs of [-3_600_000, 3_600_000]) {
    await t.step(`a wall clock stepped by ${stepMs / 1000} s`, async () => {
      await using d = await makeDashboard();
      d.clock.advance(10_000);
      d.clock.wallStepMs = stepMs;
      const body = await json(await d.dashboard.app.request("/health"));
      assert.equal(body.uptime_secs, 10);
      assert.equal(body.time, new Date(T0 + 10_000 + stepMs).toISOString());
    });
  }
});

Deno.test("operator API pages the commands list by the cursor of the page before", async () => {
  await using d = await makeDashboard();
  await enqueue(d, { id: "c1", name: "echo 1" });
  await enqueue(d, { id: "c2", name: "echo 2" });
  const c3 = await d.admin("POST", P.enqueue, { id: "c3", name: "echo 3", agent_id: "a2" });
  assert.equal(c3.status, 202);
  await c3.body?.cancel();
  const page = async (query: string) => {
    const response = await d.admin("GET", `/api/v1/commands${query}`);
    assert.equal(response.status, 200);
    const body = await json(response);
    return {
      ids: (body.commands as Array<{ id: string }>).map((c) => c.id),
      next: body.next_before as string | undefined,
    };
  };
  const all = await page("");
  assert.equal(all.next, undefined, "no older commands: no cursor");
  const first = await page("?limit=1");
  assert.deepEqual(first.ids, ["c3"]);
  assert.equal(typeof first.next, "string");
  // A command enqueued between two page reads is not on the later page.
  await enqueue(d, { id: "c4", name: "echo 4" });
  const second = await page(`?limit=1&before=${encodeURIComponent(first.next!)}`);
  assert.deepEqual(second.ids, ["c2"]);
  const third = await page(`?limit=1&before=${encodeURIComponent(second.next!)}`);
  assert.deepEqual(third, { ids: ["c1"], next: undefined }, "the last page has no cursor");
  // With a filter: the cursor of the page of a1's commands lists a1's older commands.
  const a1 = await page("?agent_id=a1&limit=1");
  assert.deepEqual(a1.ids, ["c4"]);
  assert.deepEqual(await page(`?agent_id=a1&limit=2&before=${a1.next}`), {
    ids: ["c2", "c1"],
    next: undefined,
  });
  assert.deepEqual((await page("?before=")).ids, ["c4", "c3", "c2", "c1"], "empty: none");
  for (const before of ["0", "-1", "abc", "1.5", "1e3", "99999999999999999999", "%3Cb%3E"]) {
    const bad = await d.admin("GET", `/api/v1/commands?before=${before}`);
    assert.equal(bad.status, 400, `before=${before}`);
    assert.equal(
      (await json(bad)).error,
      `query "before": must be the next_before of an earlier page of this list`,
    );
  }
});

Deno.test("operator API lists commands without their output when asked, how each ended kept", async () => {
  await using d = await makeDashboard();
  await enqueue(d, { id: "c1", name: "echo 1" });
  await enqueue(d, { id: "c2", name: "echo 2" });
  assert.equal((await waitFor(d)).id, "c1");
  const body = reportBody("c1", { status: "failed" });
  body.result.exit_code = 2;
  const reported = await d.agent({ path: P.report, body });
  assert.equal(reported.status, 200, JSON.stringify(await json(reported)));
  const list = async (query: string) => {
    const response = await d.admin("GET", `/api/v1/commands${query}`);
    assert.equal(response.status, 200);
    return (await json(response)).commands as Array<Record<string, unknown>>;
  };
  const full = await list("");
  const light = await list("?output=none");
  assert.deepEqual(await list("?output=full"), full);
  assert.equal((full[1].result as Record<string, unknown>).stdout, "Hello from dashboard\n");
  assert.deepEqual(light, [
    full[0],
    { ...full[1], result: { exit_code: 2, signal: null, duration_secs: 0.004 } },
  ]);
  assert.deepEqual(await list("?output=none&limit=1&agent_id=a1"), [full[0]]);
  for (const output of ["no", "None", "0"]) {
    const bad = await d.admin("GET", `/api/v1/commands?output=${output}`);
    assert.equal(bad.status, 400, `output=${output}`);
    assert.equal((await json(bad)).error, `query "output": must be full or none`);
  }
});

Deno.test("wait: deployment hashes, timeout clamping and bad paths", async (t) => {
  await using d = await makeDashboard();
  await enqueue(d, { id: "h1", name: "echo", params: { deployment_hash: "dep-1" } });
  await enqueue(d, { id: "any", name: "echo" });
  await t.step("a wait on another hash gets only the unhashed command", async () => {
    assert.equal((await waitFor(d, "dep-2")).id, "any");
  });
  await t.step("a wait on the command's hash gets it, with its hash", async () => {
    const delivered = await waitFor(d, "dep-1") as Delivered & { deployment_hash?: string };
    assert.equal(delivered.id, "h1");
    assert.equal(delivered.deployment_hash, "dep-1");
  });
  await t.step("a timeout that is not a number → 400", async () => {
    const response = await d.agent({ path: "/api/v1/agent/commands/wait/dep-1?timeout=soon" });
    assert.equal(response.status, 400);
    assert.match((await json(response)).error as string, /query "timeout"/);
  });
  await t.step(
    "a timeout given twice → 400 (only one would be read), on both long-polls",
    async () => {
      await enqueue(d, { id: "t2", name: "echo" });
      for (
        const path of [
          "/api/v1/agent/commands/wait/dep-1?timeout=1&timeout=60",
          "/api/v1/agent/commands/t2/cancel-wait?timeout=60&timeout=1",
        ]
      ) {
        const response = await d.agent({ path });
        assert.equal(response.status, 400);
        const body = await json(response);
        assert.equal(body.error, 'query "timeout": is given 2 times; a wait takes one');
      }
      // Nothing was handed out: the queued command is still there for a proper wait.
      assert.equal((await waitFor(d, "dep-1")).id, "t2");
    },
  );
});
