/**
 * Plays an agent that dies while its command runs: opens a sandbox (tag from the arguments),
 * spawns the script given in a cell, prints the command's pid and the pid its script prints, then
 * waits to be killed. Used by `sandbox_test.ts`.
 *
 * @module
 */
import { Sandbox } from "../../src/exec/mod.ts";

const [tag, script] = Deno.args;
const sandbox = Sandbox.create({ tag });
const cell = await sandbox.open();
const child = cell.spawn(script, { stdout: "piped", stderr: "null", stdin: "null" });
const reader = child.stdout.getReader();
const printed = new TextDecoder().decode((await reader.read()).value).trim();
console.log(
  JSON.stringify({ record: cell.record(), pid: child.pid, grandchild: Number(printed) }),
);
await new Promise(() => {});
