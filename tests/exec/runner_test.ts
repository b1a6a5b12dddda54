import assert from "node:assert/strict";
import {
  CommandRunner,
  createPolicy,
  type DeadlineWarning,
  defaultPolicy,
  type ExecResult,
  type ExitRecord,
  runCommand,
  Sandbox,
  toReportFields,
} from "../../src/exec/mod.ts";
import {
  alive,
  deafSandbox,
  pidsIn,
  processState,
  runOnFakeClock,
  scripts,
  survivors,
} from "./helpers.ts";
import { until } from "../_until.ts";
import { FakeClock } from "../../src/clock.ts";
import { extraEnvBytes, MAX_ENV_STRING_BYTES, MAX_EXTRA_ENV_BYTES } from "../../src/exec/env.ts";
import { MAX_ARGS, MAX_COMMAND_LINE_LENGTH } from "../../src/exec/parse.ts";

Deno.test("executor runs an allowed command and reports its output", async () => {
  const result = await runCommand(`echo "Hello from dashboard"`, { policy: defaultPolicy() });
  assert.equal(result.status, "success");
  assert.equal(result.exit_code, 0);
  assert.equal(result.signal, null);
  assert.equal(result.stdout, "Hello from dashboard\n");
  assert.equal(result.stderr, "");
  assert.equal(result.error, null);
  assert.match(result.program ?? "", /^\/.*\/echo$/);
  assert.deepEqual(result.argv, ["echo", "Hello from dashboard"]);
  assert.ok(result.duration_secs >= 0 && result.duration_secs < 5);
  assert.deepEqual(toReportFields(result).result, {
    exit_code: 0,
    signal: null,
    duration_secs: result.duration_secs,
    stdout: "Hello from dashboard\n",
    stderr: "",
    stdout_truncated_bytes: 0,
    stderr_truncated_bytes: 0,
  });
});

Deno.test("executor measures the deadline phases on the monotonic clock, whatever the wall clock does", async (t) => {
  // The times in the report were measured on the wall clock: an hour stepped forward during a
  // 1 s run (NTP, a resumed VM) made it "SIGTERM was sent at 1 h 0 min 0.9 s", an hour long.
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  for (const stepMs of [3_600_000, -3_600_000, 86_400_000]) {
    await t.step(`a wall clock stepped by ${stepMs / 1000} s`, async () => {
      const warnings: DeadlineWarning[] = [];
      const clock = new SteppedClock(0);
      const run = runOnFakeClock("sleep 30", {
        policy: defaultPolicy(),
        timeoutSecs: 1,
        onWarning: (warning) => warnings.push(warning),
      }, clock);
      await run.ready();
      clock.offsetMs += stepMs;
      run.clock.advance(800);
      assert.equal(warnings[0]?.elapsedSecs, 0.8);
      run.clock.advance(100);
      const result = await run.result;
      assert.equal(result.status, "timeout");
      assert.equal(
        result.error,
        "deadline of 1 s: SIGTERM was sent at 0.9 s (90 % of it); it ended by SIGTERM at 0.9 s",
      );
      assert.equal(result.duration_secs, 0.9);
      // The times of day are the wall clock's.
      assert.equal(Date.parse(result.completed_at!) - Date.parse(result.started_at!), stepMs + 900);
    });
  }
});

