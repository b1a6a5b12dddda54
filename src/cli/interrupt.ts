/**
 * How the CLI stops waiting: Ctrl-C (SIGINT) or `--wait-timeout`. Either stops the waiting only;
 * the command or run goes on.
 *
 * @module
 */
import { Option } from "@commander-js/extra-typings";
import { onSignals } from "./signals.ts";
import { timeoutSignal } from "../clock.ts";
import { EXIT_WAIT_TIMEOUT } from "../operator/mod.ts";
import { wholeNumberParser } from "./enqueue.ts";

/** The longest `--wait-timeout`, in seconds: 30 days. */
export const MAX_WAIT_TIMEOUT_SECS = 30 * 86_400;

/**
 * The `--wait-timeout <secs>` option, one for every command that waits for a command or a run
 * (`status enqueue --wait`, `status run start --wait`, `status run show --follow`,
 * `status result --follow`, `status cancel --wait`): whole seconds from 1 to
 * {@link MAX_WAIT_TIMEOUT_SECS}; given, it implies the waiting flag, and when it passes first the
 * CLI stops waiting and exits {@link EXIT_WAIT_TIMEOUT} (75) with a line saying what goes on and
 * how to see it.
 *
 * @param implied The flag it implies: `--wait` or `--follow`.
 * @param after What happens to the command or run, said in the help: `"the command goes on"`.
 * @returns The option, parsed to a number of seconds.
 */
export function waitTimeoutOption(
  implied: "--wait" | "--follow",
  after: string,
): Option<"--wait-timeout <secs>", undefined, undefined, number> {
  return new Option(
    "--wait-timeout <secs>",
    `with ${implied} (implied): stop waiting after this many seconds and exit ` +
      `${EXIT_WAIT_TIMEOUT} (${after})`,
  ).argParser(wholeNumberParser(1, MAX_WAIT_TIMEOUT_SECS));
}

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

/** The signals of one request to the dashboard; dispose it to stop listening for SIGINT. */
export interface RequestSignals extends Disposable {
  /** Aborted by SIGINT (reason: `Error("interrupted")`). */
  interrupted: AbortSignal;
  /** Aborted by SIGINT or by the deadline given. */
  signal: AbortSignal;
}

/**
 * Listens for SIGINT during a request that may change something on the dashboard (an enqueue, a
 * cancel, a run's creation), so that Ctrl-C aborts it and the CLI can say what may have happened,
 * rather than the process ending without a word.
 *
 * @param deadline The `--wait-timeout` armed already, when there is one.
 * @returns The signals and their disposer.
 */
export function requestSignals(deadline?: AbortSignal): RequestSignals {
  const controller = new AbortController();
  const listening = onSignals(["SIGINT"], () => controller.abort(new Error("interrupted")));
  return {
    interrupted: controller.signal,
    signal: deadline ? AbortSignal.any([controller.signal, deadline]) : controller.signal,
    [Symbol.dispose]: () => listening[Symbol.dispose](),
  };
}
