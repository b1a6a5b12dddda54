import assert from "node:assert/strict";
import { execCommand, execExitCode, runExecCli } from "../../src/cli/exec.ts";
import { takeExitCode } from "../../src/cli/exit.ts";
import { memoryIo } from "../../src/cli/io.ts";
import { UsageError } from "../../src/errors.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { exitCodeOf } from "../../src/operator/mod.ts";
import { createPolicy, type ExecResult } from "../../src/exec/mod.ts";
import { scripts } from "./helpers.ts";

Deno.test("status exec prints the output and a summary and exits with the command's code", async (t) => {
  await using dir = await scripts();
  const both = await dir.script("both.sh", "echo out\necho err >&2\nexit 3");
  const stubborn = await dir.script("stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.05; done");

  await t.step("success", async () => {
    const io = memoryIo();
    assert.equal(await runExecCli("echo hello world", {}, io), 0);
    assert.deepEqual(io.stdout, ["hello world"]);
    assert.equal(io.stderr.length, 1);
    assert.match(io.stderr[0], /^exec: success after [\d.]+ s \(\/.*\/echo, exit code 0\)$/);
  });
  await t.step("a non-zero exit and both streams", async () => {
    const io = memoryIo();
    assert.equal(await runExecCli(both, { allow: [both] }, io), 3);
    assert.deepEqual(io.stdout, ["out"]);
    assert.equal(io.stderr[0], "err");
    assert.match(io.stderr[1], /^exec: failed after .*, exit code 3\): exited with code 3$/);
  });
  await t.step("rejected exits 126 with the reason", async () => {
    const io = memoryIo();
    assert.equal(await runExecCli("bash -c id", {}, io), 126);
    assert.deepEqual(io.stderr, [
      `exec: rejected: program "bash" is not allowed (shells must be allowed explicitly)`,
    ]);
  });
  await t.step("--allow adds a program, shells only when named", async () => {
    const io = memoryIo();
    assert.equal(await runExecCli("bash -c 'echo from bash'", { allow: ["bash"] }, io), 0);
    assert.deepEqual(io.stdout, ["from bash"]);
    assert.equal(await runExecCli("sh -c 'echo x'", { allow: ["bash"] }, memoryIo()), 126);
  });
  await t.step("timeout exits 124", async () => {
    assert.equal(await runExecCli("sleep 30", { timeout: "0.5" }, memoryIo()), 124);
  });
  await t.step("killed exits 137", async () => {
    assert.equal(
      await runExecCli(stubborn, { timeout: "0.5", allow: [stubborn] }, memoryIo()),
      137,
    );
  });
  await t.step("--timeout is capped by the configured maximum", async () => {
    const io = memoryIo();
    const code = await runExecCli("sleep 30", { timeout: "100", json: true }, io, {
      maxTimeoutSecs: 0.5,
    });
    assert.equal(code, 124);
    assert.equal(JSON.parse(io.stdout.join("\n")).timeout_secs, 0.5);
  });
  await t.step("--cwd", async () => {
    const io = memoryIo();
    assert.equal(await runExecCli("ls", { cwd: dir.dir }, io), 0);
    assert.deepEqual(io.stdout, ["both.sh\nstubborn.sh"]);
  });
  await t.step("a program that is not found exits 127", async () => {
    const io = memoryIo();
    assert.equal(
      await runExecCli("status-no-such-program", { allow: ["status-no-such-program"] }, io),
      127,
    );
    assert.match(
      io.stderr[0],
      /^exec: failed: program "status-no-such-program" was not found on PATH/,
    );
  });
  await t.step("--json prints the result object only", async () => {
    const io = memoryIo();
    assert.equal(await runExecCli("echo hi", { json: true }, io), 0);
    assert.deepEqual(io.stderr, []);
    const result = JSON.parse(io.stdout.join("\n")) as ExecResult;
    assert.equal(result.status, "success");
    assert.equal(result.stdout, "hi\n");
    for (
      const key of [
        "exit_code",
        "signal",
        "duration_secs",
        "stderr",
        "stdout_truncated_bytes",
        "stderr_truncated_bytes",
        "error",
      ]
    ) {
      assert.ok(key in result, key);
    }
  });
  await t.step("cancellation exits 130", async () => {
    const code = await runExecCli("sleep 30", {}, memoryIo(), { signal: AbortSignal.timeout(100) });
    assert.equal(code, 130);
  });
});

Deno.test("status exec refuses bad flags as usage errors", async () => {
  // 0x10 would be 16 s, 1e-9 a deadline already past.
  for (const timeout of ["0", "-1", "abc", "", "0x10", "1e3", "1e-9", "0.0001", "Infinity"]) {
    await assert.rejects(
      () => runExecCli("echo hi", { timeout }, memoryIo()),
      (error) =>
        error instanceof UsageError && /--timeout must be a positive number/.test(error.message),
    );
  }
  await assert.rejects(
    () => runExecCli("echo hi", { allow: ["./relative"] }, memoryIo()),
    (error) => error instanceof UsageError && /--allow: .*"\.\/relative"/.test(error.message),
  );
  for (const allow of [[""], ["echo", " "]]) {
    await assert.rejects(
      () => runExecCli("echo hi", { allow }, memoryIo()),
      (error) => error instanceof UsageError && /^--allow: names no program/.test(error.message),
    );
  }
});

