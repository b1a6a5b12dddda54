/**
 * The seed's two-terminal flow end to end: `status serve` and `status agent` as real processes,
 * the seed's curl request, the stored result, and the agent's log lines in the seed's order.
 */
import assert from "node:assert/strict";
import { startAgent, startServe, tempDir, waitForFinal } from "./helpers.ts";
import { jsonLogs, PERMS } from "../_cli.ts";

/** The seed's request: `curl -X POST .../enqueue -H 'X-Agent-Id: test-agent' -d '{...}'`. */
async function seedCurl(url: string, id = "cmd-001"): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
    body: `{"id":"${id}","name":"echo Hello from dashboard","params":{}}`,
  });
  assert.equal(response.status, 202);
  return await response.json();
}

const SEED_LINES = [
  "Agent daemon starting",
  "metrics heartbeat started",
  "long-polling configuration initialized",
  "long-poll: polling loop started",
  "command received from dashboard",
  "Executing command: echo Hello from dashboard (id: cmd-001)",
  "command execution and reporting completed",
];

/** Checks that the messages appear in the log in this order. */
function assertInOrder(messages: string[], expected: string[]): void {
  let at = -1;
  for (const line of expected) {
    const found = messages.indexOf(line, at + 1);
    assert.ok(
      found > at,
      `log line ${JSON.stringify(line)} missing or out of order; messages:\n${messages.join("\n")}`,
    );
    at = found;
  }
}

for (const variant of ["full", "minimal"] as const) {
  const perms = variant === "full" ? PERMS.agent : PERMS.agentMinimal;
  Deno.test(
    `seed flow: serve + agent (deno run ${perms.join(" ")}) + the seed's curl`,
    async () => {
      await using dir = tempDir();
      await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
      await using agent = startAgent({
        url: serve.url,
        agentId: "test-agent",
        stateDir: `${dir.path}/agent-state`,
        perms,
        cwd: dir.path,
        // The minimal variant is exactly `deno run --allow-net --allow-run main.ts agent ...`.
        plain: variant === "minimal",
      });
      await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });

      const queued = await seedCurl(serve.url);
      assert.equal(queued.queued, true);
      assert.equal(queued.id, "cmd-001");
      const record = await waitForFinal(serve.url, "cmd-001");
      assert.equal(record.status, "success");
      const result = record.result as { stdout: string; exit_code: number };
      assert.equal(result.stdout, "Hello from dashboard\n");
      assert.equal(result.exit_code, 0);
      assert.equal(record.agent_id, "test-agent");

      await agent.stderr.waitFor("command execution and reporting completed");
      agent.kill("SIGINT");
      assert.equal((await agent.exited()).code, 0);
      const messages = jsonLogs(agent.stderr).map((r) => String(r.message));
      assertInOrder(messages, SEED_LINES);
      if (variant === "minimal") {
        // Without --allow-read/--allow-write the agent says what it skipped, and still works.
        assert.ok(messages.some((m) => /--allow-(read|write)/.test(m)), messages.join("\n"));
      }

      serve.proc.kill("SIGINT");
      assert.equal((await serve.proc.exited()).code, 0);
    },
  );
}
