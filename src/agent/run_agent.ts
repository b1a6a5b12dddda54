/**
 * Running an agent: {@link runAgent} opens the journal and the outbox, the executor, the metrics
 * endpoint and the heartbeat, recovers what a previous run left, runs the poll loop until its
 * signal aborts, and closes what it opened. The parts live beside it: `poll_loop.ts`,
 * `command_handler.ts`, `command_execution.ts`, `cancel_watch.ts`, `result_reporter.ts`,
 * `recovery.ts`.
 *
 * @module
 */
import {
  DEFAULT_DEPLOYMENT_HASH,
  DEFAULT_METRICS_INTERVAL_SECS,
  DEFAULT_POLLING_BACKOFF_MAX_SECS,
  DEFAULT_POLLING_BACKOFF_SECS,
  DEFAULT_POLLING_TIMEOUT_SECS,
  DEFAULT_SHUTDOWN_GRACE_SECS,
  DEFAULT_STATE_DIR,
} from "../defaults.ts";
import { inheritedDescriptorsWarning } from "../exec/sandbox.ts";
import { literal, logger } from "../log/mod.ts";
import {
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  DEPLOYMENT_HASH_PATTERN,
  DEPLOYMENT_HASH_RULE,
  INSTANCE_ID_PATTERN,
  labelsSchema,
} from "../protocol/mod.ts";
import type { PollBackoffOptions } from "./backoff.ts";
import { CancelWatcher } from "./cancel_watch.ts";
import { type Clock, systemClock } from "./clock.ts";
import { DashboardClient, WAIT_GRACE_SECS } from "./client.ts";
import { CommandExecution } from "./command_execution.ts";
import { CommandHandler } from "./command_handler.ts";
import {
  checkExecutorOptions,
  createExecutor,
  type Executor,
  type ExecutorOptions,
} from "./executor.ts";
import { fleetHeartbeat, type HeartbeatOptions, runHeartbeat } from "./heartbeat.ts";
import { type AgentState, openAgentState } from "./state.ts";
import type { OutputStreamerOptions } from "./output_stream.ts";
import { PollLoop } from "./poll_loop.ts";
import { AgentMetrics } from "./prom.ts";
import { recover } from "./recovery.ts";
import { ResultReporter } from "./result_reporter.ts";
import { type MetricsServer, parseListenAddress, serveMetrics } from "../metrics_server.ts";
import { VERSION } from "../version.ts";
import { isLoopback } from "../protocol/loopback.ts";
import { checkFlag, checkNoNulls, checkOptionNames, type OptionNames } from "../options.ts";
import { stateInstanceId } from "./instance.ts";

