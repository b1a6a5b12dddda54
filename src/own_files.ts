/**
 * Opening the program's own files and directories where other users may write too (`/tmp`, a
 * shared directory): never through a symlink another user left, never into a file or directory
 * another user owns. An agent runs as root; what it writes, chmods or trusts there must be its
 * own.
 *
 * @module
 */
import { isGranted } from "./permissions.ts";

/** A file or directory this program would have to trust is not its own. */
export class NotOwnFileError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong, naming the path.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NotOwnFileError";
  }
}

/**
 * The user id of this process: `Deno.uid()` under `--allow-sys=uid`, else `/proc/self/status`.
 *
 * @returns The uid, or `null` when neither may be read.
 */
export function ownUid(): number | null {
  if (isGranted({ name: "sys", kind: "uid" })) {
    const uid = Deno.uid();
    if (uid !== null) return uid;
  }
  // Not asked for: a read that is not granted would prompt on a terminal.
  if (!isGranted({ name: "read", path: "/proc/self/status" })) return null;
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const match = /^Uid:\s+(\d+)/m.exec(status);
    if (match) return Number(match[1]);
  } catch {
    // not readable
  }
  return null;
}

/**
 * Why a file or directory is not this process's own: owned by a user other than this one and
 * root. `undefined` when it is, or when this process's uid cannot be told.
 *
 * @param path The path, for the message.
 * @param info Its `lstat` or `stat`.
 * @param uid This process's uid.
 * @returns The problem, or `undefined`.
 */
export function foreignOwner(
  path: string,
  info: Deno.FileInfo,
  uid: number | null = ownUid(),
): string | undefined {
  if (uid === null || info.uid === null || info.uid === uid || info.uid === 0) return undefined;
  return `${path} belongs to uid ${info.uid}, not to this user (uid ${uid})`;
}

/** Options of {@link openOwnFileSync}. */
export interface OpenOwnFileOptions {
  /** Append to an existing file (a log). */
  append?: boolean;
  /** Empty an existing file. */
  truncate?: boolean;
  /** Permission bits of a file it creates. */
  mode: number;
}

/**
 * Opens a file for writing, creating it when missing, as `open(O_CREAT)` would, but refuses a
 * symlink in its place, something other than a regular file, and a file owned by another user
 * (who could read what is written, and change it): in a directory others may write, such a file
 * may have been put there to make this process write elsewhere.
 *
 * @param path The file.
 * @param options Append or truncate, and the mode of a new file.
 * @returns The open file.
 * @throws {NotOwnFileError} When the path is a symlink, not a regular file, another user's, or
 *   was replaced while it was opened.
 * @throws {Deno.errors.IsADirectory} When it is a directory.
 */
export function openOwnFileSync(path: string, options: OpenOwnFileOptions): Deno.FsFile {
  const append = options.append ?? false;
  try {
    // O_CREAT | O_EXCL: never follows a symlink, never opens what was there.
    return Deno.openSync(path, { write: true, append, createNew: true, mode: options.mode });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  const before = Deno.lstatSync(path);
  if (before.isSymlink) {
    throw new NotOwnFileError(
      `${path} is a symlink; refusing to write through it (another user may have put it there: ` +
        "remove it, or choose a path in a directory only this user may write)",
    );
  }
  if (before.isDirectory) throw new Deno.errors.IsADirectory(`${path} is a directory`);
  if (!before.isFile) throw new NotOwnFileError(`${path} is not a regular file; refusing`);
  const foreign = foreignOwner(path, before);
  if (foreign !== undefined) {
    throw new NotOwnFileError(
      `${foreign}; refusing to write into it (remove it, or choose a path in a directory only ` +
        "this user may write)",
    );
  }
  const file = Deno.openSync(path, { write: true, append, truncate: options.truncate });
  const after = file.statSync();
  if (after.ino !== before.ino || after.dev !== before.dev) {
    file.close();
    throw new NotOwnFileError(`${path} was replaced while it was being opened; refusing`);
  }
  return file;
}

/** Options of {@link notOwnPathProblem}. */
export interface NotOwnPathOptions {
  /**
   * `"never"`: a symlink is a problem whoever made it; `"own"`: a symlink this user or root made
   * is followed, and what it names is judged.
   */
  symlink: "never" | "own";
}

/**
 * Why an existing path is not this process's own: a symlink (another user's, or any with
 * `symlink: "never"`), or a file or directory another user owns.
 *
 * @param path The path.
 * @param options Which symlinks are followed.
 * @returns The problem, or `undefined` (also when it does not exist or cannot be looked at).
 */
export function notOwnPathProblem(path: string, options: NotOwnPathOptions): string | undefined {
  try {
    const link = Deno.lstatSync(path);
    if (!link.isSymlink) return foreignOwner(path, link);
    if (options.symlink === "never") return `${path} is a symlink`;
    const foreign = foreignOwner(path, link);
    if (foreign !== undefined) return `${path} is a symlink and ${foreign.slice(path.length + 1)}`;
    return foreignOwner(path, Deno.statSync(path));
  } catch {
    return undefined;
  }
}

/**
 * Why an existing directory may not hold this program's private state: it is a symlink another
 * user owns, it (or what the symlink names) belongs to another user, or every user may write
 * in it (and so rename or replace what this program keeps there).
 *
 * @param path The directory.
 * @returns The problem, or `undefined` (also when it does not exist or cannot be looked at).
 */
export function sharedDirectoryProblem(path: string): string | undefined {
  const foreign = notOwnPathProblem(path, { symlink: "own" });
  if (foreign !== undefined) return foreign;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return undefined;
  }
  if (!info.isDirectory) return undefined;
  if (info.mode !== null && (info.mode & 0o002) !== 0) {
    return `every user may write in it (mode ${(info.mode & 0o7777).toString(8).padStart(4, "0")})`;
  }
  return undefined;
}
