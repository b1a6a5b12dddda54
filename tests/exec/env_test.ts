import assert from "node:assert/strict";
import {
  buildChildEnv,
  DEFAULT_CHILD_PATH,
  envFromAssignments,
  validateExtraEnv,
} from "../../src/exec/mod.ts";
import {
  extraEnvBytes,
  MAX_EXEC_BYTES,
  MAX_EXTRA_ENV_BYTES,
  pathForUser,
  pathOthersCannotWrite,
} from "../../src/exec/env.ts";

Deno.test("child environment is built from PATH, HOME, LANG and the extras only", async (t) => {
  await t.step("values from the agent when readable", () => {
    const agent: Record<string, string> = {
      PATH: "/opt/bin:/usr/bin",
      HOME: "/root",
      LANG: "de_DE.UTF-8",
      AGENT_TOKEN: "secret-token-value",
      OTHER: "x",
    };
    assert.deepEqual(buildChildEnv({ TZ: "UTC" }, (name) => agent[name]), {
      PATH: "/opt/bin:/usr/bin",
      HOME: "/root",
      LANG: "de_DE.UTF-8",
      TZ: "UTC",
    });
  });
  await t.step("defaults when the agent may not read its environment", () => {
    assert.deepEqual(buildChildEnv({}, () => undefined), {
      PATH: DEFAULT_CHILD_PATH,
      HOME: "/",
      LANG: "C.UTF-8",
    });
  });
  await t.step("relative entries of the agent's PATH are left out", () => {
    // `.` and an empty entry name the working directory: tar -z ran a gzip left there.
    const path = (PATH: string) => buildChildEnv({}, (name) => ({ PATH })[name]).PATH;
    assert.equal(path(".:/usr/bin::bin:/bin:"), "/usr/bin:/bin");
    assert.equal(path(".:"), DEFAULT_CHILD_PATH);
  });
  await t.step("and so are those of a PATH among the extras (COMMAND_ENV)", () => {
    // It was kept as given: tar -z ran the gzip of the working directory.
    assert.equal(buildChildEnv({ PATH: ".:/opt/bin::" }, () => undefined).PATH, "/opt/bin");
  });
  await t.step("an agent secret among the extras is never passed", () => {
    const env = buildChildEnv({ AGENT_TOKEN: "x", agent_token: "y" }, () => undefined);
    assert.equal("AGENT_TOKEN" in env, false);
    assert.equal("agent_token" in env, false);
  });
});

Deno.test("extra variables are validated", () => {
  validateExtraEnv({ TZ: "UTC", EMPTY: "" });
  assert.throws(() => validateExtraEnv({ AGENT_TOKEN: "x" }), {
    name: "TypeError",
    message:
      `Extra environment variable "AGENT_TOKEN" is an agent secret and is never given to commands`,
  });
  assert.throws(() => validateExtraEnv({ STATUS_ADMIN_TOKEN: "x" }), /agent secret/);
  assert.throws(
    () => validateExtraEnv({ HARMLESS: "prefix-s3cret-token-suffix" }, ["s3cret-token"]),
    /"HARMLESS" holds an agent secret/,
  );
  assert.throws(() => validateExtraEnv({ "BAD-NAME": "x" }), /"BAD-NAME" is not valid/);
  assert.throws(() => validateExtraEnv({ NUL: "a\0b" }), /without NUL/);
});

Deno.test("extra variables the dynamic loader reads are refused", () => {
  // COMMAND_ENV=LD_PRELOAD=/tmp/x/hook.so went to every command: a library one command extracted
  // there ran inside every later one (echo, tar, ...), whatever the allowlist said.
  for (const name of ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH", "GCONV_PATH"]) {
    assert.throws(() => validateExtraEnv({ TZ: "UTC", [name]: "/tmp/x" }), {
      name: "TypeError",
      message: `Extra environment variable "${name}" is never given to commands: every ` +
        "program's dynamic loader (or C library) reads it and loads code from where it names, " +
        "which the allowlist never sees (a library a command left under an allowed prefix " +
        "would run in every later command); set it in a wrapper script that ALLOWED_PROGRAMS " +
        "names by absolute path",
    });
  }
  // The loader reads these names only as written.
  validateExtraEnv({ ld_preload: "/tmp/x", LD_BIND_NOW: "1" });
});

