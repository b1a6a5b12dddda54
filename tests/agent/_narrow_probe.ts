/**
 * Runs one command through the agent's executor and prints the result as JSON: started by
 * `narrow_flags_test.ts` under exactly the permission flags of `examples/status-panel.service`.
 *
 * Arguments: the command line, the deadline in seconds, and "cgroups", "no-cgroups" or
 * "leftover" (then a `sleep` is spawned as a crashed run would leave it, and a second sandbox,
 * as the restarted agent, stops it by its record).
 *
 * @module
 */
import { createExecutor } from "../../src/agent/executor.ts";
import { Sandbox } from "../../src/exec/mod.ts";

const [line, secs, mode] = Deno.args;
if (mode === "leftover") {
  const previous = Sandbox.create({ tag: "narrow-probe-previous" });
  const cell = await previous.open();
  const child = cell.spawn("sleep", {
    args: ["60"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  });
  const record = cell.record()!;
  // What `ps` shows of the group before the restarted agent looks (for a failure message).
  const before = await psLines();
  const restarted = Sandbox.create({ tag: "narrow-probe-restarted" });
  const outcome = await restarted.stopLeftover(record);
  // Bounded: a leftover that was not stopped is reported (and killed here), not waited for.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    child.status,
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 10_000)),
  ]);
  clearTimeout(timer);
  if (status === null) {
    child.kill("SIGKILL");
    await child.status;
  }
  await cell.close();
  await previous.close();
  await restarted.close();
  console.log(JSON.stringify({
    record,
    outcome,
    signal: status === null ? "still running 10 s later" : status.signal,
    now: Date.now(),
    before,
  }));
} else {
  const executor = createExecutor({
    stateDir: "/var/lib/status/state",
    cgroups: mode === "cgroups",
  });
  let pid = 0;
  const outcome = await executor.run({
    name: line,
    timeoutSecs: Number(secs),
    signal: new AbortController().signal,
    onSpawn: (record) => pid = record.pid,
  });
  await executor.close?.();
  console.log(JSON.stringify({ describe: executor.describe?.(), pid, outcome }));
}

/** `ps`'s lines (pid, pgid, elapsed seconds, state), as the sandbox reads them. */
async function psLines(): Promise<string> {
  const output = await new Deno.Command("ps", {
    args: ["-e", "-o", "pid=,pgid=,etimes=,stat="],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(output.stdout).split("\n")
    .filter((line) => / (S|R|D|T)/.test(line)).slice(-20).join("\n") +
    new TextDecoder().decode(output.stderr);
}
