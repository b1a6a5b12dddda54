/**
 * Runs one command line under a policy: no shell, its own process group, a minimal environment,
 * a deadline in phases (warn, SIGTERM, SIGKILL), bounded output, and nothing left behind.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { ExecResultBody, ReportStatus } from "../protocol/schemas.ts";
import { shownValue } from "../protocol/short_form.ts";
import { captureStream, type OutputCaptureOptions } from "./capture.ts";
import {
  AGENT_SECRET_ENV_NAMES,
  buildChildEnv,
  type EnvReader,
  pathForUser,
  pathOthersCannotWrite,
  pathUserCannotWrite,
  readAgentEnv,
  validateExtraEnv,
} from "./env.ts";
import { describeMemorySize } from "./cgroup.ts";
import { parseCommandLine } from "./parse.ts";
import { type OnOutput, tapOutput } from "./tap.ts";
import { type ExecPolicy, optionVariableReason, PolicyChecker } from "./policy.ts";
import {
  type Cell,
  type LimitCounts,
  type ProcessRecord,
  Sandbox,
  setsidExecFailure,
  unenterableBy,
  unrunnableBy,
} from "./sandbox.ts";
import { DEFAULT_COMMAND_TIMEOUT_SECS, DEFAULT_MAX_TIMEOUT_SECS } from "../defaults.ts";
import { type Clock, monotonicNow, systemClock, type TimerId } from "../clock.ts";
import { ownUid } from "../own_files.ts";
import { checkOptionNames, type OptionNames } from "../options.ts";

const log = logger("exec");

/** Grace between SIGTERM and SIGKILL when a run is cancelled, in milliseconds. */
export const DEFAULT_CANCEL_GRACE_MS = 2000;
/**
 * How long output is still read after the command exited and its group was killed, in
 * milliseconds; a process outside the group that holds the pipe cannot keep the run open longer.
 */
export const DEFAULT_DRAIN_MS = 250;
/**
 * How long a run waits for the removal of the command's own directories before it returns its
 * result, in milliseconds: a command that left millions of files is reported on time (its
 * execution lease), and the removal goes on (the sandbox's close waits for it).
 */
export const DEFAULT_REMOVAL_WAIT_MS = 5000;
/**
 * How long a run waits for the command's first process to end after SIGKILL before it gives up on
 * it, in milliseconds: a process in uninterruptible sleep (state D: a hung NFS mount, a failing
 * disk) does not end on SIGKILL, and the agent must not wait for it without bound.
 */
export const DEFAULT_KILL_WAIT_MS = 30_000;

/** Fractions of the deadline at which each phase starts, measured from spawn. */
export const DEADLINE_PHASES: Readonly<{ warning: number; terminate: number; kill: number }> =
  Object.freeze({ warning: 0.8, terminate: 0.9, kill: 1 });

/** The statuses a run can end with (every report status except `interrupted`). */
export type ExecStatus = Exclude<ReportStatus, "interrupted">;

/** Why a program could not be started. */
export type StartFailure = "not_found" | "not_executable" | "spawn_failed";

/**
 * The result of {@link runCommand}: the wire fields of a report's `result` plus the status, the
 * error and a few local details.
 */
export interface ExecResult extends ExecResultBody {
  /** How the run ended. */
  status: ExecStatus;
  /** Why it was rejected, failed, timed out, was killed or cancelled; `null` on success. */
  error: string | null;
  /** The resolved program that ran (absolute path), or `null` when none was found. */
  program: string | null;
  /** The argv as parsed, or `null` when the line could not be parsed. */
  argv: string[] | null;
  /** The deadline applied, in seconds. */
  timeout_secs: number;
  /** Why the program could not be started, when it could not. */
  start_failure: StartFailure | null;
  /** When the run started (spawn, or the check that refused it), ISO 8601. */
  started_at: string;
  /** When the run ended, ISO 8601. */
  completed_at: string;
}

/** What {@link CommandOptions.onWarning} receives when a command reaches 80 % of its deadline. */
export interface DeadlineWarning {
  /** The process id (and process group id) of the command. */
  pid: number;
  /** Seconds since spawn. */
  elapsedSecs: number;
  /** The deadline, in seconds. */
  timeoutSecs: number;
}

/**
 * What stays the same for every command of an executor: the options of a {@link CommandRunner},
 * and the part of {@link RunOptions} that is not about one command.
 */
export interface RunnerOptions {
  /** Which programs and paths are allowed. */
  policy: ExecPolicy;
  /**
   * The deadline when the command asks for none (`COMMAND_TIMEOUT_SECS`).
   * @default {300}
   */
  defaultTimeoutSecs?: number;
  /**
   * The largest deadline a command may ask for.
   * @default {3600}
   */
  maxTimeoutSecs?: number;
  /**
   * Working directory of the command (`COMMAND_CWD`). Relative arguments resolve against it, so a
   * directory under an allowed prefix keeps them there too.
   * @default {the agent's own working directory}
   */
  cwd?: string;
  /** Extra environment variables, checked with `validateExtraEnv`. */
  extraEnv?: Readonly<Record<string, string>>;
  /**
   * Secret values that no extra variable may hold, besides the agent's own `AGENT_TOKEN` and
   * `STATUS_ADMIN_TOKEN` (read from its environment when permitted).
   */
  secretValues?: readonly string[];
  /**
   * Grace between SIGTERM and SIGKILL on cancellation, in milliseconds.
   * @default {2000}
   */
  cancelGraceMs?: number;
  /**
   * How long output is still read after the command exited, in milliseconds.
   * @default {250}
   */
  drainMs?: number;
  /**
   * How long the result waits for the removal of the command's own directories, in milliseconds;
   * the removal goes on after it.
   * @default {5000}
   */
  removalWaitMs?: number;
  /**
   * How long the command's first process may take to end after SIGKILL (the deadline's or a
   * cancel's), in milliseconds. A process that has not ended by then (one in uninterruptible sleep,
   * state D, cannot) is left behind: the run ends at once with the reason in `error` (status
   * `killed` at a deadline, `cancelled` on a cancel; `exit_code` and `signal` `null`), and the
   * process's end, whenever it comes, changes nothing.
   * @default {30000}
   */
  killWaitMs?: number;
  /** @internal Sizes of the kept output head and tail, per stream. */
  capture?: OutputCaptureOptions;
  /** @internal Reads the agent's `PATH`, `HOME` and `LANG`; for tests. */
  readEnv?: EnvReader;
  /**
   * Who the command runs as, where, and how its processes are stopped (see `sandbox.ts`).
   * Without one the command runs as the agent's own user in `cwd` (or the agent's working
   * directory), and its process group is signalled.
   */
  sandbox?: Sandbox;
  /**
   * @internal The time the deadline phases, the cancel grace, the drain and the reported times and
   * durations are measured on; the command itself runs in real time, so a fake clock lets a
   * test drive the phases by advancing it.
   * @default {systemClock}
   */
  clock?: Clock;
}

