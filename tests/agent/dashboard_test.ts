/**
 * The agent against the real dashboard (`startServer`), in process, over a real socket.
 */
import assert from "node:assert/strict";
import { runAgent } from "../../src/agent/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { generateToken } from "../../src/protocol/mod.ts";
import { captureLogs, memoryAgentState } from "./_helpers.ts";
import { systemClock } from "../../src/clock.ts";

/** Polls the operator API until the command is final; returns it. */
async function finalCommand(url: string, id: string, adminToken?: string, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (true) {
    const response = await fetch(`${url}/api/v1/commands/${id}`, {
      headers: adminToken ? { Authorization: `Bearer ${adminToken}` } : {},
    });
    const body = await response.json();
    if (["success", "failed", "rejected", "interrupted"].includes(body.status)) return body;
    if (Date.now() > deadline) throw new Error(`command ${id} still ${body.status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("a signed agent runs a command from the real dashboard and its result is recorded", async () => {
  using _logs = captureLogs();
  const token = generateToken();
  const adminToken = generateToken();
  await using store = openSqliteStore(":memory:");
  await store.addAgent({ id: "web-1", token, scopes: [...AGENT_SCOPES], now: Date.now() });
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken,
    waitRequireSignature: true,
  });
  assert.equal(server.devMode, false);

  const stop = new AbortController();
  using state = memoryAgentState();
  const done = runAgent({
    dashboardUrl: server.url,
    agentId: "web-1",
    agentToken: token,
    pollingTimeoutSecs: 2,
    heartbeat: false,
    state,
    exec: { allowedPrograms: ["echo"], cgroups: false }, // beside other test threads (README)
  }, stop.signal);
  try {
    const enqueued = await fetch(`${server.url}/api/v1/agent/commands/enqueue`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ id: "cmd-signed", name: "echo signed", agent_id: "web-1" }),
    });
    assert.equal(enqueued.status, 202, await enqueued.text());
    const record = await finalCommand(server.url, "cmd-signed", adminToken);
    assert.equal(record.status, "success", JSON.stringify(record));
    assert.equal(record.result.stdout, "signed\n");
    assert.equal(record.attempt, 1);
  } finally {
    stop.abort();
    await done;
  }
});

Deno.test("a token-less agent works against a dev-mode dashboard (the seed's curl flow)", async () => {
  using _logs = captureLogs();
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  assert.equal(server.devMode, true);
  const stop = new AbortController();
  using state = memoryAgentState();
  const done = runAgent({
    dashboardUrl: server.url,
    agentId: "test-agent",
    pollingTimeoutSecs: 2,
    heartbeat: false,
    state,
    exec: { cgroups: false }, // beside other test threads (README, "As a library")
  }, stop.signal);
  try {
    const enqueued = await fetch(`${server.url}/api/v1/agent/commands/enqueue`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
      body: JSON.stringify({ id: "cmd-001", name: "echo Hello from dashboard", params: {} }),
    });
    assert.equal(enqueued.status, 202, await enqueued.text());
    const record = await finalCommand(server.url, "cmd-001");
    assert.equal(record.status, "success");
    assert.equal(record.result.stdout, "Hello from dashboard\n");
    const refused = await fetch(`${server.url}/api/v1/agent/commands/enqueue`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
      body: JSON.stringify({ id: "cmd-002", name: "rm -rf /tmp/x" }),
    });
    await refused.body?.cancel();
    assert.equal((await finalCommand(server.url, "cmd-002")).status, "rejected");
  } finally {
    stop.abort();
    await done;
  }
});

Deno.test("an agent whose deadline outlives the dashboard's lease says so once, with both figures", async (t) => {
  const cases = [
    [1, 120, 0, true],
    [300, 300, 0, false],
    // The agent's clock 10 min ahead of the dashboard's: the lease is read against the answer's
    // Date, so the skew is no mismatch.
    [300, 300, 600_000, false],
  ] as const;
  for (const [dashboardSecs, agentSecs, skewMs, warned] of cases) {
    await t.step(
      `dashboard ${dashboardSecs} s, agent ${agentSecs} s, skew ${skewMs} ms`,
      async () => {
        using logs = captureLogs();
        await using server = await startServer({
          availableDescriptors: "plenty",
          db: ":memory:",
          port: 0,
          defaultTimeoutSecs: dashboardSecs,
        });
        const stop = new AbortController();
        using state = memoryAgentState();
        const done = runAgent({
          dashboardUrl: server.url,
          agentId: "web-1",
          pollingTimeoutSecs: 2,
          heartbeat: false,
          state,
          exec: { allowedPrograms: ["echo"], cgroups: false, defaultTimeoutSecs: agentSecs },
          clock: { ...systemClock, now: () => Date.now() + skewMs },
        }, stop.signal);
        try {
          for (const id of ["c1", "c2"]) {
            const enqueued = await fetch(`${server.url}/api/v1/agent/commands/enqueue`, {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ id, name: "echo hi", agent_id: "web-1" }),
            });
            assert.equal(enqueued.status, 202, await enqueued.text());
            assert.equal((await finalCommand(server.url, id)).status, "success");
          }
        } finally {
          stop.abort();
          await done;
        }
        const lines = logs.records.filter((r) =>
          /outlives|waits \d+ s for its result/.test(String(r.message))
        );
        if (!warned) {
          assert.deepEqual(lines, []);
          return;
        }
        assert.equal(lines.length, 2, JSON.stringify(lines));
        const [first, second] = lines;
        assert.equal(first.level, "warning");
        assert.match(
          String(first.message),
          /^command c1 may run here for 120 s, but the dashboard waits 6[0-2] s for its result: .*same COMMAND_TIMEOUT_SECS/,
        );
        assert.equal(second.level, "debug");
        assert.equal(second.commandId, "c2");
        assert.equal(first.deadlineSecs, 120);
      },
    );
  }
});
