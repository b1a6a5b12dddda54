/**
 * Configuring LogTape once for the whole process, at the CLI edge.
 *
 * @module
 */
import { writeAllSync } from "../write_all.ts";
import { configureSync, type LogRecord, resetSync, type Sink } from "@logtape/logtape";
import { LineBatcher } from "./batch.ts";
import { rotatingFileSink, rotationPermitted } from "./file_sink.ts";
import { formatJson, formatText, type LogFormat } from "./format.ts";
import type { LogLevel } from "./levels.ts";
import { logger, ROOT_CATEGORY } from "./logger.ts";
import { registerSecret } from "./redact.ts";

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
  /**
   * Write to this file (rotating) instead of standard error. A new file is its owner's only
   * (0600); a symlink or another user's file in its place is refused.
   */
  file?: string;
  /** Secret values (tokens) that must never appear in a log line; they are replaced. */
  secrets?: readonly string[];
  /**
   * Where lines go when no file is given, one call per line; for tests. By default they go to
   * standard error, the lines of one turn of the event loop in one write (warnings and errors at
   * once).
   */
  write?: (line: string) => void;
  /**
   * Records for which it returns `false` are not written (a command that reports an event
   * itself keeps its log from saying it twice).
   */
  filter?: (record: LogRecordView) => boolean;
}

/** Size after which the log file is rotated. */
const LOG_FILE_MAX_BYTES = 10 * 1024 * 1024;
/** Rotated log files kept beside the current one. */
const LOG_FILE_ROTATED = 5;

const encoder = new TextEncoder();

function writeStderr(text: string): void {
  writeAllSync(Deno.stderr, encoder.encode(text));
}

/** The log lines of standard error not written yet (see {@link flushLogging}). */
let pending: LineBatcher | undefined;

/** Reopens the log file of the current configuration, if it has one. */
let reopenFile: (() => void) | undefined;

/**
 * Writes the log lines still waiting for the end of the turn. Whatever else writes to standard
 * error or output (the CLI's own lines) calls it first, so that lines appear in the order they
 * were made.
 */
export function flushLogging(): void {
  pending?.flush();
}

/** Levels written at once, not at the end of the turn. */
const AT_ONCE = new Set(["warning", "error", "fatal"]);

/**
 * The sink of standard error: lines batched per turn of the event loop (`batch.ts`), warnings
 * and errors at once; what is left is written when the sink is disposed, when the program ends
 * and when an uncaught error is about to end it.
 */
function stderrSink(formatter: (record: LogRecord) => string): Sink & Disposable {
  const batch = new LineBatcher(writeStderr);
  const flush = () => batch.flush();
  pending = batch;
  // The end of the program, and an uncaught error or rejection that is about to end it.
  const ends = ["unload", "error", "unhandledrejection"] as const;
  for (const end of ends) globalThis.addEventListener(end, flush);
  return Object.assign((record: LogRecord) => {
    batch.add(formatter(record), AT_ONCE.has(record.level));
  }, {
    [Symbol.dispose]: () => {
      for (const end of ends) globalThis.removeEventListener(end, flush);
      if (pending === batch) pending = undefined;
      flush();
    },
  });
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
  let unrotated: string | undefined;
  if (options.file) {
    // Each line at once: a daemon's log is read while it runs (and after a crash).
    const file = rotatingFileSink(options.file, {
      maxSize: LOG_FILE_MAX_BYTES,
      maxFiles: LOG_FILE_ROTATED,
      formatter: (record) => formatter(record) + "\n",
    });
    reopenFile = () => file.reopen();
    sink = file;
    if (!rotationPermitted(options.file, LOG_FILE_ROTATED)) unrotated = options.file;
  } else if (options.write) {
    const write = options.write;
    sink = (record) => write(formatter(record));
  } else {
    sink = stderrSink(formatter);
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
  if (unrotated !== undefined) {
    // The renames would be refused one by one and the file would grow without bound, unsaid.
    const names = Array.from({ length: LOG_FILE_ROTATED }, (_, i) => `${unrotated}.${i + 1}`);
    logger("log").warning(
      "the log file {file} cannot be rotated: renaming it to {rotated} is not permitted, so it " +
        "grows without bound; grant --allow-read and --allow-write for those names too (or for " +
        "its directory)",
      { file: unrotated, rotated: `${names[0]} … ${names.at(-1)}` },
    );
  }
}

/**
 * Writes the lines waiting for the log file and closes it: the next line opens the file now at its
 * path. After `logrotate` moved the file away (its `postrotate` sends the daemon SIGHUP), lines go
 * to the new file instead of on into the moved one.
 *
 * @returns Whether there is a log file to reopen.
 */
export function reopenLogFile(): boolean {
  if (reopenFile === undefined) return false;
  reopenFile();
  return true;
}

/** Flushes and closes the log file, if any, and resets LogTape. */
export function closeLogging(): void {
  reopenFile = undefined;
  // resetSync() disposes the configured sinks, the rotating file sink included.
  resetSync();
}
