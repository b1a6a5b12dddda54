/**
 * Removing a command's working directory whatever the command did to the modes inside it.
 *
 * @module
 */
import { ownUid } from "../own_files.ts";

/**
 * Removes a directory and everything in it, like `Deno.removeSync(path, { recursive: true })`,
 * also when a command made a directory inside it unreadable or unwritable (`chmod 000 sub`):
 * an agent that is not root (whose commands run as itself) then gives its own directories in
 * the tree back their owner's read, write and search bits and tries again. Root needs no such
 * help; symbolic links are never followed, and only this user's own directories are changed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { removeTreeSync } from "./remove_tree.ts";
 *
 * const dir = Deno.makeTempDirSync();
 * Deno.mkdirSync(`${dir}/sub/deeper`, { recursive: true });
 * Deno.chmodSync(`${dir}/sub`, 0o000);
 * removeTreeSync(dir);
 * assert.throws(() => Deno.lstatSync(dir), Deno.errors.NotFound);
 * ```
 *
 * @param path The directory.
 * @throws {Error} What the removal failed with, when giving the directories their modes back
 *   did not help (or was not tried: root, or this process's uid cannot be told).
 */
export function removeTreeSync(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
    return;
  } catch (error) {
    const uid = error instanceof Deno.errors.PermissionDenied ? ownUid() : null;
    if (uid === null || uid === 0) throw error;
    openUp(path, uid);
  }
  Deno.removeSync(path, { recursive: true });
}

/**
 * Gives every directory of this user's under `root` (the root included, symbolic links not
 * followed) its owner's read, write and search bits, without recursion (a command may nest
 * directories deeper than a call stack).
 */
function openUp(root: string, uid: number): void {
  const pending = [root];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(dir);
    } catch {
      continue;
    }
    if (!info.isDirectory || info.uid !== uid || info.mode === null) continue;
    if ((info.mode & 0o700) !== 0o700) {
      try {
        Deno.chmodSync(dir, (info.mode & 0o7777) | 0o700);
      } catch {
        continue;
      }
    }
    try {
      for (const entry of Deno.readDirSync(dir)) {
        if (entry.isDirectory) pending.push(`${dir}/${entry.name}`);
      }
    } catch {
      // unreadable still: the removal says so
    }
  }
}
