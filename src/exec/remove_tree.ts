/**
 * Removing a command's working directory whatever the command left in it: a tree of any depth,
 * any number of files, modes it shut, symlinks swapped in while the removal runs.
 *
 * @module
 */
import { basename, dirname } from "node:path";
import { isGranted } from "../permissions.ts";
import { ownUid } from "../own_files.ts";

/** Options of {@link removeTree}. */
export interface RemoveTreeOptions {
  /**
   * How many entries are removed (or moved) between two pauses.
   * @default {500}
   */
  sliceSize?: number;
  /**
   * Awaited between two slices, so that timers and I/O (heartbeats, reports) run meanwhile.
   * @default {a timer of no delay}
   */
  pause?: () => Promise<void>;
}

/** Entries handled between two pauses. */
const SLICE_SIZE = 500;

/**
 * How many times a directory is listed again when it was not empty after its entries were
 * handled (a process that is still inside keeps making new ones): then the removal gives up.
 */
const MAX_PASSES = 3;

/** Where Debian and others put coreutils' `rm` (never looked up on a `PATH`). */
const RM_PATHS = ["/usr/bin/rm", "/bin/rm"];

/** Lets timers and I/O run. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Removes a directory and everything in it, like `Deno.remove(path, { recursive: true })`, without
 * holding up the event loop, a descriptor or a stack frame per level:
 *
 * - It works in slices of `sliceSize` entries and pauses between them: a tree of 300,000 files
 *   does not stall heartbeats or reports for seconds.
 * - The directory is first moved into a new directory of this process's own beside it
 *   (`<name>.rm-XXXX`), and every directory inside is moved up into that one before it is
 *   listed: no path ever has more than three parts below it, so a tree deeper than the open-file
 *   limit or the stack (which makes `Deno.remove` fail, or abort the process) is removed alike.
 *   Each directory is read only once it lies in that directory, where no other user may rename
 *   it, and is checked there to be one (not a symlink): a symlink swapped in while the removal
 *   runs is removed itself and never followed. Other entries are removed by name
 *   (`unlink`, which never follows one either). A directory holding names that are not UTF-8,
 *   which Deno cannot name, is removed whole by `rm -rf` (or, where that may not run, by
 *   `Deno.removeSync(dir, { recursive: true })`).
 * - An agent that is not root (whose commands run as itself) gives its own directories in the
 *   tree that a command shut (`chmod 000 sub`) their owner's read, write and search bits back.
 *   Root needs no such help; only this user's own directories are changed, never through a
 *   symlink.
 *
 * Without read permission on the directory (a Deno permission) it cannot be listed, and without
 * room for a directory beside it (a full file system) nothing can be moved: then it is left to
 * `Deno.remove(path, { recursive: true })`, which runs off the event loop but fails on a tree
 * deeper than the open-file limit (or than its thread's stack).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { removeTree } from "./remove_tree.ts";
 *
 * const dir = Deno.makeTempDirSync();
 * Deno.mkdirSync(`${dir}/sub/deeper`, { recursive: true });
 * Deno.chmodSync(`${dir}/sub`, 0o000);
 * await removeTree(dir);
 * assert.throws(() => Deno.lstatSync(dir), Deno.errors.NotFound);
 * ```
 *
 * @param path The directory; its parent must be one no other user may write (the sandbox's own
 *   directory of working directories), or a sticky one (`/tmp`).
 * @param options Slice size and pause; for tests.
 * @throws {Deno.errors.NotFound} When `path` does not exist.
 * @throws {Error} What the removal failed with (naming where what is left of the tree lies).
 */
