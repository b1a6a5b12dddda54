/**
 * `status cancel` of a running command against a real `status serve` and `status agent`: the
 * agent's cancel-wait is woken, the command's process is stopped and the result is `cancelled`.
 */
import assert from "node:assert/strict";
import { startAgent, startServe, tempDir, waitForFinal } from "./helpers.ts";
import { jsonLogs, PERMS, runCli } from "../_cli.ts";
import { alive } from "../exec/helpers.ts";

const AGENT = "e2e-cancel-agent";

/** The live `sleep` children of a process. Asks `ps`: Deno reads `/proc` only under `--allow-all`. */
async function sleepChildren(parent: number): Promise<number[]> {
  const output = await new Deno.Command("ps", {
    args: ["-o", "pid=,comm=", "--ppid", String(parent)],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const pids = new TextDecoder().decode(output.stdout).split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([pid, comm]) => pid && comm === "sleep")
    .map(([pid]) => Number(pid));
  return await alive(pids);
}

Deno.test("status cancel stops a running command: cancelled within seconds, no sleep left", async () => {
  await using dir = tempDir();
  await using serve = await startServe({ db: `${dir.path}/status.db`, cwd: dir.path });
  await using agent = startAgent({
    url: serve.url,
    agentId: AGENT,
    stateDir: `${dir.path}/agent-state`,
    cwd: dir.path,
  });
  await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });

  const enqueued = await fetch(`${serve.url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": AGENT },
    body: JSON.stringify({ id: "cancel-1", name: "sleep 30", params: {} }),
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  await agent.stderr.waitFor("Executing command: sleep 30 (id: cancel-1)");

  // Running on the dashboard (acked), with its `sleep` alive under the agent.
  let sleeping: number[] = [];
  const deadline = Date.now() + 10_000;
  while (true) {
    const response = await fetch(`${serve.url}/api/v1/commands/cancel-1`);
    const { status } = await response.json();
    sleeping = await sleepChildren(agent.child.pid);
    if (status === "running" && sleeping.length === 1) break;
    if (Date.now() > deadline) throw new Error(`not running: ${status}, sleep ${sleeping}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  // --wait returns once the command has stopped, with 0 because it ended cancelled.
  const cancel = await runCli(["cancel", "cancel-1", "--wait", "--dashboard-url", serve.url], {
    perms: PERMS.operator,
    cwd: dir.path,
  });
  assert.equal(cancel.code, 0, cancel.stderr);
  assert.equal(cancel.stdout, "cancel requested: the agent will stop cancel-1");
  assert.match(cancel.stderr, /cancel-1 cancelled/);
  const final = await waitForFinal(serve.url, "cancel-1", 5_000);
  assert.equal(final.status, "cancelled");
  const result = final.result as { signal: string | null; duration_secs: number };
  assert.equal(result.signal, "SIGTERM", "stopped by the agent, not at its lease's end");
  assert.ok(result.duration_secs < 25, `ran ${result.duration_secs} s`);
  assert.deepEqual(await alive(sleeping), [], `sleep ${sleeping[0]} is gone`);
  assert.deepEqual(await sleepChildren(agent.child.pid), []);
  const record = jsonLogs(agent.stderr).find((r) =>
    r.message === "command cancelled by the dashboard"
  );
  assert.equal(record?.commandId, "cancel-1");

  agent.kill("SIGINT");
  assert.equal((await agent.exited()).code, 0);
  serve.proc.kill("SIGINT");
  assert.equal((await serve.proc.exited()).code, 0);
});
