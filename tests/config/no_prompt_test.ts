/**
 * On a terminal, Deno asks before a read that is not granted: a settings file read under a
 * narrow `--allow-read` must not make the program look at anything else, or it stops at a prompt
 * no operator expects (and a service started from a terminal waits there).
 *
 * @module
 */
import assert from "node:assert/strict";
import { MAIN, ROOT } from "../_cli.ts";

/** Runs `main.ts` under `script`, which gives it a terminal; ended after `limitMs`. */
async function onTerminal(flags: string[], args: string[], limitMs: number): Promise<string> {
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