/** What belongs to one command: the part of {@link RunOptions} given to {@link CommandRunner.run}. */
export interface CommandOptions {
  /** The deadline the command asks for (`params.timeout_secs`), capped by `maxTimeoutSecs`. */
  timeoutSecs?: number;
  /** Cancels the run: SIGTERM to the group, `cancelGraceMs`, then SIGKILL; status `cancelled`. */
  signal?: AbortSignal;
  /** Called once when the command reaches 80 % of its deadline (a warning is logged too). */
  onWarning?: (warning: DeadlineWarning) => void;
  /** Receives every chunk of output as it is read (live output); the capture is unchanged. */
  onOutput?: OnOutput;
  /**
   * @internal Called once the command is spawned with what identifies its processes (its start time is
   * read from `/proc` while the command starts), always before `onExit`.
   */
  onSpawn?: (record: ProcessRecord) => void;
  /**
   * @internal Called the moment the command's first process exited, before its output is collected, with
   * the result minus the output; a caller records it durably so that a crash right after still
   * knows how the command ended.
   */
  onExit?: (exit: ExitRecord) => void;
}

/** Options of {@link runCommand}: those of the runner and those of the command. */
export interface RunOptions extends RunnerOptions, CommandOptions {}

/** How a command ended, known the moment it exited (a result without its output). */
export type ExitRecord = Pick<
  ExecResult,
  "status" | "exit_code" | "signal" | "duration_secs" | "error" | "started_at" | "completed_at"
>;

function checkPositive(name: string, value: number | undefined): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of seconds, got ${value}`);
  }
}

function checkNonNegative(name: string, value: number | undefined): void {
  if (value === undefined) return;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative number, got ${value}`);
  }
}

/**
 * The deadline a command gets: the requested one capped by the maximum, else the default (also
 * capped).
 *
 * @param requested `params.timeout_secs`, if any.
 * @param defaultSecs `COMMAND_TIMEOUT_SECS`.
 * @param maxSecs The configured maximum.
 * @returns The deadline in seconds.
 * @throws {RangeError} When a value is not a positive number.
 */
export function effectiveTimeoutSecs(
  requested: number | undefined,
  defaultSecs: number = DEFAULT_COMMAND_TIMEOUT_SECS,
  maxSecs: number = DEFAULT_MAX_TIMEOUT_SECS,
): number {
  checkPositive("timeoutSecs", requested);
  checkPositive("defaultTimeoutSecs", defaultSecs);
  checkPositive("maxTimeoutSecs", maxSecs);
  return Math.min(requested ?? defaultSecs, maxSecs);
}

function roundSecs(ms: number): number {
  return Math.round(ms) / 1000;
}

/** Seconds to three decimals; a deadline below a millisecond keeps its figures (not "0 s"). */
function describeSecs(secs: number): string {
  return `${Number(secs > 0 && secs < 0.001 ? secs.toPrecision(3) : secs.toFixed(3))} s`;
}

/** Refuses a policy that is not an {@link ExecPolicy} (the runner would fail inside). */
function checkPolicyShape(policy: ExecPolicy): void {
  const list = (value: unknown) =>
    Array.isArray(value) && value.every((item) => typeof item === "string");
  if (
    policy === null || typeof policy !== "object" || !list(policy.allowedPrograms) ||
    !list(policy.allowedPathPrefixes) ||
    (policy.protectedPaths !== undefined && !list(policy.protectedPaths))
  ) {
    throw new TypeError(
      "policy must be an ExecPolicy (arrays of strings allowedPrograms and allowedPathPrefixes: " +
        `use createPolicy or defaultPolicy), got ${shownValue(policy)}`,
    );
  }
}

/**
 * Runs one command line: parse, check the policy, resolve the program on `PATH`, spawn it in its
 * own process group with a minimal environment and stdin closed, enforce the deadline in phases,
 * capture bounded output, and kill the whole group when the command ends.
 *
 * Never throws for anything the command line or the program does: a refusal is `rejected`, a
 * program that cannot start is `failed` with the reason. Deadline phases, from spawn: at 80 % a
 * warning, at 90 % SIGTERM to the group, at 100 % SIGKILL to the group; the status is `timeout`
 * when the command ended after SIGTERM and `killed` when SIGKILL was needed. A first process that
 * has not ended `killWaitMs` (30 s) after SIGKILL is left behind
 * (see {@link RunnerOptions.killWaitMs}).
 *
 * @param name The command line (a delivered command's `name`).
 * @param options Policy, deadline, working directory, environment and cancellation.
 * @returns The result.
 * @throws {RangeError} When a numeric option is out of range.
 * @throws {TypeError} When `name` is not a string, the options not an object or one of their keys
 *   not an option, the policy not an {@link ExecPolicy}, `cwd` not a directory path, or an extra environment variable is invalid or holds an agent secret.
 *
 * @example Running and refusing
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPolicy, runCommand } from "./mod.ts";
 *
 * const ok = await runCommand("echo hello", { policy: defaultPolicy() });
 * assert.equal(ok.status, "success");
 * assert.equal(ok.stdout, "hello\n");
 *
 * const refused = await runCommand("echo hi > /tmp/x", { policy: defaultPolicy() });
 * assert.equal(refused.status, "rejected");
 * assert.equal(refused.error, `redirection ">" is not allowed`);
 * ```
 */
