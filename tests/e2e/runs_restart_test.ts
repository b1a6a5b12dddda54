/**
 * A fan-out run survives a dashboard crash: `status serve` is killed with SIGKILL while the run's
 * first commands run, and restarted on the same database and port. The run must go on to its
 * end, every agent must succeed, and no agent may run the command twice. A run cancelled right
 * after such a restart starts nothing more: its running part is stopped, the others are skipped.
 */
import assert from "node:assert/strict";
import { type ServeProcess, startAgent, startServe, tempDir } from "./helpers.ts";
import { jsonLogs } from "../_cli.ts";
import type { CliProcess } from "../_cli.ts";

const AGENTS = 4;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function getJson(url: string): Promise<Record<string, unknown> | null> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return response.ok ? await response.json() : null;
  } catch {
    return null; // the dashboard is restarting
  }
}

Deno.test("a run goes on after a dashboard SIGKILL, and no agent runs its command twice", async () => {
  await using dir = tempDir();
  const db = `${dir.path}/status.db`;
  const dashboards: ServeProcess[] = [];
  const agents: CliProcess[] = [];
  let current = await startServe({ db, cwd: dir.path });
  dashboards.push(current);
  const { url, port } = current;
  try {
    for (let i = 1; i <= AGENTS; i++) {
      agents.push(startAgent({
        url,
        agentId: `web-${i}`,
        stateDir: `${dir.path}/agent-${i}`,
        cwd: dir.path,
        args: [
          "--agent-labels",
          "role=web,zone=eu",
          "--polling-timeout-secs",
          "5",
          "--polling-backoff-secs",
          "1",
          "--polling-backoff-max-secs",
          "2",
          "--metrics-interval-secs",
          "3600",
        ],
      }));
    }
    // Every agent has sent its labels.
    for (let tries = 0;; tries++) {
      const fleet = await getJson(`${url}/api/v1/agents`);
      const labelled = (fleet?.agents as Array<{ labels: Record<string, string> }> | undefined)
        ?.filter((a) => a.labels.role === "web").length ?? 0;
      if (labelled === AGENTS) break;
      assert.ok(tries < 600, `only ${labelled} agents sent their labels`);
      await sleep(100);
    }

    const created = await fetch(`${url}/api/v1/runs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        id: "run-kill",
        name: "sleep 1",
        target: { labels: { role: "web" } },
        max_concurrency: 2,
      }),
    });
    assert.equal(created.status, 201, await created.text());

    // Kill the dashboard while the first commands run.
    for (let tries = 0;; tries++) {
      const run = await getJson(`${url}/api/v1/runs/run-kill`);
      const totals = (run?.totals ?? {}) as Record<string, number>;
      if ((totals.running ?? 0) > 0) break;
      assert.ok(tries < 300, `no command of the run ever ran: ${JSON.stringify(run)}`);
      await sleep(50);
    }
    current.proc.kill("SIGKILL");
    await current.proc.exited(10_000);
    for (let tries = 0;; tries++) {
      try {
        current = await startServe({ db, port, cwd: dir.path });
        dashboards.push(current);
        break;
      } catch (error) {
        if (tries >= 10) throw error;
        await sleep(200);
      }
    }

    let run: Record<string, unknown> | null = null;
    for (let tries = 0;; tries++) {
      run = await getJson(`${url}/api/v1/runs/run-kill`);
      if (run && ["succeeded", "failed", "cancelled"].includes(String(run.status))) break;
      assert.ok(tries < 600, `the run did not end: ${JSON.stringify(run)}`);
      await sleep(100);
    }
    assert.equal(run?.status, "succeeded", JSON.stringify(run));
    assert.equal((run?.totals as Record<string, number>).success, AGENTS);

    // Each agent ran its command exactly once.
    for (const agent of agents) agent.kill("SIGINT");
    const runs = new Map<string, number>();
    for (const agent of agents) {
      await agent.exited(30_000);
      for (const record of jsonLogs(agent.stderr)) {
        const match = /^Executing command: sleep 1 \(id: (\S+)\)$/.exec(String(record.message));
        if (match) runs.set(match[1], (runs.get(match[1]) ?? 0) + 1);
      }
    }
    assert.deepEqual(
      [...runs].sort(),
      Array.from({ length: AGENTS }, (_, i) => [`run-kill:web-${i + 1}`, 1]),
    );
  } finally {
    for (const agent of agents) await agent[Symbol.asyncDispose]();
    for (const dashboard of dashboards) await dashboard[Symbol.asyncDispose]();
  }
});

Deno.test("a run cancelled after a dashboard SIGKILL starts nothing more, and its running part stops", async () => {
  await using dir = tempDir();
  const db = `${dir.path}/status.db`;
  const dashboards: ServeProcess[] = [];
  const agents: CliProcess[] = [];
  let current = await startServe({ db, cwd: dir.path });
  dashboards.push(current);
  const { url, port } = current;
  try {
    for (let i = 1; i <= 3; i++) {
      agents.push(startAgent({
        url,
        agentId: `web-${i}`,
        stateDir: `${dir.path}/agent-${i}`,
        cwd: dir.path,
        args: [
          "--polling-timeout-secs",
          "5",
          "--polling-backoff-secs",
          "1",
          "--polling-backoff-max-secs",
          "2",
          "--metrics-interval-secs",
          "3600",
        ],
      }));
    }
    for (let tries = 0;; tries++) {
      const fleet = await getJson(`${url}/api/v1/agents`);
      if ((fleet?.agents as unknown[] | undefined)?.length === 3) break;
      assert.ok(tries < 600, "the agents did not connect");
      await sleep(100);
    }
    const created = await fetch(`${url}/api/v1/runs`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        id: "run-stop",
        name: "sleep 60",
        target: { agents: ["web-1", "web-2", "web-3"] },
        max_concurrency: 1,
      }),
    });
    assert.equal(created.status, 201, await created.text());
    for (let tries = 0;; tries++) {
      const run = await getJson(`${url}/api/v1/runs/run-stop`);
      if (((run?.totals ?? {}) as Record<string, number>).running === 1) break;
      assert.ok(tries < 300, `the first part never ran: ${JSON.stringify(run)}`);
      await sleep(50);
    }
    current.proc.kill("SIGKILL");
    await current.proc.exited(10_000);
    for (let tries = 0;; tries++) {
      try {
        current = await startServe({ db, port, cwd: dir.path });
        dashboards.push(current);
        break;
      } catch (error) {
        if (tries >= 10) throw error;
        await sleep(200);
      }
    }
    const cancelled = await fetch(`${url}/api/v1/runs/run-stop/cancel`, { method: "POST" });
    assert.equal(cancelled.status, 200, await cancelled.clone().text());
    await cancelled.body?.cancel();

    // web-1's part is stopped by its agent once it is back; the others never start.
    let run: Record<string, unknown> | null = null;
    for (let tries = 0;; tries++) {
      run = await getJson(`${url}/api/v1/runs/run-stop`);
      if (run?.status === "cancelled") break;
      assert.ok(tries < 600, `the run did not end: ${JSON.stringify(run)}`);
      await sleep(100);
    }
    const states = (run?.agents as Array<{ state: string }>).map((agent) => agent.state);
    assert.notEqual(states[0], "success", JSON.stringify(run));
    assert.deepEqual(states.slice(1), ["skipped", "skipped"], JSON.stringify(run));
    assert.equal((run?.totals as Record<string, number>).skipped, 2);

    for (const agent of agents) agent.kill("SIGINT");
    const ran: string[] = [];
    for (const agent of agents) {
      await agent.exited(30_000);
      for (const record of jsonLogs(agent.stderr)) {
        const match = /^Executing command: sleep 60 \(id: (\S+)\)$/.exec(String(record.message));
        if (match) ran.push(match[1]);
      }
    }
    assert.deepEqual(ran, ["run-stop:web-1"]);
  } finally {
    for (const agent of agents) await agent[Symbol.asyncDispose]();
    for (const dashboard of dashboards) await dashboard[Symbol.asyncDispose]();
  }
});
