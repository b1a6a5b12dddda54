/**
 * `status exec "<command line>"`: runs one command locally through exactly the path the agent
 * uses for commands from the dashboard (parse, policy, deadline, bounded output) and prints the
 * result. Its exit code is the command's, or 126 rejected (or not executable), 127 program not
 * found, 124 timeout, 137 killed, 130 stopped by Ctrl-C.
 *
 * @module
 */
import { EXIT_KILLED, EXIT_REJECTED, EXIT_TIMEOUT, signalExitCode } from "../operator/types.ts";
import { onSignals, startedIgnoringHangup, STOP_SIGNALS } from "./signals.ts";
import { resolve } from "node:path";
import { DEFAULT_COMMAND_TIMEOUT_SECS, DEFAULT_MAX_TIMEOUT_SECS } from "../defaults.ts";
import { Command } from "@commander-js/extra-typings";
import { ConfigError, UsageError } from "../errors.ts";
import {
  createPolicy,
  defaultPolicy,
  envFromAssignments,
  type ExecPolicy,
  type ExecResult,
  runCommand,
} from "../exec/mod.ts";
import type { LogRecordView } from "../log/mod.ts";
import { addSettingOptions, checkDirectorySetting, loadCommandSettings } from "./common.ts";
import { printOutput } from "./enqueue.ts";
import { setExitCode } from "./exit.ts";
import type { Io } from "./io.ts";

/** Exit code of a program that could not be found (a shell's "command not found"). */
export const EXEC_EXIT_NOT_FOUND = 127;
/** Exit code of a run cancelled by SIGINT, SIGTERM or SIGHUP (128 + 2). */
export const EXEC_EXIT_CANCELLED = 130;

/** The flags of `status exec` (besides the setting flags). */
export interface ExecCliOptions {
  /** `--timeout <secs>`: the deadline asked for, capped by the configured maximum. */
  timeout?: string;
  /** `--allow <program>` (repeatable): programs added to the allowlist. */
  allow?: string[];
  /** `--cwd <dir>`: working directory of the command. */
  cwd?: string;
  /** `--json`: print the result object as JSON. */
  json?: boolean;
}

/** What `status exec` takes from the configuration; everything has a default. */
export interface ExecCliSettings {
  /**
   * The policy before `--allow` (`ALLOWED_PROGRAMS`, `ALLOWED_PATH_PREFIXES`).
   * @default {defaultPolicy()}
   */
  policy?: ExecPolicy;
  /**
   * `COMMAND_TIMEOUT_SECS`.
   * @default {300}
   */
  defaultTimeoutSecs?: number;
  /**
   * `COMMAND_TIMEOUT_MAX_SECS`.
   * @default {3600}
   */
  maxTimeoutSecs?: number;
  /** `COMMAND_CWD`, used when `--cwd` is not given. */
  cwd?: string;
  /** `COMMAND_ENV` as variables. */
  extraEnv?: Record<string, string>;
  /** Secret values no extra variable may hold (the agent and admin tokens). */
  secretValues?: string[];
  /** Cancels the run (status `cancelled`, exit code 130). */
  signal?: AbortSignal;
  /** Grace between SIGTERM and SIGKILL on cancellation, in milliseconds. */
  cancelGraceMs?: number;
}

/** Seconds as a person writes them: `5`, `0.5`, `2.25` (not `0x10`, `1e3` or `1e-9`). */
const DECIMAL_SECS = /^\d{1,10}(\.\d{1,3})?$/;

function parseTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const secs = Number(value.trim());
  if (!DECIMAL_SECS.test(value.trim()) || secs <= 0) {
    throw new UsageError(
      `--timeout must be a positive number of seconds with at most 3 decimals (5, 0.5), got ` +
        `"${value}"`,
    );
  }
  return secs;
}

/**
 * The exit code of `status exec` for a result: the command's own exit code, 128 + n when a
 * signal ended it (1 for a signal this platform does not name, as `exitCodeOf` of
 * `status enqueue --wait` gives: both use `signalExitCode`), 126 rejected or not executable,
 * 127 not found, 124 timeout, 137 killed, 130 cancelled.
 *
 * @param result The result of the run.
 * @returns The exit code.
 */
export function execExitCode(result: ExecResult): number {
  switch (result.status) {
    case "success":
      return 0;
    case "rejected":
      return EXIT_REJECTED;
    case "timeout":
      return EXIT_TIMEOUT;
    case "killed":
      return EXIT_KILLED;
    case "cancelled":
      return EXEC_EXIT_CANCELLED;
    case "failed":
      if (result.exit_code !== null) return result.exit_code === 0 ? 1 : result.exit_code;
      if (result.signal) return signalExitCode(result.signal);
      if (result.start_failure === "not_found") return EXEC_EXIT_NOT_FOUND;
      if (result.start_failure === "not_executable") return EXIT_REJECTED;
      return 1;
  }
}

