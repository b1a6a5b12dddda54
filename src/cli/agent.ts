/**
 * `status agent` (also `status` with no subcommand): runs the agent in the foreground, or with
 * `--daemon` in the background with a pid file and a log file.
 *
 * Signals: the first SIGINT/SIGTERM/SIGHUP stops polling and lets a running command finish within
 * `SHUTDOWN_GRACE_SECS` (then stops it: `interrupted`), reports it and returns (exit code 0). A
 * second signal cancels the running command at once, keeps its result in the outbox and returns
 * within a few seconds with exit code 128 + the signal number; `main.ts` then exits the process.
 * A daemon has no terminal to lose: at a SIGHUP it reopens its log file (logrotate's postrotate)
 * and goes on; it does not reload its settings.
 *
 * @module
 */
import { NOHUP_IGNORED, signalNumber, startedIgnoringHangup, twoStageStop } from "./signals.ts";
import { Command, Option } from "@commander-js/extra-typings";
import { dirname, resolve } from "node:path";
import {
  type AgentOptions,
  createExecutor,
  type Executor,
  type ExecutorOptions,
  runAgent,
} from "../agent/mod.ts";
import {
  acquirePidFile,
  currentProgram,
  DAEMON_CHILD_FLAG,
  DaemonError,
  isLiveAgent,
  logDaemonCrash,
  readPidFile,
  releasePidFile,
  spawnDaemon,
} from "./daemon.ts";
import type { PermissionNeeds } from "./permission_flags.ts";
import {
  keysFor,
  type LoadedSettings,
  missingSettingError,
  SETTINGS,
  type Settings,
} from "../config/mod.ts";
import { ConfigError } from "../errors.ts";
import { closeLogging, logger, reopenLogFile } from "../log/mod.ts";
import {
  addSettingOptions,
  checkDirectorySetting,
  checkFileLocation,
  describeFileSetting,
  type FileOptions,
  fileProblem,
  isAddrInUse,
  loadCommandSettings,
} from "./common.ts";
import { checkMetricsAddressFree, parseListenAddress } from "../metrics_server.ts";
import { setExitCode } from "./exit.ts";
import type { Io } from "./io.ts";

/** Log file of the daemon when `LOG_FILE` is not set. */
export const DAEMON_LOG_FILE = "status.log";

/** Seconds the CLI still waits for the agent after a second stop signal. */
const FORCED_STOP_WAIT_MS = 3000;

/**
 * Builds the `agent` command.
 *
 * @param io Where the command writes.
 * @returns The command.
 */
export function agentCommand(io: Io): Command {
  const command = new Command("agent")
    .description(
      "Run the agent: long-poll the dashboard, run delivered commands under the allowlist and " +
        "report their results (the default command)",
    )
    .helpOption("-h, --help", "show help");
  addSettingOptions(command, ["agent"]);
  command.addHelpText(
    "after",
    `
Permissions: deno task agent, or
  deno run --allow-net --allow-run --allow-read --allow-write --allow-env --allow-sys main.ts agent
The least it runs with is --allow-net --allow-run (settings from flags only, journal and outbox in
memory); see "Running it" in the README for what each flag adds.

With no AGENT_TOKEN its requests are unsigned, which only a dashboard in dev mode accepts; get a
token with "status agents add <id>" on the dashboard's side.

Examples:
  status agent --agent-id web-1 --dashboard-url http://127.0.0.1:5000
  AGENT_ID=web-1 AGENT_TOKEN=... DASHBOARD_URL=https://dashboard.example status agent
  status --daemon --config /etc/status/config.json     (stop it with: status stop)`,
  );
  command.addOption(new Option(DAEMON_CHILD_FLAG, "(internal) run as the daemon").hideHelp());
  command.action(async (options, cmd) => {
    await agentAction(io, options as Record<string, unknown> & FileOptions, cmd);
  });
  return command as unknown as Command;
}

/**
 * Builds the executor from the `exec` settings; bad values are configuration errors.
 *
 * @param s The loaded settings.
 * @param ownFiles The agent's own files, which commands may not name.
 * @param only Options for this executor alone, not returned in `exec` (`cgroups: false` for one
 *   that only checks the settings).
 * @returns The executor and the options it was built from.
 * @throws {ConfigError} When a setting is not usable (e.g. a bad `COMMAND_ENV` pair).
 */
