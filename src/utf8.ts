/**
 * UTF-8 at the edges of kept bytes: strict decoding, and where whole characters end and begin
 * when a stream was cut (the agent's capture, the dashboard's live output), so a character cut
 * in two is left out instead of turning the whole output into base64.
 *
 * @module
 */

/**
 * The bytes as text when they are valid UTF-8 (a leading byte-order mark kept), else `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeStrict } from "./utf8.ts";
 *
 * assert.equal(decodeStrict(new Uint8Array([0x68, 0x69])), "hi");
 * assert.equal(decodeStrict(new Uint8Array([0xff])), undefined);
 * ```
 */
export function decodeStrict(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Where the last whole UTF-8 character of `bytes` ends (a character cut at the end is left out).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wholeCharactersEnd } from "./utf8.ts";
 *
 * // "aé" with the second byte of "é" cut off.
 * assert.equal(wholeCharactersEnd(new Uint8Array([0x61, 0xc3])), 1);
 * ```
 */
export function wholeCharactersEnd(bytes: Uint8Array): number {
  for (let back = 1; back <= 3 && back <= bytes.length; back++) {
    const byte = bytes[bytes.length - back];
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}

/**
 * Where the first whole UTF-8 character of `bytes` starts (continuation bytes skipped).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wholeCharactersStart } from "./utf8.ts";
 *
 * // "éa" with the first byte of "é" cut off.
 * assert.equal(wholeCharactersStart(new Uint8Array([0xa9, 0x61])), 1);
 * ```
 */
export function wholeCharactersStart(bytes: Uint8Array): number {
  let start = 0;
  while (start < 3 && start < bytes.length && (bytes[start] & 0xc0) === 0x80) start++;
  return start;
}