Deno.test("executor stops a command at its deadline in phases", async (t) => {
  await using dir = await scripts();
  const stubborn = await dir.script(
    "stubborn.sh",
    // Ignores SIGTERM (and so do its children), keeps running until SIGKILL.
    "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done",
  );
  const policy = dir.policy(stubborn);

  await t.step("a command that exits on SIGTERM ends as timeout", async () => {
    const warnings: DeadlineWarning[] = [];
    const run = runOnFakeClock("sleep 30", {
      policy,
      timeoutSecs: 1,
      onWarning: (warning) => warnings.push(warning),
    });
    await run.ready();
    run.clock.advance(799);
    assert.equal(warnings.length, 0);
    run.clock.advance(1);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0].elapsedSecs, 0.8);
    assert.equal(warnings[0].timeoutSecs, 1);
    run.clock.advance(100);
    const result = await run.result;
    assert.equal(result.status, "timeout");
    assert.equal(result.signal, "SIGTERM");
    assert.equal(result.exit_code, null);
    assert.equal(result.timeout_secs, 1);
    assert.equal(
      result.error,
      "deadline of 1 s: SIGTERM was sent at 0.9 s (90 % of it); it ended by SIGTERM at 0.9 s",
    );
    assert.equal(result.duration_secs, 0.9);
    assert.equal(warnings.length, 1);
  });

  await t.step("a command that traps SIGTERM is SIGKILLed and ends as killed", async () => {
    const run = runOnFakeClock(stubborn, { policy, timeoutSecs: 1 });
    await run.ready("ready");
    run.clock.advance(900);
    run.clock.advance(100);
    const result = await run.result;
    assert.equal(result.status, "killed");
    assert.equal(result.signal, "SIGKILL");
    assert.equal(
      result.error,
      "deadline of 1 s: SIGTERM was sent at 0.9 s (90 % of it); it had not stopped, so SIGKILL " +
        "was sent at 1 s; it ended by SIGKILL at 1 s",
    );
    assert.equal(result.duration_secs, 1);
  });

  await t.step("a command that exits 0 on SIGTERM is a timeout that says so", async () => {
    const polite = await dir.script(
      "polite.sh",
      "trap 'exit 0' TERM\necho ready\nwhile :; do sleep 0.05; done",
    );
    const run = runOnFakeClock(polite, { policy: dir.policy(polite), timeoutSecs: 1 });
    await run.ready("ready");
    run.clock.advance(900);
    const result = await run.result;
    assert.equal(result.status, "timeout");
    assert.equal(result.exit_code, 0);
    assert.equal(result.signal, null);
    assert.equal(
      result.error,
      "deadline of 1 s: SIGTERM was sent at 0.9 s (90 % of it); it exited with code 0 at 0.9 s",
    );
  });

  await t.step("the requested deadline is capped by the maximum", async () => {
    const run = runOnFakeClock("sleep 30", { policy, timeoutSecs: 100, maxTimeoutSecs: 0.5 });
    await run.ready();
    assert.equal(run.clock.nextAt, 400);
    run.clock.advance(450);
    const result = await run.result;
    assert.equal(result.status, "timeout");
    assert.equal(result.timeout_secs, 0.5);
    // The error says the deadline is not the one asked for, and why.
    assert.match(
      result.error ?? "",
      /^deadline of 0\.5 s \(it asked for 100 s; COMMAND_TIMEOUT_MAX_SECS caps it\): SIGTERM/,
    );
  });

  await t.step("a deadline below a millisecond is named as it is, not as 0 s", async () => {
    const run = runOnFakeClock("sleep 30", { policy, timeoutSecs: 0.0004 });
    await run.ready();
    run.clock.advance(0.38); // past SIGTERM (0.36 ms), before SIGKILL (0.4 ms)
    const result = await run.result;
    assert.equal(result.status, "timeout");
    assert.equal(result.timeout_secs, 0.0004);
    assert.match(result.error ?? "", /^deadline of 0\.0004 s: SIGTERM was sent at 0 s /);
  });

  await t.step("without a requested deadline the default applies", async () => {
    const run = runOnFakeClock("sleep 30", { policy, defaultTimeoutSecs: 0.5 });
    await run.ready();
    run.clock.advance(450);
    const result = await run.result;
    assert.equal(result.status, "timeout");
    assert.equal(result.timeout_secs, 0.5);
  });

  await t.step("a command that ends before its deadline clears its timers", async () => {
    const run = runOnFakeClock("sleep 0.01", { policy, timeoutSecs: 1 });
    const result = await run.result;
    assert.equal(result.status, "success");
    assert.equal(run.clock.pending, 0);
  });

  await t.step("a command that stopped itself (SIGSTOP) still ends on SIGTERM", async () => {
    // A stopped process keeps SIGTERM pending until it is continued: without SIGCONT it sat
    // stopped until SIGKILL and was reported killed, its 10 % of grace lost.
    const frozen = await dir.script("frozen.sh", "echo ready\nkill -STOP $$\nsleep 30");
    let pid = 0;
    let settled = false;
    const run = runOnFakeClock(frozen, {
      policy: dir.policy(frozen),
      timeoutSecs: 1,
      onSpawn: (record) => pid = record.pid,
    });
    run.result.finally(() => settled = true);
    await run.ready("ready");
    await until(async () => pid !== 0 && await processState(pid) === "T", "the command stops");
    run.clock.advance(900);
    // It ends on SIGTERM in real time; the SIGKILL at 100 % comes only if it does not.
    await until(() => settled, "the command ends on SIGTERM", 5000).catch(() => {});
    if (!settled) run.clock.advance(100);
    const result = await run.result;
    assert.equal(result.status, "timeout");
    assert.equal(result.signal, "SIGTERM");
    assert.equal(
      result.error,
      "deadline of 1 s: SIGTERM was sent at 0.9 s (90 % of it); it ended by SIGTERM at 0.9 s",
    );
  });
});

Deno.test("executor gives up on a process that does not end after SIGKILL, and says so", async (t) => {
  /**
   * Runs `sleep 600` in a sandbox whose signals are lost (a process in state D), advances the
   * clock to `killAt`, checks that the give-up is armed `killWaitMs` later and takes it there;
   * then stops the left-behind process and checks that its end changes nothing.
   */
  async function stuck(
    options: { timeoutSecs: number; killAt: number; cancelAt?: number },
    check: (result: ExecResult, pid: number, exits: ExitRecord[]) => void,
  ) {
    const deaf = deafSandbox();
    const exits: ExitRecord[] = [];
    const cancel = new AbortController();
    const run = runOnFakeClock("sleep 600", {
      policy: defaultPolicy(),
      timeoutSecs: options.timeoutSecs,
      sandbox: deaf.sandbox,
      signal: cancel.signal,
      cancelGraceMs: 300,
      killWaitMs: 30_000,
      onExit: (exit) => exits.push(exit),
    });
    await run.ready();
    const [child] = deaf.children;
    try {
      if (options.cancelAt !== undefined) {
        run.clock.advance(options.cancelAt);
        cancel.abort();
      }
      run.clock.advance(options.killAt - run.clock.now());
      assert.deepEqual(deaf.signals, ["SIGTERM", "SIGKILL"]);
      // The next timer is the end of the wait after SIGKILL.
      assert.equal(run.clock.nextAt, options.killAt + 30_000);
      run.clock.advance(29_999);
      assert.equal(exits.length, 0, "the run gave up before the kill wait was over");
      run.clock.advance(1);
      // Then the drain of the pipes the process still holds, on the same clock.
      await until(() => exits.length > 0 && run.clock.pending > 0, "the run drains its pipes");
      run.clock.advance(250);
      const result = await run.result;
      assert.deepEqual(await alive([child.pid]), [child.pid], "the stuck process should be alive");
      check(result, child.pid, exits);
      assert.equal(exits.length, 1);
      assert.equal(exits[0].status, result.status);
      assert.equal(exits[0].error, result.error);
    } finally {
      child.kill("SIGKILL");
      // The runner let go of it (it keeps no agent from exiting): hold it while it is awaited.
      child.ref();
      await child.status;
    }
    // Its late end makes no second exit (a second report) and throws nowhere.
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(exits.length, 1);
  }

  await t.step("at the deadline: killed, with its pid named", async () => {
    await stuck({ timeoutSecs: 1, killAt: 1000 }, (result, pid) => {
      assert.equal(result.status, "killed");
      assert.equal(result.exit_code, null);
      assert.equal(result.signal, null);
      assert.equal(result.duration_secs, 31);
      assert.equal(
        result.error,
        "deadline of 1 s: SIGTERM was sent at 0.9 s (90 % of it); it had not stopped, so SIGKILL " +
          `was sent at 1 s; the process (pid ${pid}) did not end within 30 s of SIGKILL and was ` +
          "left behind at 31 s, likely in uninterruptible sleep (state D: a hung NFS mount or a " +
          "failing disk)",
      );
    });
  });

  await t.step("on a cancel: cancelled, the same wait after the grace's SIGKILL", async () => {
    await stuck({ timeoutSecs: 300, cancelAt: 200, killAt: 500 }, (result, pid) => {
      assert.equal(result.status, "cancelled");
      assert.equal(result.exit_code, null);
      assert.equal(result.signal, null);
      assert.equal(
        result.error,
        "cancelled: SIGTERM was sent at 0.2 s; it had not stopped, so SIGKILL was sent at 0.5 s; " +
          `the process (pid ${pid}) did not end within 30 s of SIGKILL and was left behind at ` +
          "30.5 s, likely in uninterruptible sleep (state D: a hung NFS mount or a failing disk)",
      );
    });
  });

  await t.step("the wait must be a positive number of milliseconds", () => {
    for (const killWaitMs of [0, -1, Number.NaN]) {
      assert.throws(
        () => new CommandRunner({ policy: defaultPolicy(), killWaitMs }),
        new RangeError(`killWaitMs must be a positive number of milliseconds, got ${killWaitMs}`),
      );
    }
  });
});

