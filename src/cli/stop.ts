/**
 * `status stop`: stops the agent daemon named by a pid file (SIGTERM, then waits until it exited).
 *
 * @module
 */
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { DEFAULT_STOP_TIMEOUT_SECS, stopDaemon } from "./daemon.ts";
import { loadSettings } from "../config/mod.ts";
import { parseFilePath } from "./common.ts";
import type { Io } from "./io.ts";

function parseSecs(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) {
    throw new InvalidArgumentError("must be a whole number of seconds above 0");
  }
  return Number(value);
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
      "read PID_FILE from this config.json (default ./config.json)",
      parseFilePath,
    )
    .option(
      "--env-file <path>",
      "read PID_FILE from this .env file (default ./.env)",
      parseFilePath,
    )
    .option(
      "--timeout <secs>",
      `how long to wait for it to exit (default ${DEFAULT_STOP_TIMEOUT_SECS}; keep it above ` +
        "SHUTDOWN_GRACE_SECS)",
      parseSecs,
    )
    .action(async (options) => {
      const timeoutSecs = options.timeout ?? DEFAULT_STOP_TIMEOUT_SECS;
      // The same PID_FILE the agent used, from the same flags, environment and files; no other
      // setting is checked, so that a bad value of another setting never prevents stopping it
      // (a file that cannot be parsed at all still can: --pid-file reads no file).
      const pidFile = options.pidFile ?? loadSettings({
        roles: ["agent"],
        only: ["pidFile"],
        configPath: options.config,
        envFilePath: options.envFile,
        env: io.env && { ...io.env },
      }).settings.pidFile;
      const pid = await stopDaemon({ pidFile, timeoutMs: timeoutSecs * 1000 });
      io.out(`agent stopped (pid ${pid})`);
    });
  return command as unknown as Command;
}
