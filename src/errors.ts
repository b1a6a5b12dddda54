/**
 * Error classes that callers are expected to catch. `main.ts` maps them to exit codes:
 * {@link UsageError} and {@link ConfigError} exit with 2, everything else with 1.
 *
 * @module
 */

/** A bad flag, argument or value given on the command line. Exits with code 2. */
export class UsageError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode = 2;
  /** Creates the error with a sentence saying what was wrong. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/**
 * A setting that is missing or invalid, naming where it came from. Exits with code 2.
 *
 * @example A dashboard that would listen beyond loopback in dev mode
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConfigError, startServer } from "../mod.ts";
 *
 * await assert.rejects(
 *   startServer({ db: ":memory:", port: 0, hostname: "0.0.0.0" }),
 *   ConfigError,
 * );
 * ```
 */
export class ConfigError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode = 2;
  /** Creates the error with a sentence naming the setting, its source and the bad value. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}