/** Options of {@link runAgent}: the agent settings plus injectables. */
export interface AgentOptions {
  /** Base URL of the dashboard (`DASHBOARD_URL`). */
  dashboardUrl: string;
  /** This agent's id (`AGENT_ID`). */
  agentId: string;
  /**
   * This agent's token (`AGENT_TOKEN`): 16 to 1024 printable ASCII characters, without spaces.
   * Without it requests are unsigned (dev mode).
   */
  agentToken?: string;
  /**
   * The deployment this agent serves (`DEPLOYMENT_HASH`).
   * @default {"default"}
   */
  deploymentHash?: string;
  /** This agent's labels (`AGENT_LABELS`), sent in its heartbeats. */
  labels?: Record<string, string>;
  /**
   * How long one long-poll may wait on the dashboard, in seconds (`POLLING_TIMEOUT_SECS`).
   * @default {30}
   */
  pollingTimeoutSecs?: number;
  /**
   * First back-off delay's upper bound, in seconds (`POLLING_BACKOFF_SECS`).
   * @default {5}
   */
  pollingBackoffSecs?: number;
  /**
   * Largest back-off delay, in seconds (`POLLING_BACKOFF_MAX_SECS`).
   * @default {60}
   */
  pollingBackoffMaxSecs?: number;
  /**
   * After the stop signal, how long a running command may still run before it is cancelled, in
   * seconds (`SHUTDOWN_GRACE_SECS`).
   * @default {30}
   */
  shutdownGraceSecs?: number;
  /**
   * Seconds between heartbeat samples (`METRICS_INTERVAL_SECS`).
   * @default {30}
   */
  metricsIntervalSecs?: number;
  /** Where heartbeat samples are POSTed (`METRICS_WEBHOOK`). */
  metricsWebhook?: string;
  /**
   * Whether the metrics heartbeat runs.
   * @default {true}
   */
  heartbeat?: boolean;
  /** @internal Options overriding the heartbeat's defaults (tests). */
  heartbeatOptions?: Partial<HeartbeatOptions>;
  /**
   * Directory of the journal and the outbox (`STATE_DIR`); ignored when `state` is given. Without
   * it (and without `state`) they are kept in memory: nothing is written to the disk, and a
   * restart forgets which commands ran (the `status` CLI always passes `STATE_DIR`, by default
   * `./.status-state`).
   * @default {undefined (in memory)}
   */
  stateDir?: string;
  /**
   * @internal An opened journal and outbox to use instead of opening `stateDir`; left open at the
   * end.
   */
  state?: AgentState;
  /** @internal Runs commands; defaults to an executor made with `exec`. */
  executor?: Executor;
  /** Settings of the default executor. */
  exec?: ExecutorOptions;
  /**
   * Aborted on a second stop request: a running command is cancelled at once, its result stays
   * in the outbox unsent, and `runAgent` resolves as soon as that is written.
   */
  stopNow?: AbortSignal;
  /** @internal `fetch` to use; for tests. */
  fetch?: typeof fetch;
  /** @internal Clock and sleep; for tests. */
  clock?: Clock;
  /**
   * @internal Upper bound of the first retry delay of an ack, and of a report while stopping, in
   * milliseconds (full jitter, doubling up to four times this).
   * @default {500}
   */
  retryDelayMs?: number;
  /**
   * @internal This process's instance id, sent with every request (one agent process per agent id).
   * @default {a random UUID}
   */
  instanceId?: string;
  /**
   * Whether a running command's output is streamed to the dashboard while it runs.
   * @default {true}
   */
  liveOutput?: boolean;
  /** @internal Options of the live output stream (tests). */
  liveOutputOptions?: Partial<Omit<OutputStreamerOptions, "attempt" | "send">>;
  /** @internal The agent's Prometheus metrics; made when `metricsPort` is given. */
  metrics?: AgentMetrics;
  /**
   * Serve the agent's metrics on `GET /metrics` at this `PORT` (on 127.0.0.1) or `HOST:PORT`
   * (`METRICS_PORT`), while the agent runs.
   */
  metricsPort?: string;
  /**
   * @internal Called once the agent holds its state directory, serves its metrics and has
   * finished what its previous run left, before its first wait: a daemon writes its pid file
   * here, so that whoever started it learns of a failure up to this point. A throw stops the
   * agent with that error.
   */
  onStarted?: () => void;
}

/** What {@link runAgent} did, once it stopped. */
export interface AgentRunSummary {
  /** Commands run (not counting deliveries that were answered from the journal). */
  commandsRun: number;
  /**
   * Reports still in the outbox (sent after a restart when the outbox is durable, except those
   * that could not be written to it: the stop loses them, with an error saying how many).
   */
  reportsPending: number;
  /** Whether the journal and the outbox were on disk. */
  durable: boolean;
}

/** Every option of {@link runAgent}. */
const AGENT_OPTIONS: OptionNames<AgentOptions> = {
  dashboardUrl: true,
  agentId: true,
  agentToken: true,
  deploymentHash: true,
  labels: true,
  pollingTimeoutSecs: true,
  pollingBackoffSecs: true,
  pollingBackoffMaxSecs: true,
  shutdownGraceSecs: true,
  metricsIntervalSecs: true,
  metricsWebhook: true,
  heartbeat: true,
  heartbeatOptions: true,
  stateDir: true,
  state: true,
  executor: true,
  exec: true,
  stopNow: true,
  fetch: true,
  clock: true,
  retryDelayMs: true,
  instanceId: true,
  liveOutput: true,
  liveOutputOptions: true,
  metrics: true,
  metricsPort: true,
  onStarted: true,
};

/** Every option of {@link AgentOptions.exec}. */
const EXEC_OPTIONS: OptionNames<ExecutorOptions> = {
  allowedPrograms: true,
  allowedPathPrefixes: true,
  defaultTimeoutSecs: true,
  maxTimeoutSecs: true,
  commandEnv: true,
  cwd: true,
  user: true,
  maxProcesses: true,
  maxMemory: true,
  stateDir: true,
  protectedPaths: true,
  confine: true,
  cgroups: true,
  secretValues: true,
  clock: true,
};