export function executorFromSettings(
  s: Settings,
  ownFiles: readonly string[] = [],
  only: Pick<ExecutorOptions, "cgroups"> = {},
): { executor: Executor; exec: ExecutorOptions } {
  const exec: ExecutorOptions = {
    allowedPrograms: s.allowedPrograms,
    allowedPathPrefixes: s.allowedPathPrefixes,
    defaultTimeoutSecs: s.commandTimeoutSecs,
    maxTimeoutSecs: s.commandTimeoutMaxSecs,
    commandEnv: s.commandEnv,
    cwd: s.commandCwd,
    user: s.commandUser,
    maxProcesses: s.commandMaxProcesses,
    maxMemory: s.commandMaxMemory,
    stateDir: s.stateDir,
    protectedPaths: ownFiles,
    secretValues: s.agentToken ? [s.agentToken] : [],
  };
  try {
    return { executor: createExecutor({ ...exec, ...only }), exec };
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new ConfigError(error.message, { cause: error });
    }
    throw error;
  }
}

/**
 * The agent's loop options taken from the settings (everything but the id, the dashboard and
 * the injectables).
 *
 * @param s The loaded settings.
 * @returns Options for {@link runAgent}.
 */
export function loopOptionsFromSettings(
  s: Settings,
): Omit<AgentOptions, "dashboardUrl" | "agentId"> {
  return {
    agentToken: s.agentToken,
    deploymentHash: s.deploymentHash,
    labels: s.agentLabels,
    pollingTimeoutSecs: s.pollingTimeoutSecs,
    pollingBackoffSecs: s.pollingBackoffSecs,
    pollingBackoffMaxSecs: s.pollingBackoffMaxSecs,
    shutdownGraceSecs: s.shutdownGraceSecs,
    metricsIntervalSecs: s.metricsIntervalSecs,
    metricsWebhook: s.metricsWebhook,
    stateDir: s.stateDir,
    metricsPort: s.metricsPort,
    liveOutput: s.liveOutput,
  };
}

/** The flags of this invocation that came from the command line, minus the daemon flags. */
function commandLineFlags(cmd: Command<unknown[], Record<string, unknown>>): string[] {
  const args: string[] = [];
  for (const option of cmd.options) {
    const key = option.attributeName();
    if (key === "daemon" || key === "daemonChild" || !option.long) continue;
    if (cmd.getOptionValueSource(key) !== "cli") continue;
    const value = cmd.getOptionValue(key);
    if (option.isBoolean()) {
      if (value === (option.negate ? false : true)) args.push(option.long);
    } else if (value !== undefined) {
      args.push(option.long, String(value));
    }
  }
  return args;
}

function hostOf(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const parsed = new URL(url);
    const port = parsed.port || (parsed.protocol === "https:" ? "443" : "80");
    return [`${parsed.hostname}:${port}`];
  } catch {
    return [];
  }
}

/** What the daemon needs, for narrowing its permission flags to what this process was granted. */
function permissionNeeds(loaded: LoadedSettings, options: FileOptions): PermissionNeeds {
  const s = loaded.settings;
  const logFile = s.logFile ?? DAEMON_LOG_FILE;
  return {
    read: [
      options.config ?? "config.json",
      options.envFile ?? ".env",
      ...loaded.files,
      s.stateDir,
      s.pidFile,
      // The log file is looked at (lstat, fstat) as well as written: Deno asks read access for it.
      logFile,
      "/",
      // The sandbox: COMMAND_USER, and the path rules' symlink checks.
      "/etc/passwd",
      ...s.allowedPathPrefixes,
      ...(s.commandCwd ? [s.commandCwd] : []),
    ],
    // /tmp: each command's own working directory.
    write: [s.stateDir, s.pidFile, dirname(logFile), logFile, "/tmp"],
    net: [...hostOf(s.dashboardUrl), ...hostOf(s.metricsWebhook)],
    // kill: signalling a command's whole process group without the unrestricted --allow-run.
    run: [...s.allowedPrograms, "df", "ps", "kill"],
    env: [
      ...keysFor(["agent", "server", "operator", "exec", "log"]).map((key) => SETTINGS[key].env),
      "PATH",
      "HOME",
      "LANG",
      "NO_COLOR",
    ],
    sys: ["loadavg", "systemMemoryInfo", "cpus", "uid"],
  };
}

