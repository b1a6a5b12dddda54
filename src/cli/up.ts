/**
 * `status up`: the quickest way to try `status`. Starts a dev-mode dashboard on 127.0.0.1 and one
 * agent in this one process, with their data in a local folder, prints three commands to try, and
 * stops cleanly on Ctrl-C (the agent first, then the dashboard).
 *
 * @module
 */
import { DEFAULT_PORT } from "../defaults.ts";
import { NOHUP_IGNORED, signalNumber, startedIgnoringHangup, twoStageStop } from "./signals.ts";
import { setExitCode } from "./exit.ts";
import { consoleIntoLog, surviveConnectionFailures } from "./survive.ts";
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import {
  type AgentState,
  type Executor,
  type ExecutorOptions,
  openAgentState,
  runAgent,
} from "../agent/mod.ts";
import { sharedDirectoryProblem } from "../own_files.ts";
import { StateOwnerError } from "../agent/state.ts";
import { openSqliteStore, type SqliteStore } from "../store/mod.ts";
import { ConfigError } from "../errors.ts";
import { type SettingKey, SETTINGS, TILDE_NOT_EXPANDED } from "../config/mod.ts";
import { literal, logger } from "../log/mod.ts";
import { checkAddressesFree, type RunningServer, startServer } from "../server/mod.ts";
import { AdminTokenRequiredError } from "../server/serve.ts";
import { checkMetricsPortFree, executorFromSettings, loopOptionsFromSettings } from "./agent.ts";
import {
  addSettingOptions,
  checkDirectorySetting,
  fileProblem,
  isAddrInUse,
  loadCommandSettings,
} from "./common.ts";
import { parseAgentId } from "./enqueue.ts";
import { addressInUse } from "./serve.ts";
import { currentProgram } from "./daemon.ts";
import type { Io } from "./io.ts";

/** Folder of the database and the agent's state by default. */
export const UP_DEFAULT_DATA_DIR = "./.status";
/**
 * Settings `status up` does not take from any source: it listens on loopback in dev mode, keeps
 * its data in `--data-dir`, and its agent talks to its own dashboard.
 */
export const UP_IGNORED: readonly SettingKey[] = [
  "bind",
  "db",
  "databaseUrl",
  "stateDir",
  "dashboardUrl",
  "agentToken",
  "statusAdminToken",
  "tlsCert",
  "tlsKey",
  "daemon",
  "pidFile",
  "waitRequireSignature",
  "acceptV1Signatures",
];

/** The agent id `status up` runs by default (the seed's). */
export const UP_DEFAULT_AGENT_ID = "test-agent";

function parsePort(value: string): number {
  const trimmed = value.trim();
  const port = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError("must be a port number from 0 to 65535");
  }
  return port;
}

function parseDataDir(value: string): string {
  if (value.trim() === "") {
    throw new InvalidArgumentError("must be a directory path, got an empty value");
  }
  if (value.startsWith("~")) {
    throw new InvalidArgumentError(
      `must be a directory path, got ${JSON.stringify(value)}: ${TILDE_NOT_EXPANDED}`,
    );
  }
  return value;
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** How the banner's CLI command starts `status` from a checkout (the README's quick start). */
export const UP_CHECKOUT_CLI = "npx -y deno@2.9.6 task status";

/**
 * The lines `status up` prints once both parts run: where they are and three commands to try.
 *
 * @param options The dashboard's port, the agent id, the data folder, and how to start the
 *   `status` CLI (default {@link UP_CHECKOUT_CLI}; a `deno compile` binary gives its own path,
 *   since a deno task needs the checkout).
 * @returns The lines.
 */
