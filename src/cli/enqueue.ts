/**
 * `status enqueue "<command line>" --agent <id>`: puts a command in an agent's queue on the
 * dashboard and, with `--wait`, follows it to its result and exits with its exit code.
 *
 * @module
 */
import { onSignals } from "./signals.ts";
import { timeoutSignal } from "../clock.ts";
import { DEPLOYMENT_HASH_PATTERN, DEPLOYMENT_HASH_RULE } from "../protocol/schemas.ts";
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { addSettingOptions, loadCommandSettings, noAdminTokenReason } from "./common.ts";
import {
  addRunOptions,
  collectAgent,
  mayHaveArrived,
  type RunFlags,
  runRequestOf,
  startRun,
  wantsRun,
} from "./run.ts";
import { RUN_ID_PATTERN, RUN_ID_RULE } from "../protocol/runs.ts";
import { UsageError } from "../errors.ts";
import { setExitCode } from "./exit.ts";
import { followAndPrint, WaitTimeoutError, writerFor } from "./live.ts";
import type { Io } from "./io.ts";
import { errorLine } from "./error_line.ts";
import { requestSignals, waitTimeoutOption } from "./interrupt.ts";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  ANY_COMMAND_ID_PATTERN,
  ANY_COMMAND_ID_RULE,
  COMMAND_ID_PATTERN,
  COMMAND_ID_RULE,
  commandNameSchema,
  type CommandParams,
  MAX_TTL_SECS,
  PRIORITIES,
  type Priority,
  RESERVED_COMMAND_ID,
} from "../protocol/mod.ts";
import {
  type CommandRecord,
  EXIT_WAIT_TIMEOUT,
  exitCodeOf,
  formatElapsed,
  formatProgress,
  idWord,
  type OperatorClient,
  operatorClientFromSettings,
  OperatorError,
  outputBytes,
  truncationNotes,
} from "../operator/mod.ts";

function runIdOf(id: string | undefined): string | undefined {
  if (id !== undefined && !RUN_ID_PATTERN.test(id)) {
    throw new UsageError(`--id of a fan-out run must be ${RUN_ID_RULE}`);
  }
  return id;
}

/**
 * Parses `--agent <id>`: 1–128 characters of `A-Za-z0-9._:-`, not only dots.
 *
 * @param value The flag's value.
 * @returns The id.
 * @throws {InvalidArgumentError} When it is not a valid agent id (exit code 2).
 */
export function parseAgentId(value: string): string {
  if (!AGENT_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError(`must be ${AGENT_ID_RULE}`);
  }
  return value;
}

/**
 * Parses the id of a command to enqueue (`--id <id>`): 1–128 characters of `A-Za-z0-9._:-`,
 * not only dots.
 *
 * @param value The value.
 * @returns The id.
 * @throws {InvalidArgumentError} When it is not a valid command id (exit code 2).
 */
export function parseCommandId(value: string): string {
  if (!COMMAND_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError(`must be ${COMMAND_ID_RULE}`);
  }
  if (value === RESERVED_COMMAND_ID) {
    throw new InvalidArgumentError(
      `must not be "${RESERVED_COMMAND_ID}": the dashboard refuses it (its agent routes would ` +
        "be read as a wait's)",
    );
  }
  return value;
}

/**
 * Parses the id of a command the dashboard holds (`status result <id>`, `status cancel <id>`):
 * an enqueued command's, or a fan-out run's `<run id>:<agent id>` (up to 193 characters).
 *
 * @param value The value.
 * @returns The id.
 * @throws {InvalidArgumentError} When no command can have this id (exit code 2).
 */
