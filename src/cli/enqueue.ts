/**
 * `status enqueue "<command line>" --agent <id>`: puts a command in an agent's queue on the
 * dashboard and, with `--wait`, follows it to its result and exits with its exit code.
 *
 * @module
 */
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { addSettingOptions, loadCommandSettings } from "./common.ts";
import { setExitCode } from "./exit.ts";
import type { Io } from "./io.ts";
import { followAndPrint, writerFor } from "./live.ts";
import {
  AGENT_ID_PATTERN,
  type CommandParams,
  PRIORITIES,
  type Priority,
} from "../protocol/mod.ts";
import {
  type CommandRecord,
  exitCodeOf,
  formatElapsed,
  formatProgress,
  type OperatorClient,
  operatorClientFromSettings,
} from "../operator/mod.ts";

const COMMAND_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Parses `--agent <id>`: 1–128 characters of `A-Za-z0-9._:-`.
 *
 * @param value The flag's value.
 * @returns The id.
 * @throws {InvalidArgumentError} When it is not a valid agent id (exit code 2).
 */
export function parseAgentId(value: string): string {
  if (!AGENT_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError("must be 1–128 characters of A-Z a-z 0-9 . _ : -");
  }
  return value;
}

/**
 * Parses a command id (`--id <id>`, `status result <id>`): 1–128 characters of `A-Za-z0-9._:-`.
 *
 * @param value The value.
 * @returns The id.
 * @throws {InvalidArgumentError} When it is not a valid command id (exit code 2).
 */
export function parseCommandId(value: string): string {
  if (!COMMAND_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError("must be 1–128 characters of A-Z a-z 0-9 . _ : -");
  }
  return value;
}

/**
 * Makes a parser of a whole number within bounds, for flags like `--timeout` and `--limit`.
 *
 * @param min Smallest accepted value.
 * @param max Largest accepted value.
 * @returns A commander argument parser.
 */
export function wholeNumberParser(min: number, max: number): (value: string) => number {
  return (value) => {
    const trimmed = value.trim();
    const number = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN;
    if (!Number.isSafeInteger(number) || number < min || number > max) {
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    }
    return number;
  };
}

function parseCommandLine(value: string): string {
  if (value.trim().length === 0) throw new InvalidArgumentError("must not be empty");
  if (value.length > 4096) throw new InvalidArgumentError("must be at most 4096 characters");
  return value;
}

function parseDeploymentHash(value: string): string {
  if (!/^[^/?#\s]{1,256}$/.test(value)) {
    throw new InvalidArgumentError("must be 1–256 characters without / ? # or spaces");
  }
  return value;
}

/**
 * Waits for a command to be final, printing progress on stderr; Ctrl-C stops waiting (exit 130)
 * without cancelling the command.
 *
 * @param io Where progress goes (stderr).
 * @param client The dashboard.
 * @param id The command.
 * @returns The final command, or `null` when Ctrl-C stopped the wait.
 */
export async function follow(
  io: Io,
  client: OperatorClient,
  id: string,
): Promise<CommandRecord | null> {
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted"));
  let listening = false;
  try {
    Deno.addSignalListener("SIGINT", onSignal);
    listening = true;
  } catch {
    // Signals cannot be listened to here (e.g. a platform without SIGINT); Ctrl-C just ends us.
  }
  // The enqueue answer already says "queued": show it at once, then every change.
  io.err(`${id} queued (${formatElapsed(0)})`);
  let first = true;
  try {
    return await client.waitForFinal(id, {
      signal: controller.signal,
      onProgress: (record, elapsedMs) => {
        const repeat = first && record.status === "queued" && (record.attempt ?? 1) <= 1;
        first = false;
        if (!repeat) io.err(formatProgress(record, elapsedMs));
      },
    });
  } catch (error) {
    if (controller.signal.aborted) {
      io.err(
        `stopped waiting for ${id}; the command goes on (see it with: status result ${id}, ` +
          `cancel it with: status cancel ${id})`,
      );
      return null;
    }
    throw error;
  } finally {
    if (listening) Deno.removeSignalListener("SIGINT", onSignal);
  }
}

/**
 * Builds `status enqueue`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function enqueueCommand(io: Io): Command {
  const command = new Command("enqueue")
    .description(
      "Queue a command for an agent on the dashboard; with --wait, follow it to its result and " +
        "exit with its exit code (126 rejected, 124 timeout, 137 killed, 1 lost/interrupted/" +
        "cancelled)",
    )
    .argument(
      "<command-line>",
      'the command line, quoted as one argument, e.g. "echo hi" (no shell: the agent splits it ' +
        "and runs only allowlisted programs)",
      parseCommandLine,
    )
    .requiredOption("--agent <id>", "id of the agent that runs it", parseAgentId)
    .option(
      "--id <id>",
      "command id (default: generated by the dashboard); re-sending the same id is safe",
      parseCommandId,
    )
    .option(
      "--timeout <secs>",
      "deadline of the command on the agent (params.timeout_secs)",
      wholeNumberParser(1, 86_400),
    )
    .addOption(
      new Option("--priority <priority>", "queue priority (default normal)").choices(PRIORITIES),
    )
    .option(
      "--deployment-hash <hash>",
      "deliver only to an agent serving this deployment",
      parseDeploymentHash,
    )
    .option(
      "--wait",
      "wait for the result: progress on stderr, then the command's stdout/stderr; exit with " +
        "its exit code",
    )
    .option("--json", "print the command as JSON (the final one with --wait)");
  addSettingOptions(command, ["operator"]);
  command.addHelpText(
    "after",
    `
Examples:
  status enqueue "echo hi" --agent test-agent --wait
  status enqueue "df -h /tmp" --agent web-1 --id disk-check-1 --timeout 30 --json
  id=$(status enqueue "sleep 60" --agent web-1) && status cancel "$id"`,
  );
  command.action(async (commandLine, options) => {
    const { settings } = loadCommandSettings(options as Record<string, unknown>, ["operator"]);
    const client = operatorClientFromSettings(settings);
    const params: CommandParams = {};
    if (options.timeout !== undefined) params.timeout_secs = options.timeout;
    if (options.priority !== undefined) params.priority = options.priority as Priority;
    if (options.deploymentHash !== undefined) params.deployment_hash = options.deploymentHash;
    const answer = await client.enqueue({
      agentId: options.agent,
      name: commandLine,
      id: options.id,
      params,
    });
    const id = answer.id;
    if (!options.wait) {
      if (options.json) {
        io.out(JSON.stringify(await client.getCommand(id), null, 2));
      } else {
        io.out(id);
        io.err(
          `${answer.duplicate ? "already queued (same id and body)" : "queued"}: ${id} for ` +
            `agent ${options.agent}; see it with: status result ${id}`,
        );
      }
      return;
    }
    // With --json only the final command is printed; otherwise its output as it arrives.
    const record = options.json
      ? await follow(io, client, id)
      : await followAndPrint(io, writerFor(io), client, id, { announceQueued: true });
    if (record === null) {
      setExitCode(130);
      return;
    }
    if (options.json) io.out(JSON.stringify(record, null, 2));
    setExitCode(exitCodeOf(record));
  });
  return command as unknown as Command;
}
