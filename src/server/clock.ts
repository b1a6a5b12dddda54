/**
 * The dashboard's source of time (now and timers), injectable so that lease, deadline, skew,
 * replay and rate-limit tests need no real waiting.
 *
 * @module
 */

export { type Clock, FakeClock, monotonicNow, systemClock, type TimerId } from "../clock.ts";
