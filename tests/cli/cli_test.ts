import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { PERMS, runCli, spawnCli } from "../_cli.ts";
import { tempDir } from "../e2e/helpers.ts";
import { EXEC_EXIT_CANCELLED, EXEC_EXIT_NOT_FOUND } from "../../src/cli/exec.ts";
import { EXIT_KILLED, EXIT_REJECTED, EXIT_TIMEOUT } from "../../src/operator/types.ts";
import { SETTINGS } from "../../src/config/mod.ts";

/** Runs the CLI exactly as users may: `deno run --allow-net --allow-run main.ts ...`. */
function status(args: string[]) {
  return runCli(args, { perms: PERMS.agentMinimal });
}

Deno.test("--version prints the version from deno.json", async () => {
  const { code, stdout } = await status(["--version"]);
  assert.equal(code, 0);
  assert.equal(stdout.trim(), denoJson.version);
});

Deno.test("--help works on the root and every subcommand", async (t) => {
  const root = await status(["--help"]);
  assert.equal(root.code, 0, root.stderr);
  assert.match(root.stdout, /^Usage: status/m);
  const names = [...root.stdout.matchAll(/^ {2}([a-z]+)(?: |\[|$)/gm)].map((m) => m[1])
    .filter((n) => n !== "help");
  // Guard the scraping: every command of the issue must be found, or no step would run.
  for (
    const expected of [
      "agent",
      "stop",
      "serve",
      "up",
      "agents",
      "enqueue",
      "result",
      "list",
      "cancel",
      "exec",
    ]
  ) {
    assert.ok(names.includes(expected), `${expected} is missing from --help`);
  }
  for (const name of names) {
    await t.step(name, async () => {
      const sub = await status([name, "--help"]);
      assert.equal(sub.code, 0, sub.stderr);
      assert.match(sub.stdout, new RegExp(`^Usage: status ${name}`, "m"));
    });
  }
});

Deno.test("bad usage exits 2 with one clear line", async (t) => {
  await t.step("unknown flag", async () => {
    const { code, stderr } = await status(["--no-such-flag"]);
    assert.equal(code, 2);
    assert.match(stderr.trim(), /^status: unknown option '--no-such-flag'$/);
  });
  await t.step("bad value", async () => {
    const { code, stderr } = await status(["--polling-timeout-secs", "abc"]);
    assert.equal(code, 2);
    assert.equal(stderr.trim().split("\n").length, 1);
    assert.match(
      stderr,
      /--polling-timeout-secs.*must be a whole number of seconds from 1 to 31536000 \(a year\)/,
    );
  });
});

Deno.test("without env and read permission the agent says which flags would enable them", async () => {
  await using dir = tempDir("status-cli-");
  await using agent = spawnCli(
    ["--agent-id", "perm-test", "--dashboard-url", "http://127.0.0.1:9", "--log-format", "text"],
    { perms: PERMS.agentMinimal, cwd: dir.path },
  );
  for (const wanted of [/add --allow-env/, /\.env is not read/, /config\.json is not read/]) {
    await agent.stderr.waitFor(wanted);
  }
  const text = agent.stderr.text;
  assert.match(text, /add --allow-env/);
  assert.match(text, /\.env is not read without --allow-read/);
  assert.match(text, /config\.json is not read without --allow-read/);
  assert.doesNotMatch(text, /NotCapable|Requires .* access/);
});

Deno.test("every command that reads settings names what it could not read, as health does", async () => {
  await using dir = tempDir("status-cli-");
  const url = "http://127.0.0.1:9";
  const notes = async (args: string[]) => {
    const run = await runCli([...args, "--dashboard-url", url, "--log-format", "json"], {
      perms: PERMS.operator,
      cwd: dir.path,
    });
    return run.stderr.split("\n").filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line))
      .filter((record) => record.category === "status.config")
      .map((record) => `${record.level} ${record.message}`);
  };
  const expected = await notes(["health"]);
  assert.deepEqual(expected, [
    "info environment variables are not read without --allow-env; add --allow-env to configure " +
    "by environment, or pass flags",
    "info .env is not read without --allow-read; add --allow-read to use it",
    "info config.json is not read without --allow-read; add --allow-read to use it",
  ]);
  const commands = [
    ["list"],
    ["agents", "list"],
    ["result", "x"],
    ["cancel", "x"],
    ["enqueue", "echo hi", "--agent", "a"],
    ["run", "list"],
  ];
  const all = await Promise.all(commands.map(notes));
  commands.forEach((args, i) => assert.deepEqual(all[i], expected, args.join(" ")));
});

