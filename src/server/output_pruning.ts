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

  /** Prunes once a minute from now on; a failure is logged. */
  start(): void {
    this.#timer = this.#options.clock.setTimeout(() => {
      this.start();
      this.prune().catch((error) => {
        log.warning("could not prune live output: {error}", { error });
      });
    }, PRUNE_INTERVAL_MS);
  }

  /** Stops the timer. */
  close(): void {
    this.#options.clock.clearTimeout(this.#timer);
  }
}