Deno.test("extra variables a shell or an interpreter loads code from are refused", async (t) => {
  // COMMAND_ENV=BASH_ENV=/tmp/x/rc went to every command: a file one command extracted there ran
  // first in every later bash script (the wrapper script the LD_PRELOAD refusal points to, too),
  // and PYTHONPATH=/tmp/x/lib made every python script import a module a command left there.
  await t.step("bash's BASH_ENV", () => {
    assert.throws(() => validateExtraEnv({ TZ: "UTC", BASH_ENV: "/tmp/x/rc" }), {
      name: "TypeError",
      message: 'Extra environment variable "BASH_ENV" is never given to commands: bash runs the ' +
        "file it names before every script (a wrapper script's too), which the allowlist never " +
        "sees (a file a command left under an allowed prefix would run in every later command " +
        "that starts bash); set it in a wrapper script that ALLOWED_PROGRAMS names by absolute path",
    });
  });
  await t.step("python's, node's, perl's, ruby's and java's", () => {
    const readers: Record<string, string> = {
      PYTHONPATH: "python",
      PYTHONHOME: "python",
      PYTHONSTARTUP: "python",
      PYTHONUSERBASE: "python",
      PYTHONPYCACHEPREFIX: "python",
      NODE_OPTIONS: "node",
      NODE_PATH: "node",
      PERL5OPT: "perl",
      PERL5LIB: "perl",
      PERLLIB: "perl",
      RUBYOPT: "ruby",
      RUBYLIB: "ruby",
      JAVA_TOOL_OPTIONS: "java",
      JDK_JAVA_OPTIONS: "java",
      _JAVA_OPTIONS: "java",
    };
    for (const [name, reader] of Object.entries(readers)) {
      assert.throws(
        () => validateExtraEnv({ [name]: "/tmp/x" }),
        (error: Error) => {
          assert.ok(error instanceof TypeError);
          assert.ok(
            error.message.startsWith(
              `Extra environment variable "${name}" is never given to commands: ${reader} `,
            ) || error.message.includes(`: an interactive ${reader} `),
            error.message,
          );
          assert.ok(
            error.message.endsWith(
              `every later command that starts ${reader}); set it in a wrapper script that ` +
                "ALLOWED_PROGRAMS names by absolute path",
            ),
            error.message,
          );
          return true;
        },
      );
    }
  });
  await t.step("git's and php's", () => {
    // COMMAND_ENV=GIT_EXEC_PATH=/tmp/x made every `git status` run /tmp/x/git-status, and
    // GIT_CONFIG_GLOBAL=/tmp/x/config a core.fsmonitor program named there; PHPRC=/tmp/x a
    // php.ini whose auto_prepend_file ran before every php script.
    const readers: Record<string, string> = {
      GIT_EXEC_PATH: "git",
      GIT_CONFIG_GLOBAL: "git",
      GIT_CONFIG_SYSTEM: "git",
      PHPRC: "php",
      PHP_INI_SCAN_DIR: "php",
    };
    for (const [name, reader] of Object.entries(readers)) {
      assert.throws(
        () => validateExtraEnv({ [name]: "/tmp/x" }),
        (error: Error) => {
          assert.ok(error instanceof TypeError);
          assert.ok(
            error.message.startsWith(
              `Extra environment variable "${name}" is never given to commands: ${reader} `,
            ),
            error.message,
          );
          assert.ok(
            error.message.endsWith(
              `every later command that starts ${reader}); set it in a wrapper script that ` +
                "ALLOWED_PROGRAMS names by absolute path",
            ),
            error.message,
          );
          return true;
        },
      );
    }
    // Those that hold settings rather than name a file of them are the operator's own words.
    validateExtraEnv({ GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "a.b", GIT_CONFIG_VALUE_0: "c" });
  });
  await t.step("but not ENV, which only an interactive shell reads, nor other names", () => {
    // ENV=production is an application's; sh and bash read ENV only when interactive, which a
    // command (stdin closed) is not unless an allowed shell is given -i.
    validateExtraEnv({ ENV: "production", PYTHONUNBUFFERED: "1", NODE_ENV: "production" });
    validateExtraEnv({ bash_env: "/tmp/x", pythonpath: "/tmp/x" });
  });
});

Deno.test("an extra variable longer than the kernel starts a program with is refused", () => {
  // Every command failed with "program \"/usr/bin/echo\" could not be started: Failed to spawn
  // '/usr/bin/setsid': Argument list too long"; the length is in bytes, as the kernel counts.
  validateExtraEnv({ BIG: "x".repeat(131071 - "BIG=".length) });
  assert.throws(() => validateExtraEnv({ BIG: "x".repeat(131072 - "BIG=".length) }), {
    name: "TypeError",
    message: 'Extra environment variable "BIG" is 131072 bytes long as NAME=value (UTF-8), more ' +
      "than the 131071 a program may be started with",
  });
  // 65534 characters of two bytes each, fewer than the limit in UTF-16 units.
  assert.throws(
    () => validateExtraEnv({ WIDE: "é".repeat(65534) }),
    /"WIDE" is 131073 bytes long as NAME=value/,
  );
});

