/**
 * The files the README has an operator make in this checkout: the settings files that hold tokens
 * (`.env`, `config.json`, the defaults of `--env-file` and `--config`) and what `status up`,
 * `status serve` and the agent write there. None may be offered to `git add` or `git commit -a`:
 * a token committed is a token published.
 */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Only a git checkout (a worktree's `.git` is a file) has a `.gitignore` to read. */
const notACheckout = (() => {
  try {
    Deno.statSync(`${ROOT}/.git`);
    return false;
  } catch {
    return true;
  }
})();

/** Whether git ignores a path of this checkout (by its `.gitignore`, not the index). */
async function ignored(path: string): Promise<boolean> {
  const { code, stderr } = await new Deno.Command("git", {
    args: ["-C", ROOT, "check-ignore", "--no-index", "-q", "--", path],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(code === 0 || code === 1, new TextDecoder().decode(stderr));
  return code === 0;
}

Deno.test({
  name: "git ignores the settings files that hold tokens and the state the program writes",
  ignore: notACheckout,
}, async (t) => {
  for (
    const path of [
      ".env",
      "config.json",
      ".status/status.db",
      ".status/agent-state/journal.jsonl",
      ".status-state/outbox/x.json",
      "status.db",
      "status.db-wal",
      "status.pid",
      "status.log",
      "status.log.1",
    ]
  ) {
    await t.step(path, async () => assert.ok(await ignored(path), `${path} is not ignored`));
  }
});

Deno.test(
  { name: "git still tracks the examples of those files", ignore: notACheckout },
  async () => {
    for (const path of ["examples/.env.example", "examples/config.json", "deno.json"]) {
      assert.equal(await ignored(path), false, `${path} is ignored`);
    }
  },
);
