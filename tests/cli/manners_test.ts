import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { openAgentState } from "../../src/agent/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { tempDir } from "../e2e/helpers.ts";
import { closedPort } from "../_stub_dashboard.ts";
import { cliCommand, LineStream, MAIN, PERMS, ROOT, runCli, spawnCli } from "../_cli.ts";

Deno.test("output into a pipe closed early ends quietly with exit code 0", async (t) => {
  for (const args of [["--help"], ["--version"], ["list", "--help"]]) {
    await t.step(`status ${args.join(" ")} | head -0`, async () => {
      const child = cliCommand(args, { perms: PERMS.operator }).spawn();
      // The reader goes away before the program writes (it takes a while to start).
      await child.stdout.cancel();
      const [status, stderr] = await Promise.all([
        child.status,
        new Response(child.stderr).text(),
      ]);
      assert.equal(stderr, "", "no 'Broken pipe' message");
      assert.equal(status.code, 0);
    });
  }
});

Deno.test("an unknown command is named, with the nearest command", async (t) => {
  for (
    const [args, expected] of [
      [["lst"], "status: unknown command 'lst' (did you mean list?); see status --help"],
      [["enqeue", "echo hi"], "status: unknown command 'enqeue' (did you mean enqueue?)"],
      [["--log-level", "debug", "stpo"], "status: unknown command 'stpo' (did you mean stop?)"],
      [["frobnicate"], "status: unknown command 'frobnicate'; see status --help"],
    ] as const
  ) {
    await t.step(args.join(" "), async () => {
      const run = await runCli(args, { perms: PERMS.agentMinimal });
      assert.equal(run.code, 2);
      assert.ok(run.stderr.startsWith(expected), run.stderr);
      assert.equal(run.stderr.trim().split("\n").length, 1, "one line");
    });
  }
});

