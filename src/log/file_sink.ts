/**
 * The log file: each line written (and synced) at once, rotated by size, and opened only as a
 * file of this process's own (see `own_files.ts`): a log file in `/tmp` that another user
 * replaced with a symlink, or created first, is refused instead of written through.
 *
 * @module
 */
import type { LogRecord, Sink } from "@logtape/logtape";
import { openOwnFileSync } from "../own_files.ts";
import { isGranted } from "../permissions.ts";
import { writeAllSync } from "../write_all.ts";

/** Mode of a log file this program creates: its owner's only (commands, errors, addresses). */
export const LOG_FILE_MODE = 0o600;

/** Options of {@link rotatingFileSink}. */
export interface RotatingFileSinkOptions {
  /** Size in bytes after which the file is rotated to `<path>.1`. */
  maxSize: number;
  /** How many rotated files are kept beside the current one (`<path>.1` … `<path>.<maxFiles>`). */
  maxFiles: number;
  /** Formats a record into its line, newline included. */
  formatter: (record: LogRecord) => string;
}

/**
 * Whether Deno lets this program rotate a log file: rename it to `<path>.1` … `<path>.<maxFiles>`,
 * which needs read and write access to each of those names (or their directory), not only to
 * the file (`--allow-write=status.log` alone does not let it rotate).
 *
 * @param path The log file.
 * @param maxFiles How many rotated files are kept.
 * @returns `false` when a rotated name may not be written or read.
 */
export function rotationPermitted(path: string, maxFiles: number): boolean {
  for (let i = 1; i <= maxFiles; i++) {
    const rotated = `${path}.${i}`;
    const granted = isGranted({ name: "write", path: rotated }) &&
      isGranted({ name: "read", path: rotated });
    if (!granted) return false;
  }
  return true;
}

/**
 * A sink writing to a rotating log file.
 *
 * @param path The log file.
 * @param options Size, number of files and formatter.
 * @returns The sink; disposing it closes the file.
 * @throws {import("../own_files.ts").NotOwnFileError} When the file is a symlink or another
 *   user's.
 */
export function rotatingFileSink(
  path: string,
  options: RotatingFileSinkOptions,
): Sink & Disposable {
  const open = () => openOwnFileSync(path, { append: true, mode: LOG_FILE_MODE });
  let file: Deno.FsFile | undefined = open();
  let size = file.statSync().size;
  const encoder = new TextEncoder();
  const rotate = () => {
    file?.close();
    file = undefined;
    for (let i = options.maxFiles; i > 0; i--) {
      try {
        // A rename never follows a symlink: one left at <path>.N is replaced, not written.
        Deno.renameSync(i === 1 ? path : `${path}.${i - 1}`, `${path}.${i}`);
      } catch {
        // Not there yet.
      }
    }
    size = 0;
  };
  // Lines that could not be written (a full disk, a file that became unwritable), said in the
  // file by the first line that can be, so a gap in the log is not taken for a quiet time.
  let lost = 0;
  let lostError = "";
  return Object.assign((record: LogRecord) => {
    let text = options.formatter(record);
    if (lost > 0) text = options.formatter(lostLines(lost, lostError, record.timestamp)) + text;
    const bytes = encoder.encode(text);
    if (file !== undefined && size > 0 && size + bytes.length > options.maxSize) rotate();
    let before = -1;
    try {
      // Opened again after a rotation, or after it could not be (the line is lost then).
      file ??= open();
      before = file.statSync().size;
      writeAllSync(file, bytes);
      file.syncSync();
      size += bytes.length;
      lost = 0;
    } catch (error) {
      lost++;
      lostError = error instanceof Error ? error.message : String(error);
      // A log line must not stop the program; the next one tries again. Part of it may be written
      // (a full disk): that part is taken back, or the next line would be joined to it.
      try {
        if (before >= 0) file?.truncateSync(before);
      } catch {
        // The next line may follow a torn one.
      }
    }
  }, {
    [Symbol.dispose]: () => {
      file?.close();
      file = undefined;
    },
  });
}

/** The record that says how many lines before it were lost, and why. */
function lostLines(lost: number, error: string, timestamp: number): LogRecord {
  return {
    category: ["status", "log"],
    level: "warning",
    message: [
      "",
      lost,
      " log lines before this one could not be written to this file: ",
      error,
      "",
    ],
    rawMessage: "{lost} log lines before this one could not be written to this file: {error}",
    properties: { lost, error },
    timestamp,
  };
}