export function upBanner(
  options: { port: number; agentId: string; dataDir: string; cli?: string },
): string[] {
  const base = `http://localhost:${options.port}`;
  const body = JSON.stringify({ id: "cmd-001", name: "echo Hello from dashboard", params: {} });
  const urlFlag = options.port === DEFAULT_PORT ? "" : ` --dashboard-url ${base}`;
  return [
    `status up: dashboard on http://127.0.0.1:${options.port} (dev mode, loopback only, ` +
    `database ${join(options.dataDir, "status.db")})`,
    `status up: agent ${options.agentId} is polling it (state in ${
      join(options.dataDir, "agent-state")
    })`,
    `status up: web console at ${base}/ (open it in a browser)`,
    "",
    "Try, in another terminal:",
    "",
    `  curl -X POST ${base}/api/v1/agent/commands/enqueue -H 'Content-Type: application/json' ` +
    `-H 'X-Agent-Id: ${options.agentId}' -d '${body}'`,
    `  curl ${base}/api/v1/commands/cmd-001`,
    "",
    `  ${
      options.cli ?? UP_CHECKOUT_CLI
    } enqueue "echo hi" --agent ${options.agentId} --wait${urlFlag}`,
    "",
    "Press Ctrl-C to stop.",
  ];
}

/**
 * Builds `status up`.
 *
 * @param io Where the command prints.
 * @returns The command.
 */
