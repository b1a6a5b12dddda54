/**
 * Pruning the live output of final commands: their results hold the output, so after a retention
 * time the chunks go, checked once a minute, in batches so that no statement holds the store for
 * long (a backlog of millions of chunks in one statement outlasted the store's operation timeout,
 * and so never went).
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { CommandStore } from "../store/mod.ts";
import type { Clock, TimerId } from "./clock.ts";

const log = logger("server");

/** How often the live output is pruned, in ms. */
export const PRUNE_INTERVAL_MS = 60_000;

/** Chunks one store call deletes at most. */
export const OUTPUT_PRUNE_BATCH = 1000;

/** Options of {@link OutputPruner}. */
export interface OutputPrunerOptions {
  /** The store. */
  store: Pick<CommandStore, "pruneOutput">;
  /** The dashboard's clock (and its timer). */
  clock: Clock;
  /** How long the live output of a final command is kept, in ms. */
  retentionMs: number;
  /**
   * Chunks one store call deletes at most.
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

/** Deletes the live output of commands final for longer than the retention time. */
export class OutputPruner {
  readonly #options: OutputPrunerOptions;
  readonly #batch: number;
  #timer: TimerId | undefined;
  #running: Promise<number> | null = null;
  #closed = false;

  /**
   * Makes a pruner; {@link OutputPruner.start} arms its timer.
   *
   * @param options Store, clock and retention.
   * @throws {RangeError} When the batch is not a whole number from 1.
   */
  constructor(options: OutputPrunerOptions) {
    const { batch = OUTPUT_PRUNE_BATCH } = options;
    if (!Number.isSafeInteger(batch) || batch < 1) {
      throw new RangeError(`batch must be a whole number from 1, got ${batch}`);
    }
    this.#options = options;
    this.#batch = batch;
  }

  /**
   * Prunes now, batch after batch until nothing is left (or the pruner is closed); a pruning
   * already under way is joined, not repeated.
   *
   * @returns How many chunks were deleted.
   */
  prune(): Promise<number> {
    if (this.#running === null) {
      this.#running = this.#pruneAll().finally(() => {
        this.#running = null;
      });
    }
    return this.#running;
  }

  async #pruneAll(): Promise<number> {
    const { store, clock, retentionMs } = this.#options;
    const before = clock.now() - retentionMs;
    let chunks = 0;
    let more: boolean;
    // At least one batch: a pruning asked for after close still prunes (once).
    do {
      const batch = await store.pruneOutput(before, this.#batch);
      chunks += batch.chunks;
      more = batch.more;
    } while (more && !this.#closed);
    return chunks;
  }

  /** Prunes once a minute from now on; a failure goes to `onError`. */
  start(): void {
    const onError = this.#options.onError ?? ((error: unknown) => {
      log.warning("could not prune live output: {error}", { error });
    });
    this.#timer = this.#options.clock.setTimeout(() => {
      this.start();
      this.prune().catch(onError);
    }, PRUNE_INTERVAL_MS);
  }

  /** Stops the timer; a pruning under way ends after its current batch. */
  close(): void {
    this.#closed = true;
    this.#options.clock.clearTimeout(this.#timer);
  }
}