export async function runCommand(name: string, options: RunOptions): Promise<ExecResult> {
  if (options === null || typeof options !== "object") {
    return await new CommandRunner(options).run(name, options);
  }
  checkOptionNames("runCommand", options, { ...RUNNER_OPTIONS, ...COMMAND_OPTIONS });
  const runnerOptions: Record<string, unknown> = {};
  const commandOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    (Object.hasOwn(RUNNER_OPTIONS, key) ? runnerOptions : commandOptions)[key] = value;
  }
  return await new CommandRunner(runnerOptions as unknown as RunnerOptions).run(
    name,
    commandOptions as CommandOptions,
  );
}

/** Every option of {@link CommandRunner}. */
const RUNNER_OPTIONS: OptionNames<RunnerOptions> = {
  policy: true,
  defaultTimeoutSecs: true,
  maxTimeoutSecs: true,
  cwd: true,
  extraEnv: true,
  secretValues: true,
  cancelGraceMs: true,
  drainMs: true,
  removalWaitMs: true,
  killWaitMs: true,
  capture: true,
  readEnv: true,
  sandbox: true,
  clock: true,
};

/** Every option of {@link CommandRunner.run}. */
const COMMAND_OPTIONS: OptionNames<CommandOptions> = {
  timeoutSecs: true,
  signal: true,
  onWarning: true,
  onOutput: true,
  onSpawn: true,
  onExit: true,
};

/**
 * Runs many commands under the same settings, doing once what does not depend on the command:
 * the options are checked, the agent's environment and permissions read, the extra variables
 * validated, the child's environment built and the policy prepared (its `PATH` lookups are
 * cached) when the runner is made. {@link runCommand} is one run of a
 * runner made for it; an executor keeps one runner.
 *
 * The environment and the agent's working directory are read when the runner is made: a change of
 * the agent's own `PATH`, `HOME` or `LANG`, or a `Deno.chdir`, afterwards is not seen.
 *
 * @example One runner, many commands
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandRunner, defaultPolicy } from "./mod.ts";
 *
 * const runner = new CommandRunner({ policy: defaultPolicy() });
 * assert.equal((await runner.run("echo one")).stdout, "one\n");
 * assert.equal((await runner.run("echo two", { timeoutSecs: 5 })).stdout, "two\n");
 * ```
 */
export class CommandRunner {
  readonly #options: RunnerOptions;
  readonly #checker: PolicyChecker;
  readonly #env: Readonly<Record<string, string>>;
  readonly #cwd: string | undefined;
  readonly #sandbox: Sandbox;
  readonly #clock: Clock;
  readonly #checkCwd: string | undefined;
  /** Whether `HOME` is one of the extra variables, which then wins over the command's own. */
  readonly #homeGiven: boolean;

