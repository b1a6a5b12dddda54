/**
 * The agent's executor keeps commands away from the agent's own files (its state directory, its
 * settings files) even where they lie under an allowed path prefix.
 */
import assert from "node:assert/strict";
import { relative } from "node:path";
import { createExecutor } from "../../src/agent/mod.ts";
import { agentUid } from "../../src/exec/mod.ts";

Deno.test("the executor refuses arguments naming the agent's state directory and settings files", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "status-executor-own-" });
  // Readable by the user commands run as when the tests run as root (nobody).
  await Deno.chmod(dir, 0o755);
  const state = `${dir}/agent-state`;
  await Deno.mkdir(state);
  await Deno.writeTextFile(`${dir}/config.json`, "{}");
  await Deno.writeTextFile(`${dir}/other`, "x", { mode: 0o644 });
  const executor = createExecutor({
    // Relative, as STATE_DIR often is: taken from the agent's working directory.
    stateDir: relative(Deno.cwd(), state),
    protectedPaths: [`${dir}/config.json`],
    allowedPrograms: ["ls", "date"],
    cgroups: false,
  });
  try {
    for (
      const name of [`ls ${state}`, `ls -la ${dir}/agent-state/.`, `date -f ${dir}/config.json`]
    ) {
      const outcome = await executor.run({ name, signal: new AbortController().signal });
      assert.equal(outcome.status, "rejected", name);
      assert.match(String(outcome.error), /is the agent's own .* which commands may not touch/);
    }
    const beside = await executor.run({
      name: `ls ${dir}/other`,
      signal: new AbortController().signal,
    });
    assert.equal(beside.status, "success", JSON.stringify(beside));
  } finally {
    await executor.close?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the executor refuses a COMMAND_ENV TAR_OPTIONS or TAPE while tar may run", async () => {
  // GNU tar puts TAR_OPTIONS before its arguments: --to-command, refused on the command line, ran
  // a program for every member of every archive a command extracted.
  for (const allowedPrograms of [["tar"], ["echo", "/usr/bin/tar"], ["gtar"]]) {
    assert.throws(
      () =>
        createExecutor({
          allowedPrograms,
          commandEnv: ["TZ=UTC", "TAR_OPTIONS=--to-command=id"],
          cgroups: false,
        }),
      new TypeError(
        `Extra environment variable "TAR_OPTIONS" is never given to commands while ` +
          `${allowedPrograms.filter((p) => p.endsWith("tar")).join(", ")} may run: it is read ` +
          "as part of every command line, where the option and path rules never see it " +
          "(TAR_OPTIONS=--to-command=... would run a program for every member extracted); give " +
          "what it holds on the command line",
      ),
      allowedPrograms.join(","),
    );
  }
  // TAPE is a tar's archive when it is given no -f: tar c wrote wherever it named.
  assert.throws(
    () =>
      createExecutor({
        allowedPrograms: ["echo", "tar"],
        commandEnv: ["TAPE=/etc/passwd"],
        cgroups: false,
      }),
    /^TypeError: Extra environment variable "TAPE" is never given to commands while tar may run/,
  );
  // Without tar on the allowlist it is only a variable.
  const executor = createExecutor({
    allowedPrograms: ["printenv"],
    commandEnv: ["TAR_OPTIONS=--to-command=id"],
    confine: false,
  });
  try {
    const outcome = await executor.run({
      name: "printenv TAR_OPTIONS",
      signal: new AbortController().signal,
    });
    assert.equal(outcome.result?.stdout, "--to-command=id\n");
  } finally {
    await executor.close?.();
  }
});

Deno.test("the executor refuses a COMMAND_ENV GZIP beyond compression levels while gzip may run", async () => {
  // gzip reads GZIP as options before its arguments: gzip 1.12 takes -N there (a file named from
  // the archive's stored name), older ones -f and -r too, where the option rules never look.
  for (const value of ["-N", "-9 -N", "-f", "-r", "-S .x", "-9n"]) {
    assert.throws(
      () =>
        createExecutor({
          allowedPrograms: ["echo", "gzip"],
          commandEnv: [`GZIP=${value}`],
          cgroups: false,
        }),
      new TypeError(
        `Extra environment variable "GZIP" is never given to commands while gzip may run: it ` +
          "is read as part of every command line, where the option and path rules never see it " +
          "(GZIP=-N would name what it decompresses after the name stored in the file, and an " +
          "older gzip takes -f and -r there too); give what it holds on the command line (only " +
          "-1 -2 -3 -4 -5 -6 -7 -8 -9 --fast --best --rsyncable -n --no-name -q --quiet may be " +
          "given there)",
      ),
      value,
    );
  }
  // Compression levels and the like change neither what gzip reads nor what it writes.
  const executor = createExecutor({
    allowedPrograms: ["printenv", "gzip"],
    commandEnv: ["GZIP=-9  --rsyncable -n"],
    confine: false,
  });
  try {
    const outcome = await executor.run({
      name: "printenv GZIP",
      signal: new AbortController().signal,
    });
    assert.equal(outcome.result?.stdout, "-9  --rsyncable -n\n");
  } finally {
    await executor.close?.();
  }
});

