/**
 * Crash-safe file writes for the agent's state directory: write a temporary file, fsync it,
 * rename it over the target, fsync the directory. Also the permission check that decides
 * whether the state can live on disk at all.
 *
 * @module
 */
import { writeAllSync } from "../write_all.ts";
import { dirname } from "node:path";
import { isGranted } from "../permissions.ts";
import { helperPath } from "../exec/env.ts";
import { readTextBounded } from "../read_bounded.ts";

const encoder = new TextEncoder();

/**
 * The state directory could not be written (full, over quota, read-only, failing): what was to
 * be recorded is not on disk.
 */
export class StateWriteError extends Error {
  /** Creates the error; `cause` is the I/O error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateWriteError";
  }
}

/**
 * Opens one of the agent's own state files for reading, refusing a symlink, anything but a
 * regular file, and a file every user may write in its place: opening a named pipe waits until
 * something writes to it (the agent would hang at start without a word), and a symlink to
 * `/dev/zero` would be read until memory runs out.
 *
 * @param path The file.
 * @returns The open file, or `undefined` when there is none.
 * @throws {Error} When a symlink, a directory, a named pipe, a socket or a device is in its place,
 *   naming it, or the file may be written by every user.
 */
export function openStateFileSync(path: string): Deno.FsFile | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  if (info.isSymlink) {
    throw new Error(`${path} is a symlink; refusing to read or write through it`);
  }
  if (!info.isFile) {
    const what = info.isDirectory
      ? "a directory"
      : info.isFifo
      ? "a named pipe"
      : info.isSocket
      ? "a socket"
      : info.isCharDevice || info.isBlockDevice
      ? "a device"
      : "not a regular file";
    throw new Error(`${path} is ${what}, not a regular file; refusing to read it`);
  }
  // The agent makes its files 0600: one every user may write was changed by hand, and another
  // user may have written in it what the agent then trusts (a result to report as its own).
  if (info.mode !== null && (info.mode & 0o002) !== 0) {
    throw new Error(
      `${path} may be written by every user (mode ${
        (info.mode & 0o7777).toString(8).padStart(4, "0")
      }); refusing to trust what it holds: check it, then chmod 600 it`,
    );
  }
  const file = Deno.openSync(path, { read: true });
  const opened = file.statSync();
  if (opened.ino !== info.ino || opened.dev !== info.dev || !opened.isFile) {
    file.close();
    throw new Error(`${path} was replaced while it was being opened; refusing to read it`);
  }
  return file;
}

/**
 * Reads one of the agent's own state files as UTF-8 text, through {@link openStateFileSync}.
 *
 * @param path The file.
 * @param maxBytes The most bytes it may hold.
 * @returns Its text, or `undefined` when there is none.
 * @throws {Error} When something other than a regular file is in its place, or it holds more
 *   than `maxBytes`.
 */
export function readStateTextSync(path: string, maxBytes: number): string | undefined {
  const file = openStateFileSync(path);
  if (file === undefined) return undefined;
  using _ = file;
  const text = readTextBounded(file, maxBytes);
  if (text === undefined) {
    throw new Error(`${path} holds more than ${maxBytes} bytes; it is not a file the agent wrote`);
  }
  return text;
}

/**
 * Whether an I/O error says the file system has no room (ENOSPC, EDQUOT).
 *
 * @param error Anything thrown.
 * @returns `true` for "No space left on device" and "Disk quota exceeded".
 */
export function isNoSpace(error: unknown): boolean {
  const message = (error as Error)?.message ?? "";
  return /os error (28|122)\)/.test(message) || /No space left|quota exceeded/i.test(message);
}

/**
 * Flushes a directory's entries (a rename or unlink inside it) to disk. Best effort: some file
 * systems refuse to open or sync directories.
 *
 * @param dir The directory.
 */
export function syncDirSync(dir: string): void {
  try {
    using handle = Deno.openSync(dir, { read: true });
    handle.syncSync();
  } catch {
    // Not every platform can fsync a directory; the rename itself is still atomic.
  }
}

