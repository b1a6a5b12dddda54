/**
 * The lock agents of one process take turns with while they move it between cgroups: waited for
 * while another holds it a moment, and never for long (any process that may read the cgroup's
 * directory can take it).
 */
import assert from "node:assert/strict";
import { MOVE_LOCK_WAIT_MS, whileMoving } from "../../src/exec/cgroup.ts";
import { captureLogs } from "../agent/_helpers.ts";

/** Another process holding an `flock` on `dir` for `ms` milliseconds, once it says so. */
async function holdLock(dir: string, ms: number): Promise<AsyncDisposable> {
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const d = Deno.openSync(${JSON.stringify(dir)}, { read: true }); d.lockSync(true); ` +
      `console.log("held"); setTimeout(() => d.close(), ${ms});`,
    ],
    stdout: "piped",
  }).spawn();
  const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await reader.read()).value?.trim(), "held");
  return {
    async [Symbol.asyncDispose]() {
      try {
        holder.kill("SIGKILL");
      } catch {
        // already ended
      }
      await reader.cancel();
      await holder.status;
    },
  };
}

Deno.test("whileMoving waits while another process holds the lock a moment", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-move-lock-" });
  try {
    using logs = captureLogs();
    await using _holder = await holdLock(dir, 300);
    const started = Date.now();
    assert.equal(whileMoving(dir, () => "moved"), "moved");
    assert.ok(Date.now() - started >= 200, "it waited for the holder");
    assert.ok(!logs.has(/going on without it/));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("whileMoving goes on with a warning when a process keeps the lock", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-move-lock-" });
  try {
    using logs = captureLogs();
    await using _holder = await holdLock(dir, 60_000);
    const started = Date.now();
    assert.equal(whileMoving(dir, () => "moved"), "moved");
    assert.ok(Date.now() - started >= MOVE_LOCK_WAIT_MS - 50, "it waited its bound first");
    assert.ok(logs.has(/going on without it/), logs.messages().join("\n"));
    // While it keeps the lock, later moves do not wait again, nor warn again.
    const again = Date.now();
    assert.equal(whileMoving(dir, () => "again"), "again");
    assert.ok(Date.now() - again < MOVE_LOCK_WAIT_MS / 2, "no second wait");
    assert.equal(logs.messages().filter((m) => /going on without it/.test(m)).length, 1);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
