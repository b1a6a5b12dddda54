/**
 * The agent's poll loop (docs/protocol.md §4, §6): send what the outbox holds, long-poll the
 * dashboard, hand each delivered command to the handler, poll again; back off on failures (or as
 * `Retry-After` says), and take no new command while the journal cannot be written.
 *
 * @module
 */
import { DEFAULT_POLLING_BACKOFF_SECS } from "../defaults.ts";
import { logger } from "../log/mod.ts";
import {
  MAX_RETRY_AFTER_SECS,
  MIN_RETRY_AFTER_MS,
  PollBackoff,
  type PollBackoffOptions,
} from "./backoff.ts";
import type { Clock } from "./clock.ts";
import type { DashboardClient, RequestFailure } from "./client.ts";
import type { CommandHandler } from "./command_handler.ts";
import type { AgentMetrics } from "./prom.ts";
import type { ResultReporter } from "./result_reporter.ts";
import type { AgentState } from "./state.ts";

/** What a {@link PollLoop} works with. */
export interface PollLoopOptions {
  /** Makes the wait requests. */
  client: DashboardClient;
  /** Clock of the delays. */
  clock: Clock;
  /** The journal and the outbox (its retry heals a blocked journal). */
  state: AgentState;
  /** Handles each delivered command. */
  handler: CommandHandler;
  /** Sends what the outbox holds. */
  reporter: ResultReporter;
  /** Base URL of the dashboard, for the logs. */
  dashboardUrl: string;
  /** The deployment whose commands are asked for. */
  deploymentHash: string;
  /** How long one long-poll may wait on the dashboard, in seconds. */
  pollingTimeoutSecs: number;
  /** The back-off after failures. */
  backoff: PollBackoffOptions;
  /** This process's instance id, for the logs. */
  instanceId: () => string;
  /** Counts polls and back-offs. */
  metrics?: AgentMetrics;
  /** Stops the loop. */
  signal: AbortSignal;
}

const log = logger("agent");
const pollLog = logger("agent", "poll");

/**
 * What the `409` of a second process may mean for an agent without a durable state directory: its
 * own previous process, since each start is a new instance to the dashboard.
 *
 * @param pollingTimeoutSecs The agent's wait timeout.
 */
function restartedNote(pollingTimeoutSecs: number): string {
  return "; or the other process is this agent's previous one, stopped less than " +
    `${pollingTimeoutSecs} s (POLLING_TIMEOUT_SECS) ago: without a state directory it can write ` +
    "(STATE_DIR, with --allow-read and --allow-write for it) each start is a new instance to the " +
    "dashboard, and this one takes over within that time";
}

/** Polls the dashboard for commands until the agent stops. */
export class PollLoop {
  readonly #options: PollLoopOptions;
  readonly #backoff: PollBackoff;
  /** The back-off of deliveries called stale in a row (not grown by failed requests before). */
  readonly #staleBackoff: PollBackoff;
  /** Whether new commands are refused: the journal cannot be written. */
  #blocked = false;
  /** Since when (ms) and how many times requests have failed in a row; `null` while they work. */
  #failing: { since: number; times: number } | null = null;
  /**
   * The kinds of trouble told as a warning or an error since requests began to fail; told again,
   * they are at debug level: a dashboard that says "again in 1 s" for an hour, or is down for a
   * day, is one line, not thousands (the "answers again" line ends it with the count).
   */
  readonly #told = new Set<string>();

  /**
   * Makes the loop.
   *
   * @param options Client, clock, state, handler, reporter and settings.
   */
  constructor(options: PollLoopOptions) {
    this.#options = options;
    this.#backoff = new PollBackoff(options.backoff);
    this.#staleBackoff = new PollBackoff(options.backoff);
  }

