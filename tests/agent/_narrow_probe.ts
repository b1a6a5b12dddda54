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
  const restarted = Sandbox.create({ tag: "narrow-probe-restarted" });
  const outcome = await restarted.stopLeftover(record);
  const status = await child.status;
  await cell.close();
  await previous.close();
  await restarted.close();
  console.log(JSON.stringify({ record, outcome, signal: status.signal }));
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
