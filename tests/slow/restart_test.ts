/**
 * The delivery guarantee across dashboard crashes: 200 commands are enqueued while the dashboard
 * is killed with SIGKILL and restarted on the same database and port several times. Every command
 * must end with exactly one stored result, and the agent must run none of them twice.
 */
import assert from "node:assert/strict";
import { FINAL_STATUSES } from "../../src/protocol/mod.ts";
import { type ServeProcess, startAgent, startServe, tempDir } from "../e2e/helpers.ts";
import { jsonLogs } from "../_cli.ts";

const COMMANDS = 200;
const RESTARTS = 5;
const AGENT = "restart-agent";
const FINAL: ReadonlySet<string> = FINAL_STATUSES;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("200 commands survive 5 dashboard crashes: one result each, none run twice", async () => {
  await using dir = tempDir();
  const db = `${dir.path}/status.db`;
  const serveArgs = [
    "--ack-timeout-secs",
    "2",
    "--max-attempts",
    "50",
    "--rate-limit-per-minute",
    "1000000",
  ];
  const dashboards: ServeProcess[] = [];
  let current = await startServe({ db, cwd: dir.path, args: serveArgs });
  dashboards.push(current);
  const port = current.port;
  const url = current.url;

  try {
    await using agent = startAgent({
      url,
      agentId: AGENT,
      stateDir: `${dir.path}/agent-state`,
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
    });
    await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });

    const run = crypto.randomUUID().slice(0, 8);
    const idOf = (i: number) => `r-${run}-${i}`;
    const tokenOf = (i: number) => `token-${run}-${i}`;

    /** Enqueues one command, retrying through crashes; a retry of a landed enqueue is a duplicate. */
    const enqueue = async (i: number) => {
      const body = JSON.stringify({ id: idOf(i), name: `echo ${tokenOf(i)}`, params: {} });
      for (let attempt = 0;; attempt++) {
        assert.ok(attempt < 400, `enqueue of ${idOf(i)} never succeeded`);
        try {
          const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Agent-Id": AGENT },
            body,
            signal: AbortSignal.timeout(5000),
          });
          const answer = await response.json().catch(() => ({}));
          if (response.status === 202) {
            assert.equal(answer.id, idOf(i));
            return;
          }
          assert.ok(response.status >= 500, `enqueue answered ${response.status}`);
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          // The dashboard is down: try again shortly.
        }
        await sleep(100);
      }
    };

    let enqueued = 0;
    const killedAt: number[] = [];
    const enqueuer = (async () => {
      const workers = Array.from({ length: 4 }, async (_, w) => {
        for (let i = w; i < COMMANDS; i += 4) {
          await enqueue(i);
          enqueued++;
          // Spread the enqueues over the restarts, so that crashes hit enqueues, deliveries,
          // acks and reports in flight.
          await sleep(100);
        }
      });
      await Promise.all(workers);
    })();

    const restarter = (async () => {
      for (let n = 0; n < RESTARTS; n++) {
        await sleep(500 + Math.floor(Math.random() * 700));
        killedAt.push(enqueued);
        current.proc.kill("SIGKILL");
        await current.proc.exited(10_000);
        for (let tries = 0;; tries++) {
          try {
            current = await startServe({ db, port, cwd: dir.path, args: serveArgs });
            dashboards.push(current);
            break;
          } catch (error) {
            if (tries >= 10) throw error;
            await sleep(200);
          }
        }
      }
    })();

    await Promise.all([enqueuer, restarter]);
    assert.equal(enqueued, COMMANDS);

    // Every command reaches a final status.
    const deadline = Date.now() + 45_000;
    let records: Array<Record<string, unknown>> = [];
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`${url}/api/v1/commands?agent_id=${AGENT}&limit=1000`);
        const body = await response.json();
        records = (body.commands ?? body) as Array<Record<string, unknown>>;
        if (records.length === COMMANDS && records.every((r) => FINAL.has(String(r.status)))) break;
      } catch {
        // restarting
      }
      await sleep(250);
    }
    const unfinished = records.filter((r) => !FINAL.has(String(r.status)));
    assert.equal(records.length, COMMANDS);
    assert.deepEqual(unfinished.map((r) => `${r.id}: ${r.status}`), []);

    // One stored result each, the right one.
    const byId = new Map(records.map((r) => [String(r.id), r]));
    for (let i = 0; i < COMMANDS; i++) {
      const record = byId.get(idOf(i));
      assert.ok(record, `no command ${idOf(i)}`);
      assert.equal(record.status, "success", JSON.stringify(record));
      const result = record.result as { stdout: string; exit_code: number };
      assert.equal(result.stdout, `${tokenOf(i)}\n`);
      assert.equal(result.exit_code, 0);
    }

    // The agent ran each exactly once.
    agent.kill("SIGINT");
    assert.equal((await agent.exited(30_000)).code, 0);
    const runs = new Map<string, number>();
    for (const record of jsonLogs(agent.stderr)) {
      const match = /^Executing command: echo (\S+) \(id: (\S+)\)$/.exec(String(record.message));
      if (match) runs.set(match[2], (runs.get(match[2]) ?? 0) + 1);
    }
    const twice = [...runs].filter(([, count]) => count !== 1);
    assert.deepEqual(twice, [], "commands run more than once");
    assert.equal(runs.size, COMMANDS);
    assert.equal(dashboards.length, RESTARTS + 1);
    // At least the first crash hit while commands were still being enqueued.
    assert.ok(killedAt[0] < COMMANDS, `first crash after all enqueues: ${killedAt}`);
  } finally {
    for (const dashboard of dashboards) await dashboard[Symbol.asyncDispose]();
  }
});
