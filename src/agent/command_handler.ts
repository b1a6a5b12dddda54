/**
 * What the agent does with a delivered command (docs/protocol.md §4): journal it, acknowledge it,
 * run it, put its result in the outbox and report it. A command seen before is never run twice: its
 * known result is sent again.
 *
 * @module
 */
import { type DeliveredCommand, type ReportRequest, shortForm } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import { MIN_RETRY_AFTER_MS, PollBackoff, type PollBackoffOptions, retryWhile } from "./backoff.ts";
import type { Clock } from "./clock.ts";
import { type AckOutcome, type DashboardClient, isTransient } from "./client.ts";
import type { CommandExecution } from "./command_execution.ts";
import type { ExecOutcome } from "./executor.ts";
import { StateWriteError } from "./fs.ts";
import type { JournalEntry } from "./journal.ts";
import type { AgentMetrics } from "./prom.ts";
import { interruptedReport } from "./recovery.ts";
import type { ResultReporter } from "./result_reporter.ts";
import type { AgentState } from "./state.ts";

/** What a {@link CommandHandler} works with. */
export interface CommandHandlerOptions {
  /** Acknowledges the commands. */
  client: DashboardClient;
  /** The journal and the outbox. */
  state: AgentState;
  /** Runs the commands. */
  execution: CommandExecution;
  /** Reports the results. */
  reporter: ResultReporter;
  /** Clock of the retry delays and the timestamps. */
  clock: Clock;
  /** Upper bound of the first retry delay of an ack, in ms. */
  retryDelayMs: number;
  /** The agent's back-off, waited between acks answered `429` without `Retry-After`. */
  backoff?: PollBackoffOptions;
  /** Counts the commands run. */
  metrics?: AgentMetrics;
  /** The agent's stop. */
  signal: AbortSignal;
}

/** What became of a delivered command. */
export type HandleOutcome =
  /** Run and reported, answered from the journal, or left to be delivered again. */
  | "handled"
  /** The journal cannot be written: neither acknowledged nor run, take no new command. */
  | "blocked"
  /**
   * Delivered again although the dashboard had accepted its result: its known result was sent
   * again; a dashboard that keeps doing so is waited for, not asked again at once.
   */
  | "forgotten"
  /**
   * The dashboard answered the ack that this delivery is no longer current: not run (it is
   * delivered again); a dashboard that keeps delivering and refusing it is waited for too.
   */
  | "stale";

const log = logger("agent");

/** The most characters of a command line a log line shows. */
const SHOWN_NAME_CHARS = 256;

/** How long an ack waits in all for a dashboard that asks it to wait (`Retry-After`), in ms. */
export const MAX_ACK_THROTTLED_MS = 5 * 60_000;

/** Handles delivered commands, at most once each. */
export class CommandHandler {
  readonly #options: CommandHandlerOptions;
  #commandsRun = 0;
  #toldNoAcks = false;
  /**
   * The last ack was answered `404` without the dashboard's word on it, after its tries (a
   * dashboard without an ack endpoint whose pages are not JSON, or a proxy's page): the next acks
   * are not tried again on such a `404`, until one is acked.
   */
  #ackNotFound = false;
  #toldShortLease = false;

  /**
   * Makes a handler.
   *
   * @param options Client, state, runner, reporter and clock.
   */
  constructor(options: CommandHandlerOptions) {
    this.#options = options;
  }

  /** Commands run (not counting deliveries that were answered from the journal). */
  get commandsRun(): number {
    return this.#commandsRun;
  }