  /**
   * Polls until the signal aborts.
   *
   * @returns A promise that resolves once the loop stopped.
   */
  async run(): Promise<void> {
    const { client, clock, signal, handler, reporter, metrics, deploymentHash } = this.#options;
    pollLog.info("long-poll: polling loop started", {
      dashboardUrl: this.#options.dashboardUrl,
      deploymentHash,
    });
    while (!signal.aborted) {
      const failure = await reporter.drain();
      if (signal.aborted) break;
      if (failure) {
        await this.#pause(failure, "report");
        continue;
      }
      if (this.#blocked && !this.#unblock()) {
        await clock.sleep(
          (this.#options.backoff.initialSecs ?? DEFAULT_POLLING_BACKOFF_SECS) * 1000,
          signal,
        );
        continue;
      }
      const started = clock.now();
      const outcome = await client.wait(deploymentHash, this.#options.pollingTimeoutSecs, signal);
      // A command that arrives as the agent stops is not acknowledged: it is delivered again.
      if (signal.aborted) break;
      if (
        outcome.kind === "command" || outcome.kind === "empty" || outcome.kind === "unrunnable"
      ) {
        metrics?.pollSucceeded(clock.now());
      } else if (outcome.kind !== "aborted") {
        metrics?.pollFailed(outcome.kind);
      }
      switch (outcome.kind) {
        case "command":
        case "unrunnable": {
          this.#answered();
          const handled = outcome.kind === "command"
            ? await handler.handle(outcome.command)
            : await handler.reject(outcome);
          const commandId = outcome.kind === "command" ? outcome.command.id : outcome.commandId;
          if (handled === "forgotten") {
            // Answered from the journal again and again, this would be a tight loop of waits and
            // reports: the back-off grows until the dashboard delivers something else.
            await this.#pauseForgotten(commandId);
            break;
          }
          if (handled === "stale") {
            // Delivered and then called stale again and again, this would be a tight loop of
            // waits and acks: the back-off grows until a delivery is acked or none comes.
            await this.#pauseStale(commandId);
            break;
          }
          this.#backoff.reset();
          this.#staleBackoff.reset();
          if (handled === "blocked") this.#blocked = true;
          break;
        }
        case "empty": {
          this.#answered();
          this.#backoff.reset();
          this.#staleBackoff.reset();
          const elapsed = clock.now() - started;
          if (outcome.nextPollSecs !== undefined && outcome.nextPollSecs > 0) {
            // At most an hour, as Retry-After: a broken dashboard's day (or milliseconds sent as
            // seconds) does not stop the agent polling for that long.
            const nextPollSecs = Math.min(outcome.nextPollSecs, MAX_RETRY_AFTER_SECS);
            pollLog.debug("no command; the dashboard asks to poll again later", {
              nextPollSecs: outcome.nextPollSecs,
            });
            await clock.sleep(nextPollSecs * 1000, signal);
          } else if (elapsed < 1000) {
            // An empty answer long before the timeout: do not spin against it. At most a second:
            // a wall clock set back during the wait makes `elapsed` negative.
            await clock.sleep(Math.min(1000, 1000 - elapsed), signal);
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
    const { state } = this.#options;
    if (!(state.retry?.() ?? true)) {
      log.debug("the state directory still cannot be written; new commands wait", {
        stateDir: state.journal.dir ?? null,
      });
      return false;
    }
    log.info("the state directory can be written again: taking new commands again", {
      stateDir: state.journal.dir ?? null,
    });
    this.#blocked = false;
    return true;
  }

  /**
   * Waits the next back-off delay after the dashboard delivered again a command whose result it
   * had accepted (it lost what it accepted, or it is broken).
   */
  async #pauseForgotten(commandId: string): Promise<void> {
    const delayMs = this.#backoff.next();
    const delaySecs = Math.round(delayMs) / 1000;
    this.#options.metrics?.backingOff(delaySecs, this.#backoff.attempts);
    pollLog.warning(
      "the dashboard delivered again a command whose result it had accepted; its result was " +
        "sent again, and the next wait comes after back-off",
      { commandId, delaySecs, attempt: this.#backoff.attempts },
    );
    await this.#options.clock.sleep(delayMs, this.#options.signal);
  }

  /** Waits the next back-off delay after the dashboard called the delivery it had made stale. */
  async #pauseStale(commandId: string): Promise<void> {
    this.#backoff.reset();
    const delayMs = this.#staleBackoff.next();
    const delaySecs = Math.round(delayMs) / 1000;
    this.#options.metrics?.backingOff(delaySecs, this.#staleBackoff.attempts);
    pollLog.debug("the next wait after a stale delivery comes after back-off", {
      commandId,
      delaySecs,
      attempt: this.#staleBackoff.attempts,
    });
    await this.#options.clock.sleep(delayMs, this.#options.signal);
  }

  /**
   * A wait was answered: after failed requests, says once that the dashboard answers again (the
   * warnings before it would otherwise be the last word in the log).
   */
  #answered(): void {
    const failing = this.#failing;
    if (failing === null) return;
    this.#failing = null;
    this.#told.clear();
    pollLog.info("the dashboard answers again, after {times} failed requests in {secs} s", {
      times: failing.times,
      secs: Math.max(0, Math.round((this.#options.clock.now() - failing.since) / 1000)),
    });
  }

  /** Logs a failed request and waits: `Retry-After` when given, else the next back-off delay. */
  async #pause(failure: RequestFailure, what: "wait" | "report"): Promise<void> {
    if (failure.kind === "aborted") return;
    if (this.#failing === null) this.#failing = { since: this.#options.clock.now(), times: 0 };
    this.#failing.times++;
    // A 429 without a Retry-After the agent can read is backed off, but never asked again at
    // once: the dashboard did say to wait.
    const delayMs = failure.kind === "throttled"
      ? failure.retryAfterMs
      : failure.kind === "server" && failure.status === 429
      ? Math.max(this.#backoff.next(), MIN_RETRY_AFTER_MS)
      : this.#backoff.next();
    const delaySecs = Math.round(delayMs) / 1000;
    this.#options.metrics?.backingOff(delaySecs, this.#backoff.attempts);
    const request = what === "wait" ? "wait request" : "report";
    // One kind of trouble: the same status, or the same reason of no answer (refused, a
    // certificate), on the same request. Never the text of an answer: one that changes each time
    // (a 408's) would be told each time, and kept as a kind of its own until the next answer.
    const key = [
      what,
      failure.kind,
      "status" in failure ? failure.status : "",
      failure.kind === "auth" && failure.skew ? "skew" : "",
      failure.kind === "network" && failure.status === undefined ? failure.message : "",
    ].join(" ");
    const told = this.#told.has(key);
    this.#told.add(key);
    const errorLevel = told ? "debug" : "error";
    const warningLevel = told ? "debug" : "warning";
    switch (failure.kind) {
      case "network":
        pollLog[warningLevel](`dashboard unreachable (${request}); retrying after back-off`, {
          error: failure.message,
          delaySecs,
          attempt: this.#backoff.attempts,
        });
        break;
      case "server":
        pollLog[warningLevel](
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
        pollLog[warningLevel](
          `dashboard asked the agent to wait (${failure.status}, Retry-After)`,
          { status: failure.status, error: failure.message, delaySecs },
        );
        break;
      case "auth":
        if (failure.skew) {
          pollLog[errorLevel](
            "dashboard rejected the request time: its clock and the agent's differ by " +
              `${failure.clockOffsetSecs ?? "an unknown number of"} s ` +
              "(dashboard time minus agent time, from its Date header); fix the one that is " +
              "wrong (NTP): either may be",
            {
              status: failure.status,
              clockOffsetSecs: failure.clockOffsetSecs ?? null,
              error: failure.message,
              delaySecs,
            },
          );
        } else if (failure.status === 401) {
          const id = this.#options.client.agentId;
          pollLog[errorLevel](
            "dashboard refused the agent's credentials (401); check AGENT_ID and AGENT_TOKEN: " +
              `a token made by "status agents rotate ${id}" is used once it is this agent's ` +
              `AGENT_TOKEN and the agent is restarted; an agent removed by "status agents ` +
              `remove ${id}" is added again with "status agents add ${id}", then given that ` +
              "token the same way (this one retries with back-off meanwhile); the dashboard " +
              'answers an unknown id as a wrong token: its audit log, or "status health" run ' +
              "with STATUS_ADMIN_TOKEN, AGENT_ID and AGENT_TOKEN, says which it is",
            {
              error: failure.message,
              clockOffsetSecs: failure.clockOffsetSecs ?? null,
              delaySecs,
            },
          );
        } else {
          pollLog[errorLevel](`dashboard forbids this agent the ${request} (403)`, {
            error: failure.message,
            delaySecs,
          });
        }
        break;
      case "refused":
        if (failure.status === 409 && what === "wait") {
          pollLog[errorLevel](
            "the dashboard refused this agent process: another process is polling with the " +
              "same AGENT_ID; give each machine its own id (this one retries and takes over " +
              "once the other stops)" + (this.#options.state.durable ? "" : restartedNote(
                this.#options.pollingTimeoutSecs,
              )),
            {
              status: failure.status,
              error: failure.message,
              instanceId: this.#options.instanceId(),
              delaySecs,
            },
          );
          break;
        }
        pollLog[errorLevel](
          `dashboard refused the ${request} (${failure.status}); check DASHBOARD_URL and ` +
            "DEPLOYMENT_HASH",
          { status: failure.status, error: failure.message, delaySecs },
        );
        break;
      case "redirect":
        pollLog[errorLevel](`dashboard redirected the ${request}; retrying after back-off`, {
          status: failure.status,
          error: failure.message,
          delaySecs,
        });
        break;
      case "invalid":
        pollLog[errorLevel](`dashboard answered the ${request} with something unexpected`, {
          error: failure.message,
          delaySecs,
        });
        break;
    }
    await this.#options.clock.sleep(delayMs, this.#options.signal);
  }
}
