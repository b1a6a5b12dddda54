import assert from "node:assert/strict";
import { run } from "./_run.ts";

// Every command that waits for a command or a run takes one --wait-timeout: the same help, the
// same values, the same refusal.
const WAITING: Array<[string[], string[], string]> = [
  [["enqueue"], ["echo hi", "--agent", "a"], "--wait"],
  [["run", "start"], ["echo hi", "--agent", "a"], "--wait"],
  [["run", "show"], ["run-1"], "--follow"],
  [["result"], ["cmd-1"], "--follow"],
  [["cancel"], ["cmd-1"], "--wait"],
];
// A dashboard that is not there: a refused value is bad usage (2), said before asking it.
const env = { DASHBOARD_URL: "http://127.0.0.1:9" };

Deno.test("every command that waits takes --wait-timeout with the same meaning and values", async (t) => {
  for (const [command, args, implied] of WAITING) {
    await t.step(`status ${command.join(" ")}`, async (t) => {
      const help = (await run([...command, "--help"], env)).stdout.join("\n").replace(/\s+/g, " ");
      assert.match(
        help,
        new RegExp(
          `--wait-timeout <secs> with ${implied} \\(implied\\): stop waiting after this many ` +
            `seconds and exit 75 \\((the (command|run) goes on|the agent still stops the command)\\)`,
        ),
      );
      for (const value of ["0", "-1", "1.5", "abc", "2592001"]) {
        await t.step(value, async () => {
          const out = await run([...command, ...args, `--wait-timeout=${value}`], env);
          assert.equal(out.code, 2);
          assert.deepEqual(out.stderr, [
            `error: option '--wait-timeout <secs>' argument '${value}' is invalid. must be a ` +
            "whole number from 1 to 2592000",
          ]);
        });
      }
    });
  }
});