Deno.test("status exec maps results to exit codes", () => {
  const base = {
    exit_code: null,
    signal: null,
    start_failure: null,
  } as unknown as ExecResult;
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGSEGV" }), 139);
  // Any signal the platform knows, not only a hand-kept few (SIGSYS is 31 on Linux).
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGSYS" }), 159);
  // A signal this platform does not name: 1, as exitCodeOf says (128 alone would read as signal 0).
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGNOPE" }), 1);
  assert.equal(execExitCode({ ...base, status: "failed", signal: "hasOwnProperty" }), 1);
  // Real-time signals, named as the agent names them (node:os knows none of them).
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGRTMIN" }), 162);
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGRTMIN+1" }), 163);
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGRTMAX-14" }), 178);
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIGRTMAX" }), 192);
  for (const signal of ["SIGRTMIN+31", "SIGRTMAX-31", "SIGRTMIN-1", "SIGRTMAX+1", "SIGRTMIN+01"]) {
    assert.equal(execExitCode({ ...base, status: "failed", signal }), 1, signal);
  }
  // The two glibc keeps for itself, which no tool names: as the agent names them.
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIG32" }), 160);
  assert.equal(execExitCode({ ...base, status: "failed", signal: "SIG33" }), 161);
  for (const signal of ["SIG31", "SIG34", "SIG032", "SIG9"]) {
    assert.equal(execExitCode({ ...base, status: "failed", signal }), 1, signal);
  }
  assert.equal(execExitCode({ ...base, status: "failed", start_failure: "not_executable" }), 126);
  assert.equal(execExitCode({ ...base, status: "failed", start_failure: "spawn_failed" }), 1);
  assert.equal(execExitCode({ ...base, status: "cancelled" }), 130);
});

Deno.test("status exec and exitCodeOf give one exit code for a command a signal ended", () => {
  const base = { exit_code: null, start_failure: null } as unknown as ExecResult;
  const signals = ["SIGSEGV", "SIGTERM", "SIGKILL", "SIGSYS", "SIGNOPE", "", "constructor"];
  for (const signal of [...signals, "SIGRTMIN", "SIGRTMAX-3", "SIG32"]) {
    assert.equal(
      execExitCode({ ...base, status: "failed", signal }),
      exitCodeOf({ status: "failed", result: { exit_code: null, signal } }),
      signal,
    );
  }
});

Deno.test("status exec as a commander command records its exit code", async (t) => {
  await t.step("with settings given", async () => {
    const io = memoryIo();
    const command = execCommand(io, { policy: createPolicy({ allowedPrograms: ["echo"] }) })
      .exitOverride();
    await command.parseAsync(["echo from commander", "--json"], { from: "user" });
    assert.equal(takeExitCode(), 0);
    assert.equal(JSON.parse(io.stdout.join("\n")).stdout, "from commander\n");
    await command.parseAsync(["ls /tmp"], { from: "user" });
    assert.equal(takeExitCode(), 126);
  });
  await t.step("--allow is repeatable", async () => {
    const io = memoryIo();
    const command = execCommand(io, { policy: createPolicy({ allowedPrograms: ["echo"] }) })
      .exitOverride();
    await command.parseAsync(
      ["--allow", "uname", "--allow", "bash", "bash -c 'echo via bash'"],
      { from: "user" },
    );
    assert.equal(takeExitCode(), 0);
    assert.deepEqual(io.stdout, ["via bash"]);
  });
  await t.step("with settings from flags", async () => {
    const io = memoryIo();
    // Empty settings files of its own, so that none in the working directory count (no chdir:
    // the working directory is the whole process's, shared by parallel test files).
    const cwd = await Deno.makeTempDir({ prefix: "status-exec-cli-" });
    await Deno.writeTextFile(`${cwd}/.env`, "");
    await Deno.writeTextFile(`${cwd}/config.json`, "{}");
    try {
      const command = execCommand(io).exitOverride();
      await command.parseAsync(
        [
          ...["--env-file", `${cwd}/.env`, "--config", `${cwd}/config.json`],
          ...["--allowed-programs", "uname", "--log-level", "error", "echo hi"],
        ],
        { from: "user" },
      );
      assert.equal(takeExitCode(), 126);
      assert.match(
        io.stderr.at(-1) ?? "",
        /program "echo" is not on the allowlist \(allowed: uname\)/,
      );
    } finally {
      closeLogging();
      await Deno.remove(cwd, { recursive: true });
    }
  });
});
