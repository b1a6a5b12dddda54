/**
 * Logging set-up with LogTape: human-readable lines on a terminal, JSON lines otherwise, an
 * `audit` category for security-relevant events, and redaction of secrets everywhere.
 *
 * Library code gets its logger with {@link logger} and logs structured properties; only the CLI
 * edge calls {@link setupLogging}.
 *
 * @module
 */
import { writeAllSync } from "../write_all.ts";
import {
  configureSync,
  getLogger,
  type Logger,
  type LogRecord,
  resetSync,
  type Sink,
} from "@logtape/logtape";
import { getRotatingFileSink } from "@logtape/file";

/** The root category of every logger of this program. */
export const ROOT_CATEGORY = "status";

/** Output format of log lines. */
export type LogFormat = "text" | "json";

/** The log levels accepted by `--log-level`. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** A log level, from the most to the least verbose. */
export type LogLevel = typeof LOG_LEVELS[number];

/** What a {@link LoggingOptions.filter} sees of a log record. */
export interface LogRecordView {
  /** The category, e.g. `["status", "exec"]`. */
  readonly category: readonly string[];
  /** The level, e.g. `"warning"`. */
  readonly level: string;
  /** The message template before its properties are filled in. */
  readonly rawMessage: string | TemplateStringsArray;
}

/** Options of {@link setupLogging}. */
export interface LoggingOptions {
  /**
   * `text` for human-readable lines, `json` for JSON lines.
   * @default {"text" on a terminal, "json" otherwise}
   */
  format?: LogFormat;
  /**
   * The lowest level written.
   * @default {"info"}
   */
  level?: LogLevel;
  /** Write to this file (rotating) instead of standard error. */
  file?: string;
  /** Secret values (tokens) that must never appear in a log line; they are replaced. */
  secrets?: readonly string[];
  /** Where lines go when no file is given; for tests. Defaults to standard error. */
  write?: (line: string) => void;
  /**
   * Records for which it returns `false` are not written (a command that reports an event
   * itself keeps its log from saying it twice).
   */
  filter?: (record: LogRecordView) => boolean;
}

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

const SECRET_KEY = /token|signature|authorization|secret|password/i;
const REDACTED = "[redacted]";

const secretValues = new Set<string>();

/**
 * Registers a secret value so that it is replaced in every later log line.
 *
 * @param value The secret; values shorter than 8 characters are ignored.
 */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 8) secretValues.add(value);
}

function redactString(text: string): string {
  let out = text;
  for (const secret of secretValues) {
    if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
  }
  return out;
}

function redactValue(key: string, value: unknown, depth = 0): unknown {
  if (SECRET_KEY.test(key) && value !== null && value !== undefined && value !== "") {
    return REDACTED;
  }
  if (typeof value === "string") return redactString(value);
  if (value instanceof Error) {
    return { name: value.name, message: redactString(value.message) };
  }
  if (depth < 4 && value && typeof value === "object") {
    if (Array.isArray(value)) return value.map((v) => redactValue("", v, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactValue(k, v, depth + 1);
    return out;
  }
  return value;
}

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

const LEVEL_LABEL: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

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

const encoder = new TextEncoder();

function writeStderr(line: string): void {
  writeAllSync(Deno.stderr, encoder.encode(line + "\n"));
}

/**
 * Configures LogTape for the whole process. Call once at the CLI edge; calling again replaces the
 * previous configuration.
 *
 * @example JSON lines at debug level on standard error
 * ```ts
 * import { closeLogging, setupLogging } from "./mod.ts";
 *
 * setupLogging({ format: "json", level: "debug" });
 * closeLogging();
 * ```
 *
 * @param options Format, level, file and secrets.
 */
export function setupLogging(options: LoggingOptions = {}): void {
  for (const secret of options.secrets ?? []) registerSecret(secret);
  const format = options.format ?? (Deno.stderr.isTerminal() ? "text" : "json");
  const formatter = format === "json" ? formatJson : formatText;
  closeLogging();
  let sink: Sink;
  if (options.file) {
    sink = getRotatingFileSink(options.file, {
      maxSize: 10 * 1024 * 1024,
      maxFiles: 5,
      // Write each line at once: a daemon's log is read while it runs (and after a crash).
      bufferSize: 0,
      formatter: (record) => formatter(record) + "\n",
    });
  } else {
    const write = options.write ?? writeStderr;
    sink = (record) => write(formatter(record));
  }
  const filter = options.filter;
  if (filter) {
    const unfiltered = sink;
    sink = Object.assign((record: LogRecord) => {
      if (filter(record)) unfiltered(record);
    }, { [Symbol.dispose]: () => (unfiltered as Partial<Disposable>)[Symbol.dispose]?.() });
  }
  configureSync({
    reset: true,
    sinks: { main: sink },
    loggers: [
      { category: [ROOT_CATEGORY], lowestLevel: options.level ?? "info", sinks: ["main"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["main"] },
    ],
  });
}

/** Flushes and closes the log file, if any, and resets LogTape. */
export function closeLogging(): void {
  // resetSync() disposes the configured sinks, the rotating file sink included.
  resetSync();
}