const log = logger("agent");
const pollLog = logger("agent", "poll");

function checkSecs(name: string, value: number, min: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of at least ${min}, got ${value}`);
  }
  return value;
}

/**
 * Checks what names this agent to the dashboard, as the CLI's settings do: a value the dashboard
 * refuses on every request is a `TypeError` here, not an agent that runs and is refused forever.
 */
function checkIdentity(options: AgentOptions): void {
  const { agentId, deploymentHash } = options;
  if (typeof agentId !== "string" || !AGENT_ID_PATTERN.test(agentId)) {
    throw new TypeError(`agentId must be ${AGENT_ID_RULE}, got ${JSON.stringify(agentId)}`);
  }
  if (
    deploymentHash !== undefined &&
    (typeof deploymentHash !== "string" || !DEPLOYMENT_HASH_PATTERN.test(deploymentHash))
  ) {
    throw new TypeError(
      `deploymentHash must be ${DEPLOYMENT_HASH_RULE}, got ${JSON.stringify(deploymentHash)}`,
    );
  }
  const { agentToken } = options;
  if (
    agentToken !== undefined &&
    (typeof agentToken !== "string" || !/^[\x21-\x7e]{16,1024}$/.test(agentToken))
  ) {
    // Never quoted: a secret. "" sent every request unsigned, logged as signed; a short one was
    // refused by the dashboard on every request.
    throw new TypeError(
      "agentToken must be 16 to 1024 printable ASCII characters, without spaces (leave it out " +
        `for a dashboard in dev mode), got ${
          typeof agentToken === "string" ? `${agentToken.length} characters` : typeof agentToken
        }`,
    );
  }
  const url = URL.parse(String(options.dashboardUrl));
  if (options.agentToken && url && (url.username || url.password)) {
    throw new TypeError(
      "dashboardUrl must not hold a user name or password: they would be sent in the " +
        "Authorization header the token needs, and every request refused; leave them out",
    );
  }
  if (options.metricsWebhook !== undefined) {
    const webhook = URL.parse(String(options.metricsWebhook));
    if (webhook?.protocol !== "http:" && webhook?.protocol !== "https:") {
      throw new TypeError(
        `metricsWebhook must be an http:// or https:// URL, got ${
          JSON.stringify(String(options.metricsWebhook))
        }`,
      );
    }
  }
  // Sent as X-Agent-Instance with every request: one the dashboard refuses (`a b`) made every
  // wait a 400, one with a line break failed inside fetch, and "" was sent as no instance.
  const { instanceId } = options;
  if (
    instanceId !== undefined &&
    (typeof instanceId !== "string" || !INSTANCE_ID_PATTERN.test(instanceId))
  ) {
    throw new TypeError(
      `instanceId must be 1–128 characters of A-Z a-z 0-9 . _ : -, got ${
        JSON.stringify(instanceId) ?? String(instanceId)
      }`,
    );
  }
  // Before anything is made: a number here failed as "value.trim is not a function", and a
  // malformed one only once the state directory was taken.
  if (options.metricsPort !== undefined) parseListenAddress(options.metricsPort, "metricsPort");
  if (options.labels !== undefined) {
    const labels = labelsSchema.safeParse(options.labels);
    if (!labels.success) {
      throw new TypeError(`labels are invalid: ${labels.error.issues[0]?.message}`);
    }
  }
}

/**
 * Runs the agent until `signal` aborts, then lets a running command finish within the shutdown
 * grace (cancelling it after), reports its result and resolves. Library code: it never exits
 * the process and never installs signal handlers; the CLI turns SIGINT/SIGTERM/SIGHUP into `signal`
 * (and a second signal into `options.stopNow`).
 *
 * @param options Settings and injectables.
 * @param signal Stops the agent.
 * @returns What the agent did.
 * @throws {TypeError} When `options` (or `exec`) is not an object or has a key that is not one of
 *   its options or is `null`, `agentToken` is not 16 to 1024 printable ASCII characters without spaces, `signal` or `stopNow` is not an `AbortSignal`, `heartbeat`, `liveOutput`,
 *   `exec.confine` or `exec.cgroups` not a boolean, or `stateDir` not a directory path; when the dashboard would refuse every request (an `agentId`,
 *   `deploymentHash` or `labels` against the protocol's rules, a `dashboardUrl` that is not
 *   http(s), holds a control character or a space inside, or one with a user name or password beside an `agentToken`); or when a
 *   `metricsWebhook` is not http(s), `metricsPort` not a string, or `instanceId` not 1–128 characters of A-Z a-z 0-9 . _ : -.
 * @throws {RangeError} On an out-of-range option, or a `metricsPort` that is not `PORT` or
 *   `HOST:PORT`.
 * @throws {Error} When the state directory cannot be used or written.
 *
 * @example Run one command from a dashboard, then stop
 * ```ts
 * import assert from "node:assert/strict";
 * import { OperatorClient, runAgent, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const operator = new OperatorClient({ dashboardUrl: server.url });
 * const { id } = await operator.enqueue({ agentId: "web-1", name: "echo hi" });
 * const stop = new AbortController();
 * const agent = runAgent(
 *   { dashboardUrl: server.url, agentId: "web-1", heartbeat: false },
 *   stop.signal,
 * );
 * assert.equal((await operator.waitForFinal(id)).status, "success");
 * stop.abort();
 * assert.equal((await agent).commandsRun, 1);
 * ```
 */
export async function runAgent(
  options: AgentOptions,
  signal: AbortSignal,
): Promise<AgentRunSummary> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`runAgent's options must be an object, got ${String(options)}`);
  }
  if (!(signal instanceof AbortSignal)) {
    // Found only once polling began, deep inside (reading 'aborted' of undefined).
    throw new TypeError(
      `runAgent's signal must be an AbortSignal (abort it to stop the agent), got ${
        String(signal)
      }`,
    );
  }
  checkOptionNames("runAgent", options, AGENT_OPTIONS);
  checkNoNulls(options);
  if (options.exec !== undefined) {
    if (options.exec === null || typeof options.exec !== "object") {
      throw new TypeError(`exec must be an object, got ${JSON.stringify(options.exec)}`);
    }
    checkOptionNames("runAgent's exec", options.exec, EXEC_OPTIONS);
    checkFlag("exec.confine", options.exec.confine);
    checkFlag("exec.cgroups", options.exec.cgroups);
  }
  checkFlag("heartbeat", options.heartbeat);
  checkFlag("liveOutput", options.liveOutput);
  if (options.stopNow !== undefined && !(options.stopNow instanceof AbortSignal)) {
    throw new TypeError(
      `stopNow must be an AbortSignal (abort it to stop at once), got ${String(options.stopNow)}`,
    );
  }
  checkIdentity(options);
  const { stateDir } = options;
  if (stateDir !== undefined && (typeof stateDir !== "string" || stateDir.trim() === "")) {
    // "" kept the journal in the working directory, 42 made a directory "42" before failing.
    throw new TypeError(
      "stateDir must be a directory path (or left out to keep the journal and outbox in " +
        `memory), got ${JSON.stringify(stateDir)}`,
    );
  }
  const stopNow = options.stopNow ?? new AbortController().signal;
  const clock = options.clock ?? systemClock;
  const deploymentHash = options.deploymentHash ?? DEFAULT_DEPLOYMENT_HASH;
  const pollingTimeoutSecs = checkSecs(
    "pollingTimeoutSecs",
    options.pollingTimeoutSecs ?? DEFAULT_POLLING_TIMEOUT_SECS,
    1,
  );
  const graceMs =
    checkSecs("shutdownGraceSecs", options.shutdownGraceSecs ?? DEFAULT_SHUTDOWN_GRACE_SECS, 0) *
    1000;
  checkSecs(
    "metricsIntervalSecs",
    options.metricsIntervalSecs ?? DEFAULT_METRICS_INTERVAL_SECS,
    0.001,
  );
  const backoff: PollBackoffOptions = {
    initialSecs: checkSecs(
      "pollingBackoffSecs",
      options.pollingBackoffSecs ?? DEFAULT_POLLING_BACKOFF_SECS,
      0.001,
    ),
    maxSecs: options.pollingBackoffMaxSecs ?? DEFAULT_POLLING_BACKOFF_MAX_SECS,
  };
  checkSecs("pollingBackoffMaxSecs", backoff.maxSecs!, backoff.initialSecs!);
  const retryDelayMs = checkSecs("retryDelayMs", options.retryDelayMs ?? 500, 0);
  let instanceId = options.instanceId ?? crypto.randomUUID();
  let metrics = options.metrics;
  const client = new DashboardClient({
    dashboardUrl: options.dashboardUrl,
    agentId: options.agentId,
    agentToken: options.agentToken,
    instanceId: () => instanceId,
    fetch: options.fetch,
    now: () => clock.now(),
  });

  log.info("Agent daemon starting", {
    agentId: options.agentId,
    dashboardUrl: options.dashboardUrl,
    deploymentHash,
    signed: options.agentToken !== undefined,
    pid: Deno.pid,
    version: VERSION,
  });
  if (!options.agentToken) {
    log.warning(
      "no AGENT_TOKEN is set: requests are not signed, which only a dashboard in dev mode " +
        "accepts; set AGENT_TOKEN (or --agent-token) to sign them",
    );
  }
  const dashboard = new URL(String(options.dashboardUrl));
  if (options.agentToken && dashboard.protocol === "http:" && !isLoopback(dashboard.hostname)) {
    // Every request carries the token itself as a bearer token beside its signature (§1).
    log.warning(
      literal(
        `DASHBOARD_URL ${dashboard.origin} is plain HTTP to another machine: AGENT_TOKEN crosses ` +
          "the network in clear text in every request (anyone on the path may read it and act " +
          "as this agent); serve the dashboard over HTTPS and give an https:// DASHBOARD_URL",
      ),
    );
  }
  // The state directory first: its lock says whether another agent uses it. The executor's
  // sandbox is named after it (its cgroups, its watchdog, its commands' directories), so one made
  // before the lock, by a second agent given the same STATE_DIR by mistake, swept the running
  // agent's commands when it closed on the refusal.
  // Its settings are checked before that, though: a start refused for them made the state
  // directory (and its lock and journal) it would never use.
  const execOptions: ExecutorOptions = {
    stateDir: options.stateDir,
    ...options.exec,
    secretValues: [...(options.exec?.secretValues ?? []), options.agentToken ?? ""].filter(
      (s) => s !== "",
    ),
  };
  if (options.executor === undefined) checkExecutorOptions(execOptions);
  const ownState = options.state === undefined;
  const state = options.state ??
    (options.stateDir === undefined ? openAgentState({ canUse: () => false }) : openAgentState({
      dir: options.stateDir,
      owner: { agentId: options.agentId, dashboardUrl: String(options.dashboardUrl) },
    }));
  const ownExecutor = options.executor === undefined;
  let executor: Executor;
  try {
    executor = options.executor ?? createExecutor(execOptions);
  } catch (error) {
    if (ownState) state[Symbol.dispose]();
    throw error;
  }
  const confinement = executor.describe?.();
  if (confinement) log.info("sandbox: {confinement}", { confinement });
  for (const warning of executor.warnings?.() ?? []) log.warning("sandbox: {warning}", { warning });
  // Descriptors this process inherited reach every child, the commands of an executor that
  // confines them (and says how) included.
  const inherited = confinement ? inheritedDescriptorsWarning() : undefined;
  if (inherited) log.warning("sandbox: {warning}", { warning: inherited });
  if (ownState && options.stateDir === undefined) {
    log.info(
      "execution journal and result outbox are kept in memory (no stateDir given); pass " +
        "stateDir to keep them on disk across restarts",
    );
  } else if (state.notice) log.warning(state.notice);
  else if (ownState) {
    log.info("execution journal and result outbox are on disk", {
      stateDir: options.stateDir,
    });
  }
  // A restarted agent keeps its instance id (the dashboard serves one process per agent id).
  if (options.instanceId === undefined && ownState && state.durable) {
    try {
      instanceId = stateInstanceId(options.stateDir ?? DEFAULT_STATE_DIR);
    } catch (error) {
      log.warning(
        "could not keep the instance id in the state directory ({error}); this process is a " +
          "new instance to the dashboard until that is fixed: remove what is in the way",
        { error: (error as Error).message },
      );
    }
  }
  log.info("agent instance {instanceId}", { instanceId });
  const reporter = new ResultReporter({ client, state, clock, retryDelayMs, signal, stopNow });
  const heartbeatStop = new AbortController();
  let heartbeat: Promise<void> | undefined;
  let metricsServer: MetricsServer | undefined;
  let handler: CommandHandler | undefined;
  try {
    if (options.metricsPort !== undefined) {
      metrics ??= new AgentMetrics({ agentId: options.agentId, version: VERSION, instanceId });
      const served = metrics;
      metricsServer = await serveMetrics(
        () => served.render(),
        parseListenAddress(options.metricsPort),
        heartbeatStop.signal,
        { setting: "METRICS_PORT, --metrics-port" },
      );
    }
    metrics?.started(clock.now());
    await recover(state, executor, () => clock.now());
    options.onStarted?.();
    if (options.heartbeat !== false) {
      const overrides = options.heartbeatOptions ?? {};
      heartbeat = runHeartbeat({
        agentId: options.agentId,
        intervalSecs: options.metricsIntervalSecs ?? DEFAULT_METRICS_INTERVAL_SECS,
        webhook: options.metricsWebhook,
        dashboardUrl: options.dashboardUrl,
        agentToken: options.agentToken,
        fetch: options.fetch,
        clock,
        report: fleetHeartbeat({
          client,
          version: VERSION,
          deploymentHash,
          instanceId: () => instanceId,
          labels: options.labels ?? {},
        }),
        ...overrides,
      }, AbortSignal.any([signal, heartbeatStop.signal]));
    }
    pollLog.info("long-polling configuration initialized", {
      dashboardUrl: options.dashboardUrl,
      deploymentHash,
      pollingTimeoutSecs,
      clientAbortSecs: pollingTimeoutSecs + WAIT_GRACE_SECS,
      pollingBackoffSecs: backoff.initialSecs,
      pollingBackoffMaxSecs: backoff.maxSecs,
      shutdownGraceSecs: graceMs / 1000,
    });
    const execution = new CommandExecution({
      executor,
      journal: state.journal,
      client,
      clock,
      cancelWatcher: new CancelWatcher({ client, clock, backoff, pollingTimeoutSecs, metrics }),
      graceMs,
      liveOutput: options.liveOutput ?? true,
      liveOutputOptions: options.liveOutputOptions,
      metrics,
      signal,
      stopNow,
    });
    handler = new CommandHandler({
      client,
      state,
      execution,
      reporter,
      clock,
      retryDelayMs,
      backoff,
      metrics,
      signal,
    });
    await new PollLoop({
      client,
      clock,
      state,
      handler,
      reporter,
      dashboardUrl: options.dashboardUrl,
      deploymentHash,
      pollingTimeoutSecs,
      backoff,
      instanceId: () => instanceId,
      metrics,
      signal,
    }).run();
  } finally {
    heartbeatStop.abort();
    await heartbeat;
    await metricsServer?.finished;
    // Results kept in memory only (their files could not be written: a full disk) are lost with
    // the process: one last try to write them down.
    if (state.durable && state.outbox.unsaved > 0) {
      try {
        state.retry?.();
      } catch {
        // Counted as lost below.
      }
    }
    if (ownState) state[Symbol.dispose]();
    if (ownExecutor) await executor.close?.();
  }
  const commandsRun = handler.commandsRun;
  const pending = state.outbox.size;
  const lost = state.durable ? state.outbox.unsaved : pending;
  if (pending > lost) {
    log.warning("results not yet accepted stay in the outbox and are sent after a restart", {
      pending: pending - lost,
    });
  }
  if (lost > 0 && !state.durable) {
    log.warning("results not yet accepted are lost: the outbox is in memory only", {
      pending: lost,
    });
  } else if (lost > 0) {
    log.error(
      "results not yet accepted are lost with this stop: the state directory could not be " +
        "written (full, or not writable) when they were put in the outbox, nor now, so they " +
        "were kept in memory only and the dashboard never gets them; free space in the state " +
        "directory before stopping an agent that says its results are kept in memory",
      { lost, stateDir: state.journal.dir ?? null },
    );
  }
  log.info("agent stopped", { commandsRun, reportsPending: pending });
  return { commandsRun, reportsPending: pending, durable: state.durable };
}
