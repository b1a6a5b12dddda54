/**
 * Runs one command through the agent's executor and prints the result as JSON: started by
 * `narrow_flags_test.ts` under exactly the permission flags of `examples/status-panel.service`.
 *
 * Arguments: the command line, the deadline in seconds, "cgroups" or "no-cgroups".
 *
 * @module
 */
import { createExecutor } from "../../src/agent/executor.ts";

const [line, secs, mode] = Deno.args;
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
executor.close?.();
console.log(JSON.stringify({ describe: executor.describe?.(), pid, outcome }));