/**
 * The human summary of a result, e.g. `exec: success after 0.004 s (/usr/bin/echo)` or
 * `exec: rejected: program "rm" is not on the allowlist (allowed: echo)`.
 *
 * @param result The result of the run.
 * @returns One line.
 */
export function formatExecSummary(result: ExecResult): string {
  let line = `exec: ${result.status}`;
  if (result.program !== null && result.start_failure === null) {
    line += ` after ${result.duration_secs} s (${result.program}`;
    if (result.exit_code !== null) line += `, exit code ${result.exit_code}`;
    if (result.signal !== null) line += `, signal ${result.signal}`;
    line += ")";
  }
  if (result.error) line += `: ${result.error}`;
  return line;
}

/**
 * Runs `status exec` without commander: parses the flags, runs the command, prints the result
 * and returns the exit code. The command's stdout goes to standard output and its stderr to
 * standard error; the summary (and notes about dropped output) follow on standard error. With
 * `--json` only the result object is printed, on standard output.
 *
 * @param commandLine The command line, as one argument.
 * @param options The flags.
 * @param io Where to print.
 * @param settings Policy, deadlines, working directory and environment from the configuration.
 * @returns The exit code ({@link execExitCode}).
 * @throws {UsageError} For a bad `--timeout` or `--allow` value.
 * @throws {ConfigError} For invalid settings (e.g. an extra variable holding a secret).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryIo } from "./io.ts";
 * import { runExecCli } from "./exec.ts";
 *
 * const io = memoryIo();
 * assert.equal(await runExecCli("echo hi", {}, io), 0);
 * assert.deepEqual(io.stdout, ["hi"]);
 * assert.equal(await runExecCli("rm -rf /tmp/x", {}, io), 126);
 * ```
 */
export async function runExecCli(
  commandLine: string,
  options: ExecCliOptions,
  io: Io,
  settings: ExecCliSettings = {},
): Promise<number> {
  const timeoutSecs = parseTimeout(options.timeout);
  const base = settings.policy ?? defaultPolicy();
  let policy = base;
  if (options.allow && options.allow.length > 0) {
    // An empty item of ALLOWED_PROGRAMS is dropped ("a,,b"); an empty --allow was meant to name
    // a program, and would be dropped without a word.
    if (options.allow.some((program) => program.trim() === "")) {
      throw new UsageError('--allow: names no program (--allow "")');
    }
    try {
      policy = createPolicy({
        allowedPrograms: base.allowedPrograms,
        allowedPathPrefixes: base.allowedPathPrefixes,
        extraPrograms: options.allow,
      });
    } catch (error) {
      throw new UsageError(`--allow: ${(error as Error).message}`, { cause: error });
    }
  }
  const cwd = options.cwd !== undefined ? checkedCwd(options.cwd) : settings.cwd;

  let result: ExecResult;
  try {
    result = await runCommand(commandLine, {
      policy,
      timeoutSecs,
      defaultTimeoutSecs: settings.defaultTimeoutSecs ?? DEFAULT_COMMAND_TIMEOUT_SECS,
      maxTimeoutSecs: settings.maxTimeoutSecs ?? DEFAULT_MAX_TIMEOUT_SECS,
      cwd,
      extraEnv: settings.extraEnv,
      secretValues: settings.secretValues,
      signal: settings.signal,
      cancelGraceMs: settings.cancelGraceMs,
    });
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) {
      throw new ConfigError(error.message, { cause: error });
    }
    throw error;
  }

  if (options.json) {
    io.out(JSON.stringify(result, null, 2));
  } else {
    printOutput(io, { id: "exec", name: commandLine, status: result.status, result });
    io.err(formatExecSummary(result) + allowHint(result));
  }
  return execExitCode(result);
}

const NOT_ALLOWED = /^program "(.+)" is not on the allowlist \(/;

/** For a program the allowlist refused: how to allow it, for this run or for good. */
function allowHint(result: ExecResult): string {
  if (result.status !== "rejected") return "";
  const program = NOT_ALLOWED.exec(result.error ?? "")?.[1];
  if (program === undefined) return "";
  const word = /^[\w@%+=:,./-]+$/.test(program) ? program : JSON.stringify(program);
  return `; to run it, give --allow ${word}, or add it to ALLOWED_PROGRAMS (--allowed-programs)`;
}

/**
 * Turns loaded settings into {@link ExecCliSettings}.
 *
 * @param settings The settings of the `exec` role.
 * @returns The executor settings.
 * @throws {ConfigError} When a setting is invalid for the executor.
 */
export function execSettingsFrom(settings: {
  allowedPrograms: string[];
  allowedPathPrefixes: string[];
  commandTimeoutSecs: number;
  commandTimeoutMaxSecs: number;
  commandEnv: string[];
  commandCwd?: string;
  agentToken?: string;
  statusAdminToken?: string;
}): ExecCliSettings {
  try {
    return {
      policy: createPolicy({
        allowedPrograms: settings.allowedPrograms,
        allowedPathPrefixes: settings.allowedPathPrefixes,
      }),
      defaultTimeoutSecs: settings.commandTimeoutSecs,
      maxTimeoutSecs: settings.commandTimeoutMaxSecs,
      extraEnv: envFromAssignments(settings.commandEnv),
      cwd: settings.commandCwd,
      secretValues: [settings.agentToken, settings.statusAdminToken].filter((v): v is string =>
        !!v
      ),
    };
  } catch (error) {
    throw new ConfigError((error as Error).message, { cause: error });
  }
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...previous ?? [], value];
}