Deno.test("status completions prints scripts for bash, zsh and fish", async (t) => {
  const hasShell = async (shell: string) => {
    try {
      return (await new Deno.Command(shell, { args: ["-c", "exit 0"] }).output()).success;
    } catch {
      return false;
    }
  };
  await t.step("bash completes commands, subcommands and options", async () => {
    const script = await runCli(["completions", "bash"], { perms: [] });
    assert.equal(script.code, 0, script.stderr);
    if (!(await hasShell("bash"))) {
      console.log("bash is not installed: the bash script is not run");
      return;
    }
    const complete = async (...words: string[]) => {
      const probe = `${script.stdout}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}
_status_completions; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const out = await new Deno.Command("bash", { args: ["-c", probe] }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout).trim().split("\n").filter(Boolean);
    };
    assert.deepEqual(await complete("status", "enq"), ["enqueue"]);
    // An alias completes as its command does (the README names `status ping`).
    assert.deepEqual(await complete("status", "pi"), ["ping"]);
    assert.deepEqual(await complete("status", "ping", "--js"), ["--json"]);
    assert.deepEqual(await complete("status", "agents", "r"), ["rotate", "remove"]);
    assert.ok((await complete("status", "enqueue", "--agent", "web-1", "--wa")).includes("--wait"));
    // After a command line or an id the command's options still complete (nothing did).
    assert.deepEqual(await complete("status", "enqueue", "echo hi", "--wa"), [
      "--wait",
      "--wait-timeout",
    ]);
    assert.deepEqual(await complete("status", "result", "list", "--js"), ["--json"]);
    assert.deepEqual(await complete("status", "run", "show", "run-1", "--f"), ["--follow"]);
    // An option with fixed values completes them (it offered files).
    assert.deepEqual(await complete("status", "list", "--status", "q"), ["queued"]);
    assert.deepEqual(await complete("status", "enqueue", "echo hi", "--priority", "h"), ["high"]);
    assert.equal((await complete("status", "list", "--status", "")).length, 12);
    assert.deepEqual(await complete("status", "list", "--status", "failed", "--li"), ["--limit"]);
    assert.deepEqual(await complete("status", "completions", "bash", ""), []);
    assert.deepEqual(await complete("status", "completions", ""), [
      "bash",
      "zsh",
      "fish",
      "--help",
      "-h",
    ]);
  });
  for (const shell of ["zsh", "fish"]) {
    await t.step(`${shell}: a script the shell parses`, async () => {
      const script = await runCli(["completions", shell], { perms: [] });
      assert.equal(script.code, 0, script.stderr);
      assert.match(script.stdout, /enqueue/);
      assert.match(script.stdout, /--wait-timeout|wait-timeout/);
      if (!(await hasShell(shell))) {
        console.log(`${shell} is not installed: its script is not parsed`);
        return;
      }
      const out = await new Deno.Command(shell, { args: ["-n", "-c", script.stdout] }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      if (shell === "zsh") {
        // The completion system's functions stand in as printers (no terminal here).
        const probe = `compdef() { :; }; compadd() { print -l -- "\${(@P)2}"; }
_files() { print files; }
${script.stdout}
words=(status list --status ''); CURRENT=4; _status
words=(status list --config ''); CURRENT=4; _status`;
        const done = await new Deno.Command("zsh", { args: ["-c", probe] }).output();
        const lines = new TextDecoder().decode(done.stdout).trim().split("\n");
        assert.deepEqual([lines[0], lines.length, lines.at(-1)], ["queued", 13, "files"]);
      }
      if (shell === "fish") {
        const probe =
          `${script.stdout}\ncomplete -C 'status enq'; complete -C 'status agents r'; ` +
          "complete -C 'status list --status q'; complete -C 'command status enq'";
        const done = await new Deno.Command("fish", { args: ["-c", probe] }).output();
        const names = new TextDecoder().decode(done.stdout).trim().split("\n")
          .map((l) => l.split("\t")[0]);
        assert.deepEqual(names, ["enqueue", "remove", "rotate", "queued", "enqueue"]);
        // `status` is a fish builtin: the way the script says to load it must run this program.
        const load = script.stdout.split("\n")[0].replace(/^.*load it with: /, "");
        assert.match(load, /^command status completions fish \| source$/);
        const builtin = await new Deno.Command("fish", {
          args: ["-c", "status completions fish"],
        }).output();
        assert.equal(builtin.success, false, "fish's builtin status takes the bare command");
      }
    });
  }
  await t.step("a description naming a URL scheme is not cut at its colon", async () => {
    // --database-url was described to zsh as "postgres", the rest cut at "postgres://".
    const zsh = await runCli(["completions", "zsh"], { perms: [] });
    assert.match(
      zsh.stdout,
      /'--database-url:postgres\\:\/\/ URL of the store, used when DB\/--db is not set'/,
    );
    const fish = await runCli(["completions", "fish"], { perms: [] });
    assert.match(fish.stdout, /-l database-url -r -d 'postgres:\/\/ URL of the store/);
  });
  await t.step("the help and the README load fish's through `command status`", async () => {
    const help = await runCli(["completions", "--help"], { perms: [] });
    assert.match(help.stdout, /fish: {2}command status completions fish > ~\/\.config\/fish\//);
    const readme = await Deno.readTextFile(`${ROOT}/README.md`);
    assert.match(
      readme,
      /`command status completions fish > ~\/\.config\/fish\/completions\/status\.fish`/,
    );
    assert.doesNotMatch(readme, /`status completions fish/);
  });
  await t.step("another shell is a usage error", async () => {
    const run = await runCli(["completions", "csh"], { perms: [] });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /must be one of bash, zsh, fish$/);
  });
});

Deno.test("the design card's command says the environment was not readable, and how to fix it", async () => {
  const run = await runCli([], {
    perms: PERMS.agentMinimal,
    env: { AGENT_ID: "web-1", DASHBOARD_URL: "http://127.0.0.1:9" },
    plain: true,
  });
  assert.equal(run.code, 2);
  const last = run.stderr.trim().split("\n").at(-1)!;
  assert.match(
    last,
    /^status: AGENT_ID is not set, or is set where it could not be read: the environment \(Deno was started without --allow-env\) and \.env and config\.json \(without --allow-read\) could not be read\. Add --allow-env \(or --allow-env=AGENT_ID\)/,
  );
  assert.match(last, /deno run -P=agent main\.ts/);
  assert.match(last, /--agent-id <id>/);
});

