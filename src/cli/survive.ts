/**
 * A dashboard process outlives connection failures that no request is waiting for: a database
 * connection dropped while the database restarts, a client's socket reset under the HTTP server.
 * Such a failure can surface outside any of our promises (inside the database driver, or Node's
 * compatibility layer), and by default it would end the process — and every agent's wait with it.
 *
 * @module
 */
import { format } from "node:util";
import { logger } from "../log/mod.ts";
import { isConnectionFailure } from "../store/errors.ts";

const log = logger("server");

/**
 * Until disposed, logs connection failures that nothing handled (rejected promises and errors
 * thrown from callbacks) instead of letting them end the process. Any other unhandled error still
 * ends it, as a bug should.
 *
 * @example Keeps the dashboard running through a reset connection
 * ```ts
 * import { surviveConnectionFailures } from "./survive.ts";
 *
 * using _guard = surviveConnectionFailures();
 * // Seen (and let pass) before the guard is disposed at the end of the block.
 * const seen = new Promise((resolve) => {
 *   globalThis.addEventListener("unhandledrejection", resolve, { once: true });
 * });
 * Promise.reject(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));
 * await seen;
 * ```
 *
 * @returns Removes the handlers when disposed.
 */
export function surviveConnectionFailures(): Disposable {
  const onRejection = (event: PromiseRejectionEvent) => {
    if (!isConnectionFailure(event.reason)) return;
    event.preventDefault();
    log.error("a connection failed outside any request: {error}; still running", {
      error: event.reason,
    });
  };
  const onError = (event: ErrorEvent) => {
    if (!isConnectionFailure(event.error)) return;
    event.preventDefault();
    log.error("a connection failed outside any request: {error}; still running", {
      error: event.error,
    });
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

const consoleLog = logger("server", "library");

/** The `console` methods a library may print with, and the log level each goes to. */
const CONSOLE_LEVELS = {
  debug: "debug",
  log: "info",
  info: "info",
  warn: "warning",
  error: "error",
} as const;

/**
 * Until disposed, what libraries print with `console` (the HTTP adapter prints "The user aborted a
 * request." for every client that leaves a streamed answer early) goes to the dashboard's log, at
 * the matching level, instead of mixing plain lines into its standard output. Our own code never
 * prints with `console`.
 *
 * @example A library's line becomes a log record
 * ```ts
 * import { consoleIntoLog } from "./survive.ts";
 *
 * using _console = consoleIntoLog();
 * console.info("The user aborted a request.");
 * ```
 *
 * @returns Restores `console` when disposed.
 */
export function consoleIntoLog(): Disposable {
  const saved = new Map<keyof typeof CONSOLE_LEVELS, (...args: unknown[]) => void>();
  for (const [method, level] of Object.entries(CONSOLE_LEVELS)) {
    const name = method as keyof typeof CONSOLE_LEVELS;
    saved.set(name, console[name]);
    console[name] = (...args: unknown[]) => {
      consoleLog[level]("{text}", { text: format(...args) });
    };
  }
  return {
    [Symbol.dispose]() {
      for (const [name, original] of saved) console[name] = original;
    },
  };
}