export function parseAnyCommandId(value: string): string {
  if (!ANY_COMMAND_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError(`must be ${ANY_COMMAND_ID_RULE}`);
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

/**
 * Parses a command line given as one argument (`status enqueue`, `status run start`): not blank,
 * at most 4096 characters, and what the dashboard takes as a command's name (no control or
 * bidirectional formatting characters: a line break, an escape, U+202E).
 *
 * @param value The argument.
 * @returns The command line.
 * @throws {InvalidArgumentError} When it is blank, too long or holds such characters (exit code
 *   2; nothing is sent).
 */
export function parseCommandLine(value: string): string {
  if (value.trim().length === 0) throw new InvalidArgumentError("must not be empty");
  if (value.length > 4096) throw new InvalidArgumentError("must be at most 4096 characters");
  const name = commandNameSchema.safeParse(value);
  if (!name.success) throw new InvalidArgumentError(name.error.issues[0].message);
  return value;
}

/**
 * Parses a deployment hash flag (`--deployment-hash`, a run's `--deployment`).
 *
 * @param value The flag's value.
 * @returns The hash.
 * @throws {InvalidArgumentError} When it is not a valid deployment hash (exit code 2).
 */
export function parseDeploymentHash(value: string): string {
  if (!DEPLOYMENT_HASH_PATTERN.test(value)) {
    throw new InvalidArgumentError(`must be ${DEPLOYMENT_HASH_RULE}`);
  }
  return value;
}

const NEWLINE = new Uint8Array([0x0a]);

/**
 * Prints what a finished command wrote: its stdout byte for byte on standard output (so that
 * `status enqueue "tar cf - ..." --wait > x.tar` works), its stderr byte for byte on standard error
 * (then a line break, when it does not end with one), then notes about dropped output.
 *
 * @param io Where to print.
 * @param record The final command.
 */
export function printOutput(io: Io, record: CommandRecord): void {
  const stdout = outputBytes(record.result, "stdout");
  if (stdout.length > 0) {
    if (io.write) io.write(stdout);
    else io.out(withoutFinalNewline(new TextDecoder().decode(stdout)));
  }
  const stderr = outputBytes(record.result, "stderr");
  if (stderr.length > 0) {
    if (io.writeErr) {
      // Byte for byte too, then a line break when it lacks one: what follows is a line of its own.
      io.writeErr(stderr);
      if (stderr.at(-1) !== 0x0a) io.writeErr(NEWLINE);
    } else io.err(withoutFinalNewline(new TextDecoder().decode(stderr)));
  }
  for (const note of truncationNotes(record)) io.err(note);
}

function withoutFinalNewline(text: string): string {
  return text.endsWith("\n") ? text.slice(0, -1) : text;
}

/** Options of {@link follow}. */
export interface FollowOptions {
  /**
   * What the caller knows the command's status is, printed at once: `"queued"` after an
   * enqueue. Absent: nothing is printed until the dashboard's answer says it.
   */
  known?: "queued";
  /** Stop waiting after this many seconds (`--wait-timeout`). */
  timeoutSecs?: number;
  /**
   * The `--wait-timeout` armed already (it counts the requests made before waiting too), to use
   * instead of arming `timeoutSecs` anew.
   */
  deadline?: AbortSignal;
}

/**
 * Waits for a command to be final, printing progress on stderr (no output: `--json` and
 * `status cancel --wait`); Ctrl-C stops waiting, `timeoutSecs` too (not the command).
 *
 * @param io Where progress goes (stderr).
 * @param client The dashboard.
 * @param id The command.
 * @param options What is known already and how long to wait.
 * @returns The final command, or `null` when Ctrl-C stopped the wait.
 * @throws {WaitTimeoutError} When `timeoutSecs` passed first (exit code 75).
 */
export async function follow(
  io: Io,
  client: OperatorClient,
  id: string,
  options: FollowOptions = {},
): Promise<CommandRecord | null> {
  const interrupt = new AbortController();
  const listening = onSignals(["SIGINT"], () => interrupt.abort(new Error("interrupted")));
  const timeout = options.deadline ??
    (options.timeoutSecs === undefined ? undefined : timeoutSignal(options.timeoutSecs * 1000));
  const signal = timeout ? AbortSignal.any([interrupt.signal, timeout]) : interrupt.signal;
  // The enqueue answer already says "queued": show it at once, then every change.
  if (options.known) io.err(`${id} ${options.known} (${formatElapsed(0)})`);
  let first = true;
  let last: CommandRecord | undefined;
  try {
    return await client.waitForFinal(id, {
      signal,
      onProgress: (record, elapsedMs) => {
        last = record;
        const repeat = first && options.known === record.status && (record.attempt ?? 1) <= 1;
        first = false;
        if (!repeat) io.err(formatProgress(record, elapsedMs));
      },
    });
  } catch (error) {
    if (interrupt.signal.aborted) {
      io.err(
        `stopped waiting for ${id}; the command goes on (see it with: status result ` +
          `${idWord(id)}, cancel it with: status cancel ${idWord(id)})`,
      );
      return null;
    }
    if (timeout?.aborted) {
      throw new WaitTimeoutError(id, options.timeoutSecs!, last?.status ?? options.known);
    }
    throw error;
  } finally {
    listening[Symbol.dispose]();
  }
}

/** What to do after an enqueue of `id` that may have queued it: see it, or send it again. */
function whereQueued(id: string, given: boolean): string {
  const again = given ? "the same command" : `the same command with --id ${id}`;
  return `see it with status result ${idWord(id)}, or send ${again} (the same id and body ` +
    "queue nothing twice)";
}

/**
 * An enqueue that got no answer (a timeout, a lost connection, a failing dashboard) may have
 * queued the command: the error says so, with its id, and how to send it again safely. One cut
 * short by `--wait-timeout` ends the wait as that does (exit 75), saying the same.
 */
function mayBeQueued(
  error: unknown,
  id: string,
  given: boolean,
  deadline?: { signal: AbortSignal; secs: number },
): unknown {
  if (deadline?.signal.aborted) {
    return new WaitTimeoutError(id, deadline.secs, undefined, [
      "the enqueue",
      `the command may have been queued as ${id}, or not: ${whereQueued(id, given)}`,
    ]);
  }
  if (!(error instanceof OperatorError) || !mayHaveArrived(error)) return error;
  return new OperatorError(
    error.kind,
    `${error.message}; the command may have been queued as ${id}: ${whereQueued(id, given)}`,
    { status: error.status, body: error.body, cause: error },
  );
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
        "exit with its exit code (126 rejected, 124 timeout, 137 killed, 1 lost/expired/" +
        `interrupted/cancelled, ${EXIT_WAIT_TIMEOUT} still not final at --wait-timeout)`,
    )
    .argument(
      "<command-line>",
      'the command line, quoted as one argument, e.g. "echo hi" (no shell: the agent splits it ' +
        "and runs only allowlisted programs)",
      parseCommandLine,
    )
    .option(
      "--agent <id>",
      "id of the agent that runs it; repeated, a fan-out run to each agent named",
      collectAgent,
    )
    .option(
      "--id <id>",
      "command id (default: a new UUID); re-sending the same id and command queues nothing " +
        "twice",
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
      "--ttl <secs>",
      "expire the command if no agent has taken it after this many seconds (params.ttl_secs; " +
        "default: the dashboard's QUEUE_TTL_SECS)",
      wholeNumberParser(1, MAX_TTL_SECS),
    )
    .option(
      "--wait",
      "wait for the result: progress on stderr, then the command's stdout/stderr (on a " +
        "terminal with control characters shown as escapes); exit with its exit code",
    )
    .addOption(waitTimeoutOption("--wait", "the command goes on"))
    .option("--json", "print the command as JSON (the final one with --wait)");
  addRunOptions(command as unknown as Command<[string], Record<string, unknown>>);
  addSettingOptions(command, ["operator"]);
  command.addHelpText(
    "after",
    `
Examples:
  status enqueue "echo hi" --agent test-agent --wait
  status enqueue "df -h /tmp" --agent web-1 --id disk-check-1 --timeout 30 --json
  id=$(status enqueue "sleep 60" --agent web-1) && status cancel "$id"
  status enqueue "uname -a" --agent web-1 --ttl 300 --wait-timeout 60   (exit 75: still not done)
  status enqueue "tar cf - /tmp/report" --agent web-1 --wait > report.tar
  status enqueue "df -h /tmp" --deployment prod --label role=web --max-concurrency 10% --max-errors 2 --wait`,
  );
  command.action(async (commandLine, options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    const params: CommandParams = {};
    if (options.timeout !== undefined) params.timeout_secs = options.timeout;
    if (options.priority !== undefined) params.priority = options.priority as Priority;
    if (options.deploymentHash !== undefined) params.deployment_hash = options.deploymentHash;
    if (options.ttl !== undefined) params.ttl_secs = options.ttl;
    const wait = options.wait || options.waitTimeout !== undefined;
    // `--wait-timeout` counts from the start: a dashboard that does not answer the enqueue too.
    const deadline = options.waitTimeout === undefined
      ? undefined
      : { signal: timeoutSignal(options.waitTimeout * 1000), secs: options.waitTimeout };
    if (wantsRun(options as RunFlags)) {
      // A fan-out run (status run start): the target and rate flags are the run's.
      const request = runRequestOf(commandLine, options as RunFlags, params, runIdOf(options.id));
      await startRun(io, client, request, {
        wait,
        json: options.json,
        waitTimeoutSecs: options.waitTimeout,
      });
      return;
    }
    const agentId = options.agent?.[0];
    if (agentId === undefined) {
      throw new UsageError(
        "name the agent with --agent, or a group with --deployment/--label (a fan-out run)",
      );
    }
    // An id of its own, as the dashboard would give one: when the answer is lost (a timeout), the
    // command may be queued, and only its id tells where to look and sends it again safely.
    const sentId = options.id ?? crypto.randomUUID();
    let answer;
    {
      // Ctrl-C before the answer: the enqueue may have reached the dashboard all the same.
      using request = requestSignals(deadline?.signal);
      try {
        answer = await client.enqueue({
          agentId,
          name: commandLine,
          id: sentId,
          params,
          signal: request.signal,
        });
      } catch (error) {
        if (request.interrupted.aborted) {
          io.err(
            `stopped before the dashboard answered; the command may have been queued as ` +
              `${sentId}, or not: ${whereQueued(sentId, options.id !== undefined)}`,
          );
          setExitCode(130);
          return;
        }
        throw mayBeQueued(error, sentId, options.id !== undefined, deadline);
      }
    }
    const id = answer.id;
    if (answer.warning) io.err(`warning: ${errorLine(answer.warning)}`);
    if (!wait) {
      if (options.json) {
        // Queued already: a failure to read it back, or Ctrl-C during it, must not look like a
        // failed enqueue, nor end without a word.
        using reading = requestSignals();
        const record = await client.getCommand(id, reading.signal).catch((error) => {
          if (reading.interrupted.aborted) return null;
          throw new OperatorError(
            error instanceof OperatorError ? error.kind : "request",
            `${id} was queued for agent ${agentId}, but reading it back failed: ` +
              `${(error as Error).message} (see it with: status result ${idWord(id)})`,
            { cause: error },
          );
        });
        if (record === null) {
          io.err(
            `stopped while reading it back; ${id} was queued for agent ${agentId} (see it with: ` +
              `status result ${idWord(id)})`,
          );
          setExitCode(130);
          return;
        }
        io.out(JSON.stringify(record, null, 2));
      } else {
        io.out(id);
        // A duplicate was enqueued before and may have run already: say where it is now (Ctrl-C
        // meanwhile: say what is known).
        using reading = requestSignals();
        const now = answer.duplicate
          ? await client.getCommand(id, reading.signal).then((c) => `; it is ${c.status}`, () => "")
          : "";
        io.err(
          `${answer.duplicate ? `already enqueued (same id and body${now})` : "queued"}: ${id} ` +
            `for agent ${agentId}; see it with: status result ${idWord(id)}`,
        );
        if (reading.interrupted.aborted) setExitCode(130);
      }
      return;
    }
    // A duplicate may be anywhere in its life already: let the dashboard say where. With --json
    // only the final command is printed; otherwise its output as it arrives.
    const known = answer.duplicate ? undefined : "queued" as const;
    const record = options.json
      ? await follow(io, client, id, {
        known,
        timeoutSecs: options.waitTimeout,
        deadline: deadline?.signal,
      })
      : await followAndPrint(io, writerFor(io), client, id, {
        announceQueued: known !== undefined,
        timeoutSecs: options.waitTimeout,
        deadline: deadline?.signal,
      });
    if (record === null) {
      setExitCode(130);
      return;
    }
    if (options.json) io.out(JSON.stringify(record, null, 2));
    setExitCode(exitCodeOf(record));
  });
  return command as unknown as Command;
}