/**
 * Keeps the executor's log lines about a command that never ran (rejected, could not start) off
 * the log of `status exec`: its summary line says the same, and a terminal would show it twice.
 *
 * @param record A log record.
 * @returns `false` for the records the summary repeats.
 */
export function notReportedBySummary(record: LogRecordView): boolean {
  if (record.category[1] !== "exec") return true;
  const template = typeof record.rawMessage === "string"
    ? record.rawMessage
    : record.rawMessage.join("{}");
  return !/^command (rejected|could not start)\b/.test(template);
}

/**
 * Listens for SIGINT, SIGTERM and SIGHUP (but under `nohup`) while a command runs, so the run is
 * cancelled, not orphaned.
 */
function cancelOnSignals(): { signal: AbortSignal } & Disposable {
  const controller = new AbortController();
  const signals = STOP_SIGNALS.filter((name) => name !== "SIGHUP" || !startedIgnoringHangup());
  const listening = onSignals(signals, () => controller.abort());
  return { signal: controller.signal, [Symbol.dispose]: () => listening[Symbol.dispose]() };
}

/**
 * `--cwd` resolved, refused as COMMAND_CWD is (bad usage, exit 2) when it names no directory:
 * an empty one would run the command here without a word.
 */
function checkedCwd(dir: string): string {
  if (dir.trim() === "") {
    throw new UsageError(`--cwd: names no directory (--cwd ${JSON.stringify(dir)})`);
  }
  const path = resolve(dir);
  let problem: string | undefined;
  try {
    if (!Deno.statSync(path).isDirectory) problem = `${JSON.stringify(dir)} is not a directory`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      problem = `the directory ${JSON.stringify(dir)} does not exist`;
    }
    // Not permitted to look: the executor says what it finds.
  }
  if (problem !== undefined) throw new UsageError(`--cwd: ${problem}`);
  return path;
}

/** The commander command of `status exec`, with its argument and flags typed. */
export type ExecCommand = Command<
  [string],
  { timeout?: string; allow?: string[]; cwd?: string; json?: true },
  // deno-lint-ignore ban-types
  {}
>;

/**
 * Builds `status exec`.
 *
 * @param io Where the command prints.
 * @param settings Overrides the settings read from flags, environment and files (for tests and
 * embedding).
 * @returns The command.
 */
export function execCommand(io: Io, settings?: ExecCliSettings): ExecCommand {
  const command = new Command("exec")
    .description(
      "Run one command locally through the agent's executor (no shell, allowlist, deadline, " +
        "bounded output) and print the result; unlike the agent it runs it as this user, in " +
        "this directory (or --cwd, COMMAND_CWD), without the sandbox; exits with the command's " +
        "code, or 126 rejected (or not executable), 127 program not found, 124 timeout, " +
        "137 killed, 130 stopped by Ctrl-C",
    )
    .argument("<command-line>", "the command line, quoted as one argument")
    .option("--timeout <secs>", "deadline in seconds (capped by COMMAND_TIMEOUT_MAX_SECS)")
    .option(
      "--allow <program>",
      "also allow this program, a name or an absolute path (repeatable; shells only when named)",
      collect,
    )
    .option("--cwd <dir>", "working directory of the command")
    .option("--json", "print the result object as JSON");
  addSettingOptions(command, ["exec"]);
  command.action(async (commandLine, options) => {
    const resolved = settings ?? (() => {
      const loaded = loadCommandSettings(
        io,
        options as Record<string, unknown>,
        ["exec"],
        { filter: notReportedBySummary },
      );
      checkDirectorySetting(loaded, "commandCwd");
      return execSettingsFrom(loaded.settings);
    })();
    using cancel = cancelOnSignals();
    const signal = resolved.signal
      ? AbortSignal.any([resolved.signal, cancel.signal])
      : cancel.signal;
    const code = await runExecCli(
      commandLine,
      { timeout: options.timeout, allow: options.allow, cwd: options.cwd, json: options.json },
      io,
      { ...resolved, signal },
    );
    setExitCode(code);
  });
  return command;
}