  /**
   * Prepares the runner.
   *
   * @param options The settings shared by its commands.
   * @throws {RangeError} When a deadline, the cancel grace, the drain or the kill wait is not a
   *   valid number.
   * @throws {TypeError} When the options are not an object or one of their keys not an option, the
   *   policy not an {@link ExecPolicy}, `cwd` not a directory path,
   *   the sandbox not a {@link Sandbox}, or an extra environment variable is invalid, holds a
   *   secret, is one a program loads code from (`LD_PRELOAD`, `BASH_ENV`, `PYTHONPATH`), or is
   *   one an allowed program reads as options (`TAR_OPTIONS` while tar may run, a `GZIP` beyond
   *   compression levels while gzip may).
   */
  constructor(options: RunnerOptions) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`options must be an object with a policy, got ${String(options)}`);
    }
    checkOptionNames("CommandRunner", options, RUNNER_OPTIONS);
    checkPolicyShape(options.policy);
    if (options.sandbox !== undefined && !(options.sandbox instanceof Sandbox)) {
      // Each command failed with "this[#sandbox].open is not a function".
      throw new TypeError(
        `sandbox must be a Sandbox (Sandbox.create), got ${shownValue(options.sandbox)}`,
      );
    }
    if (
      options.cwd !== undefined && (typeof options.cwd !== "string" || options.cwd.trim() === "")
    ) {
      // Each command failed as `working directory "42" does not exist`, and "" ran nowhere.
      throw new TypeError(
        `cwd must be a directory path (or left out for the caller's), got ${
          shownValue(options.cwd)
        }`,
      );
    }
    checkPositive("defaultTimeoutSecs", options.defaultTimeoutSecs);
    checkPositive("maxTimeoutSecs", options.maxTimeoutSecs);
    checkNonNegative("cancelGraceMs", options.cancelGraceMs);
    checkNonNegative("drainMs", options.drainMs);
    checkNonNegative("removalWaitMs", options.removalWaitMs);
    const killWaitMs = options.killWaitMs;
    if (
      killWaitMs !== undefined &&
      (typeof killWaitMs !== "number" || !Number.isFinite(killWaitMs) || killWaitMs <= 0)
    ) {
      throw new RangeError(
        `killWaitMs must be a positive number of milliseconds, got ${killWaitMs}`,
      );
    }
    const extraEnv = options.extraEnv ?? {};
    const readEnv = options.readEnv ?? readAgentEnv;
    const ownSecrets = [...AGENT_SECRET_ENV_NAMES].map(readEnv).filter((v): v is string => !!v);
    validateExtraEnv(extraEnv, [...options.secretValues ?? [], ...ownSecrets]);
    for (const [name, value] of Object.entries(extraEnv)) {
      const reason = optionVariableReason(name, value, options.policy.allowedPrograms);
      if (reason) throw new TypeError(reason);
    }
    this.#options = options;
    this.#checker = new PolicyChecker(options.policy);
    const env = buildChildEnv(extraEnv, readEnv);
    const user = options.sandbox?.user;
    // Programs are looked up, and commands run, on the directories no other user may write, the
    // command user may not change and (unless COMMAND_ENV sets PATH) the command user can search.
    const givenPath = Object.hasOwn(extraEnv, "PATH");
    const absolute = env.PATH;
    const unchangeable = user ? pathUserCannotWrite(absolute, user) : absolute;
    env.PATH = pathOthersCannotWrite(
      user && !givenPath ? pathForUser(absolute, user) : unchangeable,
    );
    // Those the command user cannot enter go without a word (a root agent's /root/... shims).
    const kept = new Set(pathOthersCannotWrite(unchangeable).split(":"));
    const source = (givenPath ? extraEnv.PATH : readEnv("PATH"))?.split(":") ?? [];
    this.pathLeftOut = [
      ...new Set([
        ...source.filter((dir) => !dir.startsWith("/")),
        ...absolute.split(":").filter((dir) => source.includes(dir) && !kept.has(dir)),
      ]),
    ];
    this.#homeGiven = Object.hasOwn(extraEnv, "HOME");
    this.#env = Object.freeze(env);
    this.#cwd = options.sandbox ? options.sandbox.fixedCwd : options.cwd;
    this.#sandbox = options.sandbox ?? Sandbox.unconfined(this.#cwd);
    this.#clock = options.clock ?? systemClock;
    // Relative arguments are checked against where the command runs: a sandbox's shared
    // directory (COMMAND_CWD, or its work root when it may create none), or unconfined, the
    // agent's own working directory (read once: the agent never changes it).
    this.#checkCwd = options.sandbox ? options.sandbox.sharedCwd : this.#cwd ?? currentDirectory();
  }

  /**
   * The entries of the agent's `PATH` (or of a `PATH` among the extra variables) that commands do
   * not get, and programs are not looked up in: relative ones (`.`, an empty one), those every
   * user may write or rename (`/tmp`) and those the command user may (its own).
   */
  readonly pathLeftOut: readonly string[] = [];

  /** The sandbox commands run in: the one given, or an unconfined one made once. */
  get sandbox(): Sandbox {
    return this.#sandbox;
  }

  /**
   * Runs one command line; see {@link runCommand}.
   *
   * @param name The command line (a delivered command's `name`).
   * @param command Its deadline, cancellation and callbacks.
   * @returns The result; never rejects for anything the command line or the program does.
   * @throws {TypeError} When `name` is not a string, `command` not an object or one of its keys not
   *   an option, its `signal` not an
   *   `AbortSignal` or a handler not a function (nothing is started).
   * @throws {RangeError} When `timeoutSecs` is not a positive number.
   */
  async run(name: string, command: CommandOptions = {}): Promise<ExecResult> {
    if (typeof name !== "string") {
      throw new TypeError(`the command line must be a string, got ${shownValue(name)}`);
    }
    if (command === null || typeof command !== "object") {
      throw new TypeError(`the command's options must be an object, got ${String(command)}`);
    }
    checkOptionNames("CommandRunner's run", command, COMMAND_OPTIONS);
    // Checked before the spawn: found after it, the process was left running.
    if (command.signal !== undefined && !(command.signal instanceof AbortSignal)) {
      throw new TypeError(`signal must be an AbortSignal, got ${shownValue(command.signal)}`);
    }
    for (const name of ["onWarning", "onOutput", "onSpawn", "onExit"] as const) {
      if (command[name] !== undefined && typeof command[name] !== "function") {
        throw new TypeError(`${name} must be a function, got ${shownValue(command[name])}`);
      }
    }
    const options = this.#options;
    const timeoutSecs = effectiveTimeoutSecs(
      command.timeoutSecs,
      options.defaultTimeoutSecs,
      options.maxTimeoutSecs,
    );
    const cwd = this.#cwd;
    const env = this.#env;
    const clock = this.#clock;

    const base = {
      timeout_secs: timeoutSecs,
      started_at: new Date(clock.now()).toISOString(),
      argv: null as string[] | null,
      program: null as string | null,
    };
    const notRun = (status: ExecStatus, error: string, startFailure: StartFailure | null = null) =>
      notRunResult(base, status, error, startFailure, clock);

    if (command.signal?.aborted) return notRun("cancelled", "cancelled before it started");

    const parsed = parseCommandLine(name);
    if (!parsed.ok) {
      log.warning("command rejected: {reason}", {
        commandLine: name.length > 256
          ? `${name.slice(0, 256)}… (${name.length} characters)`
          : name,
        reason: parsed.reason,
      });
      return notRun("rejected", parsed.reason);
    }
    base.argv = parsed.value;

    const checked = this.#checker.check(parsed.value, {
      searchPath: env.PATH,
      cwd: this.#checkCwd,
    });
    if (!checked.ok) {
      log.warning("command rejected: {reason}", { argv: parsed.value, reason: checked.reason });
      return notRun("rejected", checked.reason);
    }

    const resolved = this.#checker.resolve(checked.value.program, env.PATH);
    if (!resolved.ok) {
      log.warning("command could not start: {reason}", {
        argv: parsed.value,
        reason: resolved.reason,
      });
      return notRun("failed", resolved.reason, resolved.kind);
    }
    base.program = resolved.path;

    const cwdProblem = cwd === undefined ? undefined : checkDirectory(cwd);
    if (cwdProblem) return notRun("failed", cwdProblem, "spawn_failed");

    let cell: Cell;
    try {
      cell = await this.#sandbox.open({ home: !this.#homeGiven });
    } catch (error) {
      const reason = (error as Error).message;
      log.warning("command could not start: {reason}", { argv: parsed.value, reason });
      return notRun("failed", reason, "spawn_failed");
    }

    let child: Deno.ChildProcess;
    try {
      child = cell.spawn(resolved.path, {
        args: parsed.value.slice(1),
        clearEnv: true,
        env: this.#homeGiven
          ? env
          : { ...env, ...childHome(cell, this.#sandbox.user !== undefined) },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      });
    } catch (error) {
      await cell.close();
      // The kernel says EACCES alike for a program and for a working directory the command user
      // may not enter (COMMAND_CWD): the directory is named when it is the one.
      const user = this.#sandbox.user;
      const blocked = error instanceof Deno.errors.PermissionDenied && user && cell.cwd
        ? unenterableBy(cell.cwd, user)
        : undefined;
      if (blocked !== undefined) {
        const reason = `working directory "${cell.cwd}" cannot be entered by the command user ` +
          `${user!.name} (uid ${user!.uid}, gid ${user!.gid}): ${blocked}`;
        log.warning("command could not start: {reason}", { argv: parsed.value, reason });
        return notRun("failed", reason, "spawn_failed");
      }
      const unrunnable = error instanceof Deno.errors.PermissionDenied
        ? this.#unrunnable(resolved.path)
        : undefined;
      if (unrunnable !== undefined) {
        log.warning("command could not start: {reason}", {
          argv: parsed.value,
          reason: unrunnable,
        });
        return notRun("failed", unrunnable, "not_executable");
      }
      const message = error instanceof Deno.errors.NotCapable
        ? `${(error as Error).message} (the agent needs --allow-run)`
        : (error as Error).message;
      const reason = `program "${resolved.path}" could not be started: ${message}` +
        interpreterNote(resolved.path, error);
      log.warning("command could not start: {reason}", { argv: parsed.value, reason });
      const kind: StartFailure = error instanceof Deno.errors.NotFound
        ? "not_found"
        : error instanceof Deno.errors.PermissionDenied
        ? "not_executable"
        : "spawn_failed";
      return notRun("failed", reason, kind);
    }
    // The record is read while the command starts (see Cell.recordSoon); onExit waits for it.
    const spawned = command.onSpawn &&
      cell.recordSoon().then((record) => {
        if (record) callSafely("onSpawn", () => command.onSpawn?.(record));
      });
    const asked = command.timeoutSecs;
    const cappedFromSecs = asked !== undefined && asked > timeoutSecs ? asked : undefined;
    if (cappedFromSecs !== undefined) {
      log.info(
        "deadline capped at {timeoutSecs} s (asked {askedSecs} s, COMMAND_TIMEOUT_MAX_SECS)",
        {
          argv: parsed.value,
          timeoutSecs,
          askedSecs: cappedFromSecs,
        },
      );
    }
    const context = { ...base, timeoutSecs, cappedFromSecs, spawned };
    const result = await supervise(child, cell, context, options, command, clock);
    if (cell.throughSetsid && result.status === "failed") {
      // Started through setsid: an exec that failed is its exit status, not a spawn error.
      const failed = setsidExecFailure(
        result.exit_code,
        result.stdout,
        result.stderr,
        resolved.path,
      );
      // A program that ran can print the same words and exit so itself: setsid's account is
      // taken only when the program cannot be started now either.
      if (failed && !startable(resolved.path)) {
        const reason =
          (failed.kind === "not_executable" ? this.#unrunnable(resolved.path) : undefined) ??
            `program "${resolved.path}" could not be started: ${failed.reason}` +
              interpreterNote(resolved.path);
        log.warning("command could not start: {reason}", { argv: parsed.value, reason });
        return notRun("failed", reason, failed.kind);
      }
    }
    return result;
  }

  /**
   * Why the command user cannot run a program the agent found (a root agent reaches what
   * `nobody` may not: `/root/...`), or `undefined`.
   */
  #unrunnable(program: string): string | undefined {
    const user = this.#sandbox.user;
    const why = user ? unrunnableBy(program, user) : undefined;
    return why === undefined ? undefined : `program "${program}" cannot be run by the command ` +
      `user ${user!.name} (uid ${user!.uid}, gid ${user!.gid}): ${why}`;
  }
}

/**
 * The `HOME` a command gets instead of the agent's: its own directory; or, for a command user other
 * than the agent's in `COMMAND_CWD`, a new empty one of its own (see {@link Sandbox.open}), or that
 * directory where none can be made (the agent's `HOME`, `/root` say, is none of that user's
 * business and most often closed to it). A `HOME` among the extra variables (`COMMAND_ENV`) wins
 * over all.
 */
function childHome(cell: Cell, otherUser: boolean): { HOME: string } | undefined {
  if (cell.home !== undefined) return { HOME: cell.home };
  if (cell.cwd === undefined || !(cell.ownDir || otherUser)) return undefined;
  return { HOME: cell.cwd };
}

/**
 * Whether the agent could start `program` now: a regular file with execute permission for the
 * agent (its owner's bit when the agent owns it, else the group's or others'), and, for a script,
 * a `#!` line whose interpreter can run. `false` also when that cannot be told (no read
 * permission).
 */
function startable(program: string): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(program);
  } catch {
    return false;
  }
  if (!info.isFile || info.mode === null) return false;
  const uid = ownUid();
  const bits = uid === null || uid === 0 || info.uid === null
    ? 0o111
    : info.uid === uid
    ? 0o100
    : 0o011;
  return (info.mode & bits) !== 0 && interpreterNote(program) === "";
}

