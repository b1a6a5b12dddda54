import assert from "node:assert/strict";
import { runAgent } from "../../src/agent/mod.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { OperatorClient } from "../../src/operator/mod.ts";
import { startServer } from "../../src/server/mod.ts";

const BURST = 200;

Deno.test("with the default limits one agent takes a burst of 200 commands without one 429", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "status-burst-" });
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const refused: string[] = [];
  const agentRequests = new Map<string, number>();
  const countingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
    const kind = path.replace(/\/commands\/[^/]+\/cancel-wait$/, "/commands/{id}/cancel-wait")
      .replace(/\/wait\/.*$/, "/wait");
    agentRequests.set(kind, (agentRequests.get(kind) ?? 0) + 1);
    if (response.status === 429) refused.push(`${init?.method ?? "GET"} ${path}`);
    return response;
  };
  const stop = new AbortController();
  const agent = runAgent({
    dashboardUrl: server.url,
    agentId: "burst-agent",
    stateDir,
    heartbeat: false,
    pollingTimeoutSecs: 5,
    fetch: countingFetch,
    exec: { cgroups: false }, // beside other test threads (README, "As a library")
  }, stop.signal);
  try {
    // The operator's burst: 200 enqueues as fast as they go (their own limit, not the agent's).
    const operator = new OperatorClient({ dashboardUrl: server.url });
    const ids: string[] = [];
    for (let i = 0; i < BURST; i++) {
      ids.push((await operator.enqueue({ agentId: "burst-agent", name: `echo burst ${i}` })).id);
    }
    // A guard against a hang, not a speed bound: a CI machine running the other test files
    // beside this one took two minutes for the burst once (197 of 200 done at 120 s).
    const deadline = Date.now() + 300_000;
    for (;;) {
      const done = await operator.listCommands({ agentId: "burst-agent", limit: 1000 });
      const final = done.filter((c) => c.status === "success").length;
      if (final === BURST || refused.length > 0) break;
      const unexpected = done.filter((c) =>
        !["queued", "delivered", "running", "success"].includes(c.status)
      );
      assert.deepEqual(
        unexpected.map((c) => ({
          id: c.id,
          name: c.name,
          status: c.status,
          error: c.error,
          exit_code: c.result?.exit_code,
          signal: c.result?.signal,
          stderr: c.result?.stderr,
        })),
        [],
        "every command of the burst succeeds",
      );
      assert.ok(
        Date.now() < deadline,
        `only ${final} of ${BURST} done after 300 s: ${
          JSON.stringify(done.filter((c) => c.status !== "success").map((c) => [c.id, c.status]))
        }`,
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    stop.abort();
    await agent;
    closeLogging();
    await Deno.remove(stateDir, { recursive: true });
  }
  assert.deepEqual(refused, [], `agent requests: ${JSON.stringify([...agentRequests])}`);
  assert.ok((agentRequests.get("/api/v1/agent/commands/report") ?? 0) >= BURST);
});