Deno.test("status health reads only the agent's credentials of the agent's settings", async () => {
  // A bad agent setting in .env stopped it with exit 2 ("POLLING_TIMEOUT_SECS from .env must
  // be ..."), and an empty ALLOWED_PROGRAMS made it fail with a TypeError.
  await using dir = tempDir("status-cli-");
  Deno.writeTextFileSync(`${dir.path}/.env`, "POLLING_TIMEOUT_SECS=abc\nALLOWED_PROGRAMS=\n");
  const run = await runCli(["health", "--dashboard-url", "http://127.0.0.1:9"], {
    perms: PERMS.agent,
    cwd: dir.path,
  });
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stdout, /^dashboard http:\/\/127\.0\.0\.1:9\n {2}dashboard FAILED/);
  assert.doesNotMatch(run.stderr, /POLLING_TIMEOUT_SECS|ALLOWED_PROGRAMS|TypeError/);
  // Its credentials are still checked.
  const token = await runCli(
    ["health", "--dashboard-url", "http://127.0.0.1:9", "--agent-id", "a", "--agent-token", "x"],
    { perms: PERMS.agent, cwd: dir.path },
  );
  assert.equal(token.code, 2);
  assert.match(token.stderr, /AGENT_TOKEN from flag --agent-token must be a token/);
});