Deno.test("the executor refuses a COMMAND_ENV GREP_OPTIONS, WGETRC or CURL_HOME while the program that reads it may run", async () => {
  // grep 3.5 and older read GREP_OPTIONS before their arguments (-R, refused on the command line,
  // followed every link); wget obeys the file WGETRC names, and curl the .curlrc of CURL_HOME, as
  // the --config and -K files the rules refuse: post_file or upload-file sent any file.
  const cases: Array<[string, string[], string]> = [
    ["GREP_OPTIONS=-R", ["echo", "egrep", "/usr/bin/grep"], "egrep, /usr/bin/grep"],
    ["WGETRC=/tmp/x/wgetrc", ["wget"], "wget"],
    ["SYSTEM_WGETRC=/tmp/x/wgetrc", ["wget"], "wget"],
    ["CURL_HOME=/tmp/x", ["curl"], "curl"],
    ["XDG_CONFIG_HOME=/tmp/x", ["echo", "curl"], "curl"],
  ];
  for (const [item, allowedPrograms, readers] of cases) {
    const name = item.split("=")[0];
    assert.throws(
      () => createExecutor({ allowedPrograms, commandEnv: [item], cgroups: false }),
      (error: Error) => {
        assert.ok(error instanceof TypeError);
        assert.ok(
          error.message.startsWith(
            `Extra environment variable "${name}" is never given to commands while ${readers} ` +
              "may run: it is read as part of every command line, where the option and path " +
              "rules never see it (",
          ),
          error.message,
        );
        return true;
      },
      item,
    );
  }
  // Without a program that reads it, it is only a variable.
  const executor = createExecutor({
    allowedPrograms: ["printenv"],
    commandEnv: ["GREP_OPTIONS=-i", "CURL_HOME=/srv/curl", "WGETRC=/srv/wgetrc"],
    confine: false,
  });
  try {
    const outcome = await executor.run({
      name: "printenv GREP_OPTIONS CURL_HOME WGETRC",
      signal: new AbortController().signal,
    });
    assert.equal(outcome.result?.stdout, "-i\n/srv/curl\n/srv/wgetrc\n");
  } finally {
    await executor.close?.();
  }
});

