/**
 * Ctrl-C while the CLI waits: stops the waiting (the command or run goes on), not the process.
 *
 * @module
 */

/** An abort signal that SIGINT aborts, until disposed. */
export interface Interrupt extends Disposable {
  /** Aborted by SIGINT (reason: `Error("interrupted")`). */
  signal: AbortSignal;
}

/**
 * Listens for SIGINT until disposed; where signals cannot be listened to, Ctrl-C just ends the
 * process and the signal never aborts.
 *
 * @returns The signal and its disposer.
 */
export function listenForInterrupt(): Interrupt {
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted"));
  let listening = false;
  try {
    Deno.addSignalListener("SIGINT", onSignal);
    listening = true;
  } catch {
    // no signals here (a platform without SIGINT, or no permission)
  }
  return {
    signal: controller.signal,
    [Symbol.dispose]() {
      if (listening) Deno.removeSignalListener("SIGINT", onSignal);
      listening = false;
    },
  };
}