/**
 * Replaces a file's contents atomically: after a crash the file holds either the old or the new
 * contents, never a mix.
 *
 * @param path The file.
 * @param text The new contents.
 * @param mode Permission bits of a newly created file.
 */
export function writeFileAtomicSync(path: string, text: string, mode = 0o600): void {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    using file = Deno.openSync(temp, { write: true, createNew: true, mode });
    writeAllSync(file, encoder.encode(text));
    file.syncSync();
  } catch (error) {
    try {
      Deno.removeSync(temp);
    } catch {
      // The temporary file may not exist.
    }
    throw error;
  }
  Deno.renameSync(temp, path);
  syncDirSync(dirname(path));
}

/**
 * Removes a file and flushes its directory; a missing file is not an error.
 *
 * @param path The file.
 * @returns Whether the file existed.
 */
export function removeFileDurableSync(path: string): boolean {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
  syncDirSync(dirname(path));
  return true;
}

/**
 * How many copies the agent keeps of what it set aside for an operator to look at (a damaged
 * journal, an unreadable outbox file), of each kind; older ones are removed, named in a warning.
 */
export const KEPT_SET_ASIDE_COPIES = 5;

/**
 * Removes all but the newest `keep` regular files of a directory whose names `isCopy` picks, so
 * that copies set aside again and again do not fill the disk. The newest are those set aside last:
 * by status change time (a rename or a link sets it), then modification time, then name.
 * Symlinks and anything that is not a regular file are left alone.
 *
 * @param dir The directory.
 * @param isCopy Picks the names of the copies.
 * @param keep How many to keep.
 * @returns The paths removed.
 */
export function removeOldCopiesSync(
  dir: string,
  isCopy: (name: string) => boolean,
  keep: number = KEPT_SET_ASIDE_COPIES,
): string[] {
  const copies: Array<{ path: string; name: string; ctime: number; mtime: number }> = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.isFile || !isCopy(entry.name)) continue;
    const path = `${dir}/${entry.name}`;
    try {
      const info = Deno.lstatSync(path);
      const mtime = info.mtime?.getTime() ?? 0;
      copies.push({ path, name: entry.name, ctime: info.ctime?.getTime() ?? mtime, mtime });
    } catch {
      // Gone already.
    }
  }
  if (copies.length <= keep) return [];
  copies.sort((a, b) =>
    b.ctime - a.ctime || b.mtime - a.mtime || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0)
  );
  const removed: string[] = [];
  for (const copy of copies.slice(keep)) {
    try {
      Deno.removeSync(copy.path);
      removed.push(copy.path);
    } catch {
      // Left for the next time.
    }
  }
  if (removed.length > 0) syncDirSync(dir);
  return removed;
}

/** File systems whose contents a restart of the machine loses. */
const VOLATILE_FILE_SYSTEMS: ReadonlySet<string> = new Set(["tmpfs", "ramfs"]);

/**
 * The type of the file system holding a directory when a restart of the machine empties it
 * (`tmpfs`, `ramfs`), asked of `df` (Deno reads the mount table only under `--allow-all`).
 *
 * @param dir The directory.
 * @returns The file system's type, or `undefined` when it keeps its files or cannot be told (no
 *   permission to run `df`, a `df` without `--output`).
 */
export function volatileFileSystem(dir: string): string | undefined {
  if (!isGranted({ name: "run", command: "df" })) return undefined;
  try {
    const output = new Deno.Command("df", {
      env: { PATH: helperPath() },
      args: ["--output=fstype", "--", dir],
      stdin: "null",
      stderr: "null",
    }).outputSync();
    if (!output.success) return undefined;
    const type = new TextDecoder().decode(output.stdout).trim().split("\n").at(-1)?.trim();
    return type !== undefined && VOLATILE_FILE_SYSTEMS.has(type) ? type : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the program may both read and write under a directory.
 *
 * @param dir The directory.
 * @returns `true` when `--allow-read` and `--allow-write` cover it.
 */
export function canReadWrite(dir: string): boolean {
  return isGranted({ name: "read", path: dir }) && isGranted({ name: "write", path: dir });
}
