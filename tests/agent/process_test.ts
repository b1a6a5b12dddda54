/**
 * End-to-end tests of the agent as a real process, started with the permission flags users pass,
 * against a stub dashboard over a real socket.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { isProcessAlive } from "../../src/cli/daemon.ts";
import { until } from "../_until.ts";
import { startServer } from "../../src/server/mod.ts";
import { PERMS, runCli, spawnCli } from "../_cli.ts";
import { command, StubDashboard } from "../_stub_dashboard.ts";

/** The agent's flags without `--allow-sys`. */
const AGENT_PERMS = PERMS.agentWithoutSys;

function agentArgs(stub: { url: string }, dir: string, extra: string[] = []): string[] {
  Deno.writeTextFileSync(join(dir, "config.json"), "{}");
  return [
    "agent",
    "--config",
    join(dir, "config.json"),
    "--dashboard-url",
    stub.url,
    "--agent-id",
    "proc-agent",
    "--state-dir",
    join(dir, "state"),
    "--polling-timeout-secs",
    "2",
    "--polling-backoff-secs",
    "1",
    "--polling-backoff-max-secs",
    "2",
    "--metrics-interval-secs",
    "3600",
    "--log-format",
    "json",
    ...extra,
  ];
}

function tempDir(): string {
  return Deno.makeTempDirSync({ prefix: "status-agent-test-" });
}

/** Enqueues through the real dashboard's seed-compatible endpoint (dev mode). */
async function enqueue(url: string, agentId: string, id: string, name: string): Promise<void> {
  const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": agentId },
    body: JSON.stringify({ id, name }),
  });
  await response.body?.cancel();
  assert.equal(response.status, 202);
}

