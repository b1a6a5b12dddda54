/**
 * After a crash the restarted agent stops what its previous run left running before it reports
 * `interrupted`, and reports the truth where it was recorded (an exit recorded the moment the
 * command ended).
 */
import assert from "node:assert/strict";
import { type AgentState, createExecutor, openAgentState, runAgent } from "../../src/agent/mod.ts";
import { agentUid, type ExitRecord, runCommand, Sandbox } from "../../src/exec/mod.ts";
import { StubDashboard } from "../_stub_dashboard.ts";
import { captureLogs } from "./_helpers.ts";
import { runsHereOrUnderAllowAll, scripts, survivors } from "../exec/helpers.ts";
import { processStartTicks } from "../../src/exec/sandbox.ts";
import type { ProcessRecord } from "../../src/exec/mod.ts";
import type { Executor } from "../../src/agent/executor.ts";
import { recover } from "../../src/agent/recovery.ts";

const here = runsHereOrUnderAllowAll(import.meta.filename!);

/** Runs an agent on `dir` until the stub has `reports` reports, then stops it. */
async function runUntilReports(
  dir: string,
  stub: StubDashboard,
  reports: number,
  allowedPrograms: string[] = ["echo"],
): Promise<void> {
  const stop = new AbortController();
  const state: AgentState = openAgentState({ dir });
  const executor = createExecutor({ stateDir: dir, allowedPrograms });
  const done = runAgent({
    dashboardUrl: stub.url,
    agentId: "agent-1",
    pollingTimeoutSecs: 1,
    heartbeat: false,
    executor,
    state,
  }, stop.signal);
  try {
    await stub.until(() => stub.reports.length >= reports, 15_000, "the reports");
  } finally {
    stop.abort();
    await done;
    state[Symbol.dispose]();
    await executor.close?.();
  }
}

Deno.test({
  name: "a restarted agent stops what the previous run left, then reports it interrupted",
  ignore: !here || agentUid() !== 0,
  fn: async () => {
    using _logs = captureLogs();
    const dir = Deno.makeTempDirSync({ prefix: "status-recovery-" });
    const scripts = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-recovery-bin-" });
    Deno.chmodSync(scripts, 0o755);
    const escaper = `${scripts}/escaper.sh`;
    Deno.writeTextFileSync(escaper, "#!/bin/sh\nsetsid sleep 60 & echo $!; sleep 60\n");
    Deno.chmodSync(escaper, 0o755);
    // The previous run: the command was journaled, spawned in its sandbox, and the agent died.
    const previous = Sandbox.create({ tag: Sandbox.tagOf(dir) });
    const cell = await previous.open();
    const child = cell.spawn(escaper, { stdout: "piped", stderr: "null", stdin: "null" });
    const reader = child.stdout.getReader();
    const grandchild = Number(new TextDecoder().decode((await reader.read()).value).trim());
    reader.releaseLock();
    {
      using state = openAgentState({ dir });
      state.journal.start({ id: "cmd-1", name: escaper, attempt: 1 });
      state.journal.spawned("cmd-1", cell.record()!);
    }
    await using stub = new StubDashboard();
    const record = cell.record()!;
    try {
      await runUntilReports(dir, stub, 1, [escaper]);
      assert.equal(stub.reports[0].status, "interrupted");
      const error = String(stub.reports[0].error);
      if (previous.killMode === "cgroup") {
        assert.deepEqual(await survivors([child.pid, grandchild]), [], "all stopped");
        assert.match(error, /killed what was left of the command/);
      } else if (record.start_ticks !== undefined) {
        // A process group alone (found through /proc): the setsid grandchild is out of reach.
        assert.deepEqual(await survivors([child.pid]), []);
        assert.match(error, /killed what was left of the command/);
      } else {
        // Without -A Deno reads no /proc: the agent says it cannot tell, and signals nothing.
        assert.match(error, /could not tell whether the command was still running/);
      }
    } finally {
      await child.stdout.cancel();
      await child.status;
      await cell.close();
      await previous.close();
      Deno.removeSync(dir, { recursive: true });
      Deno.removeSync(scripts, { recursive: true });
    }
  },
});

