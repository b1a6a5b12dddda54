/**
 * Process signals of the CLI: listening for them (disposably), the two-stage stop of `status
 * agent` and `status up` (first SIGINT/SIGTERM/SIGHUP: stop; second: stop at once), and the signal
 * numbers behind exit codes of the form 128 + n.
 *
 * @module
 */
import { constants } from "node:os";
import { isGranted } from "../permissions.ts";
import { readTextFileBounded } from "../read_bounded.ts";
import { helperPath } from "../exec/env.ts";

/**
 * The number of a signal on this platform (`node:os` `constants.signals`), for exit codes of the
 * form 128 + n.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signalNumber } from "./signals.ts";
 * assert.equal(signalNumber("SIGKILL"), 9);
 * assert.equal(signalNumber("SIGNOPE"), undefined);
 * ```
 *
 * @param name The signal's name, e.g. `"SIGTERM"`.
 * @returns Its number, or `undefined` for a name the platform does not know.
 */
export function signalNumber(name: string): number | undefined {
  const numbers: Readonly<Record<string, number>> = constants.signals;
  return Object.hasOwn(numbers, name) ? numbers[name] : undefined;
}

/**
 * The signals that ask a CLI command to stop. SIGHUP is one: the terminal a foreground agent or
 * dashboard ran in has closed (an SSH session ended), and by default it would end the process at
 * once, leaving a running command to run on past its deadline with nobody to report it.
 */
export type StopSignal = "SIGINT" | "SIGTERM" | "SIGHUP";

/** The signals that ask a CLI command to stop, in the order they are listened to. */
export const STOP_SIGNALS: readonly StopSignal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** Whether SIGHUP was ignored when this process started (see {@link keepHangupIgnored}). */
let hangupIgnoredAtStart = false;

/**
 * Keeps SIGHUP ignored when this process was started ignoring it, as `nohup` starts it: whoever
 * started it asked that a hangup not end it. Deno replaces an ignored SIGHUP with its own handler
 * half a second into the program, which ends the process at a hangup as if it were not ignored;
 * a listener that does nothing keeps it ignored, and the agent, the dashboard and `status up` do
 * not take it for a stop ({@link startedIgnoringHangup}). Told from the kernel's mask of ignored
 * signals, in `/proc/self/status` (which Deno reads under `--allow-all` only) or from
 * `ps -o ignored=` (`--allow-run` for `ps`); where neither can be read, a hangup ends it.
 *
 * @example At the start of the program, before anything listens for signals
 * ```ts
 * import { keepHangupIgnored } from "./signals.ts";
 * keepHangupIgnored();
 * ```
 */
export function keepHangupIgnored(): void {
  if (((ignoredSignals() ?? 0n) & HANGUP_BIT) === 0n) return;
  try {
    Deno.addSignalListener("SIGHUP", () => {});
    hangupIgnoredAtStart = true;
  } catch {
    // Not a signal on this platform.
  }
}

/**
 * Whether {@link keepHangupIgnored} found this process started with SIGHUP ignored (`nohup`).
 *
 * @returns `true` when a hangup is to be ignored.
 */
export function startedIgnoringHangup(): boolean {
  return hangupIgnoredAtStart;
}

/** What the agent, the dashboard and `status up` log at a SIGHUP they were started ignoring. */
export const NOHUP_IGNORED = "SIGHUP received: ignored, as it was when this process was started " +
  "(nohup); stop it with SIGTERM or SIGINT";

/** SIGHUP (1) in a mask of signals, where signal n is bit n - 1. */
const HANGUP_BIT = 1n;

/** The mask of the signals this process ignores, or `undefined` when it cannot be read. */
function ignoredSignals(): bigint | undefined {
  const path = "/proc/self/status";
  if (isGranted({ name: "read", path })) {
    try {
      const line = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readTextFileBounded(path, 64 * 1024) ?? "");
      if (line) return BigInt(`0x${line[1]}`);
    } catch {
      // Not Linux, or not under --allow-all.
    }
  }
  if (isGranted({ name: "run", command: "ps" })) {
    try {
      const output = new Deno.Command("ps", {
        args: ["-o", "ignored=", "-p", String(Deno.pid)],
        // Looked up as the agent's own helpers are: a `ps` left in `/tmp` or `.` would run as
        // the agent (root, often) at its start.
        env: { PATH: helperPath() },
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).outputSync();
      const mask = new TextDecoder().decode(output.stdout).trim();
      if (output.success && /^[0-9a-f]{1,32}$/i.test(mask)) return BigInt(`0x${mask}`);
    } catch {
      // No ps.
    }
  }
  return undefined;
}

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

/**
 * Makes a file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) a failed write instead of the end
 * of the process: by default SIGXFSZ kills it, silently and mid-write. Listened to, the write that
 * crosses the limit fails with "File too large", which the store, the agent's journal and outbox
 * and the log file handle as a write that failed (the program goes on, says so, loses nothing it
 * already had). The commands the agent runs still get the default (a handler is not inherited).
 *
 * @example At the start of the program
 * ```ts
 * import { surviveFileSizeLimit } from "./signals.ts";
 * surviveFileSizeLimit();
 * ```
 */
export function surviveFileSizeLimit(): void {
  try {
    Deno.addSignalListener("SIGXFSZ", () => {});
  } catch {
    // Not a signal on this platform.
  }
}

/** What {@link twoStageStop} gives: a stop, a stop-at-once, and which signal forced it. */
export interface TwoStageStop extends Disposable {
  /** Aborted by the first SIGINT, SIGTERM or SIGHUP. */
  readonly stop: AbortController;
  /** Aborted by the second. */
  readonly stopNow: AbortController;
  /** The signal that asked to stop at once, if one did. */
  readonly forcedBy: StopSignal | undefined;
}

/**
 * Listens for SIGINT, SIGTERM and SIGHUP until disposed: the first aborts `stop` (a graceful
 * stop), the second aborts `stopNow`. A signal `on.ignore` says yes to (it says why) does neither.
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
 * @param on What to say at the first signal and at the second, and which signals to ignore.
 * @returns The two controllers; dispose to stop listening.
 */
export function twoStageStop(on: {
  first(signal: StopSignal): void;
  again(signal: StopSignal): void;
  /** Whether this signal is left without effect; it says why when it is. */
  ignore?(signal: StopSignal): boolean;
}): TwoStageStop {
  const stop = new AbortController();
  const stopNow = new AbortController();
  let forcedBy: StopSignal | undefined;
  let received = 0;
  const listening = onSignals(STOP_SIGNALS, (signal) => {
    if (on.ignore?.(signal)) return;
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