async function commandOf(url: string, id: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}/api/v1/commands/${id}`);
  return await response.json();
}

Deno.test({
  name: "SIGTERM during a command: it finishes within the grace, is reported, exit code 0",
  async fn() {
    const dir = tempDir();
    try {
      await using server = await startServer({
        availableDescriptors: "plenty",
        db: ":memory:",
        port: 0,
      });
      await using agent = spawnCli(
        agentArgs(server, dir, ["--shutdown-grace-secs", "20"]),
        { cwd: dir, perms: AGENT_PERMS },
      );
      await agent.waitForLog("long-poll: polling loop started");
      await enqueue(server.url, "proc-agent", "term-1", "sleep 2");
      await agent.waitForLog("Executing command: sleep 2 (id: term-1)");
      agent.kill("SIGTERM");
      const status = await agent.exited(60_000);
      assert.equal(status.code, 0, agent.stderr.text);
      const record = await commandOf(server.url, "term-1");
      assert.equal(record.status, "success");
      assert.ok(agent.logged("command execution and reporting completed"));
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

/**
 * A stop signal while a command runs past the shutdown grace: the command is cancelled at the
 * grace and reported `interrupted`, and the agent exits 0.
 */
async function stopDuringLongCommand(signal: "SIGTERM" | "SIGHUP", id: string): Promise<void> {
  const dir = tempDir();
  try {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    await using agent = spawnCli(
      agentArgs(server, dir, ["--shutdown-grace-secs", "1"]),
      { cwd: dir, perms: AGENT_PERMS },
    );
    await agent.waitForLog("long-poll: polling loop started");
    await enqueue(server.url, "proc-agent", id, "sleep 60");
    await agent.waitForLog(`Executing command: sleep 60 (id: ${id})`);
    const signalled = Date.now();
    agent.kill(signal);
    const status = await agent.exited(60_000);
    assert.equal(status.code, 0, agent.stderr.text);
    assert.ok(Date.now() - signalled < 15_000);
    assert.ok(agent.logged(new RegExp(`${signal} received: stopping`)));
    assert.equal((await commandOf(server.url, id)).status, "interrupted");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test(
  "SIGTERM during a long command: it is cancelled at the grace, reported, exit code 0",
  () => stopDuringLongCommand("SIGTERM", "term-2"),
);

Deno.test(
  "SIGHUP (its terminal closed) stops the agent like SIGTERM: the command is stopped, reported",
  () => stopDuringLongCommand("SIGHUP", "hup-1"),
);

Deno.test({
  name: "a second signal stops at once; the outbox keeps the result for the next start",
  async fn() {
    const dir = tempDir();
    try {
      await using stub = new StubDashboard();
      {
        await using agent = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: AGENT_PERMS });
        stub.enqueue(command("twice-1", "sleep 60"));
        await agent.waitForLog("Executing command: sleep 60 (id: twice-1)");
        const signalled = Date.now();
        agent.kill("SIGTERM");
        await agent.waitForLog(/SIGTERM received: stopping/);
        agent.kill("SIGINT");
        const status = await agent.exited(60_000);
        assert.equal(status.code, 130, agent.stderr.text);
        assert.ok(Date.now() - signalled < 10_000);
        assert.equal(stub.reports.length, 0);
        assert.ok(agent.logged("stopping at once: the result stays in the outbox"));
      }
      await using agent = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: AGENT_PERMS });
      await stub.until(() => stub.reports.length === 1, 20_000, "the kept result");
      agent.kill("SIGTERM");
      assert.equal((await agent.exited(60_000)).code, 0);
      assert.equal(stub.reports[0].command_id, "twice-1");
      assert.equal(stub.reports[0].status, "interrupted");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "with --log-file the agent logs to the file and still exits 0 on SIGTERM",
  async fn() {
    const dir = tempDir();
    try {
      await using stub = new StubDashboard();
      const logFile = join(dir, "agent.log");
      await using agent = spawnCli(agentArgs(stub, dir, ["--log-file", logFile]), {
        cwd: dir,
        perms: AGENT_PERMS,
      });
      await stub.until(() => stub.seen.some((s) => s.kind === "wait"), 20_000, "a wait");
      agent.kill("SIGTERM");
      assert.equal((await agent.exited(60_000)).code, 0, agent.stderr.text);
      const log = Deno.readTextFileSync(logFile);
      assert.match(log, /long-poll: polling loop started/);
      assert.match(log, /agent stopped/);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "an agent SIGKILLed mid-command reports it interrupted after a restart and never reruns it",
  async fn() {
    const dir = tempDir();
    try {
      await using stub = new StubDashboard();
      {
        await using agent = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: AGENT_PERMS });
        stub.enqueue(command("kill-1", "sleep 4"));
        await agent.waitForLog("Executing command: sleep 4 (id: kill-1)");
        agent.kill("SIGKILL");
        await agent.exited(60_000);
      }
      assert.equal(stub.reports.length, 0);
      // The dashboard delivers it again (lease expired) while the agent is down.
      stub.enqueue({ ...command("kill-1", "sleep 4"), attempt: 2 });
      await using agent = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: AGENT_PERMS });
      await stub.until(() => stub.reports.length >= 2, 20_000, "two reports");
      agent.kill("SIGTERM");
      assert.equal((await agent.exited(60_000)).code, 0);
      assert.deepEqual(stub.reports.map((r) => [r.status, r.attempt]), [
        ["interrupted", 1],
        ["interrupted", 2],
      ]);
      assert.equal(stub.acks.length, 1, "acked (and run) once");
      assert.ok(!agent.logged(/^Executing command/), "not run again");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a result in the outbox when the agent was SIGKILLed is delivered after the restart",
  async fn() {
    const dir = tempDir();
    try {
      await using stub = new StubDashboard();
      let failing = true;
      stub.override = (seen) =>
        seen.kind === "report" && failing
          ? Response.json({ error: "down for maintenance" }, { status: 500 })
          : undefined;
      {
        await using agent = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: AGENT_PERMS });
        stub.enqueue(command("box-1", "echo from-the-outbox"));
        await stub.until(() => stub.seen.some((s) => s.kind === "report"), 20_000, "a report");
        agent.kill("SIGKILL");
        await agent.exited(60_000);
      }
      failing = false;
      const before = stub.seen.length;
      await using agent = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: AGENT_PERMS });
      await stub.until(() => stub.reports.length >= 1, 20_000, "the report after restart");
      agent.kill("SIGTERM");
      assert.equal((await agent.exited(60_000)).code, 0);
      const after = stub.seen.slice(before);
      assert.equal(after[0].kind, "report", "sent before the first wait");
      const delivered = stub.reports.at(-1)!;
      assert.equal(delivered.command_id, "box-1");
      assert.equal(delivered.status, "success");
      assert.equal((delivered.result as { stdout: string }).stdout, "from-the-outbox\n");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "--daemon detaches with a pid file, refuses a second daemon, and status stop ends it",
  async fn() {
    const dir = tempDir();
    let daemonPid: number | undefined;
    try {
      await using stub = new StubDashboard();
      const pidFile = join(dir, "agent.pid");
      const logFile = join(dir, "agent.log");
      const args = agentArgs(stub, dir, ["--pid-file", pidFile, "--log-file", logFile]).slice(1);
      // `status --daemon ...`: the agent is the default command.
      const started = await runCli(["--daemon", ...args], { cwd: dir, perms: AGENT_PERMS });
      daemonPid = Number(/pid (\d+)/.exec(started.stdout)?.[1]) || undefined;
      assert.equal(started.code, 0, started.stderr);
      const pid = Number(/pid (\d+)/.exec(started.stdout)?.[1]);
      assert.ok(pid > 1, started.stdout);
      assert.equal(Deno.readTextFileSync(pidFile).trim(), String(pid));
      await stub.until(() => stub.seen.some((s) => s.kind === "wait"), 20_000, "the daemon's wait");

      const second = await runCli(["agent", "--daemon", ...args], { cwd: dir, perms: AGENT_PERMS });
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`running already with pid ${pid}`));

      // A `kill -HUP` meant as "reload" stopped the daemon, which has no terminal to lose: it is
      // said and ignored as a stop. It is logrotate's postrotate too: the log moved away (its
      // `create` mode), the daemon reopens the file at the log's path and writes there.
      const rotated = `${logFile}.logrotate`;
      Deno.renameSync(logFile, rotated);
      Deno.kill(pid, "SIGHUP");
      await until(
        () => {
          try {
            return Deno.readTextFileSync(logFile).includes("SIGHUP received: ignored");
          } catch {
            return false;
          }
        },
        "the daemon to say it ignores SIGHUP, in a new log file",
        20_000,
      );
      assert.equal(isProcessAlive(pid), true, "still running after SIGHUP");
      assert.doesNotMatch(Deno.readTextFileSync(logFile), /received: stopping/);
      assert.match(Deno.readTextFileSync(rotated), /Agent daemon starting/);
      assert.doesNotMatch(Deno.readTextFileSync(rotated), /SIGHUP/);
      assert.equal(Deno.statSync(logFile).mode! & 0o777, 0o600);

      const stopped = await runCli(["stop", "--pid-file", pidFile], {
        cwd: dir,
        perms: PERMS.stop,
      });
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(stopped.stdout, new RegExp(`stopped \\(pid ${pid}\\)`));
      assert.throws(() => Deno.statSync(pidFile), Deno.errors.NotFound);
      assert.equal(isProcessAlive(pid), false, "gone (or a zombie awaiting its reaper)");
      const log = Deno.readTextFileSync(logFile);
      assert.match(log, /agent stopped/);

      const again = await runCli(["stop", "--pid-file", pidFile], {
        cwd: dir,
        perms: PERMS.stop,
      });
      assert.equal(again.code, 1);
      assert.match(again.stderr, /no pid file/);
    } finally {
      // A failed assertion must not leave the daemon running (nor be hidden by one gone since).
      if (daemonPid && isProcessAlive(daemonPid)) {
        try {
          Deno.kill(daemonPid, "SIGKILL");
        } catch {
          // Gone since the check.
        }
      }
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "under --allow-net --allow-run alone the agent works with its state in memory",
  async fn() {
    const dir = tempDir();
    try {
      await using stub = new StubDashboard();
      await using agent = spawnCli(
        [
          "agent",
          "--dashboard-url",
          stub.url,
          "--agent-id",
          "narrow-agent",
          "--polling-timeout-secs",
          "2",
          "--log-format",
          "json",
        ],
        { cwd: dir, perms: PERMS.agentMinimal },
      );
      await agent.waitForLog("long-poll: polling loop started");
      assert.ok(agent.logged(/in memory only.*--allow-read=\.\/\.status-state/));
      stub.enqueue(command("narrow-1", "echo narrow"));
      await stub.until(() => stub.reports.length === 1, 20_000, "the report");
      agent.kill("SIGTERM");
      assert.equal((await agent.exited(60_000)).code, 0, agent.stderr.text);
      assert.equal(stub.reports[0].status, "success");
      assert.equal((stub.reports[0].result as { stdout: string }).stdout, "narrow\n");
      assert.ok(!agent.stderr.lines.some((l) => /NotCapable/.test(l)), agent.stderr.text);
      assert.throws(() => Deno.statSync(join(dir, ".status-state")), Deno.errors.NotFound);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("the agent refuses to start without AGENT_ID, naming how to set it", async () => {
  const dir = tempDir();
  try {
    Deno.writeTextFileSync(join(dir, "config.json"), "{}");
    const result = await runCli(["--config", join(dir, "config.json")], {
      cwd: dir,
      perms: AGENT_PERMS,
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /AGENT_ID is not set/);
    assert.match(result.stderr, /--agent-id/);
    assert.match(result.stderr, /agent_id.*config\.json/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a second agent started on the same STATE_DIR is refused and leaves the running command alone", async () => {
  const dir = tempDir();
  try {
    await using stub = new StubDashboard();
    // Under -A each command gets a cgroup (where the machine allows it), watched by the agent's
    // watchdog: the refused agent's watchdog, named after the same state directory, killed the
    // first agent's command as it closed.
    await using first = spawnCli(agentArgs(stub, dir), { cwd: dir, perms: ["--allow-all"] });
    await first.waitForLog("long-poll: polling loop started");
    stub.enqueue(command("long-1", "sleep 2"));
    await first.waitForLog("Executing command: sleep 2 (id: long-1)");
    const second = await runCli(agentArgs(stub, dir), { cwd: dir, perms: ["--allow-all"] });
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /another agent \(pid \d+\) is using the state directory/);
    await stub.until(() => stub.reports.length === 1, 20_000, "the report");
    assert.equal(stub.reports[0].status, "success", JSON.stringify(stub.reports[0]));
    first.kill("SIGTERM");
    assert.equal((await first.exited()).code, 0);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
