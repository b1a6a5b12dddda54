/**
 * The two formats of log lines: human-readable text and JSON, both redacted.
 *
 * @module
 */
import type { LogRecord } from "@logtape/logtape";
import { LEVEL_LABEL } from "./levels.ts";
import { redactString, redactValue } from "./redact.ts";

/** Output format of log lines. */
export type LogFormat = "text" | "json";

function renderMessage(record: LogRecord): string {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    text += i % 2 === 0 ? String(part) : renderValue(redactValue("", part));
  }
  return redactString(text);
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Formats a record as one human-readable line:
 * `2026-01-12T10:00:00Z INFO Agent daemon starting command_id=cmd-1`.
 */
export function formatText(record: LogRecord): string {
  const props = redactValue("", record.properties) as Record<string, unknown>;
  let line = `${isoSeconds(record.timestamp)} ${LEVEL_LABEL[record.level]} ${
    renderMessage(record)
  }`;
  const category = record.category.slice(1).join(".");
  if (category === "audit") line += " audit=true";
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined) continue;
    const rendered = renderValue(value);
    line += ` ${key}=${/[\s"=]/.test(rendered) ? JSON.stringify(rendered) : rendered}`;
  }
  return line;
}

/** Formats a record as one JSON line with `time`, `level`, `category`, `message` and properties. */
export function formatJson(record: LogRecord): string {
  const props = redactValue("", record.properties) as Record<string, unknown>;
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    category: record.category.join("."),
    message: renderMessage(record),
    ...props,
  });
}
