/**
 * Running one delivered command: the executor runs it while its live output streams to the
 * dashboard and its cancel-wait stays open; on the agent's stop it may finish within the
 * shutdown grace (then it is cancelled), on a second stop it is cancelled at once.
 *
 * @module
 */
import type { DeliveredCommand, ReportStatus } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import type { CancelWatcher } from "./cancel_watch.ts";
import type { Clock } from "./clock.ts";
import { type DashboardClient, hasCommandPaths } from "./client.ts";
import type { ExecOutcome, Executor } from "./executor.ts";
import type { Journal } from "./journal.ts";
import { OutputStreamer, type OutputStreamerOptions } from "./output_stream.ts";
import type { AgentMetrics } from "./prom.ts";

/** What a {@link CommandExecution} works with. */
export interface CommandExecutionOptions {
  /** Runs the commands. */
  executor: Executor;
  /** Records each command's process and exit. */
  journal: Journal;
  /** Sends live output. */
  client: DashboardClient;
  /** Clock of the grace and the timestamps. */
  clock: Clock;
  /** Watches each command for an operator's cancel. */
  cancelWatcher: CancelWatcher;
  /** How long a running command may still run after the stop, in ms. */
  graceMs: number;
  /** Whether live output is streamed. */
  liveOutput: boolean;
  /** Options of the live output stream. */
  liveOutputOptions?: Partial<Omit<OutputStreamerOptions, "attempt" | "send">>;
  /** Counts the chunks sent. */
  metrics?: AgentMetrics;
  /** The agent's stop. */
  signal: AbortSignal;
  /** The agent's stop-now. */
  stopNow: AbortSignal;
}

/** How long the last live output may take to reach the dashboard before the result, in ms. */
const OUTPUT_FINISH_MS = 5000;

const log = logger("agent");

/**
 * A run the agent's own stop cancelled, as it is reported: nobody cancelled it, so it did not
 * finish (`interrupted`, the error saying why); any other status is kept.
 */
function interruptedBy<T extends { status: ReportStatus; error: string | null }>(
  why: string,
  ended: T,
): Omit<T, "status"> & { status: ReportStatus } {
  if (ended.status !== "cancelled") return ended;
  return {
    ...ended,
    status: "interrupted",
    error: `${why}: ${(ended.error ?? "").replace(/^cancelled: /, "")}`,
  };
}

/** Runs delivered commands, one at a time; never throws for a failed run. */
export class CommandExecution {
  readonly #options: CommandExecutionOptions;
  #toldNoOutput = false;

  /**
   * Makes the runner of commands.
   *
   * @param options Executor, journal, client, clock, grace and signals.
   */
  constructor(options: CommandExecutionOptions) {
    this.#options = options;
  }

