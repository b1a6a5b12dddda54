import assert from "node:assert/strict";
import { join } from "node:path";
import { PERMS, runCli } from "../_cli.ts";
import { fileURLToPath } from "node:url";
import { openAgentState } from "../../src/agent/state.ts";
import { stopSettings } from "../../src/cli/stop.ts";
import { ConfigError } from "../../src/errors.ts";
import {
  acquirePidFile,
  DAEMON_CHILD_FLAG,
  DaemonError,
  isProcessAlive,
  readPidFile,
  releasePidFile,
  stopDaemon,
} from "../../src/cli/daemon.ts";

const PROBE = fileURLToPath(new URL("./_permission_probe.ts", import.meta.url));

Deno.test("the daemon gets exactly the permissions this process has, narrowed to its needs", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const needs = {
      read: [join(dir, "config.json"), "/etc/passwd"],
      write: [dir, "/etc"],
      net: ["127.0.0.1:5000", "example.com:443"],
      run: ["echo", "sleep", "df"],
      env: ["AGENT_ID", "HOME"],
      sys: ["loadavg", "cpus"],
    };
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        "--allow-net=127.0.0.1",
        "--allow-run=echo,df",
        "--allow-env=AGENT_ID",
        "--allow-sys=loadavg",
        PROBE,
        JSON.stringify(needs),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), [
      `--allow-read=${join(dir, "config.json")}`,
      `--allow-write=${dir}`,
      "--allow-net=127.0.0.1:5000",
      "--allow-run=echo,df",
      "--allow-env=AGENT_ID",
      "--allow-sys=loadavg",
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a daemon started under -A keeps -A (cgroups and /proc need it)", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", PROBE, JSON.stringify({ read: ["/tmp"] })],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), ["--allow-all"]);
});

