/**
 * Reading a small file or an HTTP answer without trusting its size: a settings, PEM or pid file
 * named by mistake (`/dev/zero`, a log file), or a hostile or broken server's endless answer,
 * would otherwise be read until memory runs out.
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

/**
 * Reads at most `maxBytes` of an answer's body as UTF-8 text; the rest is not read (the body is
 * cancelled).
 *
 * @param response The answer.
 * @param maxBytes The most bytes its body may hold.
 * @returns The text, or `undefined` when the body holds more than `maxBytes`.
 * @throws What reading the body throws (a connection reset, an aborted request).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readBodyBounded } from "./read_bounded.ts";
 *
 * assert.equal(await readBodyBounded(new Response("hello"), 10), "hello");
 * assert.equal(await readBodyBounded(new Response("x".repeat(11)), 10), undefined);
 * ```
 */
export async function readBodyBounded(
  response: Response,
  maxBytes: number,
): Promise<string | undefined> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        return undefined;
      }
      parts.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return new TextDecoder().decode(bytes);
}
