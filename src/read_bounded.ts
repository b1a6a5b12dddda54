/**
 * Reading a small file without trusting its size: a settings, PEM or pid file named by mistake
 * (`/dev/zero`, a log file) would otherwise be read until memory runs out.
 *
 * @module
 */

/**
 * Reads a file as UTF-8 text, at most `maxBytes` of it.
 *
 * @param path The file.
 * @param maxBytes The most bytes it may hold.
 * @returns Its text, or `undefined` when it holds more than `maxBytes`.
 * @throws {Deno.errors.NotFound} And the other errors of opening and reading it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readTextFileBounded } from "./read_bounded.ts";
 *
 * assert.equal(readTextFileBounded("/dev/null", 10), "");
 * assert.equal(readTextFileBounded("/dev/zero", 10), undefined);
 * ```
 */
export function readTextFileBounded(path: string, maxBytes: number): string | undefined {
  using file = Deno.openSync(path);
  return readTextBounded(file, maxBytes);
}

/**
 * Reads an open file to its end as UTF-8 text, at most `maxBytes` of it.
 *
 * @param file The file, read from where it stands.
 * @param maxBytes The most bytes it may hold.
 * @returns Its text, or `undefined` when it holds more than `maxBytes`.
 */
export function readTextBounded(file: Deno.FsFile, maxBytes: number): string | undefined {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const buffer = new Uint8Array(Math.min(64 * 1024, maxBytes + 1));
    const n = file.readSync(buffer);
    if (n === null) break;
    size += n;
    if (size > maxBytes) return undefined;
    chunks.push(buffer.subarray(0, n));
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}