/**
 * Writes the daemon's pid file; where it cannot be (a forbidden or read-only folder, one that
 * /proc or /sys will not let a file be made in) is said naming PID_FILE and where it came from,
 * as the log file's problems are.
 */
function acquirePidFileOf(loaded: LoadedSettings): Deno.FsFile {
  const { pidFile } = loaded.settings;
  try {
    return acquirePidFile(pidFile);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(
      `${describeFileSetting("PID_FILE", loaded.sources.pidFile, pidFile)} cannot be written: ${
        fileProblem(error.cause, pidFile)
      }`,
      { cause: error },
    );
  }
}

/**
 * Throws, before anything starts, what the agent's metrics listener would throw for METRICS_PORT
 * in use, with what to do (`status agent`, and `status up` for its agent).
 *
 * @param metricsPort The setting, if given.
 * @throws {Error} When something listens there.
 */
export function checkMetricsPortFree(metricsPort: string | undefined): void {
  if (metricsPort === undefined) return;
  try {
    checkMetricsAddressFree(parseListenAddress(metricsPort), "METRICS_PORT, --metrics-port");
  } catch (error) {
    throw metricsPortInUse(error);
  }
}

/** What to do about METRICS_PORT in use (the listener names only the address); another error as it is. */
function metricsPortInUse(error: unknown): unknown {
  if (!isAddrInUse(error) || !(error as Error).message.startsWith("cannot serve metrics")) {
    return error;
  }
  return new Error(
    `${(error as Error).message}; stop what listens there, or give METRICS_PORT ` +
      "(--metrics-port) another port",
    { cause: error },
  );
}

