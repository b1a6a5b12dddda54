/**
 * The loggers of this program: every category below {@link ROOT_CATEGORY}, and the audit
 * category for security-relevant events.
 *
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";

/** The root category of every logger of this program. */
export const ROOT_CATEGORY = "status";

/**
 * Returns the logger for a category below `status`, e.g. `logger("agent", "poll")`.
 *
 * @param category Sub-categories below the root.
 * @returns A LogTape logger.
 */
export function logger(...category: string[]): Logger {
  return getLogger([ROOT_CATEGORY, ...category]);
}

/** The audit logger: auth failures, replays, rate-limit hits, enqueues and reports. */
export function auditLogger(): Logger {
  return getLogger([ROOT_CATEGORY, "audit"]);
}

/**
 * Text to log as it is, as a message without placeholders: its braces doubled, so that a name or
 * a path a user wrote (`dashboard_ur{l}`) is shown as written, not filled in from the properties.
 *
 * @param text The message.
 * @returns The message template that shows it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { literal } from "./logger.ts";
 *
 * assert.equal(literal('key "a{b}" is ignored'), 'key "a{{b}}" is ignored');
 * ```
 */
export function literal(text: string): string {
  return text.replaceAll("{", "{{").replaceAll("}", "}}");
}
