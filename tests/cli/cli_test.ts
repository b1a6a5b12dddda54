import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };

const main = new URL("../../main.ts", import.meta.url).pathname;

/** Runs the CLI exactly as users may: `deno run --allow-net --allow-run main.ts ...`. */
async function runCli(args: string[], cwd?: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-net", "--allow-run", main, ...args],
    cwd,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("--version prints the version from deno.json", async () => {
  const { code, stdout } = await runCli(["--version"]);
  assert.equal(code, 0);
  assert.equal(stdout.trim(), denoJson.version);
});

Deno.test("--help works on the root and every subcommand", async (t) => {
  const root = await runCli(["--help"]);
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
      const sub = await runCli([name, "--help"]);
      assert.equal(sub.code, 0, sub.stderr);
      assert.match(sub.stdout, new RegExp(`^Usage: status ${name}`, "m"));
    });
  }
});

Deno.test("bad usage exits 2 with one clear line", async (t) => {
  await t.step("unknown flag", async () => {
    const { code, stderr } = await runCli(["--no-such-flag"]);
    assert.equal(code, 2);
    assert.match(stderr.trim(), /^error: unknown option '--no-such-flag'$/);
  });
  await t.step("bad value", async () => {
    const { code, stderr } = await runCli(["--polling-timeout-secs", "abc"]);
    assert.equal(code, 2);
    assert.equal(stderr.trim().split("\n").length, 1);
    assert.match(stderr, /--polling-timeout-secs.*must be a whole number of seconds above 0/);
  });
});

Deno.test("without env and read permission the agent says which flags would enable them", async () => {
  const cwd = Deno.makeTempDirSync({ prefix: "status-cli-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-net",
      "--allow-run",
      main,
      "--agent-id",
      "perm-test",
      "--dashboard-url",
      "http://127.0.0.1:9",
      "--log-format",
      "text",
    ],
    cwd,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const wanted = [/add --allow-env/, /\.env is not read/, /config\.json is not read/];
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
      if (wanted.every((pattern) => pattern.test(text))) break;
    }
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    Deno.removeSync(cwd, { recursive: true });
  }
  assert.match(text, /add --allow-env/);
  assert.match(text, /\.env is not read without --allow-read/);
  assert.match(text, /config\.json is not read without --allow-read/);
  assert.doesNotMatch(text, /NotCapable|Requires .* access/);
});
