/**
 * The agent's poll loop (PROTOCOL.md §4, §6): long-poll the dashboard, journal each delivered
 * command, acknowledge it, run it, put its result in the outbox, report it, poll again; back off
 * on failures; never run a command twice; stop cleanly on a signal. While a command runs, a
 * cancel-wait (our extension of §2, see `src/server/mod.ts`) stays open beside the loop: an
 * operator's cancel stops the command, which is reported `cancelled`.
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
import {
  ExponentialBackoff,
  fullJitterGenerator,
  handleWhenResult,
  type IBackoffFactory,
  type IRetryBackoffContext,
  retry,
} from "cockatiel";
import type { DeliveredCommand, ReportRequest } from "../protocol/mod.ts";
import type { LeftoverOutcome } from "../exec/mod.ts";
import { logger } from "../log/mod.ts";
import { PollBackoff, type PollBackoffOptions } from "./backoff.ts";
import { type Clock, systemClock } from "./clock.ts";
import {
  type AckOutcome,
  DashboardClient,
  type ReportOutcome,
  type RequestFailure,
  WAIT_GRACE_SECS,
} from "./client.ts";
import {
  createExecutor,
  type ExecOutcome,
  type Executor,
  type ExecutorOptions,
} from "./executor.ts";
import { type HeartbeatOptions, runHeartbeat } from "./heartbeat.ts";
import { StateWriteError } from "./fs.ts";
import type { JournalEntry } from "./journal.ts";
import { type AgentState, openAgentState } from "./state.ts";
import { OutputStreamer, type OutputStreamerOptions } from "./output_stream.ts";
import { AgentMetrics } from "./prom.ts";
import { parseListenAddress, serveMetrics } from "../metrics_server.ts";
import type { MetricsSample } from "./metrics.ts";
import { VERSION } from "../version.ts";
import { stateInstanceId } from "./instance.ts";

/** Options of {@link runAgent}: the agent settings plus injectables. */
export interface AgentOptions {
  /** Base URL of the dashboard (`DASHBOARD_URL`). */
  dashboardUrl: string;
  /** This agent's id (`AGENT_ID`). */
  agentId: string;
  /** This agent's token (`AGENT_TOKEN`); without it requests are unsigned (dev mode). */
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
}

/** What {@link runAgent} did, once it stopped. */
export interface AgentRunSummary {
  /** Commands run (not counting deliveries that were answered from the journal). */
  commandsRun: number;
  /** Reports still in the outbox (sent after a restart when the outbox is durable). */
  reportsPending: number;
  /** Whether the journal and the outbox were on disk. */
  durable: boolean;
}

const log = logger("agent");
const pollLog = logger("agent", "poll");

/**
 * How long a command runs before its cancel-wait opens, in ms: short commands cost no extra
 * request (the rate limit counts them), and a cancel recorded meanwhile is answered at once.
 */
const CANCEL_WAIT_DELAY_MS = 1000;

const INTERRUPTED_ERROR =
  "the agent stopped while the command was running; it was not run again (at most once)";

/** The error of an `interrupted` report after a restart, by what was left of the command. */
const LEFTOVER_ERRORS: Readonly<Record<LeftoverOutcome | "unrecorded", string>> = {
  stopped: "the agent stopped while the command was running; it killed what was left of the " +
    "command (its watchdog at once, or the agent after its restart), which so did not finish, " +
    "and did not run it again (at most once)",
  ended: "the agent stopped while the command was running; the command ended on its own before " +
    "the agent restarted, and how it ended is unknown (its exit status and output were lost); " +
    "it was not run again (at most once)",
  unknown: "the agent stopped while the command was running; after its restart it could not " +
    "tell whether the command was still running (no permission to look) and did not run it " +
    "again (at most once)",
  unrecorded: "the agent stopped as the command was being started, before it recorded the " +
    "command's process; the command was not run again (at most once)",
};

/** Whether a request failure may go away by itself soon. */
function transient(outcome: unknown): boolean {
  const kind = (outcome as { kind?: string }).kind;
  return kind === "network" || kind === "server" || kind === "throttled";
}

