/**
 * Fan-out runs from the command line: `status run start|show|list|cancel`, and
 * `status enqueue "<cmd>" --deployment/--label ...` (a run instead of one command).
 *
 * With `--wait` (or `status run show --follow`) the run is followed (one line on stderr per agent
 * whose state changes), then a table (agent, status, exit code, duration, first line of output) is
 * printed and the exit code says whether every agent succeeded: 0 all succeeded, 1 otherwise, 130
 * when Ctrl-C stopped waiting, 75 when `--wait-timeout` passed first (the run goes on).
 *
 * @module
 */
import { Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { addSettingOptions, givenOnce, loadCommandSettings, noAdminTokenReason } from "./common.ts";
import { setExitCode } from "./exit.ts";
import type { Io } from "./io.ts";
import { errorLine } from "./error_line.ts";
import {
  parseAgentId,
  parseCommandLine,
  parseDeploymentHash,
  wholeNumberParser,
} from "./enqueue.ts";
import { type CommandParams, PRIORITIES, type Priority, visibleText } from "../protocol/mod.ts";
import {
  type Labels,
  type MaxConcurrency,
  parseLabels,
  parseMaxConcurrency,
  RESERVED_RUN_ID,
  RUN_ID_PATTERN,
  RUN_ID_RULE,
  RUN_LIST_LIMIT,
  type RunRequest,
} from "../protocol/runs.ts";
import {
  EXIT_WAIT_TIMEOUT,
  idWord,
  type OperatorClient,
  operatorClientFromSettings,
  OperatorError,
} from "../operator/mod.ts";
import {
  cancelRun,
  createRun,
  formatRunSummary,
  formatRunTable,
  getRun,
  listRuns,
  type RunAnswer,
  runEnded,
  waitForRun,
} from "../operator/run_client.ts";
import { UsageError } from "../errors.ts";
import { describeFetchFailure } from "../fetch_failure.ts";
import { timeoutSignal } from "../clock.ts";
import { requestSignals, waitSignals, waitTimeoutOption } from "./interrupt.ts";

function parseRunId(value: string): string {
  if (!RUN_ID_PATTERN.test(value)) {
    throw new InvalidArgumentError(`must be ${RUN_ID_RULE}`);
  }
  return value;
}

/** Parses the id of a run to start (`--id`): a run id, and not the one the dashboard refuses. */
function parseNewRunId(value: string): string {
  if (parseRunId(value) === RESERVED_RUN_ID) {
    throw new InvalidArgumentError(
      `must not be "${RESERVED_RUN_ID}": the dashboard refuses it (the console's page of that ` +
        "run would be its start-a-run form)",
    );
  }
  return value;
}

/**
 * Collects a repeatable `--agent <id>` flag.
 *
 * @param value This occurrence's value.
 * @param previous The ids of the occurrences before it.
 * @returns Every id given so far, in order.
 * @throws {InvalidArgumentError} When it is not a valid agent id (exit code 2).
 */
export function collectAgent(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), parseAgentId(value)];
}

