/**
 * `status stop`: stops the agent daemon named by a pid file (SIGTERM, then waits until it exited).
 *
 * @module
 */
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { DEFAULT_STOP_TIMEOUT_SECS, stopDaemon } from "./daemon.ts";
import { loadSettings } from "../config/mod.ts";
import { DEFAULT_SHUTDOWN_GRACE_SECS } from "../defaults.ts";
import { parseFilePath } from "./common.ts";
import type { Io } from "./io.ts";

/** The longest `--timeout`: a year, as the longest duration setting. */
const MAX_TIMEOUT_SECS = 86_400 * 365;

function parseSecs(value: string): number {
  // 1e400 zeros would read as Infinity: a wait without end, said "after Infinity s".
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || Number(value) > MAX_TIMEOUT_SECS) {
    throw new InvalidArgumentError(
      `must be a whole number of seconds from 1 to ${MAX_TIMEOUT_SECS} (a year)`,
    );
  }
  return Number(value);
}

/** Seconds `status stop` waits beyond the agent's grace: its command stopped and reported. */
const STOP_MARGIN_SECS = DEFAULT_STOP_TIMEOUT_SECS - DEFAULT_SHUTDOWN_GRACE_SECS;

/** The flags of `status stop` that choose what it reads. */
export interface StopFlags {
  /** `--pid-file`. */
  pidFile?: string;
  /** `--config`. */
  config?: string;
  /** `--env-file`. */
  envFile?: string;
  /** `--timeout`, in seconds. */
  timeout?: number;
}

/**
 * The pid file `status stop` reads and how long it waits: `PID_FILE` as the agent reads it, and
 * by default the agent's `SHUTDOWN_GRACE_SECS` (a running command may still finish within it)
 * plus 30 s to stop and report it, at least {@link DEFAULT_STOP_TIMEOUT_SECS}. No other setting
 * is read, so that a bad value of another never prevents stopping the agent; a grace that cannot
 * be read (a bad value, a broken file) leaves the default.
 *
 * @param flags The command's flags.
 * @param env The environment (default: the process's, where readable).
 * @returns The pid file and the timeout in seconds.
 * @throws {ConfigError} When `PID_FILE` cannot be read without `--pid-file`.
 */
export function stopSettings(
  flags: StopFlags,
  env?: Record<string, string | undefined>,
): { pidFile: string; timeoutSecs: number } {
  const sources = {
    roles: ["agent"] as const,
    configPath: flags.config,
    envFilePath: flags.envFile,
    env,
  };
  // A file that cannot be parsed at all still lets the agent be stopped: --pid-file reads none.
  const pidFile = flags.pidFile ??
    loadSettings({ ...sources, only: ["pidFile"] }).settings.pidFile;
  if (flags.timeout !== undefined) return { pidFile, timeoutSecs: flags.timeout };
  let grace = DEFAULT_SHUTDOWN_GRACE_SECS;
  try {
    grace = loadSettings({ ...sources, only: ["shutdownGraceSecs"] }).settings.shutdownGraceSecs;
  } catch {
    // The default.
  }
  return {
    pidFile,
    timeoutSecs: Math.max(DEFAULT_STOP_TIMEOUT_SECS, grace + STOP_MARGIN_SECS),
  };
}

/**
 * Builds the `stop` command.
 *
 * @param io Where the command writes.
 * @returns The command.
 */
export function stopCommand(io: Io): Command {
  const command = new Command("stop")
    .description(
      "Stop the agent daemon: send SIGTERM to the pid in its pid file and wait until it exited " +
        "(a running command may finish within SHUTDOWN_GRACE_SECS, else it is stopped and " +
        "reported interrupted)",
    )
    .helpOption("-h, --help", "show help")
    .option(
      "--pid-file <path>",
      "pid file of the daemon (default status.pid) [PID_FILE]",
      parseFilePath,
    )
    .option(
      "--config <path>",
      "read PID_FILE and SHUTDOWN_GRACE_SECS from this config.json (default ./config.json)",
      parseFilePath,
    )
    .option(
      "--env-file <path>",
      "read PID_FILE and SHUTDOWN_GRACE_SECS from this .env file (default ./.env)",
      parseFilePath,
    )
    .option(
      "--timeout <secs>",
      `how long to wait for it to exit (default SHUTDOWN_GRACE_SECS + ${STOP_MARGIN_SECS}, at ` +
        `least ${DEFAULT_STOP_TIMEOUT_SECS}; keep it above SHUTDOWN_GRACE_SECS)`,
      parseSecs,
    )
    .action(async (options) => {
      const { pidFile, timeoutSecs } = stopSettings(options, io.env && { ...io.env });
      const pid = await stopDaemon({ pidFile, timeoutMs: timeoutSecs * 1000 });
      io.out(`agent stopped (pid ${pid})`);
    });
  return command as unknown as Command;
}