Deno.test("executor keeps a deadline longer than a runtime timer holds (24.8 days)", async () => {
  // A 30-day deadline's timers once fired at once: the command was killed as it started.
  const days30 = 30 * 86_400;
  const result = await runCommand("sleep 0.2", {
    policy: defaultPolicy(),
    timeoutSecs: days30,
    maxTimeoutSecs: 365 * 86_400,
  });
  assert.equal(result.status, "success", result.error ?? "");
  assert.equal(result.timeout_secs, days30);
});

Deno.test("executor leaves no process of the command's group alive", async (t) => {
  await using dir = await scripts();
  const spawner = await dir.script(
    "spawner.sh",
    [
      "sleep 30 &",
      "echo $!",
      "sleep 30 &",
      "echo $!",
      // A grandchild of a subshell; its pid comes back through a file so that it is printed
      // before the script exits.
      `( sleep 30 & echo $! > "$0.inner"; wait ) &`,
      "echo $!",
      `while [ ! -s "$0.inner" ]; do sleep 0.01; done`,
      `cat "$0.inner"`,
      "echo $$",
    ].join("\n"),
  );
  const stubbornSpawner = await dir.script(
    "stubborn_spawner.sh",
    [
      "trap '' TERM",
      "sleep 30 &",
      "echo $!",
      "sleep 30 &",
      "echo $!",
      "echo $$",
      "echo ready",
      "wait",
    ].join("\n"),
  );
  const politeSpawner = await dir.script(
    "polite_spawner.sh",
    ["sleep 30 &", "echo $!", "sleep 30 &", "echo $!", "echo $$", "echo ready", "wait"].join("\n"),
  );
  const policy = dir.policy(spawner, stubbornSpawner, politeSpawner);

  await t.step("the liveness probe sees a live process and not a dead one", async () => {
    const child = new Deno.Command("sleep", { args: ["5"], stdout: "null", stderr: "null" })
      .spawn();
    assert.deepEqual(await alive([child.pid]), [child.pid]);
    child.kill("SIGKILL");
    await child.status;
    assert.deepEqual(await alive([child.pid]), []);
  });

  await t.step("after a successful run", async () => {
    const started = performance.now();
    const result = await runCommand(spawner, { policy, timeoutSecs: 10 });
    assert.equal(result.status, "success");
    assert.ok(
      performance.now() - started < 2000,
      "a background child holding the pipe hung the run",
    );
    const pids = pidsIn(result.stdout);
    assert.equal(pids.length, 5, JSON.stringify(result));
    assert.deepEqual(await survivors(pids), []);
  });

  await t.step("after a timeout", async () => {
    const run = runOnFakeClock(politeSpawner, { policy, timeoutSecs: 1 });
    await run.ready("ready");
    run.clock.advance(900);
    const result = await run.result;
    assert.equal(result.status, "timeout");
    const pids = pidsIn(result.stdout);
    assert.equal(pids.length, 3, result.stdout);
    assert.deepEqual(await survivors(pids), []);
  });

  await t.step("after a kill", async () => {
    const run = runOnFakeClock(stubbornSpawner, { policy, timeoutSecs: 1 });
    await run.ready("ready");
    run.clock.advance(1000);
    const result = await run.result;
    assert.equal(result.status, "killed");
    const pids = pidsIn(result.stdout);
    assert.equal(pids.length, 3, result.stdout);
    assert.deepEqual(await survivors(pids), []);
  });
});

Deno.test("executor stops reading when the command exits even if an escaped process holds the pipe", async () => {
  await using dir = await scripts();
  // setsid moves the sleeper out of the command's process group: it survives the group kill
  // and keeps stdout open. Its pid goes to a file, and the script exits only once it is there.
  const escaper = await dir.script(
    "escaper.sh",
    [
      `setsid sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 10' sh "$0.pid" &`,
      `while [ ! -s "$0.pid" ]; do sleep 0.01; done`,
    ].join("\n"),
  );
  const started = performance.now();
  let escaped: number | undefined;
  try {
    const result = await runCommand(escaper, { policy: dir.policy(escaper), timeoutSecs: 5 });
    const elapsed = performance.now() - started;
    escaped = Number(await Deno.readTextFile(`${escaper}.pid`));
    assert.equal(result.status, "success");
    assert.deepEqual(await alive([escaped]), [escaped], "the escaped process should be alive");
    assert.ok(elapsed < 2000, `the run waited ${elapsed} ms for the pipe`);
  } finally {
    escaped ??= Number(await Deno.readTextFile(`${escaper}.pid`).catch(() => "0"));
    if (escaped > 1 && (await alive([escaped])).length > 0) Deno.kill(escaped, "SIGKILL");
  }
});

