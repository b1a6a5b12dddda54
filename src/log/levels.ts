/**
 * The log levels, from the most to the least verbose, and how a text line labels each.
 *
 * @module
 */

/** The log levels accepted by `--log-level`. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** A log level, from the most to the least verbose. */
export type LogLevel = typeof LOG_LEVELS[number];

/** How a text line labels each level. */
export const LEVEL_LABEL: Readonly<Record<LogLevel, string>> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};