Deno.test("the executor refuses a COMMAND_CWD in the agent's state directory", () => {
  // It was taken, and then every relative argument was refused: "ls -la" said that the path
  // "-la" is the agent's own.
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-executor-cwd-" });
  try {
    Deno.mkdirSync(`${dir}/state/work`, { recursive: true });
    assert.throws(
      () => createExecutor({ stateDir: `${dir}/state`, cwd: `${dir}/state/work`, cgroups: false }),
      new TypeError(
        `COMMAND_CWD "${dir}/state/work" is or lies in the agent's own ${dir}/state, which ` +
          "commands may not touch (every relative argument would be refused); give commands a " +
          "directory of their own (or leave COMMAND_CWD unset)",
      ),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test({
  name: "a root agent warns when the command user may read a settings file holding its token",
  // Only a root agent runs commands as another user (nobody), whose reading the OS decides.
  ignore: agentUid() !== 0,
  async fn() {
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-executor-secret-" });
    const token = "the-agent-token-commands-must-not-read";
    try {
      Deno.chmodSync(dir, 0o755);
      const config = `${dir}/config.json`;
      Deno.writeTextFileSync(config, JSON.stringify({ AGENT_TOKEN: token }), { mode: 0o644 });
      Deno.chmodSync(config, 0o644);
      Deno.writeTextFileSync(`${dir}/status.pid`, "123\n", { mode: 0o644 });
      const warnings = async () => {
        const executor = createExecutor({
          stateDir: `${dir}/state`,
          protectedPaths: [config, `${dir}/status.pid`],
          secretValues: [token],
          cgroups: false,
        });
        try {
          return executor.warnings?.() ?? [];
        } finally {
          await executor.close?.();
        }
      };
      // Nothing said that nobody could read the token (the pid file, readable too, holds none).
      assert.deepEqual(await warnings(), [
        `commands run as nobody may read the agent's own ${config} (mode 0644, owner uid 0, ` +
        "group gid 0), which holds its token: only the argument rules keep them from it; let " +
        `only its owner read it (chmod go-rwx ${config})`,
      ]);
      Deno.chmodSync(config, 0o600);
      assert.deepEqual(await warnings(), []);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a root agent warns when its commands share a HOME the command user may write",
  // Only a root agent runs commands as another user (nobody), whose writing the OS decides.
  ignore: agentUid() !== 0,
  async fn() {
    // A HOME set in COMMAND_ENV is every command's: one command's ~/.gitconfig or ~/.curlrc, left
    // there, is read and obeyed by the next one's git or curl.
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-executor-home-" });
    try {
      Deno.chmodSync(dir, 0o755);
      const work = `${dir}/work`;
      Deno.mkdirSync(work);
      Deno.chownSync(work, 65534, 65534);
      const closed = `${dir}/closed`;
      Deno.mkdirSync(closed, { mode: 0o755 });
      const warnings = async (options: { cwd?: string; commandEnv?: string[] }) => {
        const executor = createExecutor({ stateDir: `${dir}/state`, cgroups: false, ...options });
        try {
          return (executor.warnings?.() ?? []).filter((line) => line.includes("HOME"));
        } finally {
          await executor.close?.();
        }
      };
      // Each command (as nobody) in COMMAND_CWD gets a new, empty HOME of its own now.
      assert.deepEqual(await warnings({ cwd: work }), []);
      assert.match(
        (await warnings({ commandEnv: ["HOME=/tmp"] }))[0] ?? "",
        /^commands share HOME \/tmp \(set in COMMAND_ENV\), which every user may write: anyone /,
      );
      // A HOME the command user may not write, or one of each command's own: nothing to say.
      assert.deepEqual(await warnings({ cwd: work, commandEnv: [`HOME=${closed}`] }), []);
      assert.deepEqual(await warnings({ cwd: closed }), []);
      assert.deepEqual(await warnings({}), []);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("the executor warns of allowed programs that every user may replace", async () => {
  // A command naming /tmp/.../open/tool ran whatever a local user had put there, and nothing said
  // that anyone could.
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "status-executor-tool-" });
  try {
    Deno.mkdirSync(`${dir}/open`);
    Deno.chmodSync(`${dir}/open`, 0o777);
    Deno.mkdirSync(`${dir}/closed`);
    for (const tool of [`${dir}/open/tool`, `${dir}/closed/tool`]) {
      Deno.writeTextFileSync(tool, "#!/bin/sh\n");
      Deno.chmodSync(tool, 0o755);
    }
    const executor = createExecutor({
      allowedPrograms: ["echo", `${dir}/open/tool`, `${dir}/closed/tool`],
      cgroups: false,
      confine: false,
    });
    try {
      assert.deepEqual(executor.warnings?.(), [
        "ALLOWED_PROGRAMS entries that every user may replace (the file, or a directory on the " +
        `way, is writable by every user): ${dir}/open/tool; a command naming one runs whatever ` +
        "anyone put there: move them where only root may write",
      ]);
    } finally {
      await executor.close?.();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the executor hands COMMAND_MAX_MEMORY to its sandbox, refusing one it cannot set", async () => {
  // The start-up line names it; a value the kernel would not take is refused before any command.
  for (const bad of [-1, 2.5, 512, 1024 ** 5 + 1]) {
    assert.throws(() => createExecutor({ maxMemory: bad, cgroups: false }), {
      name: "RangeError",
      message: "COMMAND_MAX_MEMORY must be 0 (no limit) or a whole number of bytes from " +
        `1048576 to 1125899906842624, got ${bad}`,
    });
  }
  const off = createExecutor({ maxMemory: 0, cgroups: false });
  try {
    assert.match(off.describe!(), /; no limit on their memory \(COMMAND_MAX_MEMORY is 0\)/);
  } finally {
    await off.close?.();
  }
});

Deno.test("the executor hands COMMAND_MAX_PROCESSES to its sandbox, refusing one it cannot set", async () => {
  // The start-up line names it; a value the kernel would not take is refused before any command.
  for (const bad of [-1, 2.5, 4194305]) {
    assert.throws(() => createExecutor({ maxProcesses: bad, cgroups: false }), {
      name: "RangeError",
      message: "COMMAND_MAX_PROCESSES must be a whole number from 0 (no limit) to 4194304, " +
        `got ${bad}`,
    });
  }
  const off = createExecutor({ maxProcesses: 0, cgroups: false });
  try {
    assert.match(off.describe!(), /; no limit on their processes \(COMMAND_MAX_PROCESSES is 0\)/);
  } finally {
    await off.close?.();
  }
});