Deno.test("extra variables that take more than a program may start with together are refused", () => {
  // Seventeen items of 131 000 bytes each passed, one by one, and every command then failed with
  // "Argument list too long" (Linux bounds the arguments and the environment together, 2 MiB);
  // sixteen left no room for a command line of 4000 "€" (12 000 bytes), which then failed so.
  const items = (count: number, size: number) =>
    Object.fromEntries(
      Array.from({ length: count }, (_, i) => [`V${i}`, "x".repeat(size - `V${i}=`.length)]),
    );
  // Each item counts its NAME=value, its NUL and its pointer.
  assert.equal(extraEnvBytes({ A: "é" }), "A=é".length + 1 + 1 + 8);
  validateExtraEnv(items(15, 131000));
  assert.throws(() => validateExtraEnv(items(17, 131000)), /take 2227153 bytes together/);
  assert.throws(() => validateExtraEnv(items(16, 131000)), {
    name: "TypeError",
    message: `Extra environment variables take ${16 * 131009} bytes together (each as ` +
      "NAME=value in UTF-8, with its NUL and pointer), more than the " +
      `${MAX_EXTRA_ENV_BYTES} a command's environment may take beside its arguments, PATH, HOME ` +
      "and LANG: Linux starts no program whose arguments and environment take more than 2 MiB " +
      "(under the usual 8 MiB stack limit), and every command would fail",
  });
  assert.ok(MAX_EXTRA_ENV_BYTES > 2_000_000 && MAX_EXTRA_ENV_BYTES < MAX_EXEC_BYTES);
});

Deno.test("COMMAND_ENV items become variables", () => {
  assert.deepEqual(envFromAssignments(["TZ=UTC", "EMPTY=", "EQ=a=b"]), {
    TZ: "UTC",
    EMPTY: "",
    EQ: "a=b",
  });
  assert.throws(() => envFromAssignments(["NOEQUALS"]), /"NOEQUALS" must have the form NAME=value/);
  assert.throws(() => envFromAssignments(["1X=y"]), /"1X" must have the form/);
});

Deno.test("PATH entries the command user may write, or rename, are left out for it", () => {
  // A root agent's commands run as nobody: with /srv/nobody/bin (nobody's own) on the PATH, one
  // command extracted an "ls" there and the next "ls" ran it.
  const dirs: Record<string, { uid: number; gid: number; mode: number }> = {
    "/": { uid: 0, gid: 0, mode: 0o755 },
    "/srv": { uid: 0, gid: 0, mode: 0o755 },
    "/srv/nobody": { uid: 65534, gid: 65534, mode: 0o755 },
    "/srv/nobody/bin": { uid: 0, gid: 0, mode: 0o755 },
    "/srv/locked": { uid: 65534, gid: 65534, mode: 0o555 },
    "/srv/group": { uid: 0, gid: 65534, mode: 0o775 },
    "/srv/sticky": { uid: 0, gid: 65534, mode: 0o1775 },
    "/srv/sticky/bin": { uid: 0, gid: 0, mode: 0o755 },
    "/srv/open": { uid: 0, gid: 0, mode: 0o777 },
    "/srv/open/bin": { uid: 0, gid: 0, mode: 0o755 },
    "/usr": { uid: 0, gid: 0, mode: 0o755 },
    "/usr/bin": { uid: 0, gid: 0, mode: 0o755 },
  };
  const nobody = { uid: 65534, gid: 65534 };
  const path = (p: string) => pathForUser(p, nobody, (d) => dirs[d]);
  // Its own (whatever the mode: it may change it), its group's writable, one in a directory
  // it may rename entries of; a sticky one on the way is no such directory.
  assert.equal(
    path("/srv/nobody/bin:/srv/locked:/srv/group:/srv/open/bin:/srv/sticky/bin:/usr/bin"),
    "/srv/sticky/bin:/usr/bin",
  );
  // Another user's directories are that user's to keep: not the command user's concern.
  assert.equal(
    pathForUser("/srv/nobody/bin:/usr/bin", { uid: 1000, gid: 1000 }, (d) => dirs[d]),
    "/srv/nobody/bin:/usr/bin",
  );
});

Deno.test("PATH entries every user may write, or rename, are left out", () => {
  const dirs: Record<string, { uid: number; gid: number; mode: number }> = {
    "/": { uid: 0, gid: 0, mode: 0o755 },
    "/tmp": { uid: 0, gid: 0, mode: 0o1777 },
    "/tmp/bin": { uid: 1000, gid: 1000, mode: 0o755 },
    "/srv": { uid: 0, gid: 0, mode: 0o777 },
    "/srv/bin": { uid: 0, gid: 0, mode: 0o755 },
    "/opt": { uid: 0, gid: 0, mode: 0o755 },
    "/opt/shared": { uid: 0, gid: 0, mode: 0o1777 },
    "/usr": { uid: 0, gid: 0, mode: 0o755 },
    "/usr/bin": { uid: 0, gid: 0, mode: 0o755 },
  };
  const links: Record<string, string> = { "/opt/bin": "/srv/bin" };
  const path = (p: string) => pathOthersCannotWrite(p, (d) => dirs[d], (d) => links[d] ?? d);
  // /tmp and /opt/shared: anyone adds a program; /srv/bin (also through /opt/bin): anyone
  // renames it away and puts another in its place; /tmp/bin is its owner's alone (sticky /tmp).
  assert.equal(path("/tmp:/srv/bin:/opt/bin:/opt/shared:/tmp/bin:/usr/bin"), "/tmp/bin:/usr/bin");
  assert.equal(path("/tmp"), DEFAULT_CHILD_PATH);
});