Deno.test("executor stops the processes that moved to a process group of their own", async (t) => {
  await using dir = await scripts();
  // bash's job control (`set -m`) puts each background job in a process group of its own, in the
  // command's session: the group's signals miss it.
  const jobs = async (name: string, lines: string[]) => {
    const path = `${dir.dir}/${name}`;
    await Deno.writeTextFile(path, ["#!/bin/bash", "set -m", ...lines].join("\n") + "\n");
    await Deno.chmod(path, 0o755);
    return path;
  };
  const holder = await jobs("holder.sh", [
    "sleep 30 &",
    "echo $!",
    "sleep 30 >/dev/null 2>&1 &",
    "echo $!",
  ]);
  const quiet = await jobs("quiet.sh", [
    "sleep 30 >/dev/null 2>&1 &",
    "echo $!",
    "echo ready",
    "wait",
  ]);
  const policy = dir.policy(holder, quiet);
  const stopAll = async (pids: number[]) => {
    for (const pid of await alive(pids)) Deno.kill(pid, "SIGKILL");
  };

  await t.step("after a run whose job still holds its output, every job of it", async () => {
    const result = await runCommand(holder, { policy, timeoutSecs: 30 });
    const pids = pidsIn(result.stdout);
    try {
      assert.equal(result.status, "success", JSON.stringify(result));
      assert.equal(pids.length, 2, result.stdout);
      assert.deepEqual(await survivors(pids, 5000), []);
    } finally {
      await stopAll(pids);
    }
  });

  await t.step("at the deadline, a job that holds nothing of it", async () => {
    const run = runOnFakeClock(quiet, { policy, timeoutSecs: 1 });
    await run.ready("ready");
    run.clock.advance(900);
    const result = await run.result;
    const pids = pidsIn(result.stdout);
    try {
      assert.equal(result.status, "timeout", JSON.stringify(result));
      assert.equal(pids.length, 1, result.stdout);
      assert.deepEqual(await survivors(pids, 5000), []);
    } finally {
      await stopAll(pids);
    }
  });
});

Deno.test("executor keeps 64 KiB per stream with an exact dropped count and bounded memory", async () => {
  await using dir = await scripts();
  const total = 50 * 1024 * 1024;
  const big = await dir.script(
    "big.sh",
    [
      `printf START; head -c ${total - 8} /dev/zero | tr '\\000' a; printf END`,
      `{ printf err-start; head -c ${total - 16} /dev/zero | tr '\\000' b; printf err-end; } >&2`,
    ].join("\n"),
  );
  // Warm up the code paths so that the measurement sees the output, not first-run allocations.
  await runCommand("echo warm", { policy: defaultPolicy() });
  const before = Deno.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 10);
  let result;
  try {
    result = await runCommand(big, { policy: dir.policy(big), timeoutSecs: 20 });
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, Deno.memoryUsage().rss);
  assert.equal(result.status, "success", result.error ?? "");
  const marker = `\n[status: ${total - 64 * 1024} bytes dropped here]\n`;
  assert.equal(result.stdout.length, 64 * 1024 + marker.length);
  assert.ok(result.stdout.includes(marker), "a marker stands where bytes were dropped");
  assert.equal(result.stdout_truncated_bytes, total - 64 * 1024);
  assert.ok(result.stdout.startsWith("STARTaaaa"));
  assert.ok(result.stdout.endsWith("aaaaEND"));
  assert.equal(result.stderr.length, 64 * 1024 + marker.length);
  assert.equal(result.stderr_truncated_bytes, total - 64 * 1024);
  assert.ok(result.stderr.startsWith("err-startbbbb"));
  assert.ok(result.stderr.endsWith("bbbberr-end"));
  const growthMiB = (peak - before) / 1024 / 1024;
  assert.ok(growthMiB < 24, `memory grew by ${growthMiB.toFixed(1)} MiB for 100 MiB of output`);
});

Deno.test("executor handles binary, empty and two-stream output", async (t) => {
  await using dir = await scripts();
  const binary = await dir.script("binary.sh", "printf '\\377\\376\\000ok\\n'");
  const both = await dir.script("both.sh", "echo out\necho err >&2\nexit 3");
  const silent = await dir.script("silent.sh", "exit 0");
  const policy = dir.policy(binary, both, silent);

  await t.step("output that is not UTF-8 comes back byte for byte as base64", async () => {
    const result = await runCommand(binary, { policy });
    assert.equal(result.stdout_encoding, "base64");
    assert.equal(result.stdout, btoa("\xff\xfe\x00ok\n"));
    assert.equal(result.stderr_encoding, undefined, "text stays text");
    assert.equal(toReportFields(result).result?.stdout_encoding, "base64");
  });
  await t.step("empty output", async () => {
    const result = await runCommand(silent, { policy });
    assert.equal(result.status, "success");
    assert.equal(result.stdout, "");
    assert.equal(result.stderr, "");
    const echo = await runCommand("echo -n", { policy });
    assert.equal(echo.stdout, "");
  });
  await t.step("both streams, non-zero exit", async () => {
    const result = await runCommand(both, { policy });
    assert.equal(result.status, "failed");
    assert.equal(result.exit_code, 3);
    assert.equal(result.error, "exited with code 3");
    assert.equal(result.stdout, "out\n");
    assert.equal(result.stderr, "err\n");
  });
});

Deno.test("executor names the signal that ended a command, real-time ones too", async (t) => {
  // Deno names only the signals it knows: the status of a process a real-time signal ended
  // rejected with "Invalid signal: 34", and the run threw, its output and its exit lost.
  await using dir = await scripts();
  const cases: [number | string, string][] = [
    ["SEGV", "SIGSEGV"],
    [34, "SIGRTMIN"],
    [35, "SIGRTMIN+1"],
    [49, "SIGRTMIN+15"],
    [50, "SIGRTMAX-14"],
    [64, "SIGRTMAX"],
  ];
  for (const [sent, name] of cases) {
    await t.step(`${sent} is ${name}`, async () => {
      const script = await dir.script(`kill-${sent}.sh`, `echo before\nkill -${sent} $$`);
      const exits: ExitRecord[] = [];
      const result = await runCommand(script, {
        policy: dir.policy(script),
        onExit: (exit) => exits.push(exit),
      });
      assert.equal(result.status, "failed");
      assert.equal(result.signal, name);
      assert.equal(result.exit_code, null);
      assert.equal(result.error, `terminated by signal ${name}`);
      assert.equal(result.stdout, "before\n");
      assert.deepEqual(exits.map((exit) => exit.signal), [name]);
    });
  }
});

