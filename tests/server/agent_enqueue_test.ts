/**
 * An agent's own enqueue (signed with its token, scope `commands:enqueue`) is bounded by the
 * agent's commands not final, so that its token alone cannot fill the dashboard's store.
 */
import assert from "node:assert/strict";
import { json, makeDashboard, P, reportBody, TOKEN2 } from "./_helpers.ts";

Deno.test("an agent's own enqueue is 429 while it has the most commands not final; retries, operators and other agents go on", async (t) => {
  await using d = await makeDashboard({ maxOpenCommandsForAgentEnqueue: 3 });
  const own = async (id: string, agent: { agentId?: string; token?: string } = {}) => {
    const response = await d.agent({
      path: P.enqueue,
      body: { id, name: "echo hi", params: { metadata: { pad: "x".repeat(60_000) } } },
      ...agent,
    });
    return { status: response.status, body: await json(response), headers: response.headers };
  };
  for (const id of ["own-1", "own-2", "own-3"]) assert.equal((await own(id)).status, 202);

  await t.step("one more is refused, nothing stored", async () => {
    const refused = await own("own-4");
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("Retry-After"), "30");
    assert.equal(
      refused.body.error,
      "agent a1 has 3 commands queued, delivered or running, the most its own enqueue may add " +
        "to; retry once some of them have ended (an operator's enqueue is not limited)",
    );
    assert.deepEqual(refused.body.details, { retry_after_secs: 30, max_open_commands: 3 });
    const stored = await d.admin("GET", "/api/v1/commands/own-4");
    assert.equal(stored.status, 404);
    await stored.body?.cancel();
  });

  await t.step("a retry of an enqueue taken is still its duplicate", async () => {
    const retried = await own("own-2");
    assert.equal(retried.status, 202);
    assert.equal(retried.body.duplicate, true);
  });

  await t.step("operators and other agents are not limited by it", async () => {
    const operator = await d.admin("POST", P.enqueue, {
      id: "op-1",
      name: "echo op",
      agent_id: "a1",
    });
    assert.equal(operator.status, 202);
    await operator.body?.cancel();
    assert.equal((await own("other-1", { agentId: "a2", token: TOKEN2 })).status, 202);
  });

  await t.step("delivered and running commands count; final ones do not", async () => {
    // a1: own-1, own-2, own-3 and op-1 not final.
    const waited = await d.agent({ path: P.wait() });
    const delivered = await json(waited);
    const ack = await d.agent({ path: P.ack, body: { command_id: delivered.id, attempt: 1 } });
    assert.equal(ack.status, 200);
    await ack.body?.cancel();
    assert.equal((await own("own-5")).status, 429, "a running command still counts");
    const reported = await d.agent({ path: P.report, body: reportBody(delivered.id as string) });
    assert.equal(reported.status, 200);
    await reported.body?.cancel();
    assert.equal((await own("own-5")).status, 429, "three are still not final");
    const cancelled = await d.admin("POST", "/api/v1/commands/op-1/cancel");
    assert.equal(cancelled.status, 200);
    await cancelled.body?.cancel();
    assert.equal((await own("own-5")).status, 202, "two not final: room for one more");
    assert.equal((await own("own-6")).status, 429);
  });
});

Deno.test("an agent's enqueue of another agent's command id is 409, saying nothing of that command, which stays as it was", async () => {
  await using d = await makeDashboard();
  const body = { id: "theirs", name: "echo hi", params: { priority: "high" } };
  const operator = await d.admin("POST", P.enqueue, { ...body, agent_id: "a2" });
  assert.equal(operator.status, 202);
  await operator.body?.cancel();
  // The very body the operator sent for a2: not a duplicate, which would answer a2's expiry.
  for (const sent of [body, { ...body, name: "echo other" }]) {
    const response = await d.agent({ path: P.enqueue, body: sent });
    assert.equal(response.status, 409);
    assert.deepEqual(await json(response), {
      error: "command theirs already exists with a different body; use a new id",
    });
  }
  const stored = await json(await d.admin("GET", "/api/v1/commands/theirs"));
  assert.equal(stored.agent_id, "a2");
  assert.equal(stored.status, "queued");
  assert.equal(stored.priority, "high");
});
