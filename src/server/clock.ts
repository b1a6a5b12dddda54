/**
 * The dashboard's source of time, injectable so that lease, skew, replay and rate-limit tests need
 * no real waiting.
 *
 * @module
 */

/** A clock in milliseconds since the epoch. */
export interface Clock {
  /** The current time in milliseconds since the epoch. */
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };
