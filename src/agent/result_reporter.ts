/**
 * Result reporting (docs/protocol.md §4): every result goes into the outbox before it is sent; the
 * reporter sends fresh results, drains what the outbox still holds, and settles journal and
 * outbox by what the dashboard answered.
 *
 * @module
 */
import type { ReportRequest } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import { retryWhile } from "./backoff.ts";
import { type Clock, monotonicNow } from "./clock.ts";
import {
  type DashboardClient,
  isTransient,
  type ReportOutcome,
  type RequestFailure,
} from "./client.ts";
import { summarizeReport } from "./journal.ts";
import type { AgentState } from "./state.ts";

/** What a {@link ResultReporter} works with. */
export interface ResultReporterOptions {
  /** Sends the reports. */
  client: DashboardClient;
  /** The journal and the outbox. */
  state: AgentState;
  /** Clock of the retry delays. */
  clock: Clock;
  /** Upper bound of the first retry delay of a report while stopping, in ms. */
  retryDelayMs: number;
  /** The agent's stop: a fresh report is retried a few times after it. */
  signal: AbortSignal;
  /** The agent's stop-now: results stay in the outbox unsent. */
  stopNow: AbortSignal;
}

const log = logger("agent");

/**
 * How long the reports sent while the agent stops may take in all, in ms: a dashboard that takes
 * the connection and never answers would otherwise hold the stop for four requests of 30 s each
 * (a service manager kills it first). A result not accepted by then stays in the outbox.
 */
export const STOPPING_REPORT_MS = 10_000;

/** Sends results to the dashboard out of the outbox; never throws on a failed request. */
export class ResultReporter {
  readonly #options: ResultReporterOptions;

  /**
   * Makes a reporter.
   *
   * @param options Client, state, clock and signals.
   */
  constructor(options: ResultReporterOptions) {
    this.#options = options;
  }

  /**
   * Sends every pending report, oldest first; stops at the first that should be retried later.
   * A dashboard error (`5xx`, or a `2xx` or `4xx` that is not its word on the report: a proxy's
   * page, a firewall's page for what that report holds) on one report may be
   * that report's alone (one the dashboard cannot store): it stays in the outbox, the next ones
   * are sent, and it is not returned, so the poll loop goes on taking commands instead of backing
   * off from that one report for ever. A second error in the same round is the dashboard's: it is
   * returned.
   *
   * @returns The failure to back off from, if any.
   */
  async drain(): Promise<RequestFailure | undefined> {
    const signal = this.#options.signal;
    let skipped = false;
    for (const report of this.#options.state.outbox.pending()) {
      if (signal.aborted) return undefined;
      const outcome = await this.#send(report, signal);
      if (outcome.kind === "accepted") {
        log.info("pending result delivered", {
          commandId: report.command_id,
          status: report.status,
        });
        continue;
      }
      if (outcome.kind === "aborted") return undefined;
      if (outcome.kind === "refused" || outcome.kind === "invalid") continue;
      if (
        outcome.kind === "server" && !skipped && outcome.status >= 200 && outcome.status !== 429
      ) {
        skipped = true;
        this.#tellSkipped(report.command_id, outcome);
        continue;
      }
      return outcome;
    }
    return undefined;
  }

  /** Commands whose failed report was told of at warning level (the rest at debug). */
  readonly #toldSkipped = new Set<string>();

