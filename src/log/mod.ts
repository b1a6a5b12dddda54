/**
 * Logging set-up with LogTape: human-readable lines on a terminal, JSON lines otherwise, an
 * `audit` category for security-relevant events, and redaction of secrets everywhere.
 *
 * Library code gets its logger with {@link logger} and logs structured properties; only the CLI
 * edge calls {@link setupLogging}.
 *
 * @module
 */
export { auditLogger, literal, logger } from "./logger.ts";
export { LOG_LEVELS, type LogLevel } from "./levels.ts";
export { type LogFormat } from "./format.ts";
export {
  closeLogging,
  flushLogging,
  type LoggingOptions,
  type LogRecordView,
  reopenLogFile,
  setupLogging,
} from "./setup.ts";