/** The most of a script the kernel reads for its `#!` line (`BINPRM_BUF_SIZE`). */
const SHEBANG_BYTES = 256;

/**
 * Why a script's interpreter cannot be run, as a clause to add to the start failure, or `""`: the
 * kernel says "No such file or directory" (or "Permission denied") of a script that is there when
 * the interpreter its `#!` line names is not (a line written on Windows names `/bin/sh\r`).
 *
 * @param program The program that could not be started.
 * @param error The spawn's error, when it threw; only "not found" and "permission denied" are
 *   looked into.
 */
function interpreterNote(program: string, error?: unknown): string {
  if (
    error !== undefined && !(error instanceof Deno.errors.NotFound) &&
    !(error instanceof Deno.errors.PermissionDenied)
  ) {
    return "";
  }
  let head: string;
  try {
    // Only a regular file is opened: a named pipe put in its place would block the open.
    if (!Deno.statSync(program).isFile) return "";
    using file = Deno.openSync(program);
    const buffer = new Uint8Array(SHEBANG_BYTES);
    head = new TextDecoder().decode(buffer.subarray(0, file.readSync(buffer) ?? 0));
  } catch {
    return "";
  }
  if (!head.startsWith("#!")) return "";
  // The kernel ends the interpreter's path at a space, a tab or the line's end.
  const interpreter = head.slice(2).split("\n", 1)[0].replace(/^[ \t]+/, "").split(/[ \t]/, 1)[0];
  const names = `its #! line names the interpreter ${JSON.stringify(interpreter)}`;
  if (interpreter === "") return " (its #! line names no interpreter)";
  const windows = interpreter.endsWith("\r")
    ? "; the line ends with a carriage return (\\r): the script has Windows line ends"
    : "";
  if (!interpreter.startsWith("/")) return ` (${names}, which is not an absolute path${windows})`;
  try {
    const info = Deno.statSync(interpreter);
    if (!info.isFile) return ` (${names}, which is not a file${windows})`;
    if (info.mode !== null && (info.mode & 0o111) === 0) {
      return ` (${names}, which is not executable${windows})`;
    }
  } catch (statError) {
    if (statError instanceof Deno.errors.NotFound) {
      return ` (${names}, which does not exist${windows})`;
    }
  }
  return "";
}