  /** A report a dashboard error put off: a warning once per command. */
  #tellSkipped(commandId: string, failure: RequestFailure & { kind: "server" }): void {
    const told = this.#toldSkipped.has(commandId);
    if (!told) this.#toldSkipped.add(commandId);
    log[told ? "debug" : "warning"](
      "dashboard failed the report ({status}); it stays in the outbox and is sent again before " +
        "the next wait, while new commands are still taken",
      { commandId, status: failure.status, error: failure.message },
    );
  }

  /**
   * Sends a fresh report (already in the outbox): once normally (the poll loop retries), a few
   * times within {@link STOPPING_REPORT_MS} when stopping, not at all when stopping at once.
   *
   * @param report The report.
   */
  async deliver(report: ReportRequest): Promise<void> {
    const { signal, stopNow, clock } = this.#options;
    if (stopNow.aborted) {
      log.warning("stopping at once: the result stays in the outbox", {
        commandId: report.command_id,
      });
      return;
    }
    let outcome: ReportOutcome;
    const overdue = new AbortController();
    if (signal.aborted) {
      const budget = clock.setTimeout(() => overdue.abort(), STOPPING_REPORT_MS);
      const until = AbortSignal.any([stopNow, overdue.signal]);
      // On the monotonic clock, as the budget's timer is: a wall clock step is no time spent.
      const endsAt = monotonicNow(clock) + STOPPING_REPORT_MS;
      try {
        // Never sooner than a Retry-After says; one that ends past the budget is not waited for
        // (the result stays in the outbox for the next start).
        outcome = await retryWhile(
          () => this.#send(report, until),
          (result) =>
            isTransient(result) &&
            !(result.kind === "throttled" && monotonicNow(clock) + result.retryAfterMs > endsAt),
          {
            retries: 3,
            initialDelayMs: this.#options.retryDelayMs,
            clock,
            signal: until,
            minDelayMs: (result) => result.kind === "throttled" ? result.retryAfterMs : 0,
          },
        );
      } finally {
        clock.clearTimeout(budget);
      }
    } else {
      outcome = await this.#send(report, stopNow);
    }
    if (outcome.kind === "accepted") {
      log.info("command execution and reporting completed", {
        commandId: report.command_id,
        status: report.status,
      });
    } else if (outcome.kind !== "refused" && outcome.kind !== "invalid") {
      log.warning("result not accepted yet; it stays in the outbox and is sent again", {
        commandId: report.command_id,
        reason: overdue.signal.aborted
          ? `the agent is stopping and the dashboard did not accept it within ${
            STOPPING_REPORT_MS / 1000
          } s`
          : outcome.kind === "throttled" && signal.aborted
          ? `the agent is stopping and the dashboard asks to wait ${
            outcome.retryAfterMs / 1000
          } s (Retry-After), longer than what is left of the stop's ${STOPPING_REPORT_MS / 1000} s`
          : outcome.kind === "aborted"
          ? "stopping"
          : outcome.message,
      });
    }
  }

  /**
   * Sends one report. Accepted → journal and outbox updated; refused as too large (`413`, a body
   * limit on the way) → sent again without its output (its bytes counted as dropped); refused
   * for good (another 4xx than 401/403/407/408/421/425/429) → dropped with an error; otherwise
   * it stays in the outbox.
   */
  async #send(report: ReportRequest, signal: AbortSignal): Promise<ReportOutcome> {
    const { journal, outbox } = this.#options.state;
    const outcome = await this.#options.client.report(report, signal);
    const result = report.result;
    if (
      outcome.kind === "refused" && outcome.status === 413 && result &&
      (result.stdout !== "" || result.stderr !== "")
    ) {
      log.warning(
        "the dashboard refused the report as too large (413: a proxy's body limit?); it is sent " +
          "again without its output, whose bytes are counted as dropped",
        { commandId: report.command_id, error: outcome.message },
      );
      const summary = summarizeReport(report);
      outbox.put(summary);
      return await this.#send(summary, signal);
    }
    if (outcome.kind === "accepted" || outcome.kind === "refused" || outcome.kind === "invalid") {
      this.#toldSkipped.delete(report.command_id);
    }
    if (outcome.kind === "accepted") {
      journal.accept(report.command_id);
      outbox.remove(report.command_id);
      if (outcome.duplicate) {
        log.debug("the dashboard had this result already", { commandId: report.command_id });
      }
    } else if (outcome.kind === "refused" || outcome.kind === "invalid") {
      log.error("dashboard refused the report for good; the result is dropped", {
        commandId: report.command_id,
        status: "status" in outcome ? outcome.status : null,
        error: outcome.message,
      });
      journal.accept(report.command_id);
      outbox.remove(report.command_id);
    }
    return outcome;
  }
}
