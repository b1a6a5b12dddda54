import { Command, CommanderError } from "@commander-js/extra-typings";
import { memoryIo } from "../../src/cli/io.ts";
import { takeExitCode } from "../../src/cli/exit.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { enqueueCommand } from "../../src/cli/enqueue.ts";
import { resultCommand } from "../../src/cli/result.ts";
import { listCommand } from "../../src/cli/list.ts";
import { cancelCommand } from "../../src/cli/cancel.ts";

type AnyCommand = Command<unknown[], Record<string, unknown>>;

/**
 * Runs operator commands in-process, like main.ts does, and returns what they said.
 *
 * @param args The arguments after `status`.
 * @param builders The commands to offer (default: enqueue, result, list, cancel).
 */
export async function run(
  args: string[],
  builders: Array<(io: ReturnType<typeof memoryIo>) => Command> = [
    enqueueCommand,
    resultCommand,
    listCommand,
    cancelCommand,
  ],
) {
  const io = memoryIo();
  const program = new Command("status");
  const quiet = (command: AnyCommand) => {
    command.exitOverride();
    command.configureOutput({ writeErr: (t) => io.err(t.trimEnd()), writeOut: (t) => io.out(t) });
    for (const sub of command.commands) quiet(sub as AnyCommand);
  };
  for (const build of builders) {
    const sub = build(io);
    quiet(sub as unknown as AnyCommand);
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