function currentDirectory(): string | undefined {
  try {
    return Deno.cwd();
  } catch {
    return undefined;
  }
}

function checkDirectory(cwd: string): string | undefined {
  try {
    if (!Deno.statSync(cwd).isDirectory) return `working directory "${cwd}" is not a directory`;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined;
    if (error instanceof Deno.errors.NotFound) {
      return `working directory "${cwd}" does not exist`;
    }
    return `working directory "${cwd}" cannot be used: ${(error as Error).message}`;
  }
  return undefined;
}

function notRunResult(
  base: { timeout_secs: number; started_at: string; argv: string[] | null; program: string | null },
  status: ExecStatus,
  error: string,
  startFailure: StartFailure | null,
  clock: Clock,
): ExecResult {
  return {
    status,
    exit_code: null,
    signal: null,
    duration_secs: 0,
    stdout: "",
    stderr: "",
    stdout_truncated_bytes: 0,
    stderr_truncated_bytes: 0,
    error,
    program: base.program,
    argv: base.argv,
    timeout_secs: base.timeout_secs,
    start_failure: startFailure,
    started_at: base.started_at,
    completed_at: new Date(clock.now()).toISOString(),
  };
}

interface RunContext {
  argv: string[] | null;
  program: string | null;
  started_at: string;
  timeoutSecs: number;
  /** The deadline the command asked for, when `maxTimeoutSecs` cut it shorter. */
  cappedFromSecs?: number;
  /** Settles once `onSpawn` was called. */
  spawned: Promise<void> | undefined;
}

function callSafely(what: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    log.error(`${what} callback failed`, { error });
  }
}

/**
 * What the report says of a command whose forks failed at its cgroup's process limit
 * (`COMMAND_MAX_PROCESSES`): the program saw the failure (EAGAIN) and chose its exit status.
 */
function forksRefusedNote(cell: LimitCounts): string | undefined {
  const refused = cell.forksRefused;
  if (refused === 0 || cell.processLimit === undefined) return undefined;
  return `${refused} of its attempts to start a process or thread failed at its limit of ` +
    `${cell.processLimit} (COMMAND_MAX_PROCESSES)`;
}

/**
 * What the report says of a command some of whose processes were killed for going past its
 * cgroup's memory limit (`COMMAND_MAX_MEMORY`): by the kernel's OOM killer, which ends them with
 * SIGKILL, a signal that alone says nothing of why.
 */
function outOfMemoryNote(cell: LimitCounts): string | undefined {
  const killed = cell.oomKills;
  if (killed === 0 || cell.memoryLimit === undefined) return undefined;
  return `out of memory: ${
    killed === 1 ? "1 of its processes was" : `${killed} of its processes were`
  } killed for going past its memory limit of ${
    describeMemorySize(cell.memoryLimit)
  } (COMMAND_MAX_MEMORY)`;
}

/**
 * @internal What a command's cgroup's limits did, as its report says it
 * ({@link forksRefusedNote}, {@link outOfMemoryNote}): none, one or both.
 *
 * @param counts A command's cell, or what a previous run's cgroup counted
 *   ({@link Sandbox.leftoverCounts}).
 * @returns The notes.
 */
export function limitNotes(counts: LimitCounts): string[] {
  return [forksRefusedNote(counts), outOfMemoryNote(counts)].filter((note) => note !== undefined);
}

/**
 * A run's error with what its cgroup's limits did ({@link limitNotes}) added; a command that
 * succeeded all the same has no error to say it in.
 */
function withLimitNotes(error: string | null, cell: Cell): string | null {
  const notes = limitNotes(cell);
  return error && notes.length > 0 ? [error, ...notes].join("; ") : error;
}

/** How a process ended, in words: "it ended by SIGTERM" or "it exited with code 0". */
function howItEnded(signal: string | null, exitCode: number | null): string {
  return signal ? `it ended by ${signal}` : `it exited with code ${exitCode}`;
}

/**
 * The status and the error of a run, from what was sent when (ms since spawn) and how the first
 * process ended (or that it was left behind): every clause is something that happened.
 */
function outcomeOf(
  facts: {
    termAt?: number;
    killAt?: number;
    cancelAt?: number;
    endedAt: number;
    signal: string | null;
    exitCode: number | null;
    /** Set when the process did not end within the kill wait and was left behind. */
    leftBehind?: { pid: number; waitMs: number };
  },
  timeoutSecs: number,
  cappedFromSecs?: number,
): { status: ExecStatus; error: string | null } {
  if (facts.cancelAt === undefined && facts.termAt === undefined) {
    if (facts.exitCode === 0) return { status: "success", error: null };
    return {
      status: "failed",
      error: facts.signal
        ? `terminated by signal ${facts.signal}`
        : `exited with code ${facts.exitCode}`,
    };
  }
  const at = (ms: number) => describeSecs(roundSecs(ms));
  const left = facts.leftBehind;
  const ended = left
    ? `the process (pid ${left.pid}) did not end within ${
      describeSecs(roundSecs(left.waitMs))
    } of SIGKILL and was left behind at ${at(facts.endedAt)}, likely in uninterruptible sleep ` +
      "(state D: a hung NFS mount or a failing disk)"
    : `${howItEnded(facts.signal, facts.exitCode)} at ${at(facts.endedAt)}`;
  const killClause = facts.killAt === undefined
    ? ""
    : `; it had not stopped, so SIGKILL was sent at ${at(facts.killAt)}`;
  if (facts.cancelAt !== undefined) {
    return {
      status: "cancelled",
      error: `cancelled: SIGTERM was sent at ${at(facts.cancelAt)}${killClause}; ${ended}`,
    };
  }
  const killed = facts.killAt !== undefined && (facts.signal === "SIGKILL" || left !== undefined);
  return {
    status: killed ? "killed" : "timeout",
    error: `deadline of ${describeSecs(timeoutSecs)}${
      cappedFromSecs === undefined
        ? ""
        : ` (it asked for ${describeSecs(cappedFromSecs)}; COMMAND_TIMEOUT_MAX_SECS caps it)`
    }: SIGTERM was sent at ${at(facts.termAt!)} (${
      Math.round(DEADLINE_PHASES.terminate * 100)
    } % of it)${killClause}; ${ended}`,
  };
}

