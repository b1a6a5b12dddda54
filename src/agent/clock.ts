/**
 * Time as the agent sees it: the shared clock (now, timers and an abortable sleep), injectable so
 * that tests of back-off and heartbeats do not sleep for real.
 *
 * @module
 */

export {
  abortableSleep,
  type Clock,
  FakeClock,
  monotonicNow,
  systemClock,
  type TimerId,
} from "../clock.ts";