Deno.test("deno run -P=agent main.ts runs the agent with the permission set of deno.json", async () => {
  await using dir = tempDir();
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  await using agent = spawnCli([], {
    perms: ["-P=agent"],
    cwd: dir.path,
    env: { AGENT_ID: "web-1", DASHBOARD_URL: server.url, LOG_FORMAT: "json" },
  });
  try {
    await until(() => server.dashboard.hub.isWaiting("web-1"), "the agent connects", 30_000, 50)
      .catch((error) => {
        throw new Error(`${error.message}:\n${agent.stderr.lines.slice(-10).join("\n")}`);
      });
  } finally {
    agent.kill("SIGTERM");
    await agent.exited();
    closeLogging();
  }
});

Deno.test("deno.json permission sets give each role every variable it reads", async () => {
  const { SETTINGS, keysFor } = await import("../../src/config/mod.ts");
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  for (
    const [set, roles] of [
      ["agent", ["agent", "log"]],
      ["up", ["agent", "server", "log"]],
      ["serve", ["server", "log"]],
      ["operator", ["operator", "log"]],
    ] as const
  ) {
    const env: string[] = config.permissions[set].env;
    for (const key of keysFor([...roles])) {
      assert.ok(env.includes(SETTINGS[key].env), `-P=${set} lacks ${SETTINGS[key].env}`);
    }
  }
  // status health, an operator command, checks the agent's credentials too (AGENT_ID, AGENT_TOKEN).
  for (const name of ["AGENT_ID", "AGENT_TOKEN"]) {
    assert.ok(config.permissions.operator.env.includes(name), `-P=operator lacks ${name}`);
  }
});

Deno.test("deno run -P=agent lets the daemon rotate its log, status.log", async () => {
  await using dir = await tempDir();
  const script = `${dir.path}/rotation.ts`;
  await Deno.writeTextFile(
    script,
    `import { rotationPermitted } from "${ROOT}/src/log/file_sink.ts";\n` +
      'console.log(rotationPermitted("status.log", 5));\n',
  );
  // Paths of a permission set are relative to deno.json: run where the agent runs.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--config", `${ROOT}/deno.json`, "-P=agent", script],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, said);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "true", said);
});

Deno.test("deno run -P=operator reads TERM: a dumb terminal gets no elapsed indicator", async () => {
  // The operator's set did not grant TERM, so under it an editor's shell buffer (TERM=dumb) got
  // the indicator's cursor controls printed as text while status enqueue --wait followed.
  await using dir = await tempDir();
  const script = `${dir.path}/term.ts`;
  await Deno.writeTextFile(
    script,
    `import { processWriter } from "${ROOT}/src/cli/live.ts";\n` +
      "const tty = { isTerminal: () => true, writeSync: (b: Uint8Array) => b.length };\n" +
      "console.log(processWriter({ stdout: tty, stderr: tty }).isTerminal);\n",
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--config", `${ROOT}/deno.json`, "-P=operator", script],
    cwd: ROOT,
    env: { TERM: "dumb" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const said = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, said);
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "false", said);
});

Deno.test("an agent whose allowlist is empty says so at start-up", async () => {
  await using agent = spawnCli(
    [
      "--agent-id",
      "web-1",
      "--dashboard-url",
      `http://127.0.0.1:${closedPort()}`,
      "--allowed-programs",
      "",
    ],
    { perms: PERMS.agentMinimal, env: { LOG_FORMAT: "json" } },
  );
  const { line } = await agent.stderr.waitFor(/ALLOWED_PROGRAMS/);
  const record = JSON.parse(line);
  assert.equal(record.level, "warning");
  assert.match(
    record.message,
    /^ALLOWED_PROGRAMS \(from flag --allowed-programs\) is empty: this agent rejects every command/,
  );
  agent.kill("SIGTERM");
  await agent.exited();
});

Deno.test("misspelled config.json keys are warned about with the nearest setting, unknown ones noted at info", async () => {
  await using dir = tempDir();
  await Deno.writeTextFile(
    `${dir.path}/config.json`,
    JSON.stringify({
      polling_timeout: 30,
      alowed_programs: ["echo"],
      colour: "blue",
      domain: "example.com",
      apps_info: "nginx-1.25",
      dashboard_url: "http://127.0.0.1:9",
    }),
  );
  const run = await runCli(["exec", "echo hi", "--log-format", "json"], {
    perms: ["--allow-read", "--allow-run"],
    cwd: dir.path,
  });
  assert.equal(run.code, 0, run.stderr);
  const records = run.stderr.trim().split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l)
  ).filter((r) => /not a setting of status/.test(r.message));
  assert.deepEqual(records.map((r) => [r.level, r.message]), [
    [
      "warning",
      'config.json key "polling_timeout" is not a setting of status; it is ignored (did you mean "polling_timeout_secs"?)',
    ],
    [
      "warning",
      'config.json key "alowed_programs" is not a setting of status; it is ignored (did you mean "allowed_programs"?)',
    ],
    ["info", 'config.json key "colour" is not a setting of status; it is ignored'],
  ], "the Status Panel's own keys (domain, apps_info) stay quiet");
});