async function supervise(
  child: Deno.ChildProcess,
  cell: Cell,
  context: RunContext,
  options: RunnerOptions,
  command: CommandOptions,
  clock: Clock,
): Promise<ExecResult> {
  // On the monotonic clock, as the phases' timers are: a wall clock stepped by an hour during the
  // run (NTP, a resumed VM) must not make it an hour long, or negative.
  const spawnedAt = monotonicNow(clock);
  const sinceSpawn = () => Math.max(0, monotonicNow(clock) - spawnedAt);
  const pid = child.pid;
  const { timeoutSecs } = context;
  const deadlineMs = timeoutSecs * 1000;
  const logProps = {
    pid,
    program: context.program,
    argv: context.argv,
    timeoutSecs,
    cgroup: cell.cgroup ?? null,
  };
  log.debug("command started", logProps);

  const stdout = captureStream(
    tapOutput(child.stdout, "stdout", command.onOutput),
    options.capture,
  );
  const stderr = captureStream(
    tapOutput(child.stderr, "stderr", command.onOutput),
    options.capture,
  );

  let exited = false;
  let termAt: number | undefined;
  let killAt: number | undefined;
  let cancelAt: number | undefined;
  const timers: TimerId[] = [];
  const after = (ms: number, fn: () => void) => timers.push(clock.setTimeout(fn, ms));

  const terminate = (why: string) => {
    if (exited || termAt !== undefined) return;
    termAt = sinceSpawn();
    log.warning("sending SIGTERM to every process of the command ({why})", { ...logProps, why });
    cell.signal("SIGTERM");
  };
  // A process in uninterruptible sleep (state D) does not end on SIGKILL: the run gives up on it
  // once the kill wait is over, and goes on.
  const killWaitMs = options.killWaitMs ?? DEFAULT_KILL_WAIT_MS;
  let giveUp!: () => void;
  const givenUp = new Promise<"left behind">((resolve) => giveUp = () => resolve("left behind"));
  const kill = (why: string) => {
    if (exited || killAt !== undefined) return;
    killAt = sinceSpawn();
    log.warning("sending SIGKILL to every process of the command ({why})", { ...logProps, why });
    cell.signal("SIGKILL");
    after(killWaitMs, giveUp);
  };

  after(deadlineMs * DEADLINE_PHASES.warning, () => {
    if (exited) return;
    const elapsedSecs = roundSecs(sinceSpawn());
    log.warning("command is near its deadline", { ...logProps, elapsedSecs });
    callSafely("deadline warning", () => command.onWarning?.({ pid, elapsedSecs, timeoutSecs }));
  });
  after(deadlineMs * DEADLINE_PHASES.terminate, () => {
    if (cancelAt === undefined) terminate("deadline");
  });
  after(deadlineMs * DEADLINE_PHASES.kill, () => kill("deadline"));

  const onAbort = () => {
    if (exited || cancelAt !== undefined) return;
    log.info("command cancelled", logProps);
    // A cancel after the deadline's SIGTERM keeps the deadline's account.
    if (termAt === undefined) cancelAt = sinceSpawn();
    terminate("cancelled");
    after(options.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS, () => kill("cancelled"));
  };
  command.signal?.addEventListener("abort", onAbort, { once: true });
  // An abort between the check in run() and here must not be lost.
  if (command.signal?.aborted) onAbort();

  let signal: string | null = null;
  let exitCode: number | null = null;
  let durationMs = 0;
  let outcome: { status: ExecStatus; error: string | null } | undefined;
  try {
    const ended = await Promise.race([statusOf(child), givenUp]);
    exited = true;
    durationMs = sinceSpawn();
    let leftBehind: { pid: number; waitMs: number } | undefined;
    if (ended === "left behind") {
      leftBehind = { pid, waitMs: killWaitMs };
      log.warning(
        "the command's process did not end within {waitSecs} s of SIGKILL (likely in " +
          "uninterruptible sleep, state D); it is left behind and the agent goes on",
        { ...logProps, waitSecs: roundSecs(killWaitMs) },
      );
      // Its end, whenever it comes, is only logged; nor does it keep the agent from exiting.
      child.status.then(
        (late) => log.info("a process left behind has ended", { ...logProps, ...late }),
        () => {},
      );
      child.unref();
    } else {
      signal = ended.signal ?? null;
      exitCode = signal ? null : ended.code;
    }
    outcome = outcomeOf(
      { termAt, killAt, cancelAt, endedAt: durationMs, signal, exitCode, leftBehind },
      timeoutSecs,
      context.cappedFromSecs,
    );
    const early = outcome;
    await context.spawned;
    // Its cgroup's counts of what its limits refused, read before the cgroup is removed: the
    // recorded exit says them as the report will (a crash before the report reports it).
    cell.readCounts();
    callSafely("onExit", () =>
      command.onExit?.({
        status: early.status,
        exit_code: exitCode,
        signal,
        duration_secs: roundSecs(durationMs),
        error: withLimitNotes(early.error, cell),
        started_at: context.started_at,
        completed_at: new Date(clock.now()).toISOString(),
      }));
  } finally {
    exited = true;
    for (const timer of timers) clock.clearTimeout(timer);
    command.signal?.removeEventListener("abort", onAbort);
    // Whatever the command left behind (in its cgroup or group) dies with it, even on success;
    // so do the processes that moved to a process group of their own, when there is a sign of
    // them: the command had to be signalled, or something still holds its output open (looking
    // for them reads every process, too slow for every command).
    if (termAt !== undefined || cancelAt !== undefined) cell.stopStrays();
    await cell.stop();
    if (
      !await drain([cell.removed], options.removalWaitMs ?? DEFAULT_REMOVAL_WAIT_MS, clock)
    ) {
      log.info("the command's directory is still being removed; its result is not held up", {
        argv: context.argv,
      });
    }
    // Read what is still in the pipes, but never wait on a process outside the group that
    // holds them open.
    const drained = await drain(
      [stdout.done, stderr.done],
      options.drainMs ?? DEFAULT_DRAIN_MS,
      clock,
    );
    if (!drained) cell.stopStrays();
    await Promise.all([stdout.stop(), stderr.stop()]);
  }

  const out = stdout.capture.result();
  const err = stderr.capture.result();
  const { status: resultStatus, error: ended } = outcome!;
  const limitNote = forksRefusedNote(cell);
  if (limitNote) {
    log.warning("the command reached its process limit: {note}", { ...logProps, note: limitNote });
  }
  const memoryNote = outOfMemoryNote(cell);
  if (memoryNote) {
    log.warning("the command reached its memory limit: {note}", { ...logProps, note: memoryNote });
  }
  const error = withLimitNotes(ended, cell);

  const result: ExecResult = {
    status: resultStatus,
    exit_code: exitCode,
    signal,
    duration_secs: roundSecs(durationMs),
    stdout: out.text,
    stderr: err.text,
    stdout_truncated_bytes: out.truncatedBytes,
    stderr_truncated_bytes: err.truncatedBytes,
    ...(out.encoding === "base64" ? { stdout_encoding: "base64" as const } : {}),
    ...(err.encoding === "base64" ? { stderr_encoding: "base64" as const } : {}),
    error,
    program: context.program,
    argv: context.argv,
    timeout_secs: timeoutSecs,
    start_failure: null,
    started_at: context.started_at,
    completed_at: new Date(clock.now()).toISOString(),
  };
  log.debug("command finished with {status}", {
    ...logProps,
    status: resultStatus,
    exitCode,
    signal,
    durationSecs: result.duration_secs,
    stdoutBytes: out.totalBytes,
    stderrBytes: err.totalBytes,
  });
  return result;
}

