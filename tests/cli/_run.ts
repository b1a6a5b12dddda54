import { main } from "../../main.ts";
import { memoryIo } from "../../src/cli/io.ts";

/**
 * Runs `status <args>` in process through main.ts (logging only errors) and returns what it said.
 *
 * @param args The arguments after `status`.
 * @param env The environment settings are read from (default: the process's own).
 * @returns The exit code and the lines (and raw bytes) it printed.
 */
export async function run(args: string[], env?: Record<string, string>) {
  const io = { ...memoryIo(), env };
  const code = await main([...args, "--log-level", "error"], io);
  return { code, stdout: io.stdout, stderr: io.stderr, bytes: io.bytes };
}
