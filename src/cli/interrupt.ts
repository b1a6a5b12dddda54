/**
 * How the CLI stops waiting: Ctrl-C (SIGINT) or `--wait-timeout`. Either stops the waiting only;
 * the command or run goes on.
 *
 * @module
 */
import { onSignals } from "./signals.ts";
import { timeoutSignal } from "../clock.ts";

/** The signals of one wait; dispose it to stop listening for SIGINT. */
export interface WaitSignals extends Disposable {
  /** Aborted by SIGINT (reason: `Error("interrupted")`). */
  interrupted: AbortSignal;
  /** Aborted when the timeout passed; absent without a timeout. */
  timedOut?: AbortSignal;
  /** Aborted by either. */
  signal: AbortSignal;
}

/**
 * Listens for SIGINT until disposed (where signals cannot be listened to, Ctrl-C just ends the
 * process) and arms the timeout.
 *
 * @param timeoutSecs Stop waiting after this many seconds; none: wait as long as it takes.
 * @returns The signals and their disposer.
 */
export function waitSignals(timeoutSecs?: number): WaitSignals {
  const controller = new AbortController();
  const listening = onSignals(["SIGINT"], () => controller.abort(new Error("interrupted")));
  const timedOut = timeoutSecs === undefined ? undefined : timeoutSignal(timeoutSecs * 1000);
  return {
    interrupted: controller.signal,
    timedOut,
    signal: timedOut ? AbortSignal.any([controller.signal, timedOut]) : controller.signal,
    [Symbol.dispose]: () => listening[Symbol.dispose](),
  };
}
