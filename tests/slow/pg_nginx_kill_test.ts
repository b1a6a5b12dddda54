/**
 * Behind nginx, a real agent runs 300 commands while the two dashboard instances are SIGKILLed and
 * restarted in turn: afterwards every command has exactly one final result and none ran twice.
 */
import assert from "node:assert/strict";
import { AGENT_SCOPES } from "../../src/store/mod.ts";
import { openPostgresStore } from "../../src/store/postgres.ts";
import { FINAL_STATUSES } from "../../src/protocol/mod.ts";
import { pgIgnore, testDatabase } from "../_pg.ts";
import { startAgent, tempDir } from "../e2e/helpers.ts";
import { findNginx, Instance, ledgerCounts, ledgerScript, startNginx } from "./_fleet.ts";

const ADMIN = "admin-token-0123456789abcdef";
const TOKEN = "agent-token-a1-0123456789abcdefghijklmnopq";
const COMMANDS = 300;
const MIN_KILLS = 6;
const nginx = findNginx();

Deno.test({
  name: "behind nginx, 300 commands survive SIGKILLs of every instance: each ran once",
  ignore: pgIgnore() || nginx === null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using db = await testDatabase();
    await using store = await openPostgresStore(db.url);
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
    await using dir = tempDir("status-fleet-");
    const script = await ledgerScript(dir.path);

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
    const env = { STATUS_ADMIN_TOKEN: ADMIN };
    await using a = new Instance(db.url, env, args);
    await using b = new Instance(db.url, env, args);
    await Promise.all([a.start(), b.start()]);
    await using proxy = await startNginx(nginx!, dir.path, [a.port, b.port]);

    for (let i = 0; i < COMMANDS; i++) {
      const response = await fetch(`${proxy.url}/api/v1/agent/commands/enqueue`, {
        method: "POST",
        headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" },
        body: JSON.stringify({ id: `k${i}`, agent_id: "a1", name: `${script} k${i}` }),
      });
      assert.equal(response.status, 202, await response.text());
    }

    await using state = tempDir("status-fleet-agent-");
    await using agent = startAgent({
      url: proxy.url,
      agentId: "a1",
      stateDir: state.path,
      args: [
        "--agent-token",
        TOKEN,
        "--allowed-programs",
        script,
        "--polling-timeout-secs",
        "5",
        "--polling-backoff-secs",
        "1",
        "--polling-backoff-max-secs",
        "2",
        "--log-level",
        "warning",
      ],
    });

    const finals = async () =>
      (await store.listCommands({ agentId: "a1", limit: 1000 }))
        .filter((c) => FINAL_STATUSES.has(c.status));
    // Kill one instance (in turn) while commands still run, let the fleet notice, restart it.
    // The next kill waits for progress since the last one (a loaded machine is slow, not stuck);
    // no progress at all for a minute fails.
    let kills = 0;
    let before = 0;
    let progressAt = Date.now();
    for (let turn = 0;; turn++) {
      await new Promise((r) => setTimeout(r, 700));
      const done = (await finals()).length;
      if (done === COMMANDS) break;
      if (done > before) progressAt = Date.now();
      else if (Date.now() - progressAt > 60_000) {
        throw new Error(
          `after ${kills} kills ${done} of ${COMMANDS} commands are final, none for a minute; ` +
            `agent:\n${agent.stderr.lines.slice(-20).join("\n")}`,
        );
      }
      if (done === before && kills > 0) continue;
      before = done;
      const victim = turn % 2 === 0 ? a : b;
      await victim.kill();
      kills++;
      await new Promise((r) => setTimeout(r, 300));
      await victim.start();
    }
    assert.ok(kills >= MIN_KILLS, `only ${kills} kills while commands ran`);

    const commands = await finals();
    assert.equal(commands.length, COMMANDS);
    for (const command of commands) {
      assert.equal(command.status, "success", JSON.stringify(command));
      assert.ok(command.result, `command ${command.id} has a result`);
    }
    const counts = await ledgerCounts(dir.path);
    const twice = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], "no command ran twice");
    assert.equal(counts.size, COMMANDS, "every command ran");
    agent.kill("SIGTERM");
    await agent.exited(30_000);
  },
});