/** glibc's first and last real-time signal on Linux, which Deno does not name. */
const SIGRTMIN = 34;
const SIGRTMAX = 64;

/**
 * A real-time signal's name as a shell gives it (`kill -l`): `SIGRTMIN`, `SIGRTMIN+1` up to
 * `SIGRTMIN+15`, then `SIGRTMAX-14` up to `SIGRTMAX`; `undefined` for another number.
 */
function realtimeSignalName(number: number): string | undefined {
  if (!Number.isInteger(number) || number < SIGRTMIN || number > SIGRTMAX) return undefined;
  const up = number - SIGRTMIN;
  const down = SIGRTMAX - number;
  if (up === 0) return "SIGRTMIN";
  if (down === 0) return "SIGRTMAX";
  return up <= (SIGRTMAX - SIGRTMIN) / 2 ? `SIGRTMIN+${up}` : `SIGRTMAX-${down}`;
}

/**
 * The name of a signal Deno does not name: a real-time one as {@link realtimeSignalName} gives it,
 * and 32 and 33, which glibc keeps for itself and no tool names, as `SIG32` and `SIG33`;
 * `undefined` for another number.
 */
function unnamedSignalName(number: number): string | undefined {
  return number === 32 || number === 33 ? `SIG${number}` : realtimeSignalName(number);
}

/**
 * How the child ended. Deno names only the signals it knows: the status of a process a real-time
 * signal ended (`kill -s RTMIN`) rejects with "Invalid signal: 34" (so does one signal 32 or 33
 * ended), which becomes that signal's name here instead of a run that throws and loses its output.
 */
async function statusOf(
  child: Deno.ChildProcess,
): Promise<{ code: number; signal: string | null }> {
  try {
    return await child.status;
  } catch (error) {
    const number = /^Invalid signal: (\d+)$/.exec((error as Error)?.message ?? "")?.[1];
    const name = number === undefined ? undefined : unnamedSignalName(Number(number));
    if (name === undefined) throw error;
    return { code: 128 + Number(number), signal: name };
  }
}

/** Waits for `reads` up to `ms`; returns whether they all ended. */
async function drain(reads: Promise<void>[], ms: number, clock: Clock): Promise<boolean> {
  const stop = new AbortController();
  try {
    return await Promise.race([
      Promise.all(reads).then(() => true),
      clock.sleep(ms, stop.signal).then(() => false),
    ]);
  } finally {
    stop.abort();
  }
}

/** The fields of a report (docs/protocol.md §2) that a run determines. */
export interface ReportFields {
  /** The final status. */
  status: ExecStatus;
  /** The wire body, or `null` when no program ran. */
  result: ExecResultBody | null;
  /** Why it did not succeed, or `null`. */
  error: string | null;
  /** When the run started, ISO 8601. */
  started_at: string;
  /** When the run ended, ISO 8601. */
  completed_at: string;
}

/**
 * Builds the fields of a report from a result: `status`, `result` (the wire body, or `null` when
 * no program ran: rejected, not startable, or cancelled before start), `error` and the times.
 *
 * @param result A result of {@link runCommand}.
 * @returns The fields to merge with `command_id` and `attempt`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPolicy, runCommand, toReportFields } from "./mod.ts";
 *
 * const fields = toReportFields(await runCommand("echo hi", { policy: defaultPolicy() }));
 * assert.equal(fields.status, "success");
 * assert.equal(fields.result?.stdout, "hi\n");
 * ```
 */
export function toReportFields(result: ExecResult): ReportFields {
  const ran = result.status !== "rejected" && result.start_failure === null &&
    !(result.status === "cancelled" && result.program === null);
  const body: ExecResultBody = {
    exit_code: result.exit_code,
    signal: result.signal,
    duration_secs: result.duration_secs,
    stdout: result.stdout,
    stderr: result.stderr,
    stdout_truncated_bytes: result.stdout_truncated_bytes,
    stderr_truncated_bytes: result.stderr_truncated_bytes,
    ...(result.stdout_encoding ? { stdout_encoding: result.stdout_encoding } : {}),
    ...(result.stderr_encoding ? { stderr_encoding: result.stderr_encoding } : {}),
  };
  return {
    status: result.status,
    result: ran ? body : null,
    error: result.error,
    started_at: result.started_at,
    completed_at: result.completed_at,
  };
}
