import assert from "node:assert/strict";
import { run } from "./_run.ts";
import { main } from "../../main.ts";
import { memoryIo } from "../../src/cli/io.ts";
import { join } from "node:path";
import { runCli } from "../_cli.ts";

Deno.test("status up refuses an empty --data-dir instead of writing into /", async (t) => {
  for (const value of ["", "  "]) {
    await t.step(JSON.stringify(value), async () => {
      const result = await run(["up", "--port", "0", "--data-dir", value]);
      assert.equal(result.code, 2);
      assert.match(result.stderr.join("\n"), /--data-dir.*must be a directory path/);
      assert.deepEqual(result.stdout, []);
    });
  }
});

Deno.test("status up refuses a --data-dir that starts with ~, which no shell expanded", async () => {
  const result = await run(["up", "--port", "0", "--data-dir=~/status"]);
  assert.equal(result.code, 2);
  assert.deepEqual(result.stdout, []);
  assert.match(
    result.stderr.join("\n"),
    /--data-dir.*must be a directory path, got "~\/status": a leading ~ is not expanded here/,
  );
});

Deno.test("status up says in a few words why a --data-dir cannot be used", async (t) => {
  // It said "cannot create x/agent-state: Not a directory (os error 20): mkdir 'x/agent-state'".
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "file"), "");
    await Deno.mkdir(join(dir, "taken"));
    await Deno.writeTextFile(join(dir, "taken", "agent-state"), "");
    for (
      const [dataDir, why] of [
        [join(dir, "file"), `${join(dir, "file")} (or a folder above it) is not a directory`],
        [
          join(dir, "file", "x"),
          `${join(dir, "file", "x")} (or a folder above it) is not a directory`,
        ],
        [
          join(dir, "taken"),
          `${join(dir, "taken", "agent-state")} is there and is not a directory`,
        ],
      ]
    ) {
      await t.step(dataDir, async () => {
        const result = await run(["up", "--port", "0", "--data-dir", dataDir]);
        assert.equal(result.code, 2);
        assert.deepEqual(result.stdout, []);
        assert.deepEqual(result.stderr, [`status: cannot use --data-dir ${dataDir}: ${why}`]);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status serve refuses a TLS pair it cannot use before it listens", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-tls-" });
  try {
    const garbage = `${dir}/hostname.txt`;
    await Deno.writeTextFile(garbage, "not a certificate\n");
    const serve = (cert: string, key: string) =>
      run(["serve", "--port", "0", "--db", ":memory:", "--tls-cert", cert, "--tls-key", key]);
    await t.step("a file that is not PEM is named with its setting and source", async () => {
      const result = await serve(garbage, garbage);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stdout, [], "never listening");
      assert.equal(
        result.stderr.join("\n"),
        `status: TLS_CERT from flag --tls-cert (${garbage}) holds no PEM certificate ` +
          '(a "-----BEGIN CERTIFICATE-----" block)',
      );
    });
    await t.step("a missing file", async () => {
      const result = await serve(`${dir}/none.pem`, garbage);
      assert.equal(result.code, 2);
      assert.match(result.stderr.join("\n"), /TLS_CERT from flag --tls-cert .* does not exist/);
    });
    const pair = await openssl(dir);
    if (!pair) return;
    await t.step("a key that is not PEM", async () => {
      const result = await serve(pair.cert, garbage);
      assert.equal(result.code, 2);
      assert.match(
        result.stderr.join("\n"),
        /TLS_KEY from flag --tls-key .* holds no PEM private key/,
      );
    });
    await t.step("a key of another certificate", async () => {
      const other = await openssl(`${dir}/other`);
      const result = await serve(pair.cert, other!.key);
      assert.equal(result.code, 2);
      assert.match(
        result.stderr.join("\n"),
        /TLS_KEY from flag --tls-key .* is not the private key of the certificate in TLS_CERT/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A self-signed certificate and its key, as files; `null` without openssl. */
async function openssl(dir: string): Promise<{ cert: string; key: string } | null> {
  await Deno.mkdir(dir, { recursive: true });
  try {
    const output = await new Deno.Command("openssl", {
      args: ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1"])
        .concat(["-subj", "/CN=localhost"]),
      stdout: "null",
      stderr: "null",
    }).output();
    if (!output.success) return null;
  } catch {
    return null;
  }
  return { cert: `${dir}/cert.pem`, key: `${dir}/key.pem` };
}

Deno.test("a log file that cannot be opened is named with LOG_FILE and exits 2", async (t) => {
  for (
    const [path, why] of [
      ["/nonexistent/x.log", "the directory /nonexistent does not exist"],
      ["/etc", "it is a directory, not a file"],
    ]
  ) {
    await t.step(path, async () => {
      const result = await run(["list", "--log-file", path]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [
        `status: LOG_FILE from flag --log-file (${path}) cannot be opened: ${why}`,
      ]);
    });
  }
});

const AGENT_TOKEN_ADVICE = '; give the token "status agents add <id>" printed for this agent ' +
  '(or a new one from "status agents rotate <id>")';

Deno.test("a secret given as a flag is never printed, and the bound it broke is said, with where a good one comes from", async (t) => {
  const long = "a".repeat(2000);
  for (
    const [args, expected] of [
      [
        ["--agent-token", "short-secret"],
        "status: --agent-token must be a token of 16 to 1024 printable ASCII characters, without spaces, got a value of 12 characters" +
        AGENT_TOKEN_ADVICE,
      ],
      [
        ["--agent-token", "x"],
        "status: --agent-token must be a token of 16 to 1024 printable ASCII characters, without spaces, got a value of 1 character" +
        AGENT_TOKEN_ADVICE,
      ],
      [
        ["serve", "--status-admin-token", long],
        "status: --status-admin-token must be a token of 16 to 1024 printable ASCII characters, without spaces, got a value of " +
        "2000 characters; make one with: openssl rand -base64 32 (give operators the dashboard's own)",
      ],
      [
        ["serve", "--database-url", "mysql://u:hunter2hunter2@db/x"],
        "status: --database-url must be a postgres://user:password@host:port/database URL, got a " +
        "value of 29 characters",
      ],
    ] as const
  ) {
    await t.step(args.join(" ").slice(0, 60), async () => {
      const result = await run([...args]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [expected]);
      assert.ok(!result.stderr.join("").includes(args[args.length - 1]), "the value is not shown");
    });
  }
});

Deno.test("a BIND the dashboard cannot listen on exits 2 naming BIND", async (t) => {
  for (
    const [bind, why] of [
      ["999.1.1.1", "is not an IP address or a host name that resolves"],
      ["192.0.2.1", "is not an address of this machine"],
    ]
  ) {
    await t.step(bind, async () => {
      const result = await run([
        "serve",
        "--bind",
        bind,
        "--port",
        "0",
        "--db",
        ":memory:",
        "--status-admin-token",
        "an-admin-token-of-some-length",
      ]);
      assert.equal(result.code, 2, result.stderr.join("\n"));
      assert.match(
        result.stderr.join("\n"),
        new RegExp(
          `^status: cannot listen on ${bind}:0: ${bind} \\(BIND from flag --bind\\) ${why}$`,
        ),
      );
    });
  }
  // It named --bind whatever set it: an operator who never gave --bind looked for it in vain.
  await t.step("where it came from, when not from the flag", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(join(dir, "config.json"), '{"bind": "999.1.1.1"}');
      // MAX_CONNECTIONS: in process, counting the 20,128 free descriptors the default limit needs
      // would take every one of them for a moment from the other test files' threads.
      const fromFile = await run([
        "serve",
        "--config",
        join(dir, "config.json"),
        "--port",
        "0",
        "--db",
        ":memory:",
      ], { STATUS_ADMIN_TOKEN: "an-admin-token-of-some-length", MAX_CONNECTIONS: "2000" });
      assert.equal(fromFile.code, 2, fromFile.stderr.join("\n"));
      assert.deepEqual(fromFile.stderr, [
        `status: cannot listen on 999.1.1.1:0: 999.1.1.1 (BIND from ${
          join(dir, "config.json")
        }) is not an IP address or a host name that resolves`,
      ]);
      const devMode = await run(["serve", "--port", "0", "--db", ":memory:"], { BIND: "0.0.0.0" });
      assert.equal(devMode.code, 2, devMode.stderr.join("\n"));
      assert.match(
        devMode.stderr.join("\n"),
        /^status: dev mode .* listens on loopback only, but BIND from the environment is 0\.0\.0\.0;/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("a METRICS_BIND or METRICS_PORT host that is no address here exits 2 naming the setting", async (t) => {
  // Said in getaddrinfo's or listen's words alone: "getaddrinfo ENOTFOUND 999.1.1.1", exit 1.
  for (
    const [host, why] of [
      ["999.1.1.1", "is not an IP address or a host name that resolves"],
      ["192.0.2.1", "is not an address of this machine"],
    ]
  ) {
    await t.step(`serve --metrics-bind ${host}:0`, async () => {
      // Not in dev mode, which refuses any metrics address but loopback's before it is tried.
      const result = await run([
        "serve",
        "--port",
        "0",
        "--db",
        ":memory:",
        "--metrics-bind",
        `${host}:0`,
        "--status-admin-token",
        "an-admin-token-of-some-length",
      ]);
      assert.equal(result.code, 2, result.stderr.join("\n"));
      assert.deepEqual(result.stdout, [], "never listening");
      assert.deepEqual(result.stderr, [
        `status: cannot serve metrics on ${host}:0: ${host} (METRICS_BIND, --metrics-bind) ${why}`,
      ]);
    });
  }
  await t.step("agent --metrics-port 999.1.1.1:0", async () => {
    const dir = await Deno.makeTempDir();
    try {
      const result = await run([
        "agent",
        "--agent-id",
        "a",
        "--dashboard-url",
        "http://127.0.0.1:9",
        "--state-dir",
        join(dir, "state"),
        "--metrics-port",
        "999.1.1.1:0",
      ]);
      assert.equal(result.code, 2, result.stderr.join("\n"));
      assert.deepEqual(result.stderr, [
        "status: cannot serve metrics on 999.1.1.1:0: 999.1.1.1 (METRICS_PORT, --metrics-port) " +
        "is not an IP address or a host name that resolves",
      ]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("a dashboard port or METRICS_BIND another process holds says what to do", async (t) => {
  using held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  await t.step("the dashboard's port", async () => {
    const result = await run(["serve", "--port", String(port), "--db", ":memory:"]);
    assert.equal(result.code, 1);
    assert.deepEqual(result.stdout, [], "never listening");
    assert.equal(
      result.stderr.join("\n"),
      `status: cannot listen on 127.0.0.1:${port}: the address is already in use (another ` +
        '"status serve" or "status up"?); stop what listens there, or give another port with ' +
        "--port <n> or PORT (0 picks a free one)",
    );
  });
  await t.step("the metrics port", async () => {
    const result = await run(
      ["serve", "--port", "0", "--db", ":memory:", "--metrics-bind", String(port)],
    );
    assert.equal(result.code, 1);
    assert.deepEqual(result.stdout, [], "never listening");
    assert.equal(
      result.stderr.join("\n"),
      `status: cannot serve metrics on 127.0.0.1:${port}: the address is already in use; stop ` +
        "what listens there, or give METRICS_BIND (--metrics-bind) another port",
    );
  });
});

Deno.test("a start on a port in use makes nothing: no database, no data folder, no state directory", async (t) => {
  using held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = String((held.addr as Deno.NetAddr).port);
  const dir = await Deno.makeTempDir();
  const left = () => [...Deno.readDirSync(dir)].map((entry) => entry.name);
  try {
    await t.step("status serve", async () => {
      for (const args of [["--port", port], ["--port", "0", "--metrics-bind", port]]) {
        const result = await run(["serve", ...args, "--db", join(dir, "status.db")]);
        assert.equal(result.code, 1, result.stderr.join("\n"));
        assert.match(result.stderr.join("\n"), /the address is already in use/);
        assert.deepEqual(left(), []);
      }
    });
    await t.step("status up, its --data-dir and the folders above it", async () => {
      const result = await run(["up", "--port", port, "--data-dir", join(dir, "a", "data")]);
      assert.equal(result.code, 1, result.stderr.join("\n"));
      assert.match(result.stderr.join("\n"), new RegExp(`^status: port ${port} is busy: `));
      assert.deepEqual(left(), []);
    });
    await t.step(
      "status agent with METRICS_PORT in use: no state directory, what to do",
      async () => {
        const result = await run([
          "agent",
          "--agent-id",
          "a",
          "--dashboard-url",
          "http://127.0.0.1:9",
          "--state-dir",
          join(dir, "state"),
          "--metrics-port",
          port,
        ]);
        assert.equal(result.code, 1);
        assert.deepEqual(result.stderr, [
          `status: cannot serve metrics on 127.0.0.1:${port}: the address is already in use; stop ` +
          "what listens there, or give METRICS_PORT (--metrics-port) another port",
        ]);
        assert.deepEqual(left(), []);
      },
    );
    await t.step("status up with METRICS_BIND in use names it, not the free port", async () => {
      const result = await run(
        ["up", "--port", "0", "--metrics-bind", port, "--data-dir", join(dir, "data")],
      );
      assert.equal(result.code, 1);
      assert.deepEqual(result.stderr, [
        `status: cannot serve metrics on 127.0.0.1:${port}: the address is already in use; stop ` +
        "what listens there, or give METRICS_BIND (--metrics-bind) another port",
      ]);
      assert.deepEqual(left(), []);
    });
    await t.step(
      "status up with METRICS_PORT in use names it: no data folder, no dashboard",
      async () => {
        // Its agent found out once the data folder was made and the dashboard had started, and said
        // neither which setting nor what to do.
        const result = await run(
          ["up", "--port", "0", "--metrics-port", port, "--data-dir", join(dir, "data")],
        );
        assert.equal(result.code, 1);
        assert.deepEqual(result.stdout, [], "no banner: nothing started");
        assert.deepEqual(result.stderr, [
          `status: cannot serve metrics on 127.0.0.1:${port}: the address is already in use; stop ` +
          "what listens there, or give METRICS_PORT (--metrics-port) another port",
        ]);
        assert.deepEqual(left(), []);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a mistyped option or sub-command is named, with the nearest one", async (t) => {
  for (
    const [args, expected] of [
      [
        ["--polling-timeout", "5"],
        "status: unknown option '--polling-timeout' (did you mean --polling-timeout-secs?)",
      ],
      [
        ["agents", "ad", "web-5"],
        "status: unknown command 'agents ad' (did you mean agents add?); the commands are add, " +
        "list, rotate, remove",
      ],
      [
        ["agents", "--db", "./s.db", "add", "web-5"],
        "status: 'add' must come right after 'agents', before any option: " +
        "status agents add <id> [options]",
      ],
      [
        ["agents", "--json", "list", "extra"],
        "status: unknown command 'agents list' (did you mean agents list?); the commands are " +
        "add, list, rotate, remove",
      ],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const result = await run([...args]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [expected]);
    });
  }
});

Deno.test("COMMAND_CWD and STATE_DIR that cannot be used are refused at start", async (t) => {
  for (
    const [args, expected] of [
      [
        ["--agent-id", "cwd-1", "--command-cwd", "/nonexistent"],
        "status: COMMAND_CWD from flag --command-cwd (/nonexistent) cannot be used: the directory " +
        "does not exist",
      ],
      [
        ["exec", "--command-cwd", "/etc/passwd", "echo hi"],
        "status: COMMAND_CWD from flag --command-cwd (/etc/passwd) cannot be used: it is not a " +
        "directory",
      ],
      [
        ["--agent-id", "cwd-1", "--state-dir", "/etc/passwd"],
        "status: STATE_DIR from flag --state-dir (/etc/passwd) cannot be used: it is not a directory",
      ],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const result = await run([...args]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [expected]);
    });
  }
});

Deno.test("a state or data directory every user may write in is refused at start", async (t) => {
  // Made first in /tmp by another user: they could read, or change, what the agent keeps there.
  const dir = Deno.makeTempDirSync({ prefix: "status-shared-" });
  Deno.chmodSync(dir, 0o1777);
  try {
    await t.step("STATE_DIR", async () => {
      const result = await run(["--agent-id", "shared-1", "--state-dir", dir]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [
        `status: STATE_DIR from flag --state-dir (${dir}) cannot be used: every user may write ` +
        "in it (mode 1777) (another user could read or change the agent's journal and results); " +
        "give it a directory of its own, or a path that does not exist yet (it is created, mode " +
        "0700)",
      ]);
    });
    await t.step("status up --data-dir", async () => {
      const result = await run(["up", "--port", "0", "--data-dir", dir]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [
        `status: cannot use --data-dir ${dir}: every user may write in it (mode 1777) (another ` +
        "user could read or replace the database and the agent's state); give it a directory " +
        "of its own",
      ]);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the library's state directory error says a file is in the way", async () => {
  const { openAgentState } = await import("../../src/agent/mod.ts");
  const file = await Deno.makeTempFile();
  try {
    assert.throws(() => openAgentState({ dir: file }), {
      message: `cannot create the state directory ${file}: it exists and is not a directory ` +
        "(create it for this user, or set STATE_DIR to another directory)",
    });
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("a state directory whose outbox or journal is something else says which directory", async (t) => {
  const { openAgentState } = await import("../../src/agent/mod.ts");
  for (
    const [name, make] of [
      ["outbox", (path: string) => Deno.writeTextFile(path, "")],
      ["journal.jsonl", (path: string) => Deno.mkdir(path)],
    ] as const
  ) {
    await t.step(`${name} in the way`, async () => {
      const dir = await Deno.makeTempDir({ prefix: "status-state-" });
      try {
        await make(`${dir}/${name}`);
        assert.throws(
          () => openAgentState({ dir }),
          (error: Error) =>
            error.message.startsWith(
              `cannot open the journal and outbox in the state directory ${dir}: `,
            ) && error.message.includes(name) &&
            error.message.endsWith("STATE_DIR to another directory)"),
        );
        // The lock was let go: once the path is cleared, the state opens.
        await Deno.remove(`${dir}/${name}`, { recursive: true });
        openAgentState({ dir })[Symbol.dispose]();
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

Deno.test("status stop needs only the pid file: other broken settings do not prevent it", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-stop-" });
  // `status stop` has no logging flags: run it through main directly.
  const stop = async (args: string[]) => {
    const io = memoryIo();
    return { code: await main(["stop", ...args], io), stderr: io.stderr };
  };
  try {
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ polling_timeout_secs: "abc", pid_file: `${dir}/agent.pid` }),
    );
    await Deno.writeTextFile(`${dir}/broken.json`, "{ not json");
    await t.step("PID_FILE from a config.json with another bad value", async () => {
      const result = await stop(["--config", `${dir}/config.json`]);
      assert.equal(result.code, 1);
      assert.match(result.stderr.join("\n"), new RegExp(`no pid file ${dir}/agent\\.pid`));
    });
    await t.step("--pid-file given: a file that cannot be parsed does not prevent it", async () => {
      const result = await stop([
        "--config",
        `${dir}/broken.json`,
        "--pid-file",
        `${dir}/other.pid`,
      ]);
      assert.equal(result.code, 1);
      assert.match(result.stderr.join("\n"), new RegExp(`no pid file ${dir}/other\\.pid`));
    });
    await t.step("a bad PID_FILE itself is still an error", async () => {
      const result = await stop(["--pid-file", " "]);
      assert.equal(result.code, 2);
    });
    // A number of 400 digits read as Infinity: a wait without end, said "after Infinity s".
    for (const timeout of ["0", "-1", "abc", "1e3", "31536001", "1" + "0".repeat(400)]) {
      await t.step(
        `--timeout ${timeout.slice(0, 12)} is refused before anything is read`,
        async () => {
          const result = await stop(["--pid-file", `${dir}/other.pid`, "--timeout", timeout]);
          assert.equal(result.code, 2);
          assert.match(
            result.stderr.join("\n"),
            / is invalid: must be a whole number of seconds from 1 to 31536000 \(a year\)$/,
          );
        },
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a PEM or pid file that never ends is refused at once, not read", async (t) => {
  await t.step("status serve --tls-cert /dev/zero", async () => {
    const result = await run(
      ["serve", "--port", "0", "--db", ":memory:", "--tls-cert", "/dev/zero"]
        .concat(["--tls-key", "/dev/zero"]),
    );
    assert.equal(result.code, 2);
    assert.deepEqual(result.stdout, [], "never listening");
    assert.equal(
      result.stderr.join("\n"),
      "status: TLS_CERT from flag --tls-cert (/dev/zero) is larger than 1 MiB; is it PEM?",
    );
  });
  await t.step("status stop --pid-file <a directory>", async () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-piddir-" });
    try {
      const io = memoryIo();
      assert.equal(await main(["stop", "--pid-file", dir], io), 2);
      assert.equal(
        io.stderr.join("\n"),
        `status: the pid file ${dir} is a directory, not a file (give the pid file's own path ` +
          "with --pid-file or PID_FILE)",
      );
    } finally {
      Deno.removeSync(dir);
    }
  });
  await t.step("status stop --pid-file /dev/zero", async () => {
    const io = memoryIo();
    assert.equal(await main(["stop", "--pid-file", "/dev/zero"], io), 2);
    assert.equal(
      io.stderr.join("\n"),
      "status: the pid file /dev/zero is a device or a socket, not a file (give the pid file's " +
        "own path with --pid-file or PID_FILE)",
    );
  });
});

Deno.test("a settings or pid file that is a named pipe is refused at once, not waited on", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-fifo-" });
  const fifo = join(dir, "pipe");
  const perms = ["--allow-read", "--allow-write", "--allow-env", "--allow-run", "--allow-net"];
  const mkfifo = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  try {
    assert.ok(mkfifo.success, "mkfifo");
    await t.step("config.json in the working directory", async () => {
      await Deno.symlink(fifo, join(dir, "config.json"));
      try {
        const result = await runCli(["health"], { perms, cwd: dir }, 15_000);
        assert.equal(result.code, 2);
        assert.equal(
          result.stderr.trim(),
          `status: ${dir}/config.json is a named pipe, not a file: reading it would wait until ` +
            "something writes to it",
        );
      } finally {
        await Deno.remove(join(dir, "config.json"));
      }
    });
    await t.step("--env-file", async () => {
      const result = await runCli(["health", "--env-file", fifo], { perms, cwd: dir }, 15_000);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /^status: \S+pipe is a named pipe, not a file: reading it/);
    });
    await t.step("a pipe of the shell's is still read: --env-file <(...)", async () => {
      const result = await runCli(["health"], {
        perms,
        cwd: dir,
        prefix: [
          "bash",
          "-c",
          'exec "$@" --env-file <(echo DASHBOARD_URL=http://127.0.0.1:9/p)',
          "-",
        ],
      }, 15_000);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stdout, /^dashboard http:\/\/127\.0\.0\.1:9\/p\n/);
    });
    await t.step("status serve --tls-cert, --tls-key", async () => {
      const result = await runCli(
        ["serve", "--port", "0", "--db", ":memory:", "--tls-cert", fifo, "--tls-key", fifo],
        { perms, cwd: dir },
        15_000,
      );
      assert.equal(result.code, 2);
      assert.equal(
        result.stderr.trim(),
        `status: TLS_CERT from flag --tls-cert (${fifo}) is a named pipe, not a file: reading it ` +
          "would wait until something writes to it",
      );
    });
    await t.step("status stop --pid-file", async () => {
      const result = await runCli(["stop", "--pid-file", fifo], { perms, cwd: dir }, 15_000);
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr.trim(),
        `status: the pid file ${fifo} is a named pipe, not a file; refusing (remove it, or give ` +
          "another --pid-file)",
      );
    });
    for (const flag of ["--pid-file", "--log-file"]) {
      await t.step(`status --daemon ${flag}`, async () => {
        const result = await runCli(
          ["--daemon", "--agent-id", "a", "--dashboard-url", "http://127.0.0.1:9", flag, fifo],
          { perms, cwd: dir },
          15_000,
        );
        assert.equal(result.code, 2);
        const setting = flag === "--pid-file" ? "PID_FILE" : "LOG_FILE";
        assert.equal(
          result.stderr.trim(),
          `status: ${setting} from flag ${flag} (${fifo}) cannot be created: it is a named pipe, ` +
            "not a file",
        );
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an empty --config, --env-file or --pid-file is refused naming the flag", async (t) => {
  const cases = [
    ["health", "--config"],
    ["health", "--env-file"],
    ["agent", "--config"],
    ["list", "--env-file"],
    ["stop", "--config"],
    ["stop", "--env-file"],
    ["stop", "--pid-file"],
  ];
  for (const [command, flag] of cases) {
    for (const value of ["", " "]) {
      await t.step(`status ${command} ${flag} ${JSON.stringify(value)}`, async () => {
        const result = await run([command, flag, value]);
        assert.equal(result.code, 2);
        assert.deepEqual(result.stderr, [
          `status: option '${flag} <path>' argument '${value}' is invalid: must be a file path, ` +
          "got an empty value",
        ]);
        assert.deepEqual(result.stdout, []);
      });
    }
  }
});

Deno.test("a pid file that holds no pid says what to do with it", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-pid-" });
  const pidFile = join(dir, "status.pid");
  const perms = ["--allow-read", "--allow-write", "--allow-env", "--allow-run", "--allow-net"];
  try {
    for (const text of ["", "garbage\n"]) {
      await Deno.writeTextFile(pidFile, text);
      const said = text === ""
        ? `status: the pid file ${pidFile} is empty (an agent stopped while writing it?): no ` +
          "agent can be found or stopped through it; remove it"
        : `status: the pid file ${pidFile} does not hold a process id ("garbage"); is it the ` +
          "daemon's pid file? (remove it if it is)";
      await t.step(`status stop, ${JSON.stringify(text)}`, async () => {
        const io = memoryIo();
        assert.equal(await main(["stop", "--pid-file", pidFile], io), 1);
        assert.deepEqual(io.stderr, [said]);
      });
      await t.step(`status --daemon, ${JSON.stringify(text)}`, async () => {
        const result = await runCli(
          ["--daemon", "--agent-id", "a", "--dashboard-url", "http://127.0.0.1:9", "--pid-file"]
            .concat([pidFile, "--log-file", join(dir, "status.log")]),
          { perms, cwd: dir },
          15_000,
        );
        assert.equal(result.stderr.trim(), said);
        assert.equal(result.code, 1);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a log file that is the settings file read is refused, and the file left as it was", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-logfile-" });
  const envFile = join(dir, ".env");
  const configFile = join(dir, "config.json");
  const link = join(dir, "link.log");
  try {
    await Deno.writeTextFile(envFile, "DASHBOARD_URL=http://127.0.0.1:9\n");
    await Deno.writeTextFile(configFile, '{"domain": "example.com"}\n');
    await Deno.symlink(configFile, link);
    const cases = [
      { given: ["--env-file", envFile], log: envFile, file: envFile, source: "flag --log-file" },
      { given: ["--config", configFile], log: link, file: configFile, source: "flag --log-file" },
    ];
    for (const { given, log, file, source } of cases) {
      await t.step(`${given[0]} ${file}, --log-file ${log}`, async () => {
        const before = await Deno.readTextFile(file);
        const result = await run(["health", ...given, "--log-file", log]);
        assert.equal(result.code, 2);
        assert.deepEqual(result.stderr, [
          `status: LOG_FILE from ${source} (${log}) cannot be used: it is the settings file ` +
          `${file}, which logs would be written into; give another path`,
        ]);
        assert.equal(await Deno.readTextFile(file), before);
      });
    }
    await t.step("LOG_FILE from the environment", async () => {
      const result = await run(["health", "--env-file", envFile], { LOG_FILE: envFile });
      assert.equal(result.code, 2);
      assert.match(
        result.stderr.join("\n"),
        /^status: LOG_FILE from the environment .* cannot be used: it is the settings file/,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a command line given as several words says to quote it", async (t) => {
  const hint = (path: string) =>
    ` (quote the command line as one argument: status ${path} "ls -la /tmp")`;
  const cases: Array<[string[], string]> = [
    [
      ["exec", "ls", "/tmp"],
      "status: too many arguments for 'exec': expected 1 argument but got 2: ls, /tmp" +
      hint("exec"),
    ],
    [["exec", "ls", "-la"], "status: unknown option '-la'" + hint("exec")],
    [
      ["enqueue", "--agent", "a", "--", "ls", "-l"],
      "status: too many arguments for 'enqueue': expected 1 argument but got 2: ls, -l" +
      hint("enqueue"),
    ],
    [
      ["run", "start", "ls", "-l", "--agent", "a"],
      "status: unknown option '-l'" + hint("run start"),
    ],
    // Not for a mistyped long option, nor for a command that takes no command line.
    [
      ["exec", "ls", "--tiemout", "3"],
      "status: unknown option '--tiemout' (did you mean --timeout?)",
    ],
    [
      ["list", "extra"],
      "status: too many arguments for 'list': expected 0 arguments but got 1: extra; see status list --help",
    ],
  ];
  for (const [args, said] of cases) {
    await t.step(`status ${args.join(" ")}`, async () => {
      const io = memoryIo();
      assert.equal(await main(args, io), 2);
      assert.deepEqual(io.stderr, [said]);
      assert.deepEqual(io.stdout, []);
    });
  }
});

Deno.test("status exec refuses a --cwd that names no directory as bad usage, as COMMAND_CWD", async (t) => {
  const cases: Array<[string, string]> = [
    ["/nonexistent-dir", 'status: --cwd: the directory "/nonexistent-dir" does not exist'],
    ["/etc/passwd", 'status: --cwd: "/etc/passwd" is not a directory'],
    ["/etc/passwd/x", 'status: --cwd: the directory "/etc/passwd/x" does not exist'],
    ["", 'status: --cwd: names no directory (--cwd "")'],
    [" ", 'status: --cwd: names no directory (--cwd " ")'],
  ];
  for (const [cwd, said] of cases) {
    await t.step(JSON.stringify(cwd), async () => {
      const result = await run(["exec", "echo hi", "--cwd", cwd]);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [said]);
      assert.deepEqual(result.stdout, [], "nothing ran");
    });
  }
});

Deno.test("an empty --label is refused, not read as no label (which widened the run)", async (t) => {
  const env = { DASHBOARD_URL: "http://127.0.0.1:9" };
  for (const command of [["enqueue"], ["run", "start"]]) {
    for (const value of ["", " "]) {
      await t.step(`status ${command.join(" ")} --label ${JSON.stringify(value)}`, async () => {
        const result = await run(
          [...command, "echo hi", "--deployment", "prod", "--label", value],
          env,
        );
        assert.equal(result.code, 2);
        assert.deepEqual(result.stderr, [
          `status: option '--label <key=value>' argument '${value}' is invalid: must be ` +
          "key=value, got an empty value",
        ]);
      });
    }
  }
});

Deno.test("a filter or a run's deployment given twice is refused, not read as the last one alone", async (t) => {
  // status list --status failed --status lost listed only the lost commands, as if they were
  // both; --deployment prod --deployment staging sent the run to staging alone.
  const env = { DASHBOARD_URL: "http://127.0.0.1:9" };
  const cases: Array<[string[], string]> = [
    [
      ["list", "--status", "failed", "--status", "lost"],
      "status: option '--status <status>' argument 'lost' is invalid: comes after 'failed' for " +
      "the same flag: a list shows the commands in one status at a time, and only the last " +
      "would be read; give the flag once",
    ],
    [
      ["list", "--agent", "web-1", "--agent", "web-2"],
      "status: option '--agent <id>' argument 'web-2' is invalid: comes after 'web-1' for the " +
      "same flag: a list shows the commands of one agent at a time, and only the last would " +
      "be read; give the flag once",
    ],
    ...[["enqueue"], ["run", "start"]].map((command): [string[], string] => [
      [...command, "echo hi", "--deployment", "prod", "--deployment", "staging"],
      "status: option '--deployment <hash>' argument 'staging' is invalid: comes after 'prod' " +
      "for the same flag: a run targets one deployment (labels add up, deployments do not), " +
      "and only the last would be read; give the flag once",
    ]),
  ];
  for (const [args, said] of cases) {
    await t.step(`status ${args.join(" ")}`, async () => {
      const result = await run(args, env);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [said]);
      assert.deepEqual(result.stdout, []);
    });
  }
  await t.step("an unknown status is still named with the statuses", async () => {
    const result = await run(["list", "--status", "succes"], env);
    assert.equal(result.code, 2);
    assert.match(result.stderr[0], /argument 'succes' is invalid: must be one of queued, /);
  });
});

Deno.test("status result refuses flags that would be ignored or mixed, before asking the dashboard", async (t) => {
  // A dashboard that is not there: the answer is bad usage (2), not an unreachable dashboard (1).
  const env = { DASHBOARD_URL: "http://127.0.0.1:9" };
  const cases: Array<[string[], string]> = [
    [["--stdout", "--stderr"], "status: give --stdout or --stderr, not both"],
    [["--json", "--stdout"], "status: --json cannot be combined with --stdout"],
    [["--follow", "--stdout"], "status: --follow cannot be combined with --stdout"],
    [["--follow", "--json", "--stderr"], "status: --json cannot be combined with --stderr"],
  ];
  for (const [flags, said] of cases) {
    await t.step(`status result cmd-1 ${flags.join(" ")}`, async () => {
      const result = await run(["result", "cmd-1", ...flags], env);
      assert.equal(result.code, 2);
      assert.deepEqual(result.stderr, [said]);
      assert.deepEqual(result.stdout, []);
    });
  }
});

Deno.test("a command named after options says to put it first", async (t) => {
  const cases: Array<[string[], string]> = [
    [["--config", "c.json", "list"], "status list --config c.json"],
    [["--daemon", "stop"], "status stop --daemon"],
    [["--agent-id", "a", "agent"], "status agent --agent-id a"],
    [
      ["--log-level=debug", "enqueue", "echo hi", "--agent", "a"],
      'status enqueue --log-level=debug "echo hi" --agent a',
    ],
  ];
  for (const [args, command] of cases) {
    await t.step(`status ${args.join(" ")}`, async () => {
      const io = memoryIo();
      assert.equal(await main(args, io), 2);
      assert.deepEqual(io.stderr, [
        `status: the command comes first, then its options: ${command}`,
      ]);
      assert.deepEqual(io.stdout, []);
    });
  }
});
