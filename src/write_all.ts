/**
 * The one write-all loop: `writeSync` may write fewer bytes than asked.
 *
 * @module
 */

/** Anything with a synchronous write, like `Deno.FsFile` or `Deno.stderr`. */
export interface SyncWriter {
  /** Writes some of `p`; returns how many bytes were written. */
  writeSync(p: Uint8Array): number;
}

/**
 * Writes all bytes, looping over short writes.
 *
 * @example Write a line to standard error
 * ```ts
 * import { writeAllSync } from "./write_all.ts";
 * writeAllSync(Deno.stderr, new TextEncoder().encode("hello\n"));
 * ```
 *
 * @param file Where to write.
 * @param bytes What to write.
 */
export function writeAllSync(file: SyncWriter, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}
