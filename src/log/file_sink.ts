/**
 * The log file: rotated by size, and opened only as a file of this process's own (see
 * `own_files.ts`): a log file in `/tmp` that another user replaced with a symlink, or created
 * first, is refused instead of written through.
 *
 * The lines of one turn of the event loop are written together at its end (`batch.ts`), and the
 * file is synced to its disk at most once a second after a write: a synced write of a line took
 * 1.2–2.7 ms on the JS thread on the machines here (`bench/ANALYSIS.md`), and a busy dashboard logs
 * three lines a command, so a sync per line held every request up. A warning or an error is written
 * and synced at once, with the lines before it; what is left is written and synced when the sink is
 * disposed and when the program ends (or an uncaught error is about to end it). A line written is
 * in the file for any reader at once, and survives the process being killed; what the last second
 * wrote may be lost only if the machine itself goes down.
 *
 * @module
 */
import type { LogRecord, Sink } from "@logtape/logtape";
import { LineBatcher } from "./batch.ts";
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
  /**
   * Longest time in ms between a write and the sync of the file to its disk.
   * @default {1000}
   */
  syncAfterMs?: number;
}

/** Levels written and synced at once, not at the end of the turn. */
const AT_ONCE = new Set(["warning", "error", "fatal"]);

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
 * A sink writing to a rotating log file (see the module doc for when lines reach it).
 *
 * @param path The log file.
 * @param options Size, number of files and formatter.
 * @returns The sink; disposing it closes the file; `reopen()` writes what waits and closes the
 *   file, so that the next line goes to the file now at `path` (after logrotate moved it away).
 * @throws {import("../own_files.ts").NotOwnFileError} When the file is a symlink or another
 *   user's.
 */
export function rotatingFileSink(
  path: string,
  options: RotatingFileSinkOptions,
): Sink & Disposable & { reopen(): void } {
  const open = () => openOwnFileSync(path, { append: true, mode: LOG_FILE_MODE });
  let file: Deno.FsFile | undefined = open();
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
  };
  // Lines that could not be written (a full disk, a file that became unwritable), said in the
  // file by the first line that can be, so a gap in the log is not taken for a quiet time.
  let lost = 0;
  let lostError = "";
  let syncTimer: ReturnType<typeof setTimeout> | undefined;
  const syncAfterMs = options.syncAfterMs ?? 1000;
  const sync = () => {
    clearTimeout(syncTimer);
    syncTimer = undefined;
    try {
      file?.syncSync();
    } catch {
      // The lines are in the file; the next sync tries again.
    }
  };
  /** Writes the lines of a batch (whole lines, each ending in `\n`). */
  const write = (lines: string) => {
    let text = lines;
    if (lost > 0) text = options.formatter(lostLines(lost, lostError, Date.now())) + text;
    const bytes = encoder.encode(text);
    let before = -1;
    try {
      // Opened again after a rotation, a reopen, or after it could not be (the lines are lost
      // then).
      file ??= open();
      // The file's own size, not a count of what was written: another program may have cut it
      // (logrotate's copytruncate), and it would be rotated again long before it is full.
      before = file.statSync().size;
      if (before > 0 && before + bytes.length > options.maxSize) {
        sync();
        rotate();
        file = open();
        before = file.statSync().size;
      }
      writeAllSync(file, bytes);
      lost = 0;
      if (syncTimer === undefined) {
        syncTimer = setTimeout(sync, syncAfterMs);
        // The sync never keeps the program alive: the end of the program syncs what is left.
        Deno.unrefTimer(syncTimer as unknown as number);
      }
    } catch (error) {
      for (let at = lines.indexOf("\n"); at >= 0; at = lines.indexOf("\n", at + 1)) lost++;
      lostError = error instanceof Error ? error.message : String(error);
      // A log line must not stop the program; the next batch tries again. Part of it may be
      // written (a full disk): that part is taken back, or the next line would be joined to it.
      try {
        if (before >= 0) file?.truncateSync(before);
      } catch {
        // The next line may follow a torn one.
      }
    }
  };
  const batch = new LineBatcher(write);
  const flush = () => {
    batch.flush();
    sync();
  };
  // The end of the program, and an uncaught error or rejection that is about to end it.
  const ends = ["unload", "error", "unhandledrejection"] as const;
  for (const end of ends) globalThis.addEventListener(end, flush);
  return Object.assign((record: LogRecord) => {
    const line = options.formatter(record);
    const atOnce = AT_ONCE.has(record.level);
    batch.add(line.endsWith("\n") ? line.slice(0, -1) : line, atOnce);
    if (atOnce) sync();
  }, {
    reopen: () => {
      flush();
      file?.close();
      // The next line opens the file now at `path` (made again when it is gone).
      file = undefined;
    },
    [Symbol.dispose]: () => {
      for (const end of ends) globalThis.removeEventListener(end, flush);
      flush();
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
