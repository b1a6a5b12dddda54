/**
 * Process signals of the CLI: listening for them (disposably), the two-stage stop of `status
 * agent` and `status up` (first SIGINT/SIGTERM: stop; second: stop at once), and the signal
 * numbers behind exit codes of the form 128 + n.
 *
 * @module
 */

/** The numbers of the signals a command may end by (Linux), for exit codes 128 + n. */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = Object.freeze({
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGXCPU: 24,
  SIGXFSZ: 25,
});

/** The signals that ask a CLI command to stop. */
export type StopSignal = "SIGINT" | "SIGTERM";

/** The signals that ask a CLI command to stop, in the order they are listened to. */
export const STOP_SIGNALS: readonly StopSignal[] = ["SIGINT", "SIGTERM"];

/**
 * Calls `handler` on each of `signals` until disposed. A signal this platform cannot listen to
 * (SIGTERM on Windows) is skipped: it just ends the process.
 *
 * @example Stop on Ctrl-C while a block runs
 * ```ts ignore
 * const stop = new AbortController();
 * using _signals = onSignals(["SIGINT"], () => stop.abort());
 * ```
 *
 * @param signals The signals to listen to.
 * @param handler Called with the signal's name.
 * @returns Dispose it to stop listening.
 */
export function onSignals<S extends Deno.Signal>(
  signals: readonly S[],
  handler: (signal: S) => void,
): Disposable {
  const listeners: Array<[S, () => void]> = [];
  for (const signal of signals) {
    const listener = () => handler(signal);
    try {
      Deno.addSignalListener(signal, listener);
      listeners.push([signal, listener]);
    } catch {
      // Not supported on this platform.
    }
  }
  return {
    [Symbol.dispose]() {
      for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
    },
  };
}

/** What {@link twoStageStop} gives: a stop, a stop-at-once, and which signal forced it. */
export interface TwoStageStop extends Disposable {
  /** Aborted by the first SIGINT or SIGTERM. */
  readonly stop: AbortController;
  /** Aborted by the second. */
  readonly stopNow: AbortController;
  /** The signal that asked to stop at once, if one did. */
  readonly forcedBy: StopSignal | undefined;
}

/**
 * Listens for SIGINT and SIGTERM until disposed: the first aborts `stop` (a graceful stop), the
 * second aborts `stopNow`.
 *
 * @example The agent's stop
 * ```ts ignore
 * using signals = twoStageStop({
 *   first: (name) => console.log(`${name}: stopping`),
 *   again: (name) => console.log(`${name} again: stopping at once`),
 * });
 * await runAgent({ ...options, stopNow: signals.stopNow.signal }, signals.stop.signal);
 * ```
 *
 * @param on What to say at the first signal and at the second.
 * @returns The two controllers; dispose to stop listening.
 */
export function twoStageStop(on: {
  first(signal: StopSignal): void;
  again(signal: StopSignal): void;
}): TwoStageStop {
  const stop = new AbortController();
  const stopNow = new AbortController();
  let forcedBy: StopSignal | undefined;
  let received = 0;
  const listening = onSignals(STOP_SIGNALS, (signal) => {
    if (++received === 1) {
      on.first(signal);
      stop.abort();
    } else if (!stopNow.signal.aborted) {
      on.again(signal);
      forcedBy = signal;
      stopNow.abort();
    }
  });
  return {
    stop,
    stopNow,
    get forcedBy() {
      return forcedBy;
    },
    [Symbol.dispose]: () => listening[Symbol.dispose](),
  };
}