function collectLabels(value: string, previous: Labels | undefined): Labels {
  // `--label "$ROLE"` with ROLE unset would otherwise narrow nothing: `--deployment prod` alone
  // then reaches every agent of prod.
  if (value.trim() === "") throw new InvalidArgumentError("must be key=value, got an empty value");
  let labels: Labels;
  try {
    labels = parseLabels(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  for (const key of Object.keys(labels)) {
    if (previous && key in previous) throw new InvalidArgumentError(`label ${key} is given twice`);
  }
  return { ...previous, ...labels };
}

function concurrencyParser(value: string): MaxConcurrency {
  try {
    return parseMaxConcurrency(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** The run flags shared by `status run start` and `status enqueue`. */
export interface RunFlags {
  agent?: string | string[];
  deployment?: string;
  label?: Labels;
  maxConcurrency?: MaxConcurrency;
  maxErrors?: number;
  ttl?: number;
}

/**
 * Adds the target and rate flags of a run to a command (`--agent` is the command's own).
 *
 * @param command `status run start` or `status enqueue`.
 * @returns The same command.
 */
export function addRunOptions<C extends Command<[string], Record<string, unknown>>>(
  command: C,
): C {
  command
    .option(
      "--deployment <hash>",
      "fan-out: every agent whose heartbeat names this deployment (its commands are delivered " +
        "only there)",
      givenOnce(
        "a run targets one deployment (labels add up, deployments do not)",
        parseDeploymentHash,
      ),
    )
    .option(
      "--label <key=value>",
      "fan-out: only agents carrying this label (AGENT_LABELS); repeat or separate with commas",
      collectLabels,
    )
    .option(
      "--max-concurrency <n|p%>",
      "fan-out: at most this many commands at once, or this share of the agents (default all)",
      concurrencyParser,
    )
    .option(
      "--max-errors <n>",
      "fan-out: start no more commands after more than n failures; the rest end skipped",
      wholeNumberParser(0, 100_000),
    );
  return command;
}

/**
 * Whether the flags ask for a fan-out run (rather than one command for one agent).
 *
 * @param flags The parsed flags.
 */
export function wantsRun(flags: RunFlags): boolean {
  return flags.deployment !== undefined || flags.label !== undefined ||
    flags.maxConcurrency !== undefined || flags.maxErrors !== undefined ||
    (Array.isArray(flags.agent) && new Set(flags.agent).size > 1);
}

/**
 * Builds the request of a run from the flags.
 *
 * @param commandLine The command line.
 * @param flags Target, rate and params.
 * @param params The command params.
 * @param id The run id, if given.
 * @throws {UsageError} When no target is named.
 */
export function runRequestOf(
  commandLine: string,
  flags: RunFlags,
  params: CommandParams,
  id?: string,
): RunRequest {
  const agents = flags.agent === undefined
    ? undefined
    : Array.isArray(flags.agent)
    ? flags.agent
    : [flags.agent];
  if (agents === undefined && flags.deployment === undefined && flags.label === undefined) {
    throw new UsageError(
      "a fan-out run needs a target: --agent (repeatable), --deployment or --label",
    );
  }
  const request: RunRequest = {
    name: commandLine,
    params,
    target: {},
  };
  if (id !== undefined) request.id = id;
  if (agents) request.target.agents = [...new Set(agents)];
  if (flags.deployment !== undefined) request.target.deployment = flags.deployment;
  if (flags.label !== undefined) request.target.labels = flags.label;
  if (flags.maxConcurrency !== undefined) request.max_concurrency = flags.maxConcurrency;
  if (flags.maxErrors !== undefined) request.max_errors = flags.maxErrors;
  return request;
}

/**
 * Creates a run and, with `wait`, follows it to its end and prints its table.
 *
 * @param io Where it prints.
 * @param client The dashboard.
 * @param request The run.
 * @param options `wait`, `json` and `waitTimeoutSecs` (`--wait-timeout`: exit 75 when it passes).
 */
export async function startRun(
  io: Io,
  client: OperatorClient,
  request: RunRequest,
  options: { wait?: boolean; json?: boolean; waitTimeoutSecs?: number },
): Promise<void> {
  // An id of its own, as the dashboard would give one: when the answer is lost (a timeout), the
  // run may exist, and only its id tells where to look and sends it again without a second run.
  const id = request.id ?? crypto.randomUUID();
  // `--wait-timeout` counts from the start: a dashboard that does not answer the creation too.
  const started = performance.now();
  const secs = options.wait ? options.waitTimeoutSecs : undefined;
  const deadline = secs === undefined ? undefined : timeoutSignal(secs * 1000);
  let created: RunAnswer;
  {
    // Ctrl-C before the answer: the creation may have reached the dashboard all the same.
    using sending = requestSignals(deadline);
    try {
      created = await createRun(client, { ...request, id }, sending.signal);
    } catch (error) {
      if (sending.interrupted.aborted) {
        io.err(
          `stopped before the dashboard answered; ${mayExistAdvice(id, request.id !== undefined)}`,
        );
        setExitCode(130);
        return;
      }
      if (deadline?.aborted) {
        throw new RunWaitTimeoutError(
          id,
          secs!,
          false,
          mayExistAdvice(id, request.id !== undefined),
        );
      }
      throw mayExist(error, id, request.id !== undefined);
    }
  }
  for (const warning of created.warnings ?? []) io.err(`warning: ${errorLine(String(warning))}`);
  if (!options.wait) {
    if (options.json) io.out(JSON.stringify(created, null, 2));
    else {
      io.out(created.id);
      io.err(
        `${created.duplicate ? "run exists (same id and body)" : "run created"}: ${created.id} ` +
          `for ${created.totals.total} agent(s), at most ${created.max_concurrency} at once; ` +
          `follow it with: status run show --follow ${idWord(created.id)}`,
      );
    }
    return;
  }
  io.err(runStartLine(created));
  await followRun(io, client, created.id, options.json ?? false, created, secs, {
    elapsedMs: performance.now() - started,
  });
}

/**
 * Whether a request that failed may still have been carried out by the dashboard: no answer came
 * (a timeout, a connection lost once made), the dashboard failed on it (`5xx`) or answered it with
 * a body that is not the protocol's (an id that is not a command id). A connection refused, a host
 * name that does not resolve or a TLS handshake that failed sent nothing.
 *
 * @param error What the request threw.
 * @returns `true` when the dashboard may have done what was asked.
 */
export function mayHaveArrived(error: OperatorError): boolean {
  if (error.kind === "timeout" || error.kind === "server" || error.kind === "invalid_answer") {
    return true;
  }
  if (error.kind !== "connection") return false;
  return !NOT_SENT.test(describeFetchFailure(error.cause));
}

/** What {@link describeFetchFailure} says of a request that never reached a dashboard. */
const NOT_SENT =
  /^(connection refused|the host name does not resolve|the TLS handshake failed|it answered, but not in HTTP)/;

/**
 * A run's creation that got no answer (a timeout, a lost connection, a failing dashboard) may have
 * happened: the error says so, with the run's id, and how to send it again safely.
 */
function mayExist(error: unknown, id: string, given: boolean): unknown {
  if (!(error instanceof OperatorError) || !mayHaveArrived(error)) return error;
  return new OperatorError(
    error.kind,
    `${error.message}; ${mayExistAdvice(id, given)}`,
    { status: error.status, body: error.body, cause: error },
  );
}

/** What to do after a creation of run `id` that may have happened: see it, or send it again. */
function mayExistAdvice(id: string, given: boolean): string {
  const again = given ? "the same command" : `the same command with --id ${id}`;
  return `the run may have been created as ${id}: see it with status run show ${idWord(id)}, ` +
    `or send ${again} (the same id and body start nothing twice)`;
}

/**
 * Follows a run to its end: a line on stderr per agent that changes state, then the table (or
 * the run as JSON) on stdout; sets the exit code (0 all succeeded, 1 otherwise, 130 Ctrl-C).
 *
 * @param io Where it prints.
 * @param client The dashboard.
 * @param id The run.
 * @param json Print the final run as JSON instead of a table.
 * @param first The run as known already.
 * @param timeoutSecs Stop waiting after this many seconds (`--wait-timeout`): exit 75.
 * @param options `elapsedMs`: how much of `timeoutSecs` was spent already (the first read).
 */
export async function followRun(
  io: Io,
  client: OperatorClient,
  id: string,
  json: boolean,
  first?: RunAnswer,
  timeoutSecs?: number,
  options: { elapsedMs?: number } = {},
): Promise<void> {
  const seen = new Map<string, string>();
  for (const agent of first?.agents ?? []) seen.set(agent.agent_id, agent.state);
  using waiting = waitSignals(
    timeoutSecs === undefined
      ? undefined
      : Math.max(0.001, timeoutSecs - (options.elapsedMs ?? 0) / 1000),
  );
  let run: RunAnswer;
  try {
    run = await waitForRun(client, id, {
      signal: waiting.signal,
      onProgress: (current) => {
        for (const agent of current.agents) {
          if (seen.get(agent.agent_id) === agent.state) continue;
          seen.set(agent.agent_id, agent.state);
          const exit = agent.exit_code === null ? "" : ` exit ${agent.exit_code}`;
          io.err(visibleText(`${agent.agent_id}: ${agent.state}${exit}`));
        }
      },
    });
  } catch (error) {
    if (waiting.interrupted.aborted) {
      io.err(
        `stopped waiting for run ${id}; it goes on (see it with: status run show ` +
          `${idWord(id)}, cancel it with: status run cancel ${idWord(id)})`,
      );
      setExitCode(130);
      return;
    }
    if (waiting.timedOut?.aborted) throw new RunWaitTimeoutError(id, timeoutSecs!);
    throw error;
  }
  printRun(io, run, json);
  setExitCode(run.status === "succeeded" ? 0 : 1);
}

function printRun(io: Io, run: RunAnswer, json: boolean): void {
  if (json) {
    io.out(JSON.stringify(run, null, 2));
    return;
  }
  for (const line of formatRunTable(run)) io.out(line);
  io.out(formatRunSummary(run));
}

/** `--wait-timeout` passed before the run ended; the run goes on. Exit code 75. */
export class RunWaitTimeoutError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode: number = EXIT_WAIT_TIMEOUT;

  /**
   * Makes the error.
   *
   * @param id The run.
   * @param secs The `--wait-timeout`.
   * @param heard Whether the dashboard said anything of the run meanwhile; when it did not (a
   *   dashboard that does not answer), nothing is said of the run.
   * @param unsent When the dashboard did not answer the run's creation: what to do, said instead
   *   (the run may exist or not).
   */
  constructor(id: string, secs: number, heard = true, unsent?: string) {
    super(
      unsent !== undefined
        ? `stopped waiting for run ${id} after ${secs} s (--wait-timeout): the dashboard has ` +
          `not answered its creation in that time; ${unsent}`
        : heard
        ? `run ${id} has not ended after ${secs} s (--wait-timeout); stopped waiting, the run ` +
          `goes on (see it with: status run show ${idWord(id)}, cancel it with: status run ` +
          `cancel ${idWord(id)})`
        : `stopped waiting for run ${id} after ${secs} s (--wait-timeout): the dashboard has ` +
          `not answered about it in that time, so whether it has ended is not known (see it ` +
          `with: status run show ${idWord(id)})`,
    );
    this.name = "RunWaitTimeoutError";
  }
}

function paramsOf(options: { timeout?: number; priority?: string; ttl?: number }): CommandParams {
  const params: CommandParams = {};
  if (options.timeout !== undefined) params.timeout_secs = options.timeout;
  if (options.priority !== undefined) params.priority = options.priority as Priority;
  if (options.ttl !== undefined) params.ttl_secs = options.ttl;
  return params;
}

/**
 * Builds `status run` and its subcommands.
 *
 * @param io Where the commands print.
 * @returns The command.
 */
export function runCommand(io: Io): Command {
  const run = new Command("run").description(
    "Fan-out runs: one command to a group of agents (by id, deployment, labels), at most " +
      "--max-concurrency at once, starting no more once more than --max-errors have failed",
  );

  const start = new Command("start")
    .description(
      "Start a run; with --wait follow it, print a table (agent, status, exit, duration, first " +
        "line of output) and exit 0 only when every agent succeeded",
    )
    .argument(
      "<command-line>",
      'the command line, quoted as one argument, e.g. "df -h /tmp"',
      parseCommandLine,
    )
    .option(
      "--agent <id>",
      "fan-out: this agent (repeatable); with other target flags all must match",
      collectAgent,
    )
    .option(
      "--id <id>",
      "run id (default: a random one, named when the answer is lost); re-sending the same id " +
        "and body starts nothing twice",
      parseNewRunId,
    )
    .option(
      "--timeout <secs>",
      "deadline of each command on its agent (params.timeout_secs)",
      wholeNumberParser(1, 86_400),
    )
    .option(
      "--ttl <secs>",
      "queue expiry of each command (params.ttl_secs): an offline agent's command expires",
      wholeNumberParser(1, 30 * 86_400),
    )
    .addOption(
      new Option("--priority <priority>", "queue priority (default normal)").choices(PRIORITIES),
    )
    .option("--wait", "follow the run to its end; exit 0 only when every agent succeeded")
    .addOption(waitTimeoutOption("--wait", "the run goes on"))
    .option("--json", "print the run as JSON (the final one with --wait)");
  addRunOptions(start as unknown as Command<[string], Record<string, unknown>>);
  addSettingOptions(start, ["operator"]);
  start.addHelpText(
    "after",
    `
Examples:
  status run start "df -h /tmp" --deployment prod --label role=web --max-concurrency 10% --max-errors 2 --wait
  status run start "uname -a" --agent web-1 --agent web-2 --json`,
  );
  start.action(async (commandLine, options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    const flags = options as RunFlags & { wait?: boolean; json?: boolean };
    await startRun(io, client, runRequestOf(commandLine, flags, paramsOf(options), options.id), {
      wait: flags.wait || options.waitTimeout !== undefined,
      json: flags.json,
      waitTimeoutSecs: options.waitTimeout,
    });
  });

  const show = new Command("show")
    .description("Show a run: its totals and one line per agent (--follow: until it ends)")
    .argument("<id>", "the run id", parseRunId)
    .option("--json", "print the run as JSON")
    .option("--follow", "follow it to its end; exit 0 only when every agent succeeded")
    .addOption(waitTimeoutOption("--follow", "the run goes on"));
  addSettingOptions(show, ["operator"]);
  show.action(async (id, options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    const follow = options.follow || options.waitTimeout !== undefined;
    // `--wait-timeout` counts from the start: a dashboard slow to answer the first read too.
    const started = performance.now();
    const timedOut = options.waitTimeout === undefined
      ? undefined
      : timeoutSignal(options.waitTimeout * 1000);
    const current = await getRun(client, id, timedOut).catch((error) => {
      throw timedOut?.aborted ? new RunWaitTimeoutError(id, options.waitTimeout!, false) : error;
    });
    if (follow && !runEnded(current)) {
      await followRun(io, client, id, options.json ?? false, current, options.waitTimeout, {
        elapsedMs: performance.now() - started,
      });
      return;
    }
    printRun(io, current, options.json ?? false);
    if (follow) setExitCode(current.status === "succeeded" ? 0 : 1);
  });

  const list = new Command("list")
    .description("List runs, newest first")
    .option("--open", "only runs that have not ended")
    .option(
      "--limit <n>",
      `at most this many (default ${RUN_LIST_LIMIT.default})`,
      wholeNumberParser(1, RUN_LIST_LIMIT.max),
    )
    .option("--json", "print the runs as JSON");
  addSettingOptions(list, ["operator"]);
  list.action(async (options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    const runs = await listRuns(client, { open: options.open, limit: options.limit });
    if (options.json) {
      io.out(JSON.stringify(runs, null, 2));
      return;
    }
    if (runs.length === 0) io.err("no runs");
    // One line a run, whatever its name and time hold.
    for (const r of runs) io.out(visibleText(`${formatRunSummary(r)}  ${r.created_at}  ${r.name}`));
  });

  const cancel = new Command("cancel")
    .description(
      "Cancel a run: nothing more starts (the rest end skipped), queued commands are cancelled, " +
        "running ones are stopped by their agents",
    )
    .argument("<id>", "the run id", parseRunId);
  addSettingOptions(cancel, ["operator"]);
  cancel.action(async (id, options) => {
    const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
    const { settings } = loaded;
    const client = operatorClientFromSettings(settings, noAdminTokenReason(loaded));
    // Ctrl-C before the answer: the cancel may have reached the dashboard all the same.
    let after: RunAnswer;
    {
      using sending = requestSignals();
      try {
        after = await cancelRun(client, id, sending.signal);
      } catch (error) {
        if (!sending.interrupted.aborted) throw error;
        io.err(
          `stopped before the dashboard answered; whether the cancel reached run ${id} is not ` +
            `known (see it with: status run show ${idWord(id)})`,
        );
        setExitCode(130);
        return;
      }
    }
    io.out(`cancelled run ${id}`);
    io.err(formatRunSummary(after));
  });

  run.addCommand(start as unknown as Command);
  run.addCommand(show as unknown as Command);
  run.addCommand(list as unknown as Command);
  run.addCommand(cancel as unknown as Command);
  return run as unknown as Command;
}

/**
 * The line `status run start` prints before it follows a run: its agents, its concurrency and
 * when it stops early.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runStartLine } from "./run.ts";
 *
 * assert.equal(
 *   runStartLine({ id: "r1", totals: { total: 3 }, max_concurrency: 1, max_errors: 0 }),
 *   "run r1: 3 agent(s), at most 1 at once, stop after 1 failure",
 * );
 * assert.equal(
 *   runStartLine({ id: "r2", totals: { total: 9 }, max_concurrency: 3, max_errors: 2 }),
 *   "run r2: 9 agent(s), at most 3 at once, stop after 3 failures",
 * );
 * ```
 *
 * @param run The run as created.
 * @returns The line.
 */
export function runStartLine(
  run: {
    id: string;
    totals: Record<string, number>;
    max_concurrency: number;
    max_errors: number | null;
  },
): string {
  const stopAfter = run.max_errors === null ? null : run.max_errors + 1;
  return `run ${run.id}: ${run.totals.total} agent(s), at most ${run.max_concurrency} at once` +
    (stopAfter === null
      ? ""
      : `, stop after ${stopAfter} ${stopAfter === 1 ? "failure" : "failures"}`);
}
