/**
 * main.ts's mapping of outcomes to exit codes, tested once, in process, through its `Io`:
 * 0 for success, help and version; 2 for bad usage or configuration; 1 for a runtime failure;
 * and the code a command chose.
 */
import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { main, run } from "../../main.ts";
import { memoryIo } from "../../src/cli/io.ts";
import { closedPort } from "../_stub_dashboard.ts";
import { runCli } from "../_cli.ts";

/** Runs `status <args>` in process with this environment only. */
async function status(args: string[], env: Record<string, string> = {}) {
  const io = { ...memoryIo(), env };
  const code = await main(args, io);
  return { code, stdout: io.stdout.join("\n"), stderr: io.stderr.join("\n") };
}

Deno.test("main maps each outcome to its exit code, printing through its Io", async (t) => {
  await t.step("--version: 0, the version on stdout", async () => {
    const { code, stdout } = await status(["--version"]);
    assert.equal(code, 0);
    assert.equal(stdout, denoJson.version);
  });
  await t.step("--help: 0", async () => {
    const { code, stdout } = await status(["list", "--help"]);
    assert.equal(code, 0);
    assert.match(stdout, /^Usage: status list/);
  });
  await t.step("an unknown option: 2, one line in the program's own words", async () => {
    const { code, stderr } = await status(["list", "--no-such-flag"]);
    assert.equal(code, 2);
    assert.equal(stderr, "status: unknown option '--no-such-flag'");
  });
  await t.step("an unknown command: 2, with the nearest one", async () => {
    const { code, stderr } = await status(["lst"]);
    assert.equal(code, 2);
    assert.match(stderr, /unknown command 'lst' \(did you mean list\?\)/);
  });
  await t.step(
    "help asked for a command that does not exist: 2, with the nearest one",
    async () => {
      const { code, stdout, stderr } = await status(["help", "lst"]);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(stderr, "status: unknown command 'lst' (did you mean list?); see status --help");
    },
  );
  await t.step("a command group without its subcommand: 2, one line naming them", async () => {
    const { code, stdout, stderr } = await status(["run"]);
    assert.equal(code, 2);
    assert.equal(stdout, "");
    assert.equal(
      stderr,
      "status: run needs a command: start, show, list or cancel; see status run --help",
    );
  });
  await t.step("help asked for a subcommand: its own help, or the unknown word named", async () => {
    for (const args of [["help", "run", "start"], ["run", "help", "start"]]) {
      const { code, stdout, stderr } = await status(args);
      assert.equal(code, 0);
      assert.match(stdout, /^Usage: status run start \[options\] <command-line>/);
      assert.equal(stderr, "");
    }
    for (
      const [args, said] of [
        [["help", "run", "lst"], "'run lst' (did you mean run list?); see status run --help"],
        [["run", "help", "lst"], "'run lst' (did you mean run list?); see status run --help"],
        [
          ["agents", "help", "lst"],
          "'agents lst' (did you mean agents list?); see status agents --help",
        ],
      ] as [string[], string][]
    ) {
      const { code, stdout, stderr } = await status(args);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(stderr, `status: unknown command ${said}`);
    }
  });
  await t.step("an unknown subcommand: 2, named with its group, as agents names one", async () => {
    for (
      const [args, said] of [
        [
          ["run", "lst"],
          "unknown command 'run lst' (did you mean run list?); see status run --help",
        ],
        [["run", "xyzzy"], "unknown command 'run xyzzy'; see status run --help"],
        [
          ["agents", "lst"],
          "unknown command 'agents lst' (did you mean agents list?); the commands are add, list, " +
          "rotate, remove",
        ],
      ] as [string[], string][]
    ) {
      const { code, stdout, stderr } = await status(args);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(stderr, `status: ${said}`);
    }
  });
  await t.step(
    "an unknown command word is quoted as one line of escapes, never obeyed",
    async () => {
      // A word that would clear the screen, set the window title and start a forged line.
      const word = "lst\u001b[2J\u001b]0;pwned\u0007\nstatus: ok\u202e";
      const shown = "lst\\u001b[2J\\u001b]0;pwned\\u0007\\nstatus: ok\\u202e";
      for (
        const [args, said] of [
          [[word], `'${shown}'; see status --help`],
          [["help", word], `'${shown}'; see status --help`],
          [["run", "help", word], `'run ${shown}'; see status run --help`],
          [["help", "agents", word], `'agents ${shown}'; see status agents --help`],
          [["run", word], `'run ${shown}'; see status run --help`],
        ] as [string[], string][]
      ) {
        const { code, stdout, stderr } = await status(args);
        assert.equal(code, 2);
        assert.equal(stdout, "");
        assert.equal(stderr, `status: unknown command ${said}`);
      }
      const { stderr } = await status(["x".repeat(100_000)]);
      assert.ok(stderr.length < 2100, `a long word is cut (${stderr.length} characters)`);
    },
  );
  await t.step("help asked for: 0, on stdout", async () => {
    for (const args of [["help"], ["help", "run"], ["run", "help"]]) {
      const { code, stdout, stderr } = await status(args);
      assert.equal(code, 0);
      assert.match(stdout, /^Usage: status/);
      assert.equal(stderr, "");
    }
  });
  await t.step("a configuration error: 2, one line naming the setting", async () => {
    const { code, stderr } = await status(["list"], { DASHBOARD_URL: "ftp://nowhere" });
    assert.equal(code, 2);
    assert.match(stderr, /^status: DASHBOARD_URL from the environment must be /);
  });
  await t.step("a runtime failure: 1, the environment of the Io is the one read", async () => {
    const url = `http://127.0.0.1:${closedPort()}`;
    const { code, stderr } = await status(["list"], { DASHBOARD_URL: url });
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^status: cannot reach the dashboard at ${url}`));
  });
  await t.step("the code a command chose: a refused command line exits 126", async () => {
    const { code, stderr } = await status(["exec", "rm -rf /"]);
    assert.equal(code, 126);
    assert.match(stderr, /^exec: rejected: program "rm" is not on the allowlist/);
  });
});

Deno.test("run ends through the Io's exit with main's code", async () => {
  const codes: number[] = [];
  await run(["lst"], { ...memoryIo(), env: {}, exit: (code) => void codes.push(code) });
  assert.deepEqual(codes, [2]);
});

Deno.test("a dashboard's error answer is printed as one line, escaped and cut", async (t) => {
  const message = `bad\n\u001b[31mforged line\r\u202e${"x".repeat(100_000)}`;
  await using dashboard = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => Response.json({ error: message }, { status: 400 }),
  );
  const env = { DASHBOARD_URL: `http://127.0.0.1:${dashboard.addr.port}` };
  for (const args of [["list"], ["result", "cmd-1"], ["cancel", "cmd-1"], ["agents", "list"]]) {
    await t.step(args.join(" "), async () => {
      const { code, stderr } = await status(args, env);
      assert.equal(code, 1);
      assert.equal(stderr.split("\n").length, 1, "one line");
      assert.doesNotMatch(stderr, /[\p{Cc}\u202e]/u, "no control character");
      assert.match(stderr, /bad\\n\\u001b\[31mforged line\\r\\u202ex/);
      assert.match(stderr, /x… \(\d+ more characters\)$/);
      assert.ok(stderr.length < 2_300, `${stderr.length} characters`);
    });
  }
});

Deno.test("a bad value is refused with the same reason by every command that takes it", async (t) => {
  const reason = (stderr: string) => stderr.replace(/^.*is invalid[^:]*: /s, "");
  for (
    const [what, first, second] of [
      ["a blank command line", ["enqueue", " ", "--agent", "a"], [
        "run",
        "start",
        " ",
        "--agent",
        "a",
      ]],
      ["a long command line", ["enqueue", "a".repeat(4097), "--agent", "a"], [
        "run",
        "start",
        "a".repeat(4097),
        "--agent",
        "a",
      ]],
      ["a bad deployment hash", ["enqueue", "x", "--agent", "a", "--deployment-hash", "a b"], [
        "run",
        "start",
        "x",
        "--deployment",
        "a b",
      ]],
      ["a bad agent id", ["enqueue", "x", "--agent", "a b"], ["agents", "add", "a b"]],
    ] as const
  ) {
    await t.step(what, async () => {
      const one = await status([...first]);
      const other = await status([...second]);
      assert.equal(one.code, 2);
      assert.equal(other.code, 2);
      assert.match(one.stderr, /is invalid/);
      assert.equal(reason(other.stderr), reason(one.stderr));
    });
  }
});

Deno.test("commander's error quoting a bad value is one line, the value cut", async (t) => {
  await t.step("a command line over 4096 characters: the reason still shows", async () => {
    const { code, stderr } = await status(["enqueue", `echo ${"a".repeat(5000)}`, "--agent", "a"]);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      `status: command-argument value 'echo ${"a".repeat(75)}… (5005 characters)' is invalid ` +
        "for argument 'command-line': must be at most 4096 characters",
    );
  });
  await t.step("a line break and an escape in a value are shown escaped", async () => {
    const { code, stderr } = await status(["list", "--limit", "5\n\u001b[2J6"]);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      "status: option '--limit <n>' argument '5\\n\\u001b[2J6' is invalid: must be a whole " +
        "number from 1 to 1000",
    );
  });
  await t.step(
    "commander's other sentences are ours: no full stop inside or at the end",
    async () => {
      for (
        const [args, said] of [
          [
            ["completions", "tcsh"],
            "status: command-argument value 'tcsh' is invalid for argument 'shell': must be one of " +
            "bash, zsh, fish",
          ],
          [
            ["list", "--status", "a. Allowed choices are x"],
            "status: option '--status <status>' argument 'a. Allowed choices are x' is invalid: must " +
            "be one of queued, delivered, running, success, failed, timeout, killed, rejected, " +
            "cancelled, interrupted, lost, expired",
          ],
          [
            ["list", "extra"],
            "status: too many arguments for 'list': expected 0 arguments but got 1: extra; see " +
            "status list --help",
          ],
        ] as [string[], string][]
      ) {
        const { code, stderr } = await status(args);
        assert.equal(code, 2);
        assert.equal(stderr, said);
      }
    },
  );
  await t.step("commander's own suggestion stays on the line, as ours do", async () => {
    const { code, stderr } = await status(["list", "--limt", "5"]);
    assert.equal(code, 2);
    assert.equal(stderr, "status: unknown option '--limt' (did you mean --limit?)");
  });
  await t.step("a URL's password is hidden before the value is cut", async () => {
    const { stderr } = await status(["list", "--dashboard-url", `http://u:${"p".repeat(100)}@x`]);
    assert.doesNotMatch(stderr, /ppp/);
  });
});

Deno.test("an option of another command names the commands that take it", async (t) => {
  // "unknown option '--port'" alone: a new operator gave the dashboard's setting to the agent.
  for (
    const [args, expected] of [
      [
        ["agent", "--port", "5000"],
        "status: unknown option '--port' (--port is an option of status serve and status up)",
      ],
      [
        ["serve", "--daemon"],
        "status: unknown option '--daemon' (--daemon is an option of status agent)",
      ],
      [
        ["list", "--db", "x.db"],
        "status: unknown option '--db' (--db is an option of status serve, status agents add, " +
        "status agents list and 2 more)",
      ],
      // Near one of its own: that one, as before.
      [["list", "--limt", "5"], "status: unknown option '--limt' (did you mean --limit?)"],
      // No command's: as it was.
      [["agent", "--no-such-flag"], "status: unknown option '--no-such-flag'"],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await status([...args]);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(stderr, expected);
    });
  }
});

Deno.test("an on/off flag given a value says that it takes none, and how to turn it off", async (t) => {
  for (
    const [args, expected] of [
      [
        ["agent", "--daemon=false"],
        "status: unknown option '--daemon=false' (--daemon takes no value: give --daemon to turn " +
        "it on, or --no-daemon to turn it off)",
      ],
      [
        ["agent", "--no-daemon=1"],
        "status: unknown option '--no-daemon=1' (--no-daemon takes no value: give --daemon to " +
        "turn it on, or --no-daemon to turn it off)",
      ],
      [
        ["serve", "--accept-v1-signatures=yes"],
        "status: unknown option '--accept-v1-signatures=yes' (--accept-v1-signatures takes no " +
        "value: give --accept-v1-signatures to turn it on, or --no-accept-v1-signatures to turn " +
        "it off)",
      ],
      [
        ["list", "--json=true"],
        "status: unknown option '--json=true' (--json takes no value: give --json alone)",
      ],
      // Not a flag of the command: as before.
      [["list", "--bogus=1"], "status: unknown option '--bogus=1'"],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await status([...args]);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(stderr, expected);
    });
  }
});

