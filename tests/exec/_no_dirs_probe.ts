/**
 * Plays an agent that may not create directories (it is started without `--allow-write`): runs
 * one command line through its sandbox and prints, as JSON, where the sandbox says commands run
 * and the result. Arguments: the command line and the allowed path prefixes. Used by
 * `sandbox_test.ts`.
 *
 * @module
 */
import { createPolicy, runCommand, Sandbox } from "../../src/exec/mod.ts";

const [line, prefixes] = Deno.args;
const sandbox = Sandbox.create({ cgroups: false });
const result = await runCommand(line, {
  policy: createPolicy({ allowedPathPrefixes: prefixes }),
  sandbox,
});
console.log(JSON.stringify({
  where: sandbox.describe(),
  status: result.status,
  error: result.error,
  stdout: result.stdout,
  stderr: result.stderr,
}));