export async function removeTree(path: string, options: RemoveTreeOptions = {}): Promise<void> {
  const sliceSize = options.sliceSize ?? SLICE_SIZE;
  const pause = options.pause ?? nextTask;
  // Most commands leave their directory empty (or `path` is not one): one `rmdir` (or `unlink`),
  // which follows no symlink, is all it takes, with no stage made. Anything else is done below.
  try {
    Deno.removeSync(path);
    return;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw error;
  }
  if (!isGranted({ name: "read", path })) {
    await Deno.remove(path, { recursive: true });
    return;
  }
  const uid = ownUid();
  const mayOpen = uid !== null && uid !== 0;
  /** Runs `fn`; refused, once more after giving `dirs` (this user's own) their owner's bits. */
  const opening = <T>(fn: () => T, dirs: string[]): T => {
    try {
      return fn();
    } catch (error) {
      if (!(error instanceof Deno.errors.PermissionDenied) || !mayOpen) throw error;
      if (!dirs.map((dir) => openUp(dir, uid)).includes(true)) throw error;
    }
    return fn();
  };
  let stage: string;
  try {
    stage = Deno.makeTempDirSync({ dir: dirname(path), prefix: `${basename(path)}.rm-` });
  } catch {
    // A full file system (no room for a directory) is when the removal matters most.
    await Deno.remove(path, { recursive: true });
    return;
  }
  const pending: string[] = [];
  let moved = 0;
  /** Moves `from` into the stage: a directory is emptied there later, anything else removed. */
  const moveUp = (from: string, dirs: string[]): boolean => {
    const to = `${stage}/${moved++}`;
    try {
      opening(() => Deno.renameSync(from, to), dirs);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    }
    if (Deno.lstatSync(to).isDirectory) pending.push(to);
    else Deno.removeSync(to);
    return true;
  };
  const top = `${stage}/${moved++}`;
  try {
    opening(() => Deno.renameSync(path, top), [path]);
  } catch (error) {
    Deno.removeSync(stage);
    throw error;
  }
  try {
    if (Deno.lstatSync(top).isDirectory) pending.push(top);
    else Deno.removeSync(top);
    let budget = sliceSize;
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      for (let pass = 1;; pass++) {
        const entries = await listing(dir, opening);
        if (entries.length === 0) {
          try {
            Deno.removeSync(dir);
            break;
          } catch (error) {
            // An entry made since the listing.
            if (pass >= MAX_PASSES) throw error;
            continue;
          }
        }
        if (pass > MAX_PASSES) throw new Error(`${dir} keeps getting new entries`);
        let unnamed = false;
        for (const entry of entries) {
          const at = `${dir}/${entry.name}`;
          if (entry.isDirectory) {
            if (!moveUp(at, [dir, at])) unnamed ||= entry.name.includes("\uFFFD");
          } else {
            try {
              opening(() => Deno.removeSync(at), [dir]);
            } catch (error) {
              if (error instanceof Deno.errors.NotFound) unnamed ||= entry.name.includes("\uFFFD");
              else {
                // A directory by now, say: moved up and emptied there; else what it failed with.
                try {
                  moveUp(at, [dir, at]);
                } catch {
                  throw error;
                }
              }
            }
          }
          if (--budget <= 0) {
            budget = sliceSize;
            await pause();
          }
        }
        if (unnamed) {
          await removeUnnamed(dir);
          break;
        }
      }
    }
    Deno.removeSync(stage);
  } catch (error) {
    throw new Error(
      `could not remove ${path}: ${(error as Error).message} (what is left of it is in ${stage})`,
      { cause: error },
    );
  }
}

/**
 * Removes `dir` (in the stage) with what names entries by their bytes: names that are not UTF-8
 * (`printf 'x\\377'`), which Deno reads with U+FFFD in place of the bytes and cannot name again.
 * With `rm -rf` (coreutils: neither a descriptor nor a stack frame per level, no symlink
 * followed) where it may run, else with `Deno.removeSync(dir, { recursive: true })`.
 */
async function removeUnnamed(dir: string): Promise<void> {
  const rm = RM_PATHS.find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
  let output: Deno.CommandOutput;
  try {
    if (rm === undefined) throw new Deno.errors.NotFound("no rm");
    output = await new Deno.Command(rm, {
      clearEnv: true,
      args: ["-rf", "--", dir],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch {
    // rm may not run (--allow-run without it), or is not there.
    Deno.removeSync(dir, { recursive: true });
    return;
  }
  if (!output.success) {
    throw new Error(`rm -rf ${dir} failed: ${new TextDecoder().decode(output.stderr).trim()}`);
  }
}

/** The entries of `dir`, read off the event loop. */
async function listing(
  dir: string,
  opening: <T>(fn: () => T, dirs: string[]) => T,
): Promise<Deno.DirEntry[]> {
  try {
    return await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
  }
  // Shut by a command: opened (when it is this user's own) and read once more.
  return opening(() => [...Deno.readDirSync(dir)], [dir]);
}

/**
 * Gives `dir`, when it is a directory of this user's (not a symlink), its owner's read, write and
 * search bits; whether it changed anything.
 */
function openUp(dir: string, uid: number): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(dir);
  } catch {
    return false;
  }
  if (!info.isDirectory || info.uid !== uid || info.mode === null) return false;
  if ((info.mode & 0o700) === 0o700) return false;
  try {
    Deno.chmodSync(dir, (info.mode & 0o7777) | 0o700);
    return true;
  } catch {
    return false;
  }
}