Deno.test("a setting's name with braces is quoted as written in its warning, not filled in as a placeholder", async () => {
  await using dir = tempDir();
  await Deno.writeTextFile(
    `${dir.path}/config.json`,
    JSON.stringify({ "dashboard_ur{l}": "x", "{suggestion}x": 1, "}}odd{{": 2 }),
  );
  const run = await runCli(["exec", "echo hi", "--log-format", "json"], {
    perms: ["--allow-read", "--allow-run", "--allow-env"],
    cwd: dir.path,
    env: { "DASHBOARD_UR{L}": "x" },
  });
  assert.equal(run.code, 0, run.stderr);
  const messages = run.stderr.trim().split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l).message
  ).filter((m) => /not a setting of status/.test(m));
  assert.deepEqual(messages.toSorted(), [
    'config.json key "dashboard_ur{l}" is not a setting of status; it is ignored (did you mean "dashboard_url"?)',
    'config.json key "{suggestion}x" is not a setting of status; it is ignored',
    'config.json key "}}odd{{" is not a setting of status; it is ignored',
    "the environment sets DASHBOARD_UR{L}, which is not a setting of status; it is ignored (did you mean DASHBOARD_URL?)",
  ]);
});

Deno.test("a misspelled config.json key is warned about however many other keys the file holds", async () => {
  // With more than five unknown keys they were summed up in one line at info level, and the
  // "did you mean" of the misspelled one was lost among them.
  await using dir = tempDir();
  await Deno.writeTextFile(
    `${dir.path}/config.json`,
    JSON.stringify({
      colour: "blue",
      owner: "ops",
      rack: "b4",
      team: "infra",
      notes: "",
      polling_timout_secs: 10,
      cost_centre: "42",
    }),
  );
  const run = await runCli(["exec", "echo hi", "--log-format", "json"], {
    perms: ["--allow-read", "--allow-run"],
    cwd: dir.path,
  });
  assert.equal(run.code, 0, run.stderr);
  const records = run.stderr.trim().split("\n").filter((l) => l.startsWith("{")).map((l) =>
    JSON.parse(l)
  ).filter((r) => /not a setting|not settings/.test(r.message));
  assert.deepEqual(records.map((r) => [r.level, r.message]), [
    [
      "warning",
      'config.json key "polling_timout_secs" is not a setting of status; it is ignored (did you mean "polling_timeout_secs"?)',
    ],
    [
      "info",
      'config.json has 6 keys that are not settings of status; they are ignored: "colour", "owner", "rack", "team", "notes" and 1 more',
    ],
  ]);
});

Deno.test("status exec says a rejection once", async () => {
  const run = await runCli(["exec", "rm -rf /tmp/x"], { perms: PERMS.agentMinimal });
  assert.equal(run.code, 126);
  const mentions = run.stderr.split("\n").filter((l) => l.includes("not on the allowlist"));
  assert.equal(mentions.length, 1, run.stderr);
  assert.match(mentions[0], /^exec: rejected: program "rm" is not on the allowlist/);
  assert.match(
    mentions[0],
    /; to run it, give --allow rm, or add it to ALLOWED_PROGRAMS \(--allowed-programs\)$/,
  );
});

Deno.test("only serve creates a database, and only in an existing directory", async (t) => {
  await using dir = tempDir();
  await t.step("serve refuses a missing directory and creates nothing", async () => {
    const run = await runCli(["serve", "--port", "0", "--db", `${dir.path}/nonexistent/x.db`], {
      perms: PERMS.serve,
    });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /the directory .*nonexistent does not exist/);
    await assert.rejects(() => Deno.stat(`${dir.path}/nonexistent`), Deno.errors.NotFound);
  });
  await t.step("agents list refuses a missing file and names it", async () => {
    const db = `${dir.path}/typo.db`;
    const run = await runCli(["agents", "list", "--db", db], { perms: PERMS.serve });
    assert.equal(run.code, 2);
    assert.ok(run.stderr.includes(`database ${db} does not exist`), run.stderr);
    assert.ok(!run.stderr.includes("no agents"));
    await assert.rejects(() => Deno.stat(db), Deno.errors.NotFound);
  });
});

