/**
 * How many log lines of refused requests a listener writes: a flood of bad requests must not become
 * a flood of log writes.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock.ts";

/** Lines a second once the burst is spent. */
export const REFUSAL_LINES_PER_SECOND = 20;
/** Lines written at once. */
export const REFUSAL_LINES_BURST = 100;

/**
 * How many lines of refused requests may be written: a burst, then a steady rate. Beyond it the
 * lines are left out and counted (the next line written says how many): a flood of bad requests
 * must not turn into a flood of log writes, each one synced to disk under `LOG_FILE`.
 */
export class RefusalLines {
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #clock: Pick<Clock, "now">;
  #tokens: number;
  #at: number;
  #left = 0;

  /**
   * Creates the allowance, full.
   *
   * @param options Lines a second, the burst, and the clock.
   */
  constructor(
    options: { perSecond?: number; burst?: number; clock?: Pick<Clock, "now"> } = {},
  ) {
    this.#perSecond = options.perSecond ?? REFUSAL_LINES_PER_SECOND;
    this.#burst = options.burst ?? REFUSAL_LINES_BURST;
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#burst;
    this.#at = this.#clock.now();
  }

  /**
   * Takes one line.
   *
   * @returns `null` when the line is to be left out; else how many were left out before it.
   */
  take(): number | null {
    const now = this.#clock.now();
    // A clock set back adds nothing.
    const elapsed = Math.max(0, now - this.#at);
    this.#at = now;
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed / 1000) * this.#perSecond);
    if (this.#tokens < 1) {
      this.#left++;
      return null;
    }
    this.#tokens--;
    const left = this.#left;
    this.#left = 0;
    return left;
  }
}