  /**
   * Journals, acknowledges, runs and reports a delivered command.
   *
   * @param command The delivered command.
   * @returns Whether new commands may be taken.
   */
  async handle(command: DeliveredCommand): Promise<HandleOutcome> {
    const { journal, outbox } = this.#options.state;
    // A command line longer than any the policy runs is logged cut, as the executor logs it.
    const commandName = shortForm(command.name, SHOWN_NAME_CHARS);
    log.info("command received from dashboard", {
      commandId: command.id,
      commandName,
      attempt: command.attempt,
    });
    const known = journal.get(command.id);
    if (known) {
      await this.#resend(known, command);
      return known.state === "accepted" ? "forgotten" : "handled";
    }
    if (!this.#journal(command)) return "blocked";
    const ack = await this.#ack(command);
    if (ack.kind === "stale") {
      log.warning("the dashboard says this delivery is stale; not running it now", {
        commandId: command.id,
        error: ack.message,
      });
      journal.forget(command.id);
      return "stale";
    }
    if (ack.kind === "acked" && ack.leaseExpiresAt !== undefined) {
      // Read against the dashboard's own clock when its answer says it: a skew is no mismatch.
      const leaseMs = ack.leaseExpiresAt - (ack.answeredAt ?? this.#options.clock.now());
      this.#checkLease(command, leaseMs);
    }
    if (this.#options.signal.aborted) {
      // Stopping before it started: not run, so not journaled; it will be delivered again.
      journal.forget(command.id);
      return "handled";
    }
    log.info("Executing command: {commandName} (id: {commandId})", {
      commandName,
      commandId: command.id,
    });
    let report: ReportRequest | undefined;
    // Kept in the outbox the moment the process has ended, before its last live output is sent.
    const keep = (outcome: ExecOutcome) => {
      report = {
        command_id: command.id,
        status: outcome.status,
        attempt: command.attempt,
        result: outcome.result,
        error: outcome.error,
        started_at: outcome.started_at,
        completed_at: outcome.completed_at,
      };
      outbox.put(report);
      journal.complete(command.id, report);
      log.info("command finished", {
        commandId: command.id,
        status: report.status,
        exitCode: report.result?.exit_code ?? null,
        durationSecs: report.result?.duration_secs ?? null,
      });
    };
    const outcome = await this.#options.execution.run(command, keep);
    this.#commandsRun++;
    this.#options.metrics?.commandRun(outcome.status);
    if (report === undefined) keep(outcome);
    await this.#options.reporter.deliver(report!);
    return "handled";
  }

  /**
   * Answers a delivered command the agent cannot run as delivered (a `timeout_secs` of 0, a name
   * that is not text) with a `rejected` report, once: it is journaled as any command, so that a
   * delivery of it again is answered from the journal, and it is not acknowledged, as it never
   * runs.
   *
   * @param delivery The command's id, attempt and name, and what is wrong with it.
   * @returns Whether new commands may be taken.
   */
  async reject(
    delivery: { commandId: string; attempt: number; name: string; message: string },
  ): Promise<HandleOutcome> {
    const { journal, outbox } = this.#options.state;
    const command = { id: delivery.commandId, name: delivery.name, attempt: delivery.attempt };
    log.warning("command received from dashboard that cannot be run as delivered: {error}", {
      commandId: command.id,
      commandName: shortForm(command.name, SHOWN_NAME_CHARS),
      attempt: command.attempt,
      error: delivery.message,
    });
    const known = journal.get(command.id);
    if (known) {
      await this.#resend(known, { ...command, params: {} });
      return known.state === "accepted" ? "forgotten" : "handled";
    }
    if (!this.#journal(command)) return "blocked";
    const now = new Date(this.#options.clock.now()).toISOString();
    const report: ReportRequest = {
      command_id: command.id,
      status: "rejected",
      attempt: command.attempt,
      result: null,
      error:
        `the agent cannot run this command as delivered, so it was not run: ${delivery.message}`,
      started_at: now,
      completed_at: now,
    };
    outbox.put(report);
    journal.complete(command.id, report);
    this.#options.metrics?.commandRun(report.status);
    await this.#options.reporter.deliver(report);
    return "handled";
  }

  /**
   * Journals a delivered command before anything else is done with it.
   *
   * @returns Whether it is journaled; when not (the state directory cannot be written) it is
   *   neither acknowledged nor run, and no new command is taken.
   */
  #journal(command: { id: string; name: string; attempt: number }): boolean {
    const { journal } = this.#options.state;
    try {
      journal.start(command);
      return true;
    } catch (error) {
      if (!(error instanceof StateWriteError)) throw error;
      // Not journaled, so neither acknowledged nor run: the dashboard delivers it again later.
      log.error(
        "cannot journal the command, so it is neither acknowledged nor run (the dashboard " +
          "delivers it again later); no new command is taken until the state directory can be " +
          "written again, results are still reported",
        { commandId: command.id, stateDir: journal.dir ?? null, error: error.message },
      );
      return false;
    }
  }

  /**
   * Warns, once per run of the agent, when a command may run here for longer than the dashboard
   * waits for its result (its execution lease): the agent's `COMMAND_TIMEOUT_SECS` (or maximum)
   * is larger than the dashboard's. Past the lease the dashboard queues the command again and
   * shows it so while it still runs here (it is not run twice: the journal answers the new
   * delivery, and the late result is taken). Later ones are said at debug level.
   */
  #checkLease(command: DeliveredCommand, leaseMs: number): void {
    const deadlineSecs = this.#options.execution.deadlineSecs(command);
    if (deadlineSecs === undefined) return;
    const leaseSecs = Math.round(leaseMs / 1000);
    if (deadlineSecs <= leaseSecs) return;
    const fields = { commandId: command.id, deadlineSecs, leaseSecs };
    if (this.#toldShortLease) {
      log.debug("this command's deadline here outlives the dashboard's lease", fields);
      return;
    }
    this.#toldShortLease = true;
    log.warning(
      "command {commandId} may run here for {deadlineSecs} s, but the dashboard waits {leaseSecs} " +
        "s for its result: if it runs longer, the dashboard shows it queued again while it still " +
        "runs (it is not run twice, and its late result is taken). Give the agent and the " +
        "dashboard the same COMMAND_TIMEOUT_SECS, or enqueue with timeout_secs; said once, " +
        "later commands at debug level",
      fields,
    );
  }

  /** A command seen before: its known result is sent again, it is never run twice. */
  async #resend(known: JournalEntry, command: DeliveredCommand): Promise<void> {
    const { journal, outbox } = this.#options.state;
    const previous = outbox.get(known.id) ?? known.summary ??
      interruptedReport(known, this.#options.clock.now());
    log.warning("command delivered again; it is not run twice, its known result is sent again", {
      commandId: command.id,
      journalState: known.state,
      status: previous.status,
    });
    const report: ReportRequest = { ...previous, attempt: command.attempt };
    outbox.put(report);
    if (known.state === "running") journal.complete(known.id, report);
    await this.#options.reporter.deliver(report);
  }

  /**
   * Acks a journaled command, retrying briefly on network and server failures. A dashboard that
   * answers `429` (or `503`/`507`) with `Retry-After` is asked again after that wait, a `429`
   * without one after the agent's back-off (at least a second), for up to
   * {@link MAX_ACK_THROTTLED_MS} in all, before the command runs: the dashboard's view then says
   * it runs when it does. Once its delivery lease is over the dashboard answers that the delivery
   * is stale, and the command runs when it is delivered again.
   */
  async #ack(command: DeliveredCommand): Promise<AckOutcome> {
    const { client, signal, clock } = this.#options;
    const backoff = new PollBackoff(this.#options.backoff);
    /** How long the dashboard asks to wait before the next ack, if it asks. */
    const askedWaitMs = (result: AckOutcome): number | undefined =>
      result.kind === "throttled"
        ? result.retryAfterMs
        // A 429 without a Retry-After the agent can read: the dashboard did say to wait, so it
        // is not asked again within the moment a network failure's retries take.
        : result.kind === "server" && result.status === 429
        ? backoff.next()
        : undefined;
    let throttledMs = 0;
    let outcome: AckOutcome;
    for (;;) {
      outcome = await retryWhile(
        () => client.ack(command.id, command.attempt, signal),
        (result) =>
          isTransient(result) && result.kind !== "throttled" &&
          !(result.kind === "server" && result.status === 429) &&
          !(this.#ackNotFound && result.kind === "server" && result.status === 404),
        { retries: 2, initialDelayMs: this.#options.retryDelayMs, clock, signal },
      );
      const asked = askedWaitMs(outcome);
      if (asked === undefined || signal.aborted || throttledMs >= MAX_ACK_THROTTLED_MS) {
        break;
      }
      // Never past the budget: all the waits together stay within MAX_ACK_THROTTLED_MS.
      const waitMs = Math.min(
        Math.max(asked, MIN_RETRY_AFTER_MS),
        MAX_ACK_THROTTLED_MS - throttledMs,
      );
      log.info("the dashboard asks the agent to wait before the ack; the command runs once acked", {
        commandId: command.id,
        status: "status" in outcome ? outcome.status : null,
        waitSecs: waitMs / 1000,
      });
      throttledMs += waitMs;
      await clock.sleep(waitMs, signal);
    }
    if (outcome.kind === "server" && outcome.status === 404) {
      // No word on the ack (a proxy's page, or a dashboard without acks whose 404 is not JSON):
      // said once, and the command runs, as for any ack that failed.
      if (!this.#ackNotFound) {
        this.#ackNotFound = true;
        log.info(
          "acks are answered 404 without the dashboard's word on them (a dashboard without an " +
            "ack endpoint: no acks here; or a proxy's page while it restarts): commands run anyway",
          { commandId: command.id, error: outcome.message },
        );
      }
      return outcome;
    }
    switch (outcome.kind) {
      case "acked":
        this.#ackNotFound = false;
        break;
      case "stale":
      case "aborted":
        break;
      case "unsupported":
        if (!this.#toldNoAcks) {
          this.#toldNoAcks = true;
          log.info(
            "the dashboard answers acks 404 (no ack endpoint, or no such command): no acks here, " +
              "commands run anyway",
            { commandId: command.id, error: outcome.message },
          );
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
}