Deno.test("executor names signals 32 and 33, which glibc keeps for itself", async (t) => {
  // A process Deno starts has them ignored, and glibc refuses to change that: the probe does it
  // with the raw system call, then sends itself the signal. Its status rejected with "Invalid
  // signal: 32" and the run threw, its output and its exit lost.
  const probe = new URL("./_signal_probe.ts", import.meta.url).pathname;
  const policy = createPolicy({
    allowedPrograms: [Deno.execPath()],
    allowedPathPrefixes: [probe.slice(0, probe.lastIndexOf("/"))],
  });
  for (const number of [32, 33]) {
    await t.step(`SIG${number}`, async () => {
      const result = await runCommand(
        `${Deno.execPath()} run --no-config --no-lock --allow-ffi ${probe} ${number}`,
        { policy },
      );
      assert.equal(result.status, "failed", result.stderr);
      assert.equal(result.signal, `SIG${number}`);
      assert.equal(result.exit_code, null);
      assert.equal(result.error, `terminated by signal SIG${number}`);
      assert.equal(result.stdout, "before\n");
    });
  }
});

Deno.test("executor rejects hostile command lines with their reason and runs nothing", async (t) => {
  const cases: Array<[string, string]> = [
    ["echo hi; rm -rf /", `shell operator ";" is not allowed`],
    ["echo $(id)", `command substitution "$(" is not allowed`],
    ["echo `id`", "backtick is not allowed"],
    ["ls > /tmp/x", `redirection ">" is not allowed`],
    ["FOO=1 ls", `environment assignment "FOO=1" is not allowed`],
    ["bash -c id", `program "bash" is not allowed (shells must be allowed explicitly)`],
    [
      "rm -rf /tmp",
      `program "rm" is not on the allowlist (allowed: echo, sleep, ls, tar, gzip, uname, date, df, du)`,
    ],
    ["ls /etc", `path "/etc" is outside the allowed prefixes (/tmp, /var/tmp)`],
    ["ls /tmpx", `path "/tmpx" is outside the allowed prefixes (/tmp, /var/tmp)`],
    ["ls /tmp/../etc", `path "/tmp/../etc" has a ".." segment`],
    [
      "echo " + Array.from({ length: 17 }, (_, i) => `a${i}`).join(" "),
      "too many arguments: 17 (at most 16)",
    ],
    [`echo ${"x".repeat(5000)}`, "argument 1 is 5000 characters long (at most 4096)"],
  ];
  for (const [line, reason] of cases) {
    await t.step(line.length > 60 ? line.slice(0, 60) + "…" : line, async () => {
      const result = await runCommand(line, { policy: defaultPolicy() });
      assert.equal(result.status, "rejected");
      assert.equal(result.error, reason);
      assert.equal(result.exit_code, null);
      assert.equal(result.program, null);
      assert.deepEqual(toReportFields(result), {
        status: "rejected",
        result: null,
        error: reason,
        started_at: result.started_at,
        completed_at: result.completed_at,
      });
    });
  }
});

