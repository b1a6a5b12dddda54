/**
 * On a terminal, Deno asks before a read that is not granted: a settings file read under a
 * narrow `--allow-read` must not make the program look at anything else, or it stops at a prompt
 * no operator expects (and a service started from a terminal waits there).
 *
 * @module
 */
import assert from "node:assert/strict";
import { MAIN, ROOT } from "../_cli.ts";
import { startServe } from "../e2e/helpers.ts";

/** Runs `main.ts` under `script`, which gives it a terminal; ended after `limitMs`. */
async function onTerminal(
  flags: string[],
  args: string[],
  limitMs: number,
  cwd?: string,
): Promise<string> {
  const words = [
    "deno",
    "run",
    "--quiet",
    "--config",
    `${ROOT}/deno.json`,
    ...flags,
    MAIN,
    ...args,
  ];
  const line = words.map((word) => `'${word.replaceAll("'", `'\\''`)}'`).join(" ");
  const output = await new Deno.Command("script", {
    args: ["-qec", line, "/dev/null"],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(limitMs),
  }).output().catch((error) => {
    throw new Error(`no answer within ${limitMs} ms (a prompt?)`, { cause: error });
  });
  return new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
}

Deno.test("a settings file read under --allow-read of that file alone asks for nothing more on a terminal", async (t) => {
  for (
    const [name, mode] of [["a directory of one's own", 0o700], [
      "a sticky /tmp-like directory",
      0o1777,
    ]] as const
  ) {
    await t.step(name, async () => {
      const dir = await Deno.makeTempDir({ prefix: "status-no-prompt-" });
      try {
        await Deno.chmod(dir, mode);
        const config = `${dir}/config.json`;
        await Deno.writeTextFile(config, JSON.stringify({ dashboard_url: "http://127.0.0.1:9" }));
        const output = await onTerminal(
          [`--allow-read=${config}`, "--allow-env", "--allow-net"],
          ["list", "--config", config],
          60_000,
        );
        assert.doesNotMatch(output, /Deno requests/, output);
        assert.match(output, /cannot reach the dashboard at http:\/\/127\.0\.0\.1:9/, output);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});

/** Runs `main.ts` under `script` in `cwd` until `done` says so (or `limitMs`), then hangs it up. */
async function onTerminalUntil(
  cwd: string,
  flags: string[],
  args: string[],
  done: () => Promise<boolean>,
  limitMs: number,
): Promise<string> {
  const words = [
    "deno",
    "run",
    "--quiet",
    "--config",
    `${ROOT}/deno.json`,
    ...flags,
    MAIN,
    ...args,
  ];
  const line = words.map((word) => `'${word.replaceAll("'", `'\\''`)}'`).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qec", line, "/dev/null"],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_TRACE_PERMISSIONS: "1" },
  }).spawn();
  const output = Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline && !(await done())) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  // A hangup, as a closed terminal gives: the agent stops (and would meet a prompt on its way).
  child.kill("SIGHUP");
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await child.status;
  clearTimeout(timer);
  return (await output).join("");
}

Deno.test("the README's foreground agent and its daemon, with narrow flags on a terminal, run a command and stop without asking", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-no-prompt-" });
  await using serve = await startServe({ db: ":memory:" });
  try {
    const config = { dashboard_url: serve.url, agent_id: "tty-agent" };
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    let n = 0;
    const enqueueAndSee = (agentId: string) => {
      const id = `tty-${++n}`;
      let queued = false;
      return async () => {
        if (!queued) {
          const answer = await fetch(`${serve.url}/api/v1/agent/commands/enqueue`, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Agent-Id": agentId },
            body: JSON.stringify({ id, name: "echo hi", params: {} }),
          });
          await answer.body?.cancel();
          queued = answer.status === 202;
          return false;
        }
        const answer = await fetch(`${serve.url}/api/v1/commands/${id}`);
        const body = answer.ok ? await answer.json() : await answer.body?.cancel();
        return body?.status === "success";
      };
    };

    await t.step(
      "foreground: deno run --allow-net --allow-run --allow-read=config.json",
      async () => {
        const see = enqueueAndSee("tty-agent");
        let ran = false;
        const output = await onTerminalUntil(
          dir,
          ["--allow-net", "--allow-run", "--allow-read=config.json"],
          ["--config", "config.json"],
          async () => ran ||= await see(),
          60_000,
        );
        assert.doesNotMatch(output, /Deno requests/, output);
        assert.ok(ran, `the command ran: ${output}`);
      },
    );

    await t.step("--daemon and stop with the README's flags", async () => {
      const flags = [
        "--allow-net",
        "--allow-run",
        "--allow-read=config.json,status.pid,status.log,.status-state",
        "--allow-write=status.pid,status.log,.status-state",
      ];
      // An agent of its own: the foreground one's wait would hold its id for a while.
      const home = `${dir}/daemon`;
      await Deno.mkdir(home);
      await Deno.writeTextFile(
        `${home}/config.json`,
        JSON.stringify({ dashboard_url: serve.url, agent_id: "tty-daemon" }),
      );
      const started = await onTerminal(
        flags,
        ["--daemon", "--config", "config.json"],
        60_000,
        home,
      );
      assert.doesNotMatch(started, /Deno requests/, started);
      assert.match(started, /agent started in the background/, started);
      const see = enqueueAndSee("tty-daemon");
      const deadline = Date.now() + 60_000;
      while (!(await see()) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const stopped = await onTerminal(flags, ["stop", "--config", "config.json"], 60_000, home);
      assert.doesNotMatch(stopped, /Deno requests/, stopped);
      assert.match(stopped, /agent stopped/, stopped);
      assert.ok(Date.now() < deadline, "the daemon ran the command");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