Deno.test("a list setting's flag given twice is refused, with the one flag that says both", async (t) => {
  // Commander keeps the last: "--allowed-programs echo --allowed-programs ls" allowed ls alone.
  for (
    const [args, expected] of [
      [
        ["exec", "echo hi", "--allowed-programs", "echo", "--allowed-programs", "ls"],
        "status: --allowed-programs is given more than once, and only the last one would be " +
        "read; give it once, with every item separated by commas: --allowed-programs echo,ls",
      ],
      [
        // Its values are commands' credentials: not repeated back.
        ["exec", "echo hi", "--command-env", "DB_PASSWORD=s3cret", "--command-env", "LANG=C"],
        "status: --command-env is given more than once, and only the last one would be read; " +
        "give it once, with every item separated by commas: --command-env <item>,<item>,...",
      ],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await status([...args]);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(stderr, expected);
    });
  }
  await t.step("a setting of one value given twice: the last one is read, as ever", async () => {
    const { code, stdout } = await status([
      "exec",
      "echo hi",
      "--command-timeout-secs",
      "10",
      "--command-timeout-secs",
      "5",
      "--log-level",
      "error",
    ]);
    assert.equal(code, 0);
    assert.match(stdout, /^hi$/m);
  });
});

Deno.test("a file flag given twice is refused: one file is read, and the first was left without a word", async (t) => {
  for (
    const [args, flag, first, second] of [
      [["list", "--config", "a.json", "--config", "b.json"], "--config", "a.json", "b.json"],
      [
        ["exec", "echo hi", "--env-file", "a.env", "--env-file", "b.env"],
        "--env-file",
        "a.env",
        "b.env",
      ],
      [["stop", "--pid-file", "a.pid", "--pid-file", "b.pid"], "--pid-file", "a.pid", "b.pid"],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const { code, stdout, stderr } = await status([...args]);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(
        stderr,
        `status: option '${flag} <path>' argument '${second}' is invalid: comes after '${first}' ` +
          "for the same flag: one file is read, not both; give the flag once",
      );
    });
  }
});

