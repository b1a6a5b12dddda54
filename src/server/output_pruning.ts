/**
 * Pruning the live output of final commands: their results hold the output, so after a retention
 * time the chunks go, checked once a minute.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { CommandStore } from "../store/mod.ts";
import type { Clock, TimerId } from "./clock.ts";

const log = logger("server");

/** How often the live output is pruned, in ms. */
export const PRUNE_INTERVAL_MS = 60_000;

/** Options of {@link OutputPruner}. */
export interface OutputPrunerOptions {
  /** The store. */
  store: Pick<CommandStore, "pruneOutput">;
  /** The dashboard's clock (and its timer). */
  clock: Clock;
  /** How long the live output of a final command is kept, in ms. */
  retentionMs: number;
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
  #timer: TimerId | undefined;

  /**
   * Makes a pruner; {@link OutputPruner.start} arms its timer.
   *
   * @param options Store, clock and retention.
   */
  constructor(options: OutputPrunerOptions) {
    this.#options = options;
  }

  /**
   * Prunes now.
   *
   * @returns How many chunks were deleted.
   */
  prune(): Promise<number> {
    const { store, clock, retentionMs } = this.#options;
    return store.pruneOutput(clock.now() - retentionMs);
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

  /** Stops the timer. */
  close(): void {
    this.#options.clock.clearTimeout(this.#timer);
  }
}