function checkSecs(name: string, value: number, min: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of at least ${min}, got ${value}`);
  }
  return value;
}

/**
 * Runs the agent until `signal` aborts, then lets a running command finish within the shutdown
 * grace (cancelling it after), reports its result and resolves. Library code: it never exits
 * the process and never installs signal handlers; the CLI turns SIGINT/SIGTERM into `signal`
 * (and a second signal into `options.stopNow`).
 *
 * @param options Settings and injectables.
 * @param signal Stops the agent.
 * @returns What the agent did.
 * @throws {RangeError} On an out-of-range option.
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
  const agent = new Agent(options, signal);
  return await agent.run();
}

class Agent {
  readonly #options: AgentOptions;
  readonly #signal: AbortSignal;
  readonly #stopNow: AbortSignal;
  readonly #clock: Clock;
  readonly #client: DashboardClient;
  readonly #backoffOptions: PollBackoffOptions;
  readonly #backoff: PollBackoff;
  readonly #retryBackoff: IBackoffFactory<IRetryBackoffContext<unknown>>;
  readonly #deploymentHash: string;
  readonly #labels: Record<string, string>;
  readonly #pollingTimeoutSecs: number;
  readonly #graceMs: number;
  #executor: Executor | undefined;
  #state: AgentState | undefined;
  #commandsRun = 0;
  #toldNoAcks = false;
  #toldNoCancelWait = false;
  #toldNoOutput = false;
  #toldNoHeartbeat = false;
  #instanceId: string;
  #metrics: AgentMetrics | undefined;
  /** Why new commands are refused: the journal cannot be written. */
  #blocked: string | undefined;

  constructor(options: AgentOptions, signal: AbortSignal) {
    this.#options = options;
    this.#signal = signal;
    this.#stopNow = options.stopNow ?? new AbortController().signal;
    this.#clock = options.clock ?? systemClock;
    this.#deploymentHash = options.deploymentHash ?? DEFAULT_DEPLOYMENT_HASH;
    this.#labels = options.labels ?? {};
    this.#pollingTimeoutSecs = checkSecs(
      "pollingTimeoutSecs",
      options.pollingTimeoutSecs ?? DEFAULT_POLLING_TIMEOUT_SECS,
      1,
    );
    this.#graceMs =
      checkSecs("shutdownGraceSecs", options.shutdownGraceSecs ?? DEFAULT_SHUTDOWN_GRACE_SECS, 0) *
      1000;
    checkSecs(
      "metricsIntervalSecs",
      options.metricsIntervalSecs ?? DEFAULT_METRICS_INTERVAL_SECS,
      0.001,
    );
    this.#backoffOptions = {
      initialSecs: options.pollingBackoffSecs ?? DEFAULT_POLLING_BACKOFF_SECS,
      maxSecs: options.pollingBackoffMaxSecs ?? DEFAULT_POLLING_BACKOFF_MAX_SECS,
    };
    this.#backoff = new PollBackoff(this.#backoffOptions);
    const retryDelayMs = checkSecs("retryDelayMs", options.retryDelayMs ?? 500, 0);
    this.#retryBackoff = new ExponentialBackoff({
      generator: fullJitterGenerator,
      initialDelay: retryDelayMs,
      maxDelay: retryDelayMs * 4,
    });
    this.#instanceId = options.instanceId ?? crypto.randomUUID();
    this.#metrics = options.metrics;
    this.#client = new DashboardClient({
      dashboardUrl: options.dashboardUrl,
      agentId: options.agentId,
      agentToken: options.agentToken,
      instanceId: () => this.#instanceId,
      fetch: options.fetch,
      now: () => this.#clock.now(),
    });
  }

  get #journal() {
    return this.#state!.journal;
  }

  get #outbox() {
    return this.#state!.outbox;
  }

  async run(): Promise<AgentRunSummary> {
    const options = this.#options;
    log.info("Agent daemon starting", {
      agentId: options.agentId,
      dashboardUrl: options.dashboardUrl,
      deploymentHash: this.#deploymentHash,
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
    const ownExecutor = options.executor === undefined;
    this.#executor = options.executor ?? createExecutor({
      stateDir: options.stateDir,
      ...options.exec,
      secretValues: [...(options.exec?.secretValues ?? []), options.agentToken ?? ""].filter(
        (s) => s !== "",
      ),
    });
    const confinement = this.#executor.describe?.();
    if (confinement) log.info(`sandbox: ${confinement}`);
    const ownState = options.state === undefined;
    this.#state = options.state ??
      (options.stateDir === undefined
        ? openAgentState({ canUse: () => false })
        : openAgentState({ dir: options.stateDir }));
    if (ownState && options.stateDir === undefined) {
      log.info(
        "execution journal and result outbox are kept in memory (no stateDir given); pass " +
          "stateDir to keep them on disk across restarts",
      );
    } else if (this.#state.notice) log.warning(this.#state.notice);
    else if (ownState) {
      log.info("execution journal and result outbox are on disk", {
        stateDir: options.stateDir,
      });
    }
    // A restarted agent keeps its instance id (the dashboard serves one process per agent id).
    if (options.instanceId === undefined && ownState && this.#state.durable) {
      try {
        this.#instanceId = stateInstanceId(options.stateDir ?? DEFAULT_STATE_DIR);
      } catch (error) {
        log.warning("could not keep the instance id in the state directory: {error}", { error });
      }
    }
    log.info("agent instance {instanceId}", { instanceId: this.#instanceId });
    const heartbeatStop = new AbortController();
    let heartbeat: Promise<void> | undefined;
    let metricsServer: Deno.HttpServer | undefined;
    try {
      if (options.metricsPort !== undefined) {
        this.#metrics ??= new AgentMetrics({
          agentId: options.agentId,
          version: VERSION,
          instanceId: this.#instanceId,
        });
        const metrics = this.#metrics;
        metricsServer = serveMetrics(
          () => metrics.render(),
          parseListenAddress(options.metricsPort),
          heartbeatStop.signal,
        );
      }
      await this.#recover();
      if (options.heartbeat !== false) {
        const overrides = options.heartbeatOptions ?? {};
        heartbeat = runHeartbeat({
          agentId: options.agentId,
          intervalSecs: options.metricsIntervalSecs ?? DEFAULT_METRICS_INTERVAL_SECS,
          webhook: options.metricsWebhook,
          dashboardUrl: options.dashboardUrl,
          agentToken: options.agentToken,
          fetch: options.fetch,
          clock: this.#clock,
          report: (sample, signal) => this.#sendHeartbeat(sample, signal),
          ...overrides,
        }, AbortSignal.any([this.#signal, heartbeatStop.signal]));
      }
      pollLog.info("long-polling configuration initialized", {
        dashboardUrl: options.dashboardUrl,
        deploymentHash: this.#deploymentHash,
        pollingTimeoutSecs: this.#pollingTimeoutSecs,
        clientAbortSecs: this.#pollingTimeoutSecs + WAIT_GRACE_SECS,
        pollingBackoffSecs: options.pollingBackoffSecs ?? DEFAULT_POLLING_BACKOFF_SECS,
        pollingBackoffMaxSecs: options.pollingBackoffMaxSecs ?? DEFAULT_POLLING_BACKOFF_MAX_SECS,
        shutdownGraceSecs: this.#graceMs / 1000,
      });
      await this.#loop();
    } finally {
      heartbeatStop.abort();
      await heartbeat;
      await metricsServer?.finished;
      if (ownState) this.#state[Symbol.dispose]();
      if (ownExecutor) await this.#executor.close?.();
    }
    const pending = this.#outbox.size;
    if (pending > 0) {
      log.warning(
        this.#state.durable
          ? "results not yet accepted stay in the outbox and are sent after a restart"
          : "results not yet accepted are lost: the outbox is in memory only",
        { pending },
      );
    }
    log.info("agent stopped", { commandsRun: this.#commandsRun, reportsPending: pending });
    return {
      commandsRun: this.#commandsRun,
      reportsPending: pending,
      durable: this.#state.durable,
    };
  }

  /**
   * After a restart: finish what the previous run left in the journal and the outbox. A command
   * that was running is stopped first (its cgroup or process group), then reported: with how it
   * ended when its exit was recorded, else `interrupted` with what was found.
   */
  async #recover(): Promise<void> {
    for (const report of this.#outbox.pending()) {
      const entry = this.#journal.get(report.command_id);
      if (!entry || entry.state === "running") this.#journal.complete(report.command_id, report);
    }
    for (const entry of this.#journal.entries()) {
      if (entry.state === "running") {
        const report = await this.#leftoverReport(entry);
        this.#outbox.put(report);
        this.#journal.complete(entry.id, report);
      } else if (entry.state === "done" && !this.#outbox.get(entry.id) && entry.summary) {
        this.#outbox.put(entry.summary);
      }
    }
    const swept = await this.#executor!.sweep?.() ?? 0;
    if (swept > 0) {
      log.warning("processes left by the previous run were stopped", { cgroups: swept });
    }
    if (this.#outbox.size > 0) {
      log.info("results pending from before the restart are sent first", {
        pending: this.#outbox.size,
      });
    }
  }

  /** The report of a command the previous run left running, after stopping what is left. */
  async #leftoverReport(entry: JournalEntry): Promise<ReportRequest> {
    const props = { command_id: entry.id, command_name: entry.name };
    if (entry.exit) {
      const exit = entry.exit;
      log.warning("command had ended when the agent stopped; its recorded exit is reported", {
        ...props,
        status: exit.status,
      });
      const lost = "its output was lost: the agent stopped before recording it";
      return {
        command_id: entry.id,
        status: exit.status,
        attempt: entry.attempt,
        result: {
          exit_code: exit.exit_code,
          signal: exit.signal,
          duration_secs: exit.duration_secs,
          stdout: "",
          stderr: "",
          stdout_truncated_bytes: 0,
          stderr_truncated_bytes: 0,
        },
        error: exit.error ? `${exit.error}; ${lost}` : lost,
        started_at: exit.started_at,
        completed_at: exit.completed_at,
      };
    }
    let found: LeftoverOutcome | "unrecorded" = "unrecorded";
    if (entry.process && this.#executor!.stopLeftover) {
      try {
        found = await this.#executor!.stopLeftover(entry.process);
      } catch (error) {
        log.error("could not stop what the command left running", { ...props, error });
        found = "unknown";
      }
    }
    log.warning("command was running when the agent stopped; it is reported interrupted", {
      ...props,
      found,
    });
    return { ...this.#interruptedReport(entry), error: LEFTOVER_ERRORS[found] };
  }

  #interruptedReport(entry: JournalEntry): ReportRequest {
    return {
      command_id: entry.id,
      status: "interrupted",
      attempt: entry.attempt,
      result: null,
      error: INTERRUPTED_ERROR,
      started_at: entry.started_at,
      completed_at: new Date(this.#clock.now()).toISOString(),
    };
  }

  async #loop(): Promise<void> {
    const signal = this.#signal;
    pollLog.info("long-poll: polling loop started", {
      dashboardUrl: this.#options.dashboardUrl,
      deploymentHash: this.#deploymentHash,
    });
    while (!signal.aborted) {
      const failure = await this.#drainOutbox();
      if (signal.aborted) break;
      if (failure) {
        await this.#pause(failure, "report");
        continue;
      }
      if (this.#blocked !== undefined && !this.#unblock()) {
        await this.#clock.sleep(
          (this.#backoffOptions.initialSecs ?? DEFAULT_POLLING_BACKOFF_SECS) * 1000,
          signal,
        );
        continue;
      }
      const started = this.#clock.now();
      const outcome = await this.#client.wait(
        this.#deploymentHash,
        this.#pollingTimeoutSecs,
        signal,
      );
      // A command that arrives as the agent stops is not acknowledged: it is delivered again.
      if (signal.aborted) break;
      if (outcome.kind === "command" || outcome.kind === "empty") {
        this.#metrics?.pollSucceeded(this.#clock.now());
      } else if (outcome.kind !== "aborted") {
        this.#metrics?.pollFailed(outcome.kind);
      }
      switch (outcome.kind) {
        case "command":
          this.#backoff.reset();
          await this.#handle(outcome.command);
          break;
        case "empty": {
          this.#backoff.reset();
          const elapsed = this.#clock.now() - started;
          if (outcome.nextPollSecs !== undefined && outcome.nextPollSecs > 0) {
            pollLog.debug("no command; the dashboard asks to poll again later", {
              nextPollSecs: outcome.nextPollSecs,
            });
            await this.#clock.sleep(outcome.nextPollSecs * 1000, signal);
          } else if (elapsed < 1000) {
            // An empty answer long before the timeout: do not spin against it.
            await this.#clock.sleep(1000 - elapsed, signal);
          }
          break;
        }
        case "aborted":
          break;
        default:
          await this.#pause(outcome, "wait");
      }
    }
    pollLog.info("long-poll: polling loop stopped");
  }

  /** Whether the journal can be written again (then new commands are taken again). */
  #unblock(): boolean {
    if (!(this.#state!.retry?.() ?? true)) {
      log.debug("the state directory still cannot be written; new commands wait", {
        stateDir: this.#journal.dir ?? null,
      });
      return false;
    }
    log.info("the state directory can be written again: taking new commands again", {
      stateDir: this.#journal.dir ?? null,
    });
    this.#blocked = undefined;
    return true;
  }

  /** Logs a failed request and waits: `Retry-After` when given, else the next back-off delay. */
  async #pause(failure: RequestFailure, what: "wait" | "report"): Promise<void> {
    if (failure.kind === "aborted") return;
    const delayMs = failure.kind === "throttled" ? failure.retryAfterMs : this.#backoff.next();
    const delaySecs = Math.round(delayMs) / 1000;
    this.#metrics?.backingOff(delaySecs, this.#backoff.attempts);
    const request = what === "wait" ? "wait request" : "report";
    switch (failure.kind) {
      case "network":
        pollLog.warning(`dashboard unreachable (${request}); retrying after back-off`, {
          error: failure.message,
          delaySecs,
          attempt: this.#backoff.attempts,
        });
        break;
      case "server":
        pollLog.warning(
          `dashboard failed the ${request} (${failure.status}); retrying after back-off`,
          {
            status: failure.status,
            error: failure.message,
            delaySecs,
            attempt: this.#backoff.attempts,
          },
        );
        break;
      case "throttled":
        pollLog.warning(`dashboard asked the agent to wait (${failure.status}, Retry-After)`, {
          status: failure.status,
          error: failure.message,
          delaySecs,
        });
        break;
      case "auth":
        if (failure.skew) {
          pollLog.error(
            "dashboard rejected the request time: the agent's clock is off by " +
              `${failure.clockOffsetSecs ?? "an unknown number of"} s ` +
              "(dashboard time minus agent time, from its Date header); fix the clock (NTP)",
            {
              status: failure.status,
              clockOffsetSecs: failure.clockOffsetSecs ?? null,
              error: failure.message,
              delaySecs,
            },
          );
        } else if (failure.status === 401) {
          pollLog.error(
            "dashboard refused the agent's credentials (401); check AGENT_ID and AGENT_TOKEN",
            {
              error: failure.message,
              clockOffsetSecs: failure.clockOffsetSecs ?? null,
              delaySecs,
            },
          );
        } else {
          pollLog.error(`dashboard forbids this agent the ${request} (403)`, {
            error: failure.message,
            delaySecs,
          });
        }
        break;
      case "refused":
        if (failure.status === 409 && what === "wait") {
          pollLog.error(
            "the dashboard refused this agent process: another process is polling with the " +
              "same AGENT_ID; give each machine its own id (this one retries and takes over " +
              "once the other stops)",
            {
              status: failure.status,
              error: failure.message,
              instanceId: this.#instanceId,
              delaySecs,
            },
          );
          break;
        }
        pollLog.error(
          `dashboard refused the ${request} (${failure.status}); check DASHBOARD_URL and ` +
            "DEPLOYMENT_HASH",
          { status: failure.status, error: failure.message, delaySecs },
        );
        break;
      case "invalid":
        pollLog.error(`dashboard answered the ${request} with something unexpected`, {
          error: failure.message,
          delaySecs,
        });
        break;
    }
    await this.#clock.sleep(delayMs, this.#signal);
  }

  /** Sends every pending report, oldest first; stops at the first that should be retried later. */
  async #drainOutbox(): Promise<RequestFailure | undefined> {
    for (const report of this.#outbox.pending()) {
      if (this.#signal.aborted) return undefined;
      const outcome = await this.#sendReport(report, this.#signal);
      if (outcome.kind === "accepted") {
        log.info("pending result delivered", {
          commandId: report.command_id,
          status: report.status,
        });
        continue;
      }
      if (outcome.kind === "aborted") return undefined;
      if (outcome.kind === "refused" || outcome.kind === "invalid") continue;
      return outcome;
    }
    return undefined;
  }

  /**
   * Sends one report. Accepted → journal and outbox updated; refused for good (4xx other than
   * 401/403/429) → dropped with an error; otherwise it stays in the outbox.
   */
  async #sendReport(report: ReportRequest, signal: AbortSignal): Promise<ReportOutcome> {
    const outcome = await this.#client.report(report, signal);
    if (outcome.kind === "accepted") {
      this.#journal.accept(report.command_id);
      this.#outbox.remove(report.command_id);
      if (outcome.duplicate) {
        log.debug("the dashboard had this result already", { commandId: report.command_id });
      }
    } else if (outcome.kind === "refused" || outcome.kind === "invalid") {
      log.error("dashboard refused the report for good; the result is dropped", {
        commandId: report.command_id,
        status: "status" in outcome ? outcome.status : null,
        error: outcome.message,
      });
      this.#journal.accept(report.command_id);
      this.#outbox.remove(report.command_id);
    }
    return outcome;
  }

  async #handle(command: DeliveredCommand): Promise<void> {
    log.info("command received from dashboard", {
      commandId: command.id,
      commandName: command.name,
      attempt: command.attempt,
    });
    const known = this.#journal.get(command.id);
    if (known) {
      await this.#resend(known, command);
      return;
    }
    try {
      this.#journal.start(command);
    } catch (error) {
      if (!(error instanceof StateWriteError)) throw error;
      // Not journaled, so neither acknowledged nor run: the dashboard delivers it again later.
      this.#blocked = error.message;
      log.error(
        "cannot journal the command, so it is neither acknowledged nor run (the dashboard " +
          "delivers it again later); no new command is taken until the state directory can be " +
          "written again, results are still reported",
        { commandId: command.id, stateDir: this.#journal.dir ?? null, error: error.message },
      );
      return;
    }
    const ack = await this.#ack(command);
    if (ack.kind === "stale") {
      log.warning("the dashboard says this delivery is stale; not running it now", {
        commandId: command.id,
        error: ack.message,
      });
      this.#journal.forget(command.id);
      return;
    }
    if (this.#signal.aborted) {
      // Stopping before it started: not run, so not journaled; it will be delivered again.
      this.#journal.forget(command.id);
      return;
    }
    log.info("Executing command: {commandName} (id: {commandId})", {
      commandName: command.name,
      commandId: command.id,
    });
    const outcome = await this.#execute(command);
    this.#commandsRun++;
    this.#metrics?.commandRun(outcome.status);
    const report: ReportRequest = {
      command_id: command.id,
      status: outcome.status,
      attempt: command.attempt,
      result: outcome.result,
      error: outcome.error,
      started_at: outcome.started_at,
      completed_at: outcome.completed_at,
    };
    this.#outbox.put(report);
    this.#journal.complete(command.id, report);
    log.info("command finished", {
      commandId: command.id,
      status: report.status,
      exitCode: report.result?.exit_code ?? null,
      durationSecs: report.result?.duration_secs ?? null,
    });
    await this.#deliver(report);
  }

  /** Sends a fresh report: once normally (the loop retries), a few times when stopping. */
  async #deliver(report: ReportRequest): Promise<void> {
    if (this.#stopNow.aborted) {
      log.warning("stopping at once: the result stays in the outbox", {
        commandId: report.command_id,
      });
      return;
    }
    let outcome: ReportOutcome;
    if (this.#signal.aborted) {
      const policy = retry(handleWhenResult(transient), {
        maxAttempts: 3,
        backoff: this.#retryBackoff,
      });
      outcome = await policy.execute(
        () => this.#sendReport(report, this.#stopNow),
        this.#stopNow,
      );
    } else {
      outcome = await this.#sendReport(report, this.#stopNow);
    }
    if (outcome.kind === "accepted") {
      log.info("command execution and reporting completed", {
        commandId: report.command_id,
        status: report.status,
      });
    } else if (outcome.kind !== "refused" && outcome.kind !== "invalid") {
      log.warning("result not accepted yet; it stays in the outbox and is sent again", {
        commandId: report.command_id,
        reason: outcome.kind === "aborted" ? "stopping" : outcome.message,
      });
    }
  }

  /** A command seen before: its known result is sent again, it is never run twice. */
  async #resend(known: JournalEntry, command: DeliveredCommand): Promise<void> {
    const previous = this.#outbox.get(known.id) ?? known.summary ??
      this.#interruptedReport(known);
    log.warning("command delivered again; it is not run twice, its known result is sent again", {
      commandId: command.id,
      journalState: known.state,
      status: previous.status,
    });
    const report: ReportRequest = { ...previous, attempt: command.attempt };
    this.#outbox.put(report);
    if (known.state === "running") this.#journal.complete(known.id, report);
    await this.#deliver(report);
  }

  /** Acks a journaled command, retrying briefly on transient failures. */
  async #ack(command: DeliveredCommand): Promise<AckOutcome> {
    const policy = retry(handleWhenResult(transient), {
      maxAttempts: 2,
      backoff: this.#retryBackoff,
    });
    const outcome = await policy.execute(
      () => this.#client.ack(command.id, command.attempt, this.#signal),
      this.#signal,
    );
    switch (outcome.kind) {
      case "acked":
      case "stale":
      case "aborted":
        break;
      case "unsupported":
        if (!this.#toldNoAcks) {
          this.#toldNoAcks = true;
          log.info("the dashboard has no ack endpoint (404): no acks here, commands run anyway");
        }
        break;
      default:
        log.warning("ack failed; running the command anyway (the journal prevents a second run)", {
          commandId: command.id,
          error: "message" in outcome ? outcome.message : "no answer",
        });
    }
    return outcome;
  }

  /** Runs a command; on stop, cancels it after the grace; on stop-now, at once. */
  async #execute(command: DeliveredCommand): Promise<ExecOutcome> {
    const cancel = new AbortController();
    const done = new AbortController();
    const onStop = () => {
      log.info("stopping: the running command may finish within the shutdown grace", {
        commandId: command.id,
        graceSecs: this.#graceMs / 1000,
      });
      this.#clock.sleep(this.#graceMs, AbortSignal.any([done.signal, cancel.signal])).then(() => {
        if (done.signal.aborted || cancel.signal.aborted) return;
        log.warning("shutdown grace is over: cancelling the running command", {
          commandId: command.id,
        });
        cancel.abort();
      });
    };
    const onStopNow = () => {
      log.warning("stopping at once: cancelling the running command", { commandId: command.id });
      cancel.abort();
    };
    this.#signal.addEventListener("abort", onStop, { once: true });
    this.#stopNow.addEventListener("abort", onStopNow, { once: true });
    const startedAt = new Date(this.#clock.now()).toISOString();
    const watching = this.#watchCancel(command, cancel, done.signal);
    const streamer = this.#streamer(command);
    try {
      return await this.#executor!.run({
        name: command.name,
        timeoutSecs: typeof command.params.timeout_secs === "number"
          ? command.params.timeout_secs
          : undefined,
        signal: cancel.signal,
        onSpawn: (record) => this.#journal.spawned(command.id, record),
        onExit: (exit) => this.#journal.exited(command.id, exit),
        onOutput: streamer ? (stream, chunk) => streamer.push(stream, chunk) : undefined,
      });
    } catch (error) {
      log.error("the executor failed", { commandId: command.id, error });
      return {
        status: "failed",
        result: null,
        error: `the agent could not run the command: ${(error as Error).message}`,
        started_at: startedAt,
        completed_at: new Date(this.#clock.now()).toISOString(),
      };
    } finally {
      done.abort();
      this.#signal.removeEventListener("abort", onStop);
      this.#stopNow.removeEventListener("abort", onStopNow);
      // What the command printed last reaches the dashboard before its result.
      await streamer?.finish(5000, this.#stopNow);
      await watching;
    }
  }

  /** The live output stream of a command run, unless turned off. */
  #streamer(command: DeliveredCommand): OutputStreamer | undefined {
    // `…/commands/wait/output` is a wait on that deployment hash, not this command's output.
    if (this.#options.liveOutput === false || command.id === "wait") return undefined;
    return new OutputStreamer({
      clock: this.#clock,
      ...this.#options.liveOutputOptions,
      attempt: command.attempt,
      send: async (chunk, signal) => {
        const outcome = await this.#client.output(command.id, chunk, signal);
        if (outcome.kind === "accepted") {
          this.#metrics?.chunkSent();
          return "sent";
        }
        if (
          outcome.kind === "refused" || outcome.kind === "invalid" ||
          (outcome.kind === "auth" && outcome.status === 403)
        ) {
          if (!this.#toldNoOutput) {
            this.#toldNoOutput = true;
            log.info("the dashboard does not take live output here; results come at the end", {
              commandId: command.id,
              error: outcome.message,
            });
          }
          return "stop";
        }
        return outcome.kind === "aborted" ? "stop" : "retry";
      },
    });
  }

  /** Sends a heartbeat sample to the dashboard's fleet view; never throws. */
  async #sendHeartbeat(sample: MetricsSample, signal: AbortSignal): Promise<void> {
    if (this.#toldNoHeartbeat) return;
    const outcome = await this.#client.heartbeat({
      ...sample,
      version: VERSION,
      deployment_hash: this.#deploymentHash,
      instance_id: this.#instanceId,
      labels: this.#labels,
    }, signal);
    if (outcome.kind === "accepted" || outcome.kind === "aborted") return;
    if (outcome.kind === "refused" && outcome.status === 404) {
      this.#toldNoHeartbeat = true;
      log.info("the dashboard has no heartbeat endpoint (404); heartbeats go to the webhook only");
      return;
    }
    log.debug("heartbeat not delivered to the dashboard", {
      error: outcome.message ?? outcome.kind,
    });
  }

  /**
   * Keeps one cancel-wait open for a running command (after {@link CANCEL_WAIT_DELAY_MS}) until
   * `done` aborts: a `204` opens the next, a failure backs off quietly, an operator's cancel
   * aborts `cancel`, a `404` or `409` ends it. Never throws.
   */
  async #watchCancel(
    command: DeliveredCommand,
    cancel: AbortController,
    done: AbortSignal,
  ): Promise<void> {
    // `…/commands/wait/cancel-wait` is a wait on that deployment hash, not this command's.
    if (command.id === "wait") return;
    const backoff = new PollBackoff(this.#backoffOptions);
    try {
      await this.#clock.sleep(CANCEL_WAIT_DELAY_MS, done);
      while (!done.aborted) {
        const started = this.#clock.now();
        const outcome = await this.#client.cancelWait(
          command.id,
          this.#pollingTimeoutSecs,
          done,
        );
        if (done.aborted) return;
        switch (outcome.kind) {
          case "cancel":
            log.info("command cancelled by the dashboard", { commandId: command.id });
            cancel.abort();
            return;
          case "none": {
            backoff.reset();
            // An empty answer long before the timeout: do not spin against it.
            const elapsed = this.#clock.now() - started;
            if (elapsed < 1000) await this.#clock.sleep(1000 - elapsed, done);
            break;
          }
          case "unsupported":
            if (!this.#toldNoCancelWait) {
              this.#toldNoCancelWait = true;
              log.info(
                "the dashboard has no cancel-wait endpoint (404): an operator's cancel does not " +
                  "stop a running command here",
                { commandId: command.id, error: outcome.message },
              );
            }
            return;
          case "aborted":
            return;
          default: {
            if (
              outcome.kind === "final" || outcome.kind === "refused" ||
              (outcome.kind === "auth" && outcome.status === 403)
            ) {
              pollLog.debug("no cancel-wait for this command", {
                commandId: command.id,
                error: outcome.message,
              });
              return;
            }
            const delayMs = outcome.kind === "throttled" ? outcome.retryAfterMs : backoff.next();
            pollLog.debug("cancel-wait failed; asking again after back-off", {
              commandId: command.id,
              error: outcome.message,
              delaySecs: Math.round(delayMs) / 1000,
            });
            await this.#clock.sleep(delayMs, done);
          }
        }
      }
    } catch (error) {
      log.warning("cancel-wait stopped", { commandId: command.id, error });
    }
  }
}