Deno.test("an operator command started without --allow-net exits 2, naming the flag", async () => {
  const port = closedPort();
  const run = await runCli(["list", "--dashboard-url", `http://127.0.0.1:${port}`], { perms: [] });
  assert.equal(run.code, 2, run.stderr);
  assert.equal(
    run.stderr.trimEnd().split("\n").at(-1),
    `status: Requires net access to "127.0.0.1:${port}", run again with the --allow-net flag`,
  );
});

Deno.test("a missing or extra argument says where the command's usage is told", async () => {
  for (
    const [args, said] of [
      [["result"], "status: missing required argument 'id'; see status result --help"],
      [["agents", "add"], "status: missing required argument 'id'; see status agents add --help"],
      [["result", "a", "b"], /^status: too many arguments .*; see status result --help$/],
    ] as const
  ) {
    const { code, stderr } = await status([...args]);
    assert.equal(code, 2, args.join(" "));
    if (typeof said === "string") assert.equal(stderr, said);
    else assert.match(stderr, said);
  }
});

Deno.test("every flag the README's CLI summary names is one its command takes", async () => {
  // A summary, not every flag; but none that its command does not take.
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const block = readme.split("## CLI\n")[1].split("```")[1];
  const helpOf = async (path: string[]): Promise<string> => {
    const own = (await status([...path, "--help"])).stdout;
    const subcommands = own.split("Commands:\n")[1]?.matchAll(/^ {2}([a-z]+)/gm) ?? [];
    let all = own;
    for (const [, name] of subcommands) if (name !== "help") all += await helpOf([...path, name]);
    return all;
  };
  let command = "";
  let checked = 0;
  for (const line of block.split("\n")) {
    if (line.startsWith("status ")) {
      const word = line.split(/\s+/)[1];
      command = /^[a-z]+$/.test(word) ? word : "agent";
    }
    const flags = line.match(/--[a-z][a-z-]*/g) ?? [];
    if (flags.length === 0) continue;
    const help = await helpOf([command]);
    for (const flag of flags) {
      assert.match(help, new RegExp(`(^|[\\s,])${flag}\\b(?!-)`, "m"), `${command} ${flag}`);
      checked++;
    }
  }
  assert.ok(checked > 20, `${checked} flags checked`);
});

Deno.test("every command's -h, --help is worded alike", async () => {
  for (const path of [[], ["serve"], ["agents"], ["agents", "add"], ["run", "list"], ["health"]]) {
    const { stdout } = await status([...path, "--help"]);
    assert.match(stdout, /^ {2}-h, --help +show help$/m, path.join(" "));
    // The help command, where there are subcommands, in the same words; none on the others.
    if (["", "agents"].includes(path.join(" "))) {
      assert.match(stdout, /^ {2}help \[command\] +show help for a command$/m, path.join(" "));
    } else assert.doesNotMatch(stdout, /help \[command\]/, path.join(" "));
  }
});
