import { main } from "../../main.ts";
import { memoryIo } from "../../src/cli/io.ts";

/**
 * Runs `status <args>` in process through main.ts (logging only errors) and returns what it said.
 *
 * @param args The arguments after `status`.
 * @returns The exit code and the lines (and raw bytes) it printed.
 */
export async function run(args: string[]) {
  const io = memoryIo();
  const code = await main([...args, "--log-level", "error"], io);
  return { code, stdout: io.stdout, stderr: io.stderr, bytes: io.bytes };
}
