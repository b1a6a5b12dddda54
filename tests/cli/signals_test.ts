/**
 * Signals of the long-running commands as real processes: what a hangup does to one started
 * under `nohup`, and a second stop signal to the dashboard.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type CliProcess, PERMS, spawnCli } from "../_cli.ts";
import { StubDashboard } from "../_stub_dashboard.ts";
import { closeQuietly, rawConnect, readAll, send } from "../server/_sockets.ts";

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

Deno.test("a second SIGINT stops status serve at once, with a request still arriving: exit 130", async () => {
  await using serve = spawnCli(
    ["serve", "--db", ":memory:", "--port", "0", "--log-format", "json"],
    { perms: PERMS.serve },
  );
  const { match } = await serve.stdout.waitFor(/^listening on http:\/\/127\.0\.0\.1:(\d+)/);
  const conn = await rawConnect({ port: Number(match![1]) });
  try {
    // A body that trickles in: the first stop waits up to 20 s for it. Its `100 Continue` says
    // the request is in the dashboard's hands.
    await send(
      conn,
      "POST /api/v1/agent/commands/enqueue HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n" +
        "Expect: 100-continue\r\nContent-Type: application/json\r\n" +
        "Content-Length: 100000\r\n\r\n",
    );
    const continued = await readAll(conn, 10_000, (text) => text.includes("\r\n\r\n"));
    assert.match(continued.text, /^HTTP\/1\.1 100 Continue\r\n/);
    await send(conn, "{");
    const trickle = setInterval(() => void send(conn, " ").catch(() => {}), 200);
    try {
      serve.kill("SIGINT");
      await serve.waitForLog("received SIGINT; shutting down");
      serve.kill("SIGINT");
      const status = await serve.exited(15_000);
      assert.equal(status.code, 130, serve.stderr.text);
      assert.ok(serve.logged("received SIGINT again; closing every connection at once"));
      assert.ok(serve.logged("dashboard stopped"), "the store was closed");
    } finally {
      clearInterval(trickle);
    }
  } finally {
    closeQuietly(conn);
  }
});