export function upCommand(io: Io): Command {
  const command = new Command("up")
    .description(
      "Try status on this machine: a dev-mode dashboard on 127.0.0.1 and one agent in one " +
        "process, data in ./.status; Ctrl-C stops both",
    )
    .option(
      "--port <port>",
      `port of the dashboard (0: any free port; default PORT, else ${DEFAULT_PORT})`,
      parsePort,
    )
    .option(
      "--data-dir <dir>",
      "folder of the database (status.db) and the agent's state (agent-state)",
      parseDataDir,
      UP_DEFAULT_DATA_DIR,
    )
    .option(
      "--agent-id <id>",
      `id of the agent (default AGENT_ID, else ${UP_DEFAULT_AGENT_ID})`,
      parseAgentId,
    );
  // Every setting it takes has its flag, as everywhere; --port and --agent-id are its own above.
  addSettingOptions(command, ["agent", "server"], [...UP_IGNORED, "port", "agentId"]);
  command.addHelpText(
    "after",
    `
Permissions: deno task start, or
  deno run --allow-net --allow-run --allow-read --allow-write --allow-env --allow-sys main.ts up

PORT and AGENT_ID, and the other settings of the agent and the dashboard (ALLOWED_PROGRAMS,
COMMAND_TIMEOUT_SECS, ...), are read from their flags above, the environment, .env and
config.json as usual. These are not, and a note says so when one is set: ${
      UP_IGNORED.map((k) => SETTINGS[k].env)
        .join(", ")
    }: "status up" always listens on 127.0.0.1 in dev mode, with its data in --data-dir,
and its agent talks to it. For anything beyond trying, run "status serve" and "status agent".`,
  );
  command.action(async (options) => {
    // Not even checked: another program's DATABASE_URL=mysql2://... or BIND stopped it.
    const loaded = loadCommandSettings(
      io,
      options as Record<string, unknown>,
      ["agent", "server"],
      {
        unread: UP_IGNORED,
      },
    );
    const s = loaded.settings;
    const log = logger("up");
    const ignored = UP_IGNORED.filter((key) => loaded.unread[key] !== undefined);
    if (ignored.length > 0) {
      log.warning(
        literal(
          `status up ignores ${
            ignored.map((key) => `${SETTINGS[key].env} (from ${loaded.unread[key]})`).join(", ")
          }: it always listens on 127.0.0.1 in dev mode with its data in --data-dir; use ` +
            '"status serve" and "status agent" for these',
        ),
      );
    }
    checkDirectorySetting(loaded, "commandCwd");
    const port = s.port;
    const agentId = s.agentId ?? UP_DEFAULT_AGENT_ID;
    const dataDir = options.dataDir;
    const db = join(dataDir, "status.db");
    const stateDir = join(dataDir, "agent-state");
    // Before the folder is made: a port in use fails the start with nothing left behind.
    try {
      checkAddressesFree({ hostname: "127.0.0.1", port, metricsBind: s.metricsBind });
    } catch (error) {
      throw busyAddress(error, port);
    }
    // Its agent's metrics too (METRICS_PORT), said as `status agent` says it.
    checkMetricsPortFree(s.metricsPort);
    try {
      // Owner only: the database and the agent's state are no one else's to read.
      Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new ConfigError(
          `cannot create ${stateDir} without --allow-write (and --allow-read); run ` +
            "deno task start",
          { cause: error },
        );
      }
      // Said as the other folder and file settings are: "--data-dir x (or a folder above it) is
      // not a directory", not "Not a directory (os error 20): mkdir 'x/agent-state'".
      throw new ConfigError(
        `cannot use --data-dir ${dataDir}: ${
          error instanceof Deno.errors.AlreadyExists
            ? `${stateDir} is there and is not a directory`
            : fileProblem(error, stateDir)
        }`,
        { cause: error },
      );
    }
    // One that was there already (made first by another user in /tmp, say): they could read
    // the database, or swap what lies in it.
    const shared = sharedDirectoryProblem(dataDir);
    if (shared !== undefined) {
      throw new ConfigError(
        `cannot use --data-dir ${dataDir}: ${shared} (another user could read or replace the ` +
          "database and the agent's state); give it a directory of its own",
      );
    }

    // A database whose agents have tokens is refused before the agent's state is opened, which
    // takes over a state directory another agent id left with nothing to deliver (and forgets
    // that agent's command ids) (the dashboard's start refuses it too, should one be added now).
    if (await holdsAgentTokens(db)) throw new ConfigError(tokensRefusal(db));

    // The agent's state directory first (another "status up" may hold its lock): fail before
    // the dashboard starts and before the invitation is printed, and before the executor, whose
    // sandbox is named after it (made beside another "status up", it swept that one's commands).
    let state: AgentState;
    try {
      // Its dashboard is the database beside it, whatever the port: only the agent id can differ.
      state = openAgentState({ dir: stateDir, owner: { agentId, dashboardUrl: "status up" } });
    } catch (error) {
      if (error instanceof StateOwnerError) {
        const previous = error.previousAgentId;
        throw new ConfigError(
          `cannot start the agent ${agentId}: ${stateDir} holds ${error.pending} result(s) not ` +
            `yet delivered of ${
              previous !== undefined
                ? `agent ${JSON.stringify(previous)}`
                : error.claimFix !== undefined
                ? "an agent its owner.json does not name (it is damaged)"
                : "another agent"
            }, which would be sent as ${agentId}'s; ${
              previous !== undefined
                ? `run status up --agent-id ${previous} until they are delivered, or `
                : error.claimFix !== undefined
                ? `if they are this agent's, ${error.claimFix}, or `
                : ""
            }give this one its own --data-dir`,
          { cause: error },
        );
      }
      throw new ConfigError(
        `cannot start the agent: ${(error as Error).message} (is another "status up" using ` +
          `${dataDir}? stop it, or give this one its own --data-dir)`,
        { cause: error },
      );
    }

    // Dev mode: the agent signs nothing, whatever AGENT_TOKEN says.
    // Commands may not name the data directory (the database, the agent's state) or the files
    // the settings came from.
    let executor: Executor;
    let exec: ExecutorOptions;
    try {
      ({ executor, exec } = executorFromSettings(
        { ...s, stateDir, agentToken: undefined },
        [dataDir, ...loaded.files],
      ));
    } catch (error) {
      state[Symbol.dispose]();
      throw error;
    }

    using _survive = surviveConnectionFailures();
    using _console = consoleIntoLog();
    let server: RunningServer;
    try {
      server = await startServer({
        db,
        port,
        hostname: "127.0.0.1",
        ackTimeoutSecs: s.ackTimeoutSecs,
        maxAttempts: s.maxAttempts,
        rateLimitPerMinute: s.rateLimitPerMinute,
        headerTimeoutSecs: s.headerTimeoutSecs,
        maxConnections: s.maxConnections,
        operatorRateLimitPerMinute: s.operatorRateLimitPerMinute,
        queueTtlSecs: s.queueTtlSecs,
        resultRetentionDays: s.resultRetentionDays,
        defaultTimeoutSecs: s.commandTimeoutSecs,
        offlineAfterSecs: s.offlineAfterSecs,
        metricsBind: s.metricsBind,
      });
    } catch (error) {
      state[Symbol.dispose]();
      await executor.close?.();
      if (error instanceof AdminTokenRequiredError) {
        // The advice to set STATUS_ADMIN_TOKEN is one status up cannot take.
        throw new ConfigError(tokensRefusal(db), { cause: error });
      }
      throw busyAddress(error, port);
    }

    const signals = twoStageStop({
      first: (name) => log.info(`${name} received: stopping the agent, then the dashboard`),
      again: (name) => log.warning(`${name} received again: stopping at once`),
      ignore: (name) => {
        if (name !== "SIGHUP" || !startedIgnoringHangup()) return false;
        log.info(NOHUP_IGNORED);
        return true;
      },
    });
    const { stop, stopNow } = signals;

    try {
      const agent = runAgent({
        ...loopOptionsFromSettings({ ...s, stateDir, agentToken: undefined }),
        dashboardUrl: server.url,
        agentId,
        state,
        executor,
        exec,
        stopNow: stopNow.signal,
      }, stop.signal);
      const program = currentProgram();
      const cli = program.compiled ? program.command : undefined;
      for (const line of upBanner({ port: server.port, agentId, dataDir, cli })) {
        io.out(line);
      }
      // The agent returns once stopped (or throws when it cannot run at all); the dashboard
      // ending on its own is a failure too.
      const ended = await Promise.race([
        agent.then(() => "agent" as const),
        server.finished.then(() => "server" as const),
      ]);
      if (ended === "server") {
        stop.abort();
        await agent;
        throw new Error("the dashboard stopped unexpectedly");
      }
      if (!stop.signal.aborted) throw new Error("the agent stopped unexpectedly");
      io.err("status up: agent stopped; stopping the dashboard");
    } finally {
      stop.abort();
      // A second signal, before or while the dashboard stops, closes its connections at once.
      const now = () => void server.shutdown({ now: true });
      if (stopNow.signal.aborted) now();
      else stopNow.signal.addEventListener("abort", now, { once: true });
      await server.shutdown();
      stopNow.signal.removeEventListener("abort", now);
      // The watchdog, and the agent's cgroup directory when it confined commands.
      await executor.close?.();
      state[Symbol.dispose]();
      signals[Symbol.dispose]();
    }
    io.err("status up: stopped");
    // Stopped at once by a second signal: 128 + its number, as `status agent` (a command may
    // have been cut short).
    if (signals.forcedBy) setExitCode(128 + signalNumber(signals.forcedBy)!);
  });
  return command as unknown as Command;
}

/** What to do about the dashboard's port, or METRICS_BIND, in use; another error as it is. */
function busyAddress(error: unknown, port: number): unknown {
  if (!isAddrInUse(error)) return error;
  if ((error as Error).message.startsWith("cannot serve metrics")) {
    return addressInUse(error as Error);
  }
  return new Error(
    `port ${port} is busy: something already listens on 127.0.0.1:${port} ` +
      '(another "status up" or "status serve"?); stop it, or choose another port with ' +
      "--port <n> (0 picks a free one)",
    { cause: error },
  );
}

/** Why `status up` cannot run a database whose agents have tokens, and what to do instead. */
function tokensRefusal(db: string): string {
  return `${db} holds agents with tokens, and "status up" runs its dashboard only in dev mode, ` +
    `which they end; see them with "status agents list --db ${db}" and remove them with ` +
    `"status agents remove <id> --db ${db}", give status up another --data-dir, or run ` +
    `this database with "status serve --db ${db}" and STATUS_ADMIN_TOKEN`;
}

/**
 * Whether the database at `db` exists and has an agent with a token. A database that cannot be
 * opened or read counts as not: the dashboard's own start says what is wrong with it.
 */
async function holdsAgentTokens(db: string): Promise<boolean> {
  try {
    if (!Deno.statSync(db).isFile) return false;
  } catch {
    return false;
  }
  let store: SqliteStore;
  try {
    store = openSqliteStore(db);
  } catch {
    return false;
  }
  try {
    return await store.hasAgentWithToken();
  } catch {
    return false;
  } finally {
    await store.close();
  }
}