Deno.test("executor reports a program that cannot start as failed with the reason", async (t) => {
  await using dir = await scripts();
  await t.step("not found on PATH", async () => {
    const result = await runCommand("status-no-such-program --flag", {
      policy: dir.policy("status-no-such-program"),
    });
    assert.equal(result.status, "failed");
    assert.equal(result.start_failure, "not_found");
    assert.match(result.error ?? "", /^program "status-no-such-program" was not found on PATH \(/);
    assert.equal(toReportFields(result).result, null);
  });
  await t.step("an allowed absolute path that does not exist", async () => {
    const missing = `${dir.dir}/missing`;
    const result = await runCommand(missing, { policy: dir.policy(missing) });
    assert.equal(result.status, "failed");
    assert.equal(result.error, `program "${missing}" does not exist`);
  });
  await t.step("without execute permission", async () => {
    const path = `${dir.dir}/not-executable`;
    await Deno.writeTextFile(path, "#!/bin/sh\necho should not run\n");
    await Deno.chmod(path, 0o644);
    const result = await runCommand(path, { policy: dir.policy(path) });
    assert.equal(result.status, "failed");
    assert.equal(result.start_failure, "not_executable");
    assert.equal(result.error, `program "${path}" is not executable (no execute permission)`);
  });
  await t.step("found on PATH but not executable", async () => {
    const path = `${dir.dir}/plain`;
    await Deno.writeTextFile(path, "#!/bin/sh\n");
    await Deno.chmod(path, 0o644);
    const result = await runCommand("plain", {
      policy: dir.policy("plain"),
      readEnv: (name) => (name === "PATH" ? dir.dir : undefined),
    });
    assert.equal(result.status, "failed");
    assert.equal(result.error, `program "plain" was found at ${path} but is not executable`);
  });
  await t.step("an interpreter that does not exist", async () => {
    // The kernel says "No such file or directory" of a script that is there: the error names
    // the interpreter its #! line names.
    const cases: [string, string, string][] = [
      [
        "bad-interpreter",
        "#!/nonexistent/interpreter -x\necho hi\n",
        `(its #! line names the interpreter "/nonexistent/interpreter", which does not exist)`,
      ],
      [
        "windows-line-ends",
        "#!/bin/sh\r\necho hi\r\n",
        `(its #! line names the interpreter "/bin/sh\\r", which does not exist; the line ends ` +
        "with a carriage return (\\r): the script has Windows line ends)",
      ],
      [
        "directory-interpreter",
        `#! ${dir.dir}\n`,
        `(its #! line names the interpreter "${dir.dir}", which is not a file)`,
      ],
    ];
    for (const [name, text, note] of cases) {
      const path = `${dir.dir}/${name}`;
      await Deno.writeTextFile(path, text);
      await Deno.chmod(path, 0o755);
      const result = await runCommand(path, { policy: dir.policy(path) });
      assert.equal(result.status, "failed");
      assert.equal(result.start_failure === null, false);
      assert.match(result.error ?? "", new RegExp(`^program "${path}" could not be started: `));
      assert.ok(result.error?.endsWith(` ${note}`), result.error ?? "");
    }
  });
  await t.step("a working directory that does not exist", async () => {
    const result = await runCommand("echo hi", {
      policy: defaultPolicy(),
      cwd: `${dir.dir}/no-such-dir`,
    });
    assert.equal(result.status, "failed");
    assert.equal(result.error, `working directory "${dir.dir}/no-such-dir" does not exist`);
  });
});

Deno.test("a program that exits 126 or 127 with setsid's words is reported as having run", async (t) => {
  // Started through setsid, a program that could not be executed shows as setsid's status and
  // message; a program that ran and printed the same words was reported as never started, its
  // output dropped.
  await using dir = await scripts();
  for (const [code, reason] of [[127, "No such file or directory"], [126, "Permission denied"]]) {
    await t.step(`exit ${code}`, async () => {
      const path = `${dir.dir}/mimic-${code}`;
      const marker = `${dir.dir}/ran-${code}`;
      await Deno.writeTextFile(
        path,
        `#!/bin/sh\n: > ${marker}\necho "setsid: failed to execute $0: ${reason}" >&2\nexit ${code}\n`,
      );
      await Deno.chmod(path, 0o755);
      const result = await runCommand(path, { policy: dir.policy(path) });
      await Deno.stat(marker); // it ran
      assert.equal(result.status, "failed");
      assert.equal(result.start_failure, null);
      assert.equal(result.exit_code, code);
      assert.equal(result.error, `exited with code ${code}`);
      assert.equal(result.stderr, `setsid: failed to execute ${path}: ${reason}\n`);
      assert.notEqual(toReportFields(result).result, null);
    });
  }
});

Deno.test("executor gives the child a minimal environment without agent secrets", async () => {
  await using dir = await scripts();
  const secrets = {
    AGENT_TOKEN: "agent-token-value-that-must-not-leak",
    STATUS_ADMIN_TOKEN: "admin-token-value-that-must-not-leak",
    UNRELATED_VARIABLE: "unrelated",
  };
  const saved = Object.fromEntries(Object.keys(secrets).map((k) => [k, Deno.env.get(k)]));
  for (const [name, value] of Object.entries(secrets)) Deno.env.set(name, value);
  try {
    const result = await runCommand("env", {
      policy: dir.policy("env"),
      extraEnv: { TZ: "UTC" },
    });
    assert.equal(result.status, "success");
    const names = result.stdout.trim().split("\n").map((line) => line.split("=", 1)[0]).sort();
    assert.deepEqual(names, ["HOME", "LANG", "PATH", "TZ"]);
    for (const value of Object.values(secrets)) assert.ok(!result.stdout.includes(value));
    await assert.rejects(
      () => runCommand("env", { policy: dir.policy("env"), extraEnv: { AGENT_TOKEN: "x" } }),
      /"AGENT_TOKEN" is an agent secret/,
    );
    await assert.rejects(
      () =>
        runCommand("env", { policy: dir.policy("env"), extraEnv: { COPY: secrets.AGENT_TOKEN } }),
      /"COPY" holds an agent secret/,
    );
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
});

Deno.test("a program another runs by name is never one of the working directory", async () => {
  // With "." on the agent's PATH, tar -z ran the gzip a local user left in the working directory.
  await using dir = await scripts();
  await dir.script("gzip", `echo planted > ${dir.dir}/ran`);
  Deno.writeTextFileSync(`${dir.dir}/file`, "data");
  const result = await runCommand(`tar -czf ${dir.dir}/out.tgz -C ${dir.dir} file`, {
    policy: defaultPolicy(),
    cwd: dir.dir,
    readEnv: (name) => ({ PATH: ".:/usr/bin:/bin" })[name],
  });
  assert.equal(result.status, "success", `${result.error} ${result.stderr}`);
  assert.throws(() => Deno.statSync(`${dir.dir}/ran`), Deno.errors.NotFound);
});

Deno.test("a program is never looked up in a directory every user may write", async () => {
  // With /tmp/open (mode 0777) on the agent's PATH, "echo hi" ran the echo a local user put there.
  await using dir = await scripts();
  const open = `${dir.dir}/open`;
  Deno.mkdirSync(open);
  Deno.chmodSync(open, 0o777);
  await dir.script("open/echo", "echo planted");
  const result = await runCommand("echo hi", {
    policy: defaultPolicy(),
    readEnv: (name) => ({ PATH: `${open}:/usr/bin:/bin` })[name],
  });
  assert.equal(result.stdout, "hi\n");
  assert.equal(result.program, "/usr/bin/echo");
});

Deno.test("the agent's own ps is never looked up in a PATH directory every user may write", async () => {
  // Commands do not get /tmp/open (mode 0777) on their PATH, but the agent itself ran the ps a
  // local user, or a command, put there (as root, at a deadline) to find a command's processes.
  await using dir = await scripts();
  const open = `${dir.dir}/open`;
  Deno.mkdirSync(open);
  Deno.chmodSync(open, 0o777);
  const ran = `${dir.dir}/planted-ps-ran`;
  await dir.script("open/ps", `: > ${ran}`);
  const path = Deno.env.get("PATH") ?? "/usr/bin:/bin";
  Deno.env.set("PATH", `${open}:${path}`);
  try {
    // The deadline's SIGTERM looks for the command's processes in other groups of its session:
    // without /proc (Deno reads it only under --allow-all), with ps.
    const result = await runCommand("sleep 5", { policy: defaultPolicy(), timeoutSecs: 0.3 });
    assert.equal(result.status, "timeout");
  } finally {
    Deno.env.set("PATH", path);
  }
  assert.throws(() => Deno.statSync(ran), Deno.errors.NotFound);
});

Deno.test("a directory another user put where the commands' directories go stops no command", async () => {
  // Its name comes from STATE_DIR, so any user could make it first: every command then failed
  // with "/tmp/status-cmd-<tag> is in the way".
  const tag = `test-in-the-way-${crypto.randomUUID().slice(0, 8)}`;
  const inTheWay = `/tmp/status-cmd-${tag}`;
  Deno.symlinkSync("/tmp", inTheWay);
  try {
    await using sandbox = Sandbox.create({ cgroups: false, tag });
    const policy = createPolicy({ allowedPrograms: ["pwd"] });
    for (let i = 0; i < 2; i++) {
      const result = await runCommand("pwd", { policy, sandbox });
      assert.equal(result.status, "success", result.error ?? "");
      assert.match(result.stdout, new RegExp(`^/tmp/status-cmd-${tag}-[^/]+/cmd-[^/]+\n$`));
    }
    assert.equal(Deno.readLinkSync(inTheWay), "/tmp");
  } finally {
    Deno.removeSync(inTheWay);
  }
  assert.deepEqual(
    [...Deno.readDirSync("/tmp")].filter((entry) => entry.name.startsWith(`status-cmd-${tag}`)),
    [],
  );
});

Deno.test("a runner names the entries of the agent's PATH that commands do not get", async () => {
  // They were left out without a word (the agent's start-up log warns of them now).
  await using dir = await scripts();
  const open = `${dir.dir}/open`;
  Deno.mkdirSync(open);
  Deno.chmodSync(open, 0o777);
  const runner = (PATH: string) =>
    new CommandRunner({ policy: defaultPolicy(), readEnv: (name) => ({ PATH })[name] });
  assert.deepEqual(runner(`.:${open}:/usr/bin:/bin::.`).pathLeftOut, [".", "", open]);
  assert.deepEqual(runner("/usr/bin:/bin").pathLeftOut, []);
  const given = new CommandRunner({
    policy: defaultPolicy(),
    extraEnv: { PATH: `.:${open}:/usr/bin` },
    readEnv: () => undefined,
  });
  assert.deepEqual(given.pathLeftOut, [".", open]);
});

Deno.test("a working directory the system cannot create fails the command without a flag to grant", async () => {
  // The error said "(grant --allow-write=..., or set COMMAND_CWD)" whatever the system's reason
  // (a full /tmp: No space left on device), though the agent had that permission.
  await using dir = await scripts();
  const notADirectory = `${dir.dir}/file`;
  Deno.writeTextFileSync(notADirectory, "");
  await using sandbox = Sandbox.create({ cgroups: false, workRoot: notADirectory });
  const result = await runCommand("echo hi", { policy: defaultPolicy(), sandbox });
  assert.equal(result.status, "failed");
  assert.match(
    result.error ?? "",
    new RegExp(
      `^cannot create the command's working directory under ${notADirectory}: .*Not a directory` +
        ".* \\(or set COMMAND_CWD to a directory for them\\)$",
    ),
  );
});

Deno.test("a HOME among the extra variables wins over the command's own directory", async () => {
  // COMMAND_ENV=HOME=/srv/app was replaced, without a word, by the command's own directory.
  await using sandbox = Sandbox.create({ cgroups: false });
  const policy = createPolicy({ allowedPrograms: ["printenv"] });
  const given = await runCommand("printenv HOME", {
    policy,
    sandbox,
    extraEnv: { HOME: "/srv/app" },
  });
  assert.equal(given.stdout, "/srv/app\n");
  const own = await runCommand("printenv HOME", { policy, sandbox });
  assert.match(own.stdout, /^\/tmp\/status-cmd-[^/]+\/cmd-[^/]+\n$/);
});

Deno.test("extra variables as large as allowed together still let the longest command line start", async () => {
  // The bound on COMMAND_ENV's total leaves room for the command's own arguments: the longest
  // command line, of three-byte characters, still starts beside it.
  await using sandbox = Sandbox.create({ cgroups: false });
  const extraEnv: Record<string, string> = {};
  let left = MAX_EXTRA_ENV_BYTES;
  for (let i = 0; left > 0; i++) {
    const name = `V${i}`;
    const size = Math.min(left - 9, MAX_ENV_STRING_BYTES) - name.length - 1;
    extraEnv[name] = "x".repeat(size);
    left -= name.length + 1 + size + 9;
  }
  assert.equal(extraEnvBytes(extraEnv), MAX_EXTRA_ENV_BYTES);
  const args = Array.from({ length: MAX_ARGS }, () => "€".repeat(250));
  const line = `echo ${args.join(" ")}`;
  assert.ok(line.length <= MAX_COMMAND_LINE_LENGTH);
  const result = await runCommand(line, { policy: defaultPolicy(), sandbox, extraEnv });
  assert.equal(result.error, null);
  assert.equal(result.status, "success");
  assert.equal(result.stdout, `${args.join(" ")}\n`);
});

Deno.test("executor runs in the configured working directory with stdin closed", async () => {
  await using dir = await scripts();
  const probe = await dir.script(
    "probe.sh",
    "pwd\nif read line; then echo got-input; else echo no-input; fi",
  );
  const result = await runCommand(probe, { policy: dir.policy(probe), cwd: dir.dir });
  assert.equal(result.stdout, `${await Deno.realPath(dir.dir)}\nno-input\n`);
});

Deno.test("executor cancels a run through its AbortSignal", async (t) => {
  await using dir = await scripts();
  const stubborn = await dir.script(
    "stubborn.sh",
    "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done",
  );
  const policy = dir.policy(stubborn);

  await t.step("a command that stops on SIGTERM", async () => {
    const cancel = new AbortController();
    const run = runOnFakeClock("sleep 30", { policy, signal: cancel.signal });
    await run.ready();
    run.clock.advance(200);
    cancel.abort();
    const result = await run.result;
    assert.equal(result.status, "cancelled");
    assert.equal(result.signal, "SIGTERM");
    assert.equal(
      result.error,
      "cancelled: SIGTERM was sent at 0.2 s; it ended by SIGTERM at 0.2 s",
    );
    assert.notEqual(toReportFields(result).result, null);
  });
  await t.step("a command that ignores SIGTERM is killed after the grace", async () => {
    const cancel = new AbortController();
    const run = runOnFakeClock(stubborn, { policy, signal: cancel.signal, cancelGraceMs: 300 });
    await run.ready("ready");
    run.clock.advance(200);
    cancel.abort();
    // The next timer is the grace's SIGKILL (the deadline is 300 s away).
    assert.equal(run.clock.nextAt, 500);
    run.clock.advance(300);
    const result = await run.result;
    assert.equal(result.status, "cancelled");
    assert.equal(result.signal, "SIGKILL");
    assert.equal(
      result.error,
      "cancelled: SIGTERM was sent at 0.2 s; it had not stopped, so SIGKILL was sent at 0.5 s; " +
        "it ended by SIGKILL at 0.5 s",
    );
  });
  await t.step(
    "a command whose process group is stopped (SIGSTOP) still ends on SIGTERM",
    async () => {
      const frozen = await dir.script(
        "frozen-group.sh",
        "sleep 30 &\necho ready\nkill -STOP 0\nwait",
      );
      const cancel = new AbortController();
      let pid = 0;
      let settled = false;
      const run = runOnFakeClock(frozen, {
        policy: dir.policy(frozen),
        signal: cancel.signal,
        onSpawn: (record) => pid = record.pid,
      });
      run.result.finally(() => settled = true);
      await run.ready("ready");
      await until(async () => pid !== 0 && await processState(pid) === "T", "the group stops");
      run.clock.advance(200);
      cancel.abort();
      await until(() => settled, "the command ends on SIGTERM", 5000).catch(() => {});
      if (!settled) run.clock.advance(2000);
      const result = await run.result;
      assert.equal(result.status, "cancelled");
      assert.equal(result.signal, "SIGTERM");
      assert.equal(
        result.error,
        "cancelled: SIGTERM was sent at 0.2 s; it ended by SIGTERM at 0.2 s",
      );
    },
  );
  await t.step("an already aborted signal runs nothing", async () => {
    const result = await runCommand("echo hi", { policy, signal: AbortSignal.abort() });
    assert.equal(result.status, "cancelled");
    assert.equal(result.program, null);
    assert.equal(toReportFields(result).result, null);
  });
});

Deno.test("executor validates its options up front", async () => {
  for (const timeoutSecs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    await assert.rejects(
      () => runCommand("echo hi", { policy: defaultPolicy(), timeoutSecs }),
      RangeError,
    );
  }
  await assert.rejects(
    () => runCommand("echo hi", { policy: defaultPolicy(), cancelGraceMs: -5 }),
    /cancelGraceMs must be a non-negative number, got -5/,
  );
});

Deno.test("executor works with --allow-run alone (no read or env permission)", async () => {
  const runner = new URL("../../src/exec/mod.ts", import.meta.url).href;
  const code = `
    import { defaultPolicy, runCommand } from ${JSON.stringify(runner)};
    const a = await runCommand("echo hi", { policy: defaultPolicy() });
    const b = await runCommand("ls /etc", { policy: defaultPolicy() });
    console.log(JSON.stringify([a.status, a.stdout, b.status, b.error]));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", "--no-prompt", "--allow-run", code],
    stdin: "null",
    cwd: new URL("../..", import.meta.url).pathname,
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(output.stdout)), [
    "success",
    "hi\n",
    "rejected",
    `path "/etc" is outside the allowed prefixes (/tmp, /var/tmp)`,
  ]);
});

Deno.test("a command leads its own session and process group under the pid reported at spawn", async () => {
  await using dir = await scripts();
  // Prints its pid, its process group and its session (fields 1, 5 and 6 of /proc/self/stat).
  const ids = await dir.script(
    "ids",
    `read -r pid _ _ _ pgid sid _ < /proc/self/stat; echo "$$ $pgid $sid"`,
  );
  let spawned: number | undefined;
  const result = await runCommand(ids, {
    policy: dir.policy(ids),
    onSpawn: (record) => spawned = record.pid,
  });
  assert.equal(result.status, "success", result.stderr);
  const [pid, pgid, sid] = result.stdout.trim().split(" ").map(Number);
  assert.equal(pid, spawned, "the program runs under the pid the agent signals");
  assert.equal(pgid, pid, "it leads its process group");
  assert.equal(sid, pid, "it leads its session");
});

Deno.test("a runner reads the environment once and caches PATH lookups while the file is there", async () => {
  await using first = await scripts();
  await using second = await scripts();
  const reads: string[] = [];
  const runner = new CommandRunner({
    policy: createPolicy({ allowedPrograms: ["tool"] }),
    readEnv: (name) => {
      reads.push(name);
      return name === "PATH" ? `${first.dir}:${second.dir}` : undefined;
    },
  });
  const readsWhenMade = reads.length;
  await second.script("tool", "echo second");
  assert.equal((await runner.run("tool")).stdout, "second\n");
  // A program put earlier on PATH later is not seen while the one found is still there...
  await first.script("tool", "echo first");
  assert.equal((await runner.run("tool")).stdout, "second\n");
  // ...and is found once that one is gone (or no longer executable).
  await Deno.remove(`${second.dir}/tool`);
  assert.equal((await runner.run("tool")).stdout, "first\n");
  await Deno.chmod(`${first.dir}/tool`, 0o644);
  const gone = await runner.run("tool");
  assert.equal(gone.status, "failed");
  assert.equal(gone.start_failure, "not_executable");
  assert.equal(
    reads.length,
    readsWhenMade,
    `read again per command: ${reads.slice(readsWhenMade)}`,
  );
});

Deno.test("onSpawn comes before onExit, with the pid and the start time when /proc is readable", async () => {
  const events: string[] = [];
  const result = await runCommand("sleep 0.2", {
    policy: defaultPolicy(),
    onSpawn: (record) => {
      events.push("spawn");
      assert.ok(record.pid > 1);
      // Deno reads another process's /proc entries only under --allow-all.
      if (record.start_ticks !== undefined) assert.ok(Number.isSafeInteger(record.start_ticks));
    },
    onExit: (exit) => events.push(`exit ${exit.status}`),
  });
  assert.equal(result.status, "success");
  assert.deepEqual(events, ["spawn", "exit success"]);
});

Deno.test("a signal sent at once after the spawn reaches the command before its group forms", async () => {
  // Started through `setsid`, the child forms its own process group only once it runs; a cancel
  // in that moment used to find no group and was lost (the command ran to its end).
  const sandbox = Sandbox.unconfined();
  for (let round = 0; round < 5; round++) {
    const cell = await sandbox.open();
    try {
      const child = cell.spawn("sleep", {
        args: ["30"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      });
      cell.signal("SIGTERM");
      const status = await child.status;
      assert.equal(status.signal, "SIGTERM", `round ${round}: ${JSON.stringify(status)}`);
    } finally {
      await cell.close();
    }
  }
});
