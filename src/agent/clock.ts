/**
 * Time as the agent sees it: a clock and an abortable sleep, injectable so that tests of back-off
 * and heartbeats do not sleep for real.
 *
 * @module
 */

/** The agent's source of time. */
export interface Clock {
  /** Current time in milliseconds since the epoch. */
  now(): number;
  /**
   * Waits `ms` milliseconds, or less when `signal` aborts; never rejects.
   *
   * @param ms How long to wait.
   * @param signal Ends the wait early.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Waits `ms` milliseconds on a real timer, or until `signal` aborts. Resolves in both cases and
 * leaves no timer or listener behind.
 *
 * @param ms How long to wait; values at or below 0 resolve on the next turn.
 * @param signal Ends the wait early.
 * @returns A promise that resolves when the time has passed or the signal aborted.
 */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** The real clock: `Date.now()` and real timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: abortableSleep,
};