Deno.test("pid files", async (t) => {
  const dir = Deno.makeTempDirSync();
  const pidFile = join(dir, "status.pid");
  try {
    await t.step(
      "are written, refused while a live agent holds them, released by their owner",
      () => {
        using _held = acquirePidFile(pidFile, Deno.pid);
        assert.equal(readPidFile(pidFile), Deno.pid);
        assert.equal(releasePidFile(pidFile, 12345), false, "another pid does not remove it");
        assert.equal(releasePidFile(pidFile, Deno.pid), true);
        assert.equal(readPidFile(pidFile), undefined);
      },
    );

    await t.step("held by a running daemon are refused, whatever pid they name", async () => {
      // Two daemons started at once with one pid file (different STATE_DIRs) both found no live
      // agent in it and both replaced it: one ran with no pid file naming it. A daemon holds a
      // lock on its pid file, so a second one is refused even before the first one's pid is in
      // it, or when that pid looks dead.
      const dead = new Deno.Command("true").spawn();
      await dead.status;
      const first = acquirePidFile(pidFile, dead.pid);
      try {
        assert.throws(() => acquirePidFile(pidFile, Deno.pid), /an agent is running already/);
        assert.equal(readPidFile(pidFile), dead.pid, "left as it is");
      } finally {
        first.close();
      }
      // Once the first one has ended (its lock gone), the file is stale and replaced.
      using _second = acquirePidFile(pidFile, Deno.pid);
      assert.equal(readPidFile(pidFile), Deno.pid);
      releasePidFile(pidFile, Deno.pid);
    });

    await t.step("naming a dead process are stale and replaced", async () => {
      const child = new Deno.Command("true").spawn();
      await child.status;
      Deno.writeTextFileSync(pidFile, `${child.pid}\n`);
      using _held = acquirePidFile(pidFile, Deno.pid);
      assert.equal(readPidFile(pidFile), Deno.pid);
      releasePidFile(pidFile, Deno.pid);
    });

    await t.step("naming a live process that is not an agent are stale too", async () => {
      const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
      try {
        Deno.writeTextFileSync(pidFile, `${child.pid}\n`);
        using _held = acquirePidFile(pidFile, Deno.pid);
        assert.equal(readPidFile(pidFile), Deno.pid);
      } finally {
        child.kill("SIGKILL");
        await child.status;
        releasePidFile(pidFile, Deno.pid);
      }
    });

    await t.step("naming a live agent with a long command line, under COLUMNS=80", async () => {
      // ps cut its command line at COLUMNS, where the daemon flag comes last: the live agent
      // was taken for another program, its pid file removed, a second one could start.
      const child = new Deno.Command("sh", {
        args: ["-c", "sleep 30; :", "x".repeat(200), DAEMON_CHILD_FLAG],
      }).spawn();
      const columns = Deno.env.get("COLUMNS");
      Deno.env.set("COLUMNS", "80");
      try {
        Deno.writeTextFileSync(pidFile, `${child.pid}\n`);
        assert.throws(() => acquirePidFile(pidFile, Deno.pid), /an agent is running already/);
        assert.equal(readPidFile(pidFile), child.pid, "left alone");
      } finally {
        if (columns === undefined) Deno.env.delete("COLUMNS");
        else Deno.env.set("COLUMNS", columns);
        child.kill("SIGKILL");
        await child.status;
        Deno.removeSync(pidFile);
      }
    });

    await t.step("holding garbage are an error", () => {
      Deno.writeTextFileSync(pidFile, "not a pid\n");
      assert.throws(() => readPidFile(pidFile), DaemonError);
      Deno.removeSync(pidFile);
    });

    await t.step("holding a number above the largest pid are an error, never signalled", () => {
      // Deno.kill wraps them: 4294967295 is -1 (every process), 4294967296 is 0 (this group),
      // 4294967297 is 1 (init). Only readPidFile and signal 0 here: never a real signal.
      for (const pid of [4194305, 2147483648, 4294967295, 4294967296, 4294967297, 9999999999]) {
        Deno.writeTextFileSync(pidFile, `${pid}\n`);
        assert.throws(
          () => readPidFile(pidFile),
          new RegExp(`does not hold a process id \\("${pid}"\\)`),
        );
        assert.throws(() => acquirePidFile(pidFile, Deno.pid), DaemonError);
        assert.throws(() => isProcessAlive(pid), /is not a process id of another process/);
      }
      Deno.removeSync(pidFile);
    });

    await t.step("that are a device are refused, and not said to be removed", async () => {
      for (const device of ["/dev/null", "/dev/zero"]) {
        const notAFile = (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.match(error.message, /is a device or a socket, not a file/);
          assert.doesNotMatch(error.message, /remove it/);
          return true;
        };
        assert.throws(() => readPidFile(device), notAFile);
        assert.throws(() => acquirePidFile(device, Deno.pid), notAFile);
        await assert.rejects(stopDaemon({ pidFile: device, timeoutMs: 1000 }), notAFile);
      }
    });

    await t.step(
      "that are a symlink are refused: nothing is written or read through them",
      async () => {
        const target = join(dir, "elsewhere");
        Deno.symlinkSync(target, pidFile);
        try {
          assert.throws(
            () => acquirePidFile(pidFile, Deno.pid),
            /status\.pid is a symlink; refusing/,
          );
          assert.throws(() => Deno.lstatSync(target), Deno.errors.NotFound, "nothing created");
          Deno.writeTextFileSync(target, `${Deno.pid}\n`);
          await assert.rejects(stopDaemon({ pidFile, timeoutMs: 1000 }), /is a symlink; refusing/);
        } finally {
          Deno.removeSync(pidFile);
          Deno.removeSync(target, { recursive: true });
        }
      },
    );

    const isRoot = Deno.uid() === 0;
    await t.step({
      name: "left by another user are replaced, not written into",
      ignore: !isRoot,
      fn: () => {
        Deno.writeTextFileSync(pidFile, "999999\n", { mode: 0o666 });
        Deno.chownSync(pidFile, 65534, 65534);
        using _held = acquirePidFile(pidFile, Deno.pid);
        const after = Deno.statSync(pidFile);
        assert.equal(after.uid, 0, "a new file, this user's");
        assert.equal(after.mode! & 0o777, 0o644);
        assert.equal(readPidFile(pidFile), Deno.pid);
        releasePidFile(pidFile, Deno.pid);
      },
    });

    await t.step({
      name: "stop: a pid file of another user than the process it names is not trusted",
      ignore: !isRoot,
      fn: async () => {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["eval", "await new Promise((r) => setTimeout(r, 30_000))", DAEMON_CHILD_FLAG],
        }).spawn();
        try {
          Deno.writeTextFileSync(pidFile, `${child.pid}\n`);
          Deno.chownSync(pidFile, 65534, 65534);
          await assert.rejects(
            stopDaemon({ pidFile, timeoutMs: 1000 }),
            /belongs to uid 65534 but pid \d+ runs as uid 0: refusing to signal it/,
          );
          assert.equal(isProcessAlive(child.pid), true, "not signalled");
        } finally {
          child.kill("SIGKILL");
          await child.status;
          Deno.removeSync(pidFile);
        }
      },
    });

    await t.step("stop: no pid file, stale pid file, and a process that goes", async () => {
      await assert.rejects(stopDaemon({ pidFile }), /no pid file/);
      const dead = new Deno.Command("true").spawn();
      await dead.status;
      Deno.writeTextFileSync(pidFile, `${dead.pid}\n`);
      await assert.rejects(stopDaemon({ pidFile }), /not running/);
      assert.equal(readPidFile(pidFile), undefined, "the stale file is removed");

      // The daemon ended (SIGKILL, a reboot) and its pid went to another program: not signalled.
      const other = new Deno.Command("sleep", { args: ["30"] }).spawn();
      try {
        Deno.writeTextFileSync(pidFile, `${other.pid}\n`);
        await assert.rejects(stopDaemon({ pidFile, timeoutMs: 2000 }), /not the agent/);
        assert.equal(isProcessAlive(other.pid), true, "the other program still runs");
        // It may be that program's own pid file, named by mistake (--pid-file /run/nginx.pid).
        assert.equal(readPidFile(pidFile), other.pid, "the file is left as it is");
        Deno.removeSync(pidFile);
      } finally {
        other.kill("SIGKILL");
        await other.status;
      }

      // A process that does not end on SIGTERM: the error says how to stop it at once.
      const stubborn = new Deno.Command("sh", {
        args: [
          "-c",
          'trap "" TERM; echo ready; while :; do sleep 0.1; done',
          "sh",
          DAEMON_CHILD_FLAG,
        ],
        stdout: "piped",
      }).spawn();
      try {
        // Its trap is set once it says so.
        const reader = stubborn.stdout.getReader();
        await reader.read();
        reader.releaseLock();
        await stubborn.stdout.cancel();
        Deno.writeTextFileSync(pidFile, `${stubborn.pid}\n`);
        await assert.rejects(
          stopDaemon({ pidFile, timeoutMs: 300 }),
          new RegExp(
            `still running after 0.3 s .*SHUTDOWN_GRACE_SECS.*; stop it at once with: status ` +
              `stop --pid-file ${pidFile} \\(a second SIGTERM\\), or end it with: kill -KILL ` +
              `${stubborn.pid}$`,
          ),
        );
        assert.equal(isProcessAlive(stubborn.pid), true);
      } finally {
        stubborn.kill("SIGKILL");
        await stubborn.status;
      }

      const child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "await new Promise((r) => setTimeout(r, 30_000))", DAEMON_CHILD_FLAG],
      }).spawn();
      Deno.writeTextFileSync(pidFile, `${child.pid}\n`);
      const waited = child.status;
      assert.equal(await stopDaemon({ pidFile, timeoutMs: 5000 }), child.pid);
      assert.equal((await waited).signal, "SIGTERM");
      assert.equal(isProcessAlive(child.pid), false);
      Deno.removeSync(pidFile);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("status stop without ps signals only a process it can tell is the agent", async (t) => {
  // Without ps, a live pid was taken for the agent: a pid file whose pid another program holds
  // now had that program stopped. /proc/<pid>/cmdline tells them apart; when nothing can, nothing
  // is signalled.
  const dir = Deno.makeTempDirSync({ prefix: "status-stop-no-ps-" });
  const pidFile = join(dir, "status.pid");
  // A PATH without ps (nor anything else).
  const env = { PATH: join(dir, "bin") };
  // Deno reads /proc/<pid>/ under --allow-all only.
  const stop = (perms: string[]) =>
    runCli(["stop", "--pid-file", pidFile, "--timeout", "5"], { perms, env });
  const sleeper = () => new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    await t.step(
      "another program holding the pid is told apart by /proc and left alone",
      async () => {
        const other = sleeper();
        try {
          Deno.writeTextFileSync(pidFile, `${other.pid}\n`);
          const run = await stop(["--allow-all"]);
          assert.equal(run.code, 1, run.stderr);
          assert.match(run.stderr, /is another program, not the agent/);
          assert.equal(isProcessAlive(other.pid), true, "not signalled");
        } finally {
          other.kill("SIGKILL");
          await other.status;
        }
      },
    );
    await t.step("without ps nor /proc nothing is signalled, saying why", async () => {
      const other = sleeper();
      try {
        Deno.writeTextFileSync(pidFile, `${other.pid}\n`);
        const run = await stop(["--allow-run", "--allow-read", `--allow-write=${pidFile}`]);
        assert.equal(run.code, 1, run.stderr);
        assert.match(
          run.stderr,
          /cannot tell whether pid \d+ .* is the agent.*nothing was signalled/,
        );
        assert.equal(isProcessAlive(other.pid), true, "not signalled");
        assert.equal(readPidFile(pidFile), other.pid, "the file is left as it is");
      } finally {
        other.kill("SIGKILL");
        await other.status;
      }
    });
    await t.step("without ps nor /proc, a pid file a daemon holds names the agent", async () => {
      const agent = sleeper();
      try {
        // The daemon's lock on its pid file, taken here for the process it names.
        using _held = acquirePidFile(pidFile, agent.pid);
        const run = await stop(["--allow-run", "--allow-read", `--allow-write=${pidFile}`]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal((await agent.status).signal, "SIGTERM");
      } finally {
        try {
          agent.kill("SIGKILL");
        } catch {
          // Stopped.
        }
        await agent.status;
        Deno.removeSync(pidFile);
      }
    });
    await t.step("the agent is told by /proc and stopped", async () => {
      const agent = new Deno.Command(Deno.execPath(), {
        args: ["eval", "await new Promise((r) => setTimeout(r, 30_000))", DAEMON_CHILD_FLAG],
      }).spawn();
      try {
        Deno.writeTextFileSync(pidFile, `${agent.pid}\n`);
        const run = await stop(["--allow-all"]);
        assert.equal(run.code, 0, run.stderr);
        assert.equal((await agent.status).signal, "SIGTERM");
      } finally {
        try {
          agent.kill("SIGKILL");
        } catch {
          // Stopped.
        }
        await agent.status;
      }
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("status stop reads PID_FILE like the agent does (here from .env)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-stop-" });
  try {
    const pidFile = join(dir, "custom.pid");
    Deno.writeTextFileSync(join(dir, ".env"), `PID_FILE=${pidFile}\n`);
    const output = await runCli(["stop"], { perms: PERMS.stop, cwd: dir });
    assert.equal(output.code, 1);
    assert.match(output.stderr, new RegExp(`no pid file ${pidFile}`));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a daemon that ends on an error nothing handled says why in its log file and releases its pid file", async (t) => {
  const daemon = new URL("../../src/cli/daemon.ts", import.meta.url).href;
  const log = new URL("../../src/log/mod.ts", import.meta.url).href;
  for (
    const [name, failure] of [
      ["thrown from a timer", `setTimeout(() => { throw new Error("boom in a timer"); }, 0);`],
      ["a rejection", `Promise.reject(new Error("boom in a promise"));`],
    ]
  ) {
    await t.step(name, async () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-crash-" });
      try {
        const pidFile = join(dir, "status.pid");
        const logFile = join(dir, "status.log");
        const script = `
          import { acquirePidFile, logDaemonCrash } from ${JSON.stringify(daemon)};
          import { setupLogging } from ${JSON.stringify(log)};
          setupLogging({ file: ${JSON.stringify(logFile)}, format: "json" });
          acquirePidFile(${JSON.stringify(pidFile)});
          const _crash = logDaemonCrash(${JSON.stringify(pidFile)});
          ${failure}
          await new Promise((resolve) => setTimeout(resolve, 5000));
        `;
        const output = await new Deno.Command(Deno.execPath(), {
          args: ["eval", "--no-check", script],
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).output();
        assert.notEqual(output.code, 0, "the error still ends the process");
        const lines = Deno.readTextFileSync(logFile).trim().split("\n").map((l) => JSON.parse(l));
        const fatal = lines.find((line) => line.level === "fatal");
        assert.ok(fatal, JSON.stringify(lines));
        assert.match(fatal.message, /the agent ended on an error nothing handled: boom in a/);
        assert.equal(readPidFile(pidFile), undefined, "the pid file is released");
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
});

Deno.test("status stop waits by default past the agent's SHUTDOWN_GRACE_SECS", () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-stop-" });
  try {
    const envFile = join(dir, ".env");
    const config = join(dir, "config.json");
    Deno.writeTextFileSync(config, "{}\n");
    const flags = { envFile, config };
    // None set: 60 s, above the default grace of 30 s.
    assert.deepEqual(stopSettings({ ...flags, pidFile: "a.pid" }, {}), {
      pidFile: "a.pid",
      timeoutSecs: 60,
    });
    // A grace of 300 s: a running command may take that long before the agent exits.
    Deno.writeTextFileSync(envFile, "PID_FILE=b.pid\nSHUTDOWN_GRACE_SECS=300\n");
    assert.deepEqual(stopSettings(flags, {}), { pidFile: "b.pid", timeoutSecs: 330 });
    assert.equal(stopSettings(flags, { SHUTDOWN_GRACE_SECS: "90" }).timeoutSecs, 120);
    assert.equal(stopSettings({ ...flags, timeout: 5 }, {}).timeoutSecs, 5, "--timeout wins");
    // A bad grace never prevents stopping: the default.
    Deno.writeTextFileSync(envFile, "PID_FILE=b.pid\nSHUTDOWN_GRACE_SECS=soon\n");
    assert.deepEqual(stopSettings(flags, {}), { pidFile: "b.pid", timeoutSecs: 60 });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a daemon that cannot start says why, where it was started", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-daemon-" });
  Deno.writeTextFileSync(
    join(dir, "config.json"),
    JSON.stringify({ agent_id: "daemon-why", dashboard_url: "http://127.0.0.1:9" }),
  );
  const daemon = (...args: string[]) =>
    runCli(["--daemon", ...args], { perms: PERMS.agent, cwd: dir });
  try {
    for (
      const [args, expected] of [
        [
          ["--pid-file", "/nonexistent/x.pid"],
          "status: PID_FILE from flag --pid-file (/nonexistent/x.pid) cannot be created: the " +
          "directory /nonexistent does not exist",
        ],
        [
          ["--log-file", "/nonexistent/x.log"],
          "status: LOG_FILE from flag --log-file (/nonexistent/x.log) cannot be created: the " +
          "directory /nonexistent does not exist",
        ],
        [
          ["--pid-file", dir],
          `status: PID_FILE from flag --pid-file (${dir}) cannot be created: it is a directory, ` +
          "not a file",
        ],
        [
          ["--pid-file", "status.log"],
          "status: PID_FILE from flag --pid-file (status.log) and LOG_FILE from the default " +
          "(status.log) are the same file; give each its own path",
        ],
        [
          ["--log-file", `${dir}/status.pid`],
          `status: PID_FILE from the default (status.pid) and LOG_FILE from flag --log-file ` +
          `(${dir}/status.pid) are the same file; give each its own path`,
        ],
      ] as const
    ) {
      await t.step(`checked before it is started: ${args.join(" ")}`, async () => {
        const run = await daemon(...args);
        assert.equal(run.code, 2, run.stderr);
        assert.equal(run.stderr.trim(), expected);
        assert.equal(run.stdout, "");
      });
    }
    await t.step("what it says on standard error as it fails is printed", async () => {
      // A log file the parent cannot tell is unusable: a symlink (a link to a folder that does
      // not exist), which the daemon refuses to write through.
      const link = join(dir, "dangling.log");
      Deno.symlinkSync(join(dir, "no-such-folder", "x.log"), link);
      const run = await daemon("--log-file", link);
      assert.equal(run.code, 2, run.stderr);
      assert.match(
        run.stderr.trim(),
        new RegExp(
          `^status: the daemon exited at start with code 2: LOG_FILE from flag --log-file ` +
            `\\(${link}\\) cannot be opened: ${link} is a symlink; refusing to write through it`,
        ),
      );
      assert.doesNotMatch(run.stderr, /see its log file/);
    });
    await t.step("a pid file the daemon cannot make is named as the setting it is", async () => {
      // It said "cannot write the pid file /proc/1/x.pid: No such file or directory (os error 2):
      // open '/proc/1/x.pid'", naming neither PID_FILE nor where it came from.
      // (Deno lets a program look into /proc only under --allow-all.)
      const run = await runCli(["--daemon", "--pid-file", "/proc/1/x.pid"], {
        perms: ["--allow-all"],
        cwd: dir,
      });
      assert.equal(run.code, 2, run.stderr);
      assert.equal(
        run.stderr.trim(),
        "status: the daemon exited at start with code 2: PID_FILE from flag --pid-file " +
          "(/proc/1/x.pid) cannot be written: /proc/1 does not let a file be made in it",
      );
    });
    await t.step("a state directory another agent holds fails the start, not later", async () => {
      const stateDir = join(dir, "held-state");
      const pidFile = join(dir, "held.pid");
      // This process plays the running agent: it holds the state directory's lock.
      using _held = openAgentState({ dir: stateDir });
      const run = await daemon("--state-dir", stateDir, "--pid-file", pidFile);
      // A daemon said to be started (the failure this checks) must not run on after the test.
      const started = Number(/pid (\d+)/.exec(run.stdout)?.[1]);
      if (started > 1 && isProcessAlive(started)) Deno.kill(started, "SIGKILL");
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stderr.trim(),
        new RegExp(
          `^status: the daemon exited at start with code 1: another agent \\(pid ${Deno.pid}\\) ` +
            `is using the state directory ${stateDir}`,
        ),
      );
      assert.equal(run.stdout, "", "not said to be started");
      assert.equal(readPidFile(pidFile), undefined, "no pid file left");
      // Its log says so too (its standard error reaches no one once it runs).
      assert.match(
        Deno.readTextFileSync(join(dir, "status.log")),
        /"the agent stopped on an error: another agent \(pid \d+\) is using the state directory/,
      );
    });
    await t.step("a state directory that is a file is refused before it is started", async () => {
      const stateFile = join(dir, "state-is-a-file");
      Deno.writeTextFileSync(stateFile, "");
      const run = await daemon("--state-dir", stateFile);
      assert.equal(run.code, 2, run.stderr);
      assert.equal(
        run.stderr.trim(),
        `status: STATE_DIR from flag --state-dir (${stateFile}) cannot be used: it is not a ` +
          "directory",
      );
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the README's background agent starts and stops under exactly the flags it names", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const row = readme.split("\n").find((line) => line.startsWith("| agent (background)"))!;
  // "as above, plus ...": the foreground row's network and run flags, and the row's own files.
  const perms = ["--allow-net", "--allow-run", ...row.match(/--allow-(?:read|write)=[^\s`]+/g)!];
  assert.ok(perms.some((p) => p.startsWith("--allow-read=")), row);
  assert.ok(perms.some((p) => p.startsWith("--allow-write=")), row);
  const dir = Deno.makeTempDirSync({ prefix: "status-readme-daemon-" });
  Deno.writeTextFileSync(
    join(dir, "config.json"),
    JSON.stringify({ agent_id: "readme-daemon", dashboard_url: "http://127.0.0.1:9" }),
  );
  try {
    const started = await runCli(["--daemon", "--config", "config.json"], { perms, cwd: dir });
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, /^agent started in the background: pid \d+, pid file status\.pid/);
    const stopped = await runCli(["stop"], { perms, cwd: dir });
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(Deno.readTextFileSync(join(dir, "status.log")), /Agent daemon starting/);
  } finally {
    const pid = readPidFileOrUndefined(join(dir, "status.pid"));
    if (pid !== undefined && isProcessAlive(pid)) Deno.kill(pid, "SIGKILL");
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("--daemon whose line cannot be written says the daemon runs, with its pid and how to stop it", async () => {
  // `status --daemon > /dev/full` said only "cannot write to standard output" and exited 1,
  // while the daemon it started ran on: someone would start it again, or never stop it.
  const dir = Deno.makeTempDirSync({ prefix: "status-daemon-full-" });
  const perms = ["--allow-net", "--allow-run", `--allow-read=${dir}`, `--allow-write=${dir}`];
  const agent = ["--daemon", "--agent-id", "full-1", "--dashboard-url", "http://127.0.0.1:9"];
  try {
    const run = await runCli(agent, {
      perms,
      cwd: dir,
      prefix: ["sh", "-c", 'exec "$@" > /dev/full', "sh"],
    });
    assert.equal(run.code, 1, run.stderr);
    const pid = readPidFile(join(dir, "status.pid"));
    assert.ok(pid !== undefined && isProcessAlive(pid), "the daemon runs");
    assert.equal(
      lastLine(run.stderr),
      `status: agent started in the background: pid ${pid}, pid file status.pid, log ` +
        "status.log; but this line could not be written to standard output (No space left " +
        "on device (os error 28)); stop it with: status stop --pid-file status.pid",
    );
    const stopped = await runCli(["stop"], { perms, cwd: dir });
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    const pid = readPidFileOrUndefined(join(dir, "status.pid"));
    if (pid !== undefined && isProcessAlive(pid)) Deno.kill(pid, "SIGKILL");
    Deno.removeSync(dir, { recursive: true });
  }
});

function readPidFileOrUndefined(path: string): number | undefined {
  try {
    return readPidFile(path);
  } catch {
    return undefined;
  }
}

Deno.test("the daemon's and status stop's files without the permissions for them", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-daemon-perms-" });
  const agent = ["--daemon", "--agent-id", "perms-1", "--dashboard-url", "http://127.0.0.1:9"];
  try {
    await t.step(
      "--daemon without --allow-read/--allow-write: exit 2 before it starts",
      async () => {
        const run = await runCli(agent, { perms: ["--allow-net", "--allow-run"], cwd: dir });
        assert.equal(run.code, 2, run.stderr);
        assert.equal(
          lastLine(run.stderr),
          "status: PID_FILE from the default (status.pid) cannot be created: not permitted " +
            "without --allow-read and --allow-write (the daemon reads and writes it: " +
            "--allow-read=status.pid --allow-write=status.pid)",
        );
        assert.equal(run.stdout, "");
      },
    );
    await t.step("the pid file allowed, the log file not", async () => {
      const perms = ["--allow-net", "--allow-run", "--allow-read=status.pid"]
        .concat("--allow-write=status.pid");
      const run = await runCli(agent, { perms, cwd: dir });
      assert.equal(run.code, 2, run.stderr);
      assert.match(
        run.stderr,
        /status: LOG_FILE from the default \(status\.log\) cannot be created/,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], "no daemon was started");
    });
    await t.step("status stop without --allow-read: exit 2 naming the flags", async () => {
      const run = await runCli(["stop"], { perms: ["--allow-run"], cwd: dir });
      assert.equal(run.code, 2, run.stderr);
      assert.equal(
        lastLine(run.stderr),
        "status: cannot read the pid file status.pid without --allow-read (the daemon and " +
          "status stop read and write it: --allow-read=status.pid --allow-write=status.pid)",
      );
    });
    await t.step("a stale pid file status stop may not remove is not said removed", async () => {
      Deno.writeTextFileSync(join(dir, "status.pid"), "999999\n");
      const run = await runCli(["stop"], { perms: ["--allow-run", "--allow-read"], cwd: dir });
      assert.equal(run.code, 1, run.stderr);
      assert.equal(
        lastLine(run.stderr),
        "status: the agent with pid 999999 (pid file status.pid) is not running; could not " +
          "remove the stale pid file (not permitted without --allow-write=status.pid); remove it",
      );
      assert.equal(Deno.readTextFileSync(join(dir, "status.pid")), "999999\n");
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** The last line a run wrote (after the start-up notes). */
function lastLine(text: string): string | undefined {
  return text.trimEnd().split("\n").at(-1);
}

Deno.test("a pid file that cannot be where it is, is a configuration error (exit 2)", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const pidFile = join(dir, "missing", "status.pid");
    assert.throws(
      () => acquirePidFile(pidFile, Deno.pid),
      (error) =>
        error instanceof ConfigError && error.exitCode === 2 &&
        error.message.startsWith(`cannot write the pid file ${pidFile}: `),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
