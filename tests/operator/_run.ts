import { Command, CommanderError } from "@commander-js/extra-typings";
import { memoryIo } from "../../src/cli/io.ts";
import { takeExitCode } from "../../src/cli/exit.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { enqueueCommand } from "../../src/cli/enqueue.ts";
import { resultCommand } from "../../src/cli/result.ts";
import { listCommand } from "../../src/cli/list.ts";
import { cancelCommand } from "../../src/cli/cancel.ts";

/** Runs the operator commands in-process, like main.ts does, and returns what they said. */
export async function run(args: string[]) {
  const io = memoryIo();
  const program = new Command("status");
  for (const build of [enqueueCommand, resultCommand, listCommand, cancelCommand]) {
    const sub = build(io);
    sub.exitOverride();
    sub.configureOutput({ writeErr: (t) => io.err(t.trimEnd()), writeOut: (t) => io.out(t) });
    program.addCommand(sub);
  }
  program.exitOverride();
  let code: number;
  try {
    await program.parseAsync([...args, "--log-level", "error"], { from: "user" });
    code = takeExitCode() ?? 0;
  } catch (error) {
    if (error instanceof CommanderError) code = 2;
    else {
      io.err(`status: ${(error as Error).message}`);
      code = (error as { exitCode?: number }).exitCode ?? 1;
    }
  } finally {
    closeLogging();
  }
  return { code, stdout: io.stdout, stderr: io.stderr, bytes: io.bytes };
}