Deno.test("a token given as a flag is warned about: the command line is readable by every local user", async () => {
  await using dir = tempDir("status-cli-");
  await using agent = spawnCli(
    [
      "--agent-id",
      "flag-token",
      "--agent-token",
      "0123456789abcdef0123456789",
      "--dashboard-url",
      "http://127.0.0.1:9",
      "--log-format",
      "text",
    ],
    { perms: PERMS.agentMinimal, cwd: dir.path },
  );
  await agent.stderr.waitFor(/--agent-token puts a secret in this process's command line/);
  assert.doesNotMatch(agent.stderr.text, /0123456789abcdef0123456789/, "never the token itself");
});

Deno.test("the README's foreground agent command runs the agent", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const row = readme.split("\n").find((line) => line.startsWith("| agent (foreground)"))!;
  const command = /`(deno run [^`]*)`/.exec(row)![1];
  const words = command.split(/\s+/);
  const perms = words.filter((word) => word.startsWith("--allow-"));
  const args = words.slice(words.indexOf("main.ts") + 1);
  assert.deepEqual(args, ["--config", "config.json"]);
  await using dir = tempDir("status-readme-");
  await Deno.writeTextFile(
    `${dir.path}/config.json`,
    JSON.stringify({ agent_id: "readme-1", dashboard_url: "http://127.0.0.1:9" }),
  );
  await using agent = spawnCli([...args, "--log-format", "json"], { perms, cwd: dir.path });
  await agent.waitForLog("Agent daemon starting");
  assert.ok(agent.logged("Agent daemon starting"), agent.stderr.text);
});

Deno.test("the README's quick start counts the commands status up prints", async () => {
  const { upBanner } = await import("../../src/cli/up.ts");
  const banner = upBanner({ port: 5000, agentId: "test-agent", dataDir: "./.status" });
  const commands = banner.filter((line) => /^ {2}\S/.test(line));
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const count = /It prints (\w+) commands/.exec(readme.replaceAll("\n", " "))?.[1];
  const words = ["zero", "one", "two", "three", "four", "five"];
  assert.equal(count, words[commands.length], commands.join("\n"));
  for (const command of commands) {
    const words = command.trim().split(/\s+/).slice(0, 3).join(" ");
    assert.ok(readme.includes(words), `the README shows ${words}`);
  }
});

Deno.test("status up's banner names the compiled binary it runs as, not a deno task", async () => {
  // A binary from deno task compile, run away from the checkout, printed "npx -y deno@2.9.6 task
  // status enqueue ...", which needs the checkout's deno.json.
  const { upBanner } = await import("../../src/cli/up.ts");
  const banner = upBanner({
    port: 5000,
    agentId: "web-1",
    dataDir: "./.status",
    cli: "/usr/local/bin/status",
  });
  assert.ok(
    banner.includes('  /usr/local/bin/status enqueue "echo hi" --agent web-1 --wait'),
    banner.join("\n"),
  );
  assert.ok(!banner.some((line) => line.includes("npx")), banner.join("\n"));
});

Deno.test("status agents --db: a PostgreSQL URL with a password is not warned about (the flag is its only way in); another scheme is refused without quoting it", async () => {
  await using dir = tempDir("status-cli-");
  await using agents = spawnCli(
    ["agents", "list", "--db", "postgres://status:hunter2hunter2@127.0.0.1:9/status"],
    { perms: PERMS.serve, cwd: dir.path },
  );
  await agents.exited();
  assert.doesNotMatch(agents.stderr.text, /puts a secret/);
  assert.doesNotMatch(agents.stderr.text, /hunter2hunter2/);
  await using mysql = spawnCli(
    ["agents", "list", "--db", "mysql://status:hunter2hunter2@127.0.0.1/status"],
    { perms: PERMS.serve, cwd: dir.path },
  );
  assert.equal((await mysql.exited()).code, 2);
  assert.match(
    mysql.stderr.text,
    /cannot open a database at a mysql:\/\/ URL: --db takes a SQLite file path or a postgres:\/\//,
  );
  assert.doesNotMatch(mysql.stderr.text, /hunter2hunter2/);
  assert.deepEqual([...Deno.readDirSync(dir.path)], [], "no file made of it");
});

Deno.test("a PostgreSQL URL with a password given as --db is warned about like --database-url", async () => {
  await using dir = tempDir("status-cli-");
  await using serve = spawnCli(
    ["serve", "--db", "postgres://status:hunter2hunter2@127.0.0.1:9/status", "--port", "0"],
    { perms: PERMS.serve, cwd: dir.path },
  );
  await serve.exited();
  assert.match(serve.stderr.text, /--db puts a secret in this process's command line/);
  assert.doesNotMatch(serve.stderr.text, /hunter2hunter2/, "never the password itself");
});

Deno.test("a --db password with / or @ not percent-encoded is warned about, and shown in no part", async () => {
  await using dir = tempDir("status-cli-");
  await using serve = spawnCli(
    ["serve", "--db", "postgres://status:hunter2/hunter2@127.0.0.1:9/status", "--port", "0"],
    { perms: PERMS.serve, cwd: dir.path },
  );
  assert.equal((await serve.exited()).code, 2);
  assert.match(serve.stderr.text, /--db puts a secret in this process's command line/);
  assert.match(serve.stderr.text, /postgres:\/\/status:\*\*\*@127\.0\.0\.1:9\/status/);
  assert.doesNotMatch(serve.stderr.text, /hunter2/, "never the password, nor a part of it");
});

Deno.test("status exec says it runs as this user in this directory, not in the agent's sandbox", async () => {
  const help = await status(["exec", "--help"]);
  assert.match(
    help.stdout.replaceAll(/\s+/g, " "),
    /unlike the agent it runs it as this user, in this directory \(or --cwd, COMMAND_CWD\), without the sandbox/,
  );
  // It said "exactly as the agent runs commands": the agent would run `ls .` as nobody in an
  // empty directory of its own.
  await using dir = tempDir("status-exec-here-");
  await Deno.writeTextFile(`${dir.path}/here.txt`, "");
  const run = await runCli(["exec", "ls ."], { perms: PERMS.agentMinimal, cwd: dir.path });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), "here.txt");
});

Deno.test("agent --help says the permissions it runs with and shows examples of its own flags", async () => {
  // It had neither, where serve and up have both: the agent is what a newcomer starts on a server.
  const { code, stdout: help } = await status(["agent", "--help"]);
  assert.equal(code, 0);
  assert.ok(help.includes(`deno run ${PERMS.agent.join(" ")} main.ts agent`), help);
  assert.ok(help.includes(`The least it runs with is ${PERMS.agentMinimal.join(" ")}`), help);
  const examples = help.split("\nExamples:\n")[1]?.split("\n").filter((line) => line.trim());
  assert.ok(examples && examples.length > 0, help);
  const options = new Set([...help.matchAll(/^ {2}(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]));
  const variables = new Set(Object.values(SETTINGS).map((spec) => spec.env));
  for (const example of examples) {
    const words = example.replace(/ {2,}\(.*\)$/, "").trim().split(/\s+/);
    const at = words.indexOf("status");
    assert.ok(at >= 0, example);
    for (const assignment of words.slice(0, at)) {
      assert.ok(variables.has(assignment.split("=")[0]), `${assignment} in: ${example}`);
    }
    for (const word of words.slice(at + 1).filter((w) => w.startsWith("--"))) {
      assert.ok(options.has(word), `${word} in: ${example}`);
    }
  }
});

Deno.test("--help says what exec exits with and how stop and cancel end a running command", async (t) => {
  await t.step("exec names every exit code it gives besides the command's own", async () => {
    // It named 126, 124 and 137; a program not found exits 127, Ctrl-C 130.
    const help = (await status(["exec", "--help"])).stdout.replaceAll(/\s+/g, " ");
    for (const code of [EXIT_REJECTED, EXEC_EXIT_NOT_FOUND, EXIT_TIMEOUT, EXIT_KILLED]) {
      assert.match(help, new RegExp(`\\b${code} `), `${code}`);
    }
    assert.match(help, new RegExp(`\\b${EXEC_EXIT_CANCELLED} stopped by Ctrl-C`));
  });
  await t.step(
    "stop says a command still running after the grace is reported interrupted",
    async () => {
      // It said the agent "cancels" it: the report is interrupted (protocol.md §6), not cancelled.
      const help = (await status(["stop", "--help"])).stdout.replaceAll(/\s+/g, " ");
      assert.match(help, /SHUTDOWN_GRACE_SECS, else it is stopped and reported interrupted/);
    },
  );
  await t.step("cancel says every process of the command is stopped", async () => {
    // It said its process group: with a cgroup of its own, processes that left the group too.
    const help = (await status(["cancel", "--help"])).stdout.replaceAll(/\s+/g, " ");
    assert.match(help, /SIGTERM to every process of it, then SIGKILL/);
  });
});

Deno.test("serve names PORT, BIND, DB and DATABASE_URL taken from the environment, where another program's may be", async () => {
  // Generic names: BIND=0.0.0.0 or PORT=8080 of another program's was taken without a word.
  await using dir = tempDir();
  // Or in a .env of another project's, in the directory it was started in.
  await Deno.writeTextFile(`${dir.path}/.env`, "DB=:memory:\n");
  await using serve = spawnCli(["serve"], {
    perms: PERMS.serve,
    cwd: dir.path,
    env: { PORT: "0", BIND: "127.0.0.1", LOG_FORMAT: "json" },
  });
  await serve.stdout.waitFor(/^listening on http:\/\/127\.0\.0\.1:\d+/);
  for (const [env, value, flag] of [["PORT", "0", "--port"], ["BIND", "127.0.0.1", "--bind"]]) {
    assert.ok(
      serve.logged(
        `${env} is ${value}, from the environment: ${env} is a name other programs use too; if ` +
          `it is not meant for status, unset it or give ${flag}`,
      ),
      serve.stderr.text,
    );
  }
  assert.ok(serve.logged(/^DB is :memory:, from \.env: DB is a name /), serve.stderr.text);
  serve.kill();
  await serve.exited();
  // A Rails app's DATABASE_URL would be status's store: said before it is opened, without its
  // password.
  await using empty = tempDir();
  const other = await runCli(["serve", "--port", "0"], {
    perms: PERMS.serve,
    cwd: empty.path,
    env: { DATABASE_URL: "postgres://app:hunter2@127.0.0.1:1/app", LOG_FORMAT: "json" },
  });
  assert.match(
    other.stderr,
    /"DATABASE_URL is postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/app, from the environment: DATABASE_URL is a name other programs use too; if it is not meant for status, unset it or give --database-url"/,
  );
  assert.doesNotMatch(other.stderr, /hunter2/);
});
