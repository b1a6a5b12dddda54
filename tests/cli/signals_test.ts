/**
 * Signals of the long-running commands as real processes: what a hangup does to one started
 * under `nohup`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type CliProcess, PERMS, spawnCli } from "../_cli.ts";
import { StubDashboard } from "../_stub_dashboard.ts";

const IGNORED = /^SIGHUP received: ignored, as it was when this process was started \(nohup\)/;

/** SIGHUP, then SIGTERM: the first is said and ignored, the second stops it (exit 0). */
async function hangUpThenTerminate(process: CliProcess): Promise<void> {
  process.kill("SIGHUP");
  await process.waitForLog(IGNORED);
  process.kill("SIGTERM");
  const status = await process.exited(60_000);
  assert.equal(status.code, 0, process.stderr.text);
  assert.ok(process.logged(/SIGTERM/), process.stderr.text);
  assert.ok(!process.logged(/SIGHUP received: stopping|received SIGHUP/), process.stderr.text);
}

Deno.test("started under nohup, a hangup leaves the agent, the dashboard and status up running", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-nohup-" });
  try {
    await t.step("status agent", async () => {
      await using stub = new StubDashboard();
      await using agent = spawnCli([
        "agent",
        "--dashboard-url",
        stub.url,
        "--agent-id",
        "nohup-agent",
        "--state-dir",
        join(dir, "state"),
        "--polling-timeout-secs",
        "2",
        "--log-format",
        "json",
      ], { cwd: dir, perms: PERMS.agentWithoutSys, prefix: ["nohup"] });
      await agent.waitForLog("long-poll: polling loop started");
      await hangUpThenTerminate(agent);
    });
    await t.step("status serve (told with ps)", async () => {
      await using serve = spawnCli(
        ["serve", "--db", ":memory:", "--port", "0", "--log-format", "json"],
        { cwd: dir, perms: [...PERMS.serve, "--allow-run=ps"], prefix: ["nohup"] },
      );
      await serve.stdout.waitFor(/^listening on /);
      await hangUpThenTerminate(serve);
    });
    await t.step("status up", async () => {
      await using up = spawnCli(
        ["up", "--port", "0", "--data-dir", join(dir, "up"), "--log-format", "json"],
        { cwd: dir, perms: PERMS.up, prefix: ["nohup"] },
      );
      await up.waitForLog("long-poll: polling loop started");
      await hangUpThenTerminate(up);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
