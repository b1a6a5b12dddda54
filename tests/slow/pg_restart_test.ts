/**
 * The database restarted under load: while it is down the dashboards say so (`/health` 503,
 * requests 503 with `Retry-After`), and afterwards agents and instances recover by themselves:
 * queued work runs, cross-instance wake-ups work again, nothing ran twice.
 */
import assert from "node:assert/strict";
import { AGENT_SCOPES } from "../../src/store/mod.ts";
import { openPostgresStore } from "../../src/store/postgres.ts";
import { FINAL_STATUSES } from "../../src/protocol/mod.ts";
import { pgIgnore, startCluster, testDatabase } from "../_pg.ts";
import { startAgent, tempDir } from "../e2e/helpers.ts";
import { Instance, ledgerCounts, ledgerScript } from "./_fleet.ts";

const ADMIN = "admin-token-0123456789abcdef";
const TOKEN = "agent-token-a1-0123456789abcdefghijklmnopq";
const admin = { Authorization: `Bearer ${ADMIN}` };

async function enqueue(url: string, id: string, name: string): Promise<Response> {
  return await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { ...admin, "Content-Type": "application/json" },
    body: JSON.stringify({ id, agent_id: "a1", name }),
  });
}

async function pollUntil(check: () => Promise<boolean>, what: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

Deno.test({
  name: "a database restarted under load: dashboards answer 503 meanwhile, then everyone recovers",
  ignore: pgIgnore(true),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await startCluster();
    await using db = await testDatabase(cluster);
    {
      await using store = await openPostgresStore(db.url);
      await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
    }
    await using dir = tempDir("status-restart-");
    const script = await ledgerScript(dir.path);
    const env = { STATUS_ADMIN_TOKEN: ADMIN };
    const args = [
      "--ack-timeout-secs",
      "3",
      "--max-attempts",
      "20",
      "--rate-limit-per-minute",
      "60000",
      "--log-level",
      "warning",
    ];
    await using a = new Instance(db.url, env, args);
    await using b = new Instance(db.url, env, args);
    await Promise.all([a.start(), b.start()]);
    const urlA = `http://127.0.0.1:${a.port}`;
    const urlB = `http://127.0.0.1:${b.port}`;

    await using state = tempDir("status-restart-agent-");
    await using agent = startAgent({
      url: urlA,
      agentId: "a1",
      stateDir: state.path,
      args: [
        "--agent-token",
        TOKEN,
        "--allowed-programs",
        script,
        "--polling-timeout-secs",
        "60",
        "--polling-backoff-secs",
        "1",
        "--polling-backoff-max-secs",
        "2",
        "--log-level",
        "warning",
      ],
    });

    // Load: commands enqueued on B run on the agent of A.
    let enqueued = 0;
    for (; enqueued < 40; enqueued++) {
      assert.equal((await enqueue(urlB, `r${enqueued}`, `${script} r${enqueued}`)).status, 202);
    }

    await cluster.stop("fast");
    const health = await fetch(`${urlA}/health`).catch(async (error) => {
      const status = await a.current?.proc.status();
      throw new Error(
        `dashboard A did not answer once the database stopped (${error}); it exited ${
          JSON.stringify(status)
        }; its stderr:\n${a.current?.proc.stderr.text}`,
      );
    });
    assert.equal(health.status, 503);
    assert.equal((await health.json()).store.status, "down");
    const refused = await enqueue(urlB, "down", `${script} down`);
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers.get("Retry-After")) >= 1);
    await refused.body?.cancel();
    await new Promise((r) => setTimeout(r, 1500));
    await cluster.start();

    // Both instances see the database again by themselves.
    for (const url of [urlA, urlB]) {
      await pollUntil(async () => (await fetch(`${url}/health`)).status === 200, `${url} healthy`);
    }
    for (; enqueued < 80; enqueued++) {
      const id = `r${enqueued}`;
      await pollUntil(
        async () => (await enqueue(urlB, id, `${script} ${id}`)).status === 202,
        `enqueue ${id}`,
      );
    }

    await using store = await openPostgresStore(db.url);
    await pollUntil(async () => {
      const commands = await store.listCommands({ agentId: "a1", limit: 1000 });
      return commands.filter((c) => FINAL_STATUSES.has(c.status)).length === enqueued;
    }, "every command final");
    const commands = await store.listCommands({ agentId: "a1", limit: 1000 });
    for (const command of commands) assert.equal(command.status, "success", command.id);
    const counts = await ledgerCounts(dir.path);
    assert.deepEqual([...counts].filter(([, n]) => n > 1), [], "no command ran twice");
    assert.equal(counts.size, enqueued);

    // Cross-instance wake-up works again: an idle agent on A is woken by an enqueue on B.
    await pollUntil(
      async () => (await (await fetch(`${urlA}/health`)).json()).waiting === 1,
      "agent waiting on A",
    );
    const started = Date.now();
    assert.equal((await enqueue(urlB, "after", `${script} after`)).status, 202);
    await pollUntil(
      async () => (await store.getCommand("after"))?.status === "success",
      "woken after the restart",
      30_000,
    );
    // Well within one long-poll (60 s): the wake-up came through LISTEN/NOTIFY, not a re-poll.
    assert.ok(Date.now() - started < 30_000, `woken after ${Date.now() - started} ms`);
    agent.kill("SIGTERM");
    await agent.exited(30_000);
  },
});