Deno.test("status up fails on a locked state directory before it invites anyone", async () => {
  await using dir = tempDir();
  await Deno.mkdir(`${dir.path}/agent-state`);
  using _held = openAgentState({ dir: `${dir.path}/agent-state` });
  const run = await runCli(["up", "--port", "0", "--data-dir", dir.path], { perms: PERMS.up });
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /another agent \(pid \d+\) is using the state directory/);
  assert.ok(!run.stdout.includes("Try"), run.stdout);
  assert.equal(run.stdout, "");
});

Deno.test("deno run -P=serve starts the dashboard and creates ./status.db", async () => {
  await using dir = tempDir();
  // The set's paths are relative to its deno.json: a copy in a directory of its own.
  await Deno.copyFile(`${ROOT}/deno.json`, `${dir.path}/deno.json`);
  const serve = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", `${dir.path}/deno.json`, "-P=serve", MAIN, "serve", "--port", "0"],
    cwd: dir.path,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new LineStream("stdout of serve", serve.stdout);
  const stderr = new LineStream("stderr of serve", serve.stderr);
  try {
    await stdout.waitFor(/^listening on http:\/\/127\.0\.0\.1:\d+/, { timeoutMs: 30_000 });
    assert.ok((await Deno.stat(`${dir.path}/status.db`)).isFile, stderr.text);
    // The set grants every variable the dashboard reads: no note that says otherwise.
    assert.doesNotMatch(stderr.text, /environment variables? .*not read/);
  } finally {
    serve.kill("SIGTERM");
    await serve.status;
    await Promise.all([stdout.done, stderr.done]);
  }
});

Deno.test("environment variables not granted are named, the others read", async () => {
  await using dir = tempDir();
  const run = await runCli(
    ["list", "--log-level", "debug", "--log-format", "json"],
    {
      perms: ["--allow-net", "--allow-env=DASHBOARD_URL,LOG_FORMAT,LOG_LEVEL"],
      cwd: dir.path,
      env: { DASHBOARD_URL: `http://127.0.0.1:${closedPort()}` },
    },
  );
  assert.equal(run.code, 1, run.stderr);
  assert.match(
    run.stderr,
    /environment variables LOG_FILE, STATUS_ADMIN_TOKEN are not read: --allow-env does not grant them/,
  );
  assert.doesNotMatch(run.stderr, /not read without --allow-env/);
  assert.match(run.stderr, new RegExp(`127\\.0\\.0\\.1`), "DASHBOARD_URL was read");
});

Deno.test("many unknown config.json keys are logged in one line, a long one cut", async (t) => {
  await using dir = tempDir();
  const list = (file: string) =>
    runCli(
      ["list", "--config", file, "--log-format", "json", "--dashboard-url", "http://127.0.0.1:9"],
      { perms: ["--allow-net", `--allow-read=${dir.path}`], cwd: dir.path },
    );
  await t.step("many keys", async () => {
    const keys: Record<string, number> = {};
    for (let i = 0; i < 20_000; i++) keys[`k${i}`] = i;
    await Deno.writeTextFile(`${dir.path}/many.json`, JSON.stringify(keys));
    const run = await list("many.json");
    const lines = run.stderr.split("\n").filter((line) => line.includes("not settings"));
    assert.equal(lines.length, 1, run.stderr.slice(0, 2000));
    assert.match(
      lines[0],
      /many\.json has 20000 keys that are not settings of status; they are ignored: \\"k0\\", \\"k1\\", \\"k2\\", \\"k3\\", \\"k4\\" and 19995 more/,
    );
  });
  await t.step("a long key", async () => {
    await Deno.writeTextFile(`${dir.path}/long.json`, JSON.stringify({ ["x".repeat(100_000)]: 1 }));
    const run = await list("long.json");
    assert.match(run.stderr, /key \\"x{48}… \(100000 characters\)\\" is not a setting/);
    assert.ok(run.stderr.length < 2000, `${run.stderr.length} characters on stderr`);
  });
});
