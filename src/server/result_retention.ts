/**
 * The result retention (`RESULT_RETENTION_DAYS`): commands final for longer than it are deleted
 * with their results, live output and finished fan-out runs, at start and then once an hour, in
 * batches so that no transaction holds the store for long.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { CommandStore } from "../store/mod.ts";
import type { Clock, TimerId } from "./clock.ts";

const log = logger("server");

/** How often the results are pruned, in ms. */
export const RESULT_PRUNE_INTERVAL_MS = 3_600_000;

/** Rows one transaction deletes at most. */
export const RESULT_PRUNE_BATCH = 1000;

/** One day, in ms. */
const DAY_MS = 86_400_000;

/** Options of {@link ResultPruner}. */
export interface ResultPrunerOptions {
  /** The store. */
  store: Pick<CommandStore, "pruneCommands">;
  /** The dashboard's clock (and its timer). */
  clock: Clock;
  /** How long a final command is kept, in whole days (at least 1). */
  retentionDays: number;
  /**
   * Rows one transaction deletes at most.
   * @default {1000}
   */
  batch?: number;
  /**
   * Told of a timed pruning's failure (the dashboard's store health hears of it, as of a
   * request's).
   * @default {logs a warning}
   */
  onError?: (error: unknown) => void;
}

/** What one pruning deleted. */
export interface ResultPruneTotals {
  /** Commands deleted (with their results and live output). */
  commands: number;
  /** Finished fan-out runs deleted (with their targets). */
  runs: number;
}

/** Deletes commands final for longer than the retention, with what belongs to them. */
export class ResultPruner {
  readonly #store: Pick<CommandStore, "pruneCommands">;
  readonly #clock: Clock;
  readonly #retentionDays: number;
  readonly #batch: number;
  readonly #onError: (error: unknown) => void;
  #timer: TimerId | undefined;
  #running: Promise<ResultPruneTotals> | null = null;
  #closed = false;

  /**
   * Makes a pruner; {@link ResultPruner.start} prunes and arms its timer.
   *
   * @param options Store, clock and retention.
   * @throws {RangeError} When the retention or the batch is not a whole number from 1.
   */
  constructor(options: ResultPrunerOptions) {
    const { retentionDays, batch = RESULT_PRUNE_BATCH } = options;
    if (!Number.isSafeInteger(retentionDays) || retentionDays < 1) {
      throw new RangeError(`retentionDays must be a whole number from 1, got ${retentionDays}`);
    }
    if (!Number.isSafeInteger(batch) || batch < 1) {
      throw new RangeError(`batch must be a whole number from 1, got ${batch}`);
    }
    this.#store = options.store;
    this.#clock = options.clock;
    this.#retentionDays = retentionDays;
    this.#batch = batch;
    this.#onError = options.onError ?? ((error) => {
      log.warning("could not delete old results: {error}", { error });
    });
  }

  /**
   * Prunes now, batch after batch until nothing is left (or the pruner is closed); a pruning
   * already under way is joined, not repeated. Logs how much went when anything did.
   *
   * @returns How much was deleted.
   */
  prune(): Promise<ResultPruneTotals> {
    if (this.#running === null) {
      this.#running = this.#pruneAll().finally(() => {
        this.#running = null;
      });
    }
    return this.#running;
  }

  async #pruneAll(): Promise<ResultPruneTotals> {
    const before = this.#clock.now() - this.#retentionDays * DAY_MS;
    const totals = { commands: 0, runs: 0 };
    try {
      let more = true;
      while (more && !this.#closed) {
        const batch = await this.#store.pruneCommands(before, this.#batch);
        totals.commands += batch.commands;
        totals.runs += batch.runs;
        more = batch.more;
      }
    } finally {
      if (totals.commands > 0 || totals.runs > 0) {
        log.info(
          "deleted {commands} command(s) and {runs} run(s) final for more than " +
            "{retentionDays} day(s) (RESULT_RETENTION_DAYS)",
          { ...totals, retentionDays: this.#retentionDays },
        );
      }
    }
    return totals;
  }

  /** Prunes now, then once an hour from now on; a failure goes to `onError`. */
  start(): void {
    if (this.#closed) return;
    this.prune().catch(this.#onError);
    this.#timer = this.#clock.setTimeout(() => this.start(), RESULT_PRUNE_INTERVAL_MS);
  }

  /** Stops the timer and waits for a pruning under way to end its batch. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clock.clearTimeout(this.#timer);
    await this.#running?.catch(() => {});
  }
}
