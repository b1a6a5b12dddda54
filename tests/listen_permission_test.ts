/**
 * Listening without the permission to: `startServer` and an agent's `metricsPort` reject with a
 * `ConfigError` naming `--allow-net`. `node:net` asks for the permission on a later tick, where a
 * refusal was an uncaught `NotCapable` that ended the library caller's process.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Runs a script importing `./mod.ts` under exactly `flags`; what it printed and its exit code. */
async function runScript(flags: string[], script: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, "-"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const out = await child.output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("listening without --allow-net is a ConfigError the caller catches", async (t) => {
  await t.step("startServer", async () => {
    const run = await runScript(
      [],
      `import { startServer } from "./mod.ts";
       await startServer({ port: 0, db: ":memory:" }).then(
         (server) => server.shutdown(),
         (error) => console.log(error.name, error.message),
       );`,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout.trim(),
      "ConfigError cannot listen on 127.0.0.1:0: run with --allow-net",
    );
  });

  await t.step("an agent's metricsPort", async () => {
    const run = await runScript(
      ["--allow-net=127.0.0.1:9"],
      `import { runAgent } from "./mod.ts";
       await runAgent(
         { dashboardUrl: "http://127.0.0.1:9", agentId: "a", metricsPort: "127.0.0.1:0" },
         AbortSignal.timeout(10_000),
       ).then(
         () => console.log("ran"),
         (error) => console.log(error.name, error.message),
       );`,
    );
    assert.equal(run.code, 0, run.stderr);
    assert.equal(
      run.stdout.trim(),
      "ConfigError cannot serve metrics on 127.0.0.1:0: run with --allow-net",
    );
  });
});