  /**
   * The deadline, in seconds, the command will run under here (its `timeout_secs` capped by the
   * agent's maximum, else the agent's default); `undefined` when the executor cannot say.
   *
   * @param command The delivered command.
   */
  deadlineSecs(command: DeliveredCommand): number | undefined {
    const requested = command.params.timeout_secs;
    return this.#options.executor.deadlineSecs?.(
      typeof requested === "number" ? requested : undefined,
    );
  }

  /**
   * Runs a command; on stop, cancels it after the grace; on stop-now, at once.
   *
   * @param command The command, already journaled and acknowledged.
   * @param ended Called with how it ended as soon as the process has, before its last live output
   *   is sent (which may wait up to {@link OUTPUT_FINISH_MS} for a dashboard that is down): the
   *   result is kept (outbox, journal) before anything else can go wrong.
   * @returns How it ended (`failed` when the executor itself failed), once the last live output
   *   was sent or given up.
   */
  async run(
    command: DeliveredCommand,
    ended?: (outcome: ExecOutcome) => void,
  ): Promise<ExecOutcome> {
    const { clock, signal, stopNow, graceMs, journal } = this.#options;
    const cancel = new AbortController();
    const done = new AbortController();
    /** Why the agent itself stopped the command, when its stop (not a cancel) did. */
    let stoppedBecause: string | undefined;
    const onStop = () => {
      log.info("stopping: the running command may finish within the shutdown grace", {
        commandId: command.id,
        graceSecs: graceMs / 1000,
      });
      clock.sleep(graceMs, AbortSignal.any([done.signal, cancel.signal])).then(() => {
        if (done.signal.aborted || cancel.signal.aborted) return;
        log.warning("shutdown grace is over: cancelling the running command", {
          commandId: command.id,
        });
        stoppedBecause = `the agent was stopping and its shutdown grace of ${
          graceMs / 1000
        } s was over`;
        cancel.abort();
      });
    };
    const onStopNow = () => {
      log.warning("stopping at once: cancelling the running command", { commandId: command.id });
      if (!cancel.signal.aborted) stoppedBecause = "the agent was stopping at once";
      cancel.abort();
    };
    signal.addEventListener("abort", onStop, { once: true });
    stopNow.addEventListener("abort", onStopNow, { once: true });
    const startedAt = new Date(clock.now()).toISOString();
    if (!hasCommandPaths(command.id)) {
      log.warning(
        "this command's id cannot name a path of the dashboard: an operator's cancel does not " +
          "reach it and it has no live output; its result is reported as any other",
        { commandId: command.id },
      );
    }
    const watching = this.#options.cancelWatcher.watch(command, cancel, done.signal);
    const streamer = this.#streamer(command);
    let outcome: ExecOutcome;
    try {
      outcome = await this.#options.executor.run({
        name: command.name,
        timeoutSecs: typeof command.params.timeout_secs === "number"
          ? command.params.timeout_secs
          : undefined,
        signal: cancel.signal,
        onSpawn: (record) => journal.spawned(command.id, record),
        // The exit is journaled as the report will say it: a run the agent's own stop cut
        // short is interrupted, not cancelled (a crash before the report reports the journal).
        onExit: (exit) =>
          journal.exited(
            command.id,
            stoppedBecause === undefined ? exit : interruptedBy(stoppedBecause, exit),
          ),
        onOutput: streamer ? (stream, chunk) => streamer.push(stream, chunk) : undefined,
      });
    } catch (error) {
      log.error("the executor failed", { commandId: command.id, error });
      outcome = {
        status: "failed",
        result: null,
        error: `the agent could not run the command: ${(error as Error).message}`,
        started_at: startedAt,
        completed_at: new Date(clock.now()).toISOString(),
      };
    } finally {
      done.abort();
      signal.removeEventListener("abort", onStop);
      stopNow.removeEventListener("abort", onStopNow);
    }
    if (stoppedBecause !== undefined) outcome = interruptedBy(stoppedBecause, outcome);
    try {
      ended?.(outcome);
    } finally {
      // What the command printed last reaches the dashboard before its result.
      await streamer?.finish(OUTPUT_FINISH_MS, stopNow);
      await watching;
    }
    return outcome;
  }

  /** The live output stream of a command run, unless turned off. */
  #streamer(command: DeliveredCommand): OutputStreamer | undefined {
    const { liveOutput, liveOutputOptions, client, metrics } = this.#options;
    // `…/commands/wait/output` is a wait on that deployment hash, not this command's output.
    if (liveOutput === false || !hasCommandPaths(command.id)) return undefined;
    return new OutputStreamer({
      clock: this.#options.clock,
      ...liveOutputOptions,
      attempt: command.attempt,
      send: async (chunk, signal) => {
        const outcome = await client.output(command.id, chunk, signal);
        if (outcome.kind === "accepted") {
          metrics?.chunkSent();
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
        if (outcome.kind === "throttled") return { retryAfterMs: outcome.retryAfterMs };
        return outcome.kind === "aborted" ? "stop" : "retry";
      },
    });
  }
}