Deno.test({
  name: "an exit recorded the moment the command ended is reported after a restart",
  ignore: !here,
}, async () => {
  using _logs = captureLogs();
  const dir = Deno.makeTempDirSync({ prefix: "status-recovery-" });
  try {
    {
      using state = openAgentState({ dir });
      state.journal.start({ id: "cmd-1", name: "echo hi", attempt: 1 });
      const exit: ExitRecord = {
        status: "success",
        exit_code: 0,
        signal: null,
        duration_secs: 0.01,
        error: null,
        started_at: "2026-01-12T10:00:00.000Z",
        completed_at: "2026-01-12T10:00:00.010Z",
      };
      state.journal.exited("cmd-1", exit);
    }
    await using stub = new StubDashboard();
    await runUntilReports(dir, stub, 1);
    const report = stub.reports[0];
    assert.equal(report.status, "success");
    assert.equal((report.result as { exit_code: number }).exit_code, 0);
    assert.match(String(report.error), /output was lost/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("what a command started is stopped after a restart also when its exit was recorded", async () => {
  using _logs = captureLogs();
  // The first process had exited (its exit recorded) and the agent died before it killed the
  // rest of the command's group: the restart must stop that rest, then report the exit.
  using state = openAgentState({ canUse: () => false });
  const record: ProcessRecord = { pid: 4242, start_ticks: 7, spawned_at_ms: 1_000 };
  state.journal.start({ id: "cmd-1", name: "echo hi", attempt: 1 });
  state.journal.spawned("cmd-1", record);
  state.journal.exited("cmd-1", {
    status: "success",
    exit_code: 0,
    signal: null,
    duration_secs: 0.01,
    error: null,
    started_at: "2026-01-12T10:00:00.000Z",
    completed_at: "2026-01-12T10:00:00.010Z",
  });
  const stopped: ProcessRecord[] = [];
  const executor: Executor = {
    run: () => Promise.reject(new Error("nothing runs during recovery")),
    stopLeftover: (leftover) => {
      stopped.push(leftover);
      return Promise.resolve("stopped");
    },
  };
  await recover(state, executor, () => 0);
  assert.deepEqual(stopped, [record]);
  const report = state.outbox.get("cmd-1");
  assert.equal(report?.status, "success");
  assert.match(String(report?.error), /output was lost/);
});

Deno.test({
  name: "a command that ended while the agent was down is not claimed to have been stopped",
  ignore: !here || agentUid() !== 0,
  fn: async () => {
    using _logs = captureLogs();
    const dir = Deno.makeTempDirSync({ prefix: "status-recovery-" });
    const previous = Sandbox.create({ tag: Sandbox.tagOf(dir) });
    const cell = await previous.open();
    const child = cell.spawn("/bin/true", { stdout: "null", stderr: "null", stdin: "null" });
    const record = cell.record() ?? { pid: child.pid };
    await child.status;
    try {
      {
        using state = openAgentState({ dir });
        state.journal.start({ id: "cmd-1", name: "true", attempt: 1 });
        state.journal.spawned("cmd-1", record);
      }
      await using stub = new StubDashboard();
      await runUntilReports(dir, stub, 1);
      assert.equal(stub.reports[0].status, "interrupted");
      const error = String(stub.reports[0].error);
      if (previous.killMode === "cgroup") {
        assert.match(error, /ended on its own before the agent restarted/);
      } else {
        assert.doesNotMatch(error, /killed what was left/);
      }
    } finally {
      await cell.close();
      await previous.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a command of the previous boot is reported gone with it, and its old pid is not killed",
  ignore: !here,
  fn: async () => {
    using _logs = captureLogs();
    const dir = Deno.makeTempDirSync({ prefix: "status-recovery-" });
    // Another program that leads a group of the recorded pid since the reboot.
    const other = new Deno.Command("sleep", {
      args: ["60"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn();
    try {
      {
        using state = openAgentState({ dir });
        state.journal.start({ id: "cmd-1", name: "sleep 600", attempt: 1 });
        state.journal.spawned("cmd-1", {
          pid: other.pid,
          // Its start time as read in this boot: only the boot tells it from the command.
          start_ticks: processStartTicks(other.pid),
          spawned_at_ms: Date.now() - 3_600_000,
          boot_id: "00000000-0000-4000-8000-000000000000",
        });
      }
      await using stub = new StubDashboard();
      await runUntilReports(dir, stub, 1);
      assert.equal(stub.reports[0].status, "interrupted");
      assert.match(String(stub.reports[0].error), /^the machine restarted while the command was/);
      assert.deepEqual(await survivors([other.pid], 200), [other.pid], "left alone");
    } finally {
      other.kill("SIGKILL");
      await other.status;
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "an exit recorded before a crash says what the command's limits did, as its report would have",
  ignore: !here || agentUid() !== 0,
  fn: async (t) => {
    using _logs = captureLogs();
    // The exit was journaled before the cgroup's counters were read (at its stop): recovered
    // after a restart, a command the OOM killer ended was only "terminated by signal SIGKILL",
    // and one whose forks failed at COMMAND_MAX_PROCESSES only "exited with code 2".
    await using bin = await scripts();
    // Commands run as the command user (nobody): the scripts must be reachable to it.
    Deno.chmodSync(bin.dir, 0o755);
    const sandbox = Sandbox.create({
      tag: `test-${crypto.randomUUID().slice(0, 8)}`,
      maxMemory: 32 * 1024 ** 2,
      maxProcesses: 10,
    });
    /** Runs `line` as the agent does, recording its exit, then recovers it as a restart would. */
    const runAndRecover = async (line: string, program: string) => {
      using state = openAgentState({ canUse: () => false });
      state.journal.start({ id: "cmd-1", name: line, attempt: 1 });
      const result = await runCommand(line, {
        policy: bin.policy(program),
        sandbox,
        onExit: (exit) => state.journal.exited("cmd-1", exit),
      });
      const executor: Executor = {
        run: () => Promise.reject(new Error("nothing runs during recovery")),
      };
      await recover(state, executor, () => 0);
      return { result, recovered: state.outbox.get("cmd-1") };
    };
    const lost = "its output was lost: the agent stopped before recording it";
    try {
      await t.step("out of memory (COMMAND_MAX_MEMORY)", async () => {
        if (sandbox.memoryLimit === undefined) {
          console.log(`memory limit step skipped: ${sandbox.describe()}`);
          return;
        }
        const hog = await bin.script(
          "hog.sh",
          `exec perl -e '$x = "a" x (256 * 1048576); print length($x)'`,
        );
        const { result, recovered } = await runAndRecover(hog, hog);
        assert.match(result.error ?? "", /; out of memory: 1 of its processes was killed/);
        assert.equal(recovered?.status, result.status);
        assert.equal(recovered?.error, `${result.error}; ${lost}`);
      });
      await t.step("forks refused (COMMAND_MAX_PROCESSES)", async () => {
        if (sandbox.processLimit === undefined) {
          console.log(`process limit step skipped: ${sandbox.describe()}`);
          return;
        }
        // The limit is set a moment after the spawn: the script waits that moment out.
        const bomb = await bin.script(
          "bomb.sh",
          "sleep 0.5; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do " +
            "sleep 60 & done; wait",
        );
        const { result, recovered } = await runAndRecover(bomb, bomb);
        assert.match(result.error ?? "", /failed at its limit of 10 \(COMMAND_MAX_PROCESSES\)$/);
        assert.equal(recovered?.status, result.status);
        assert.equal(recovered?.error, `${result.error}; ${lost}`);
      });
    } finally {
      await sandbox.close();
    }
  },
});

Deno.test({
  name: "a command left running by a crash is reported interrupted with what its limits did before",
  ignore: !here || agentUid() !== 0,
  fn: async () => {
    using _logs = captureLogs();
    // The agent died while the command ran, after the OOM killer had ended one of its processes:
    // the interrupted report said nothing of it, though the command's cgroup still counted it.
    const dir = Deno.makeTempDirSync({ prefix: "status-recovery-" });
    await using bin = await scripts();
    Deno.chmodSync(bin.dir, 0o755);
    const previous = Sandbox.create({ tag: Sandbox.tagOf(dir), maxMemory: 32 * 1024 ** 2 });
    if (previous.memoryLimit === undefined) {
      console.log(`leftover memory limit test skipped: ${previous.describe()}`);
      await previous.close();
      Deno.removeSync(dir, { recursive: true });
      return;
    }
    // The limit is set a moment after the spawn: the script waits that moment out.
    const hog = await bin.script(
      "hog.sh",
      "sleep 0.5; perl -e '$x = \"a\" x (256 * 1048576)'; echo ended $?; sleep 60",
    );
    const cell = await previous.open();
    const child = cell.spawn(hog, { stdout: "piped", stderr: "null", stdin: "null" });
    try {
      const reader = child.stdout.getReader();
      const said = new TextDecoder().decode((await reader.read()).value);
      reader.releaseLock();
      assert.equal(said, "ended 137\n");
      {
        using state = openAgentState({ dir });
        state.journal.start({ id: "cmd-1", name: hog, attempt: 1 });
        state.journal.spawned("cmd-1", cell.record()!);
      }
      await using stub = new StubDashboard();
      await runUntilReports(dir, stub, 1, [hog]);
      assert.equal(stub.reports[0].status, "interrupted");
      assert.equal(
        stub.reports[0].error,
        "the agent stopped while the command was running; it killed what was left of the " +
          "command (its watchdog at once, or the agent after its restart), which so did not " +
          "finish, and did not run it again (at most once); out of memory: 1 of its processes " +
          "was killed for going past its memory limit of 32M (COMMAND_MAX_MEMORY)",
      );
    } finally {
      await child.stdout.cancel();
      await child.status;
      await cell.close();
      await previous.close();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