async function agentAction(
  io: Io,
  options: Record<string, unknown> & FileOptions,
  cmd: Command<unknown[], Record<string, unknown>>,
): Promise<void> {
  const daemonChild = options.daemonChild === true;
  // The parent of a daemon only starts it and prints its pid: it logs to standard error, never
  // to the daemon's log file, so its messages reach the person who started it.
  const loaded = loadCommandSettings(io, options, ["agent"], {
    logFile: (settings) => {
      if (daemonChild) return settings.logFile ?? DAEMON_LOG_FILE;
      return settings.daemon ? undefined : settings.logFile;
    },
  });
  const s = loaded.settings;
  const startsDaemon = !daemonChild && s.daemon;
  if (!s.agentId) {
    throw missingSettingError(loaded, "agentId", "agent");
  }
  checkDirectorySetting(loaded, "commandCwd");
  checkDirectorySetting(loaded, "stateDir");
  // Commands may not name the files the agent read its settings from, nor its pid and log files.
  // Built here to refuse a bad setting (exit 2) before anything starts, but without cgroups, and
  // closed: the agent's own executor is made by runAgent once it holds the state directory (one
  // made before, beside another agent on the same STATE_DIR, swept that agent's commands).
  const { executor: checked, exec } = executorFromSettings(loaded.settings, [
    ...loaded.files,
    s.pidFile,
    s.logFile ?? DAEMON_LOG_FILE,
  ], { cgroups: false });
  await checked.close?.();
  // Before the state directory is made, or a daemon started: a metrics port in use is said here,
  // with what to do.
  checkMetricsPortFree(s.metricsPort);

  if (startsDaemon) {
    // What the daemon would fail on at once, said here, where someone reads it.
    checkFileLocation("PID_FILE", loaded.sources.pidFile, s.pidFile);
    checkFileLocation("LOG_FILE", loaded.sources.logFile, s.logFile ?? DAEMON_LOG_FILE);
    // The daemon would log into its pid file, then find no pid in it and stop.
    if (resolve(s.pidFile) === resolve(s.logFile ?? DAEMON_LOG_FILE)) {
      throw new ConfigError(
        `${describeFileSetting("PID_FILE", loaded.sources.pidFile, s.pidFile)} and ${
          describeFileSetting("LOG_FILE", loaded.sources.logFile, s.logFile ?? DAEMON_LOG_FILE)
        } are the same file; give each its own path`,
      );
    }
    const running = readPidFile(s.pidFile);
    if (running !== undefined && isLiveAgent(running)) {
      throw new DaemonError(
        `an agent is running already with pid ${running} (pid file ${s.pidFile}); ` +
          `stop it with: status stop --pid-file ${s.pidFile}`,
      );
    }
    const program = currentProgram(permissionNeeds(loaded, options));
    const pid = await spawnDaemon({
      args: ["agent", ...commandLineFlags(cmd)],
      pidFile: s.pidFile,
      program,
    });
    const started = `agent started in the background: pid ${pid}, pid file ${s.pidFile}, log ${
      s.logFile ?? DAEMON_LOG_FILE
    }`;
    try {
      io.out(started);
    } catch (error) {
      // `status --daemon > /dev/full`: the daemon runs on, which the error alone did not say.
      const cause = (error as Error).cause ?? error;
      throw new Error(
        `${started}; but this line could not be written to standard output (${
          cause instanceof Error ? cause.message : String(cause)
        }); stop it with: status stop --pid-file ${s.pidFile}`,
        { cause: error },
      );
    }
    return;
  }

  const log = logger("agent", "cli");
  const signals = twoStageStop({
    first: (name) =>
      log.info(
        name === "SIGHUP"
          ? "SIGHUP received: stopping (the terminal the agent runs in closed, or a kill -HUP: " +
            "the agent does not reload its settings; a second signal stops at once)"
          : `${name} received: stopping (a second signal stops at once)`,
      ),
    again: (name) => log.warning(`${name} received again: stopping at once`),
    // A daemon has no terminal to lose: its SIGHUP is a `kill -HUP` meant as "reload" (or
    // logrotate's postrotate: reopen the log), which a stop (and a running command cut short)
    // would answer wrongly.
    ignore: (name) => {
      if (name !== "SIGHUP") return false;
      if (!daemonChild) {
        if (!startedIgnoringHangup()) return false;
        log.info(NOHUP_IGNORED);
        return true;
      }
      // The lines before it go to the file they were written for, this one to the file now at
      // the log's path: after logrotate moved the log away, a new one.
      reopenLogFile();
      log.warning(
        "SIGHUP received: ignored, but for its log file, reopened (as logrotate expects); the " +
          "agent runs as a daemon and does not reload its settings: to apply changed ones, " +
          "restart it (status stop, then start it again)",
      );
      return true;
    },
  });
  const { stop, stopNow } = signals;
  using _crash = daemonChild ? logDaemonCrash(s.pidFile) : undefined;
  let forcedTimer: ReturnType<typeof setTimeout> | undefined;
  let pidFileLock: Deno.FsFile | undefined;
  try {
    const running = runAgent({
      ...loopOptionsFromSettings(s),
      dashboardUrl: s.dashboardUrl,
      agentId: s.agentId,
      exec,
      stopNow: stopNow.signal,
      // Once the agent has its state directory: the command that started the daemon waits for
      // this file, and a daemon that fails before it (another agent holds the state directory,
      // the metrics port is taken) is reported there, with why, not as started.
      onStarted: daemonChild
        ? () => {
          pidFileLock = acquirePidFileOf(loaded);
        }
        : undefined,
    }, stop.signal);
    const forced = new Promise<void>((resolve) => {
      stopNow.signal.addEventListener("abort", () => {
        forcedTimer = setTimeout(resolve, FORCED_STOP_WAIT_MS);
      }, { once: true });
    });
    await Promise.race([running, forced]);
    // After a forced stop the agent may still be writing; main.ts exits the process anyway.
    running.catch(() => {});
  } catch (error) {
    const said = metricsPortInUse(error);
    // A daemon's standard error reaches no one once it runs: its log file says why it stopped.
    if (daemonChild) {
      log.error("the agent stopped on an error: {reason}", {
        reason: said instanceof Error ? said.message : String(said),
        error: said,
      });
    }
    throw said;
  } finally {
    clearTimeout(forcedTimer);
    signals[Symbol.dispose]();
    if (daemonChild) releasePidFile(s.pidFile);
    // Held while the daemon ran: closed once its pid file is gone.
    pidFileLock?.close();
    closeLogging();
  }
  if (signals.forcedBy) setExitCode(128 + signalNumber(signals.forcedBy)!);
}
