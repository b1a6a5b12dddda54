/**
 * What the dashboard keeps of a reported result: each stream's first and last 32 KiB, as the
 * agent itself keeps them (docs/protocol.md §5), an error text of at most
 * {@link MAX_ERROR_CHARS} characters and a signal name of at most {@link MAX_SIGNAL_CHARS}. The
 * agent sends no more; a client that sends more (up to the 1 MiB body, a megabyte a command) would
 * otherwise have it stored and sent whole in every list of commands, where a thousand of them made one answer larger than the dashboard could build.
 *
 * @module
 */
import { fromBase64, toBase64 } from "../protocol/mod.ts";
import { decodeStrict, wholeCharactersEnd, wholeCharactersStart } from "../utf8.ts";

/** Bytes of each stream kept from its start. */
export const RESULT_HEAD_BYTES = 32 * 1024;
/** Bytes of each stream kept from its end. */
export const RESULT_TAIL_BYTES = 32 * 1024;
/** Bytes beyond head and tail a stream may carry as sent: the agent's marker line, and a margin. */
const SLACK_BYTES = 1024;
/** Characters of a result's error text kept. */
export const MAX_ERROR_CHARS = 8 * 1024;
/** Characters of a result's signal name kept (the longest name, `SIGRTMAX-14`, has 11). */
export const MAX_SIGNAL_CHARS = 64;

const encoder = new TextEncoder();

/** One stream of a result as kept. */
export interface BoundedStream {
  /** The text (or base64) kept. */
  text: string;
  /** Bytes dropped: those the client said it dropped, and those dropped here. */
  truncatedBytes: number;
}

/**
 * Keeps the first and last 32 KiB of a result's stream when it carries more, with the agent's
 * marker line (`[status: N bytes dropped here]`) where text was cut; base64 stays base64, of the
 * kept bytes. A stream within the bounds is kept as sent.
 *
 * @example A megabyte of text
 * ```ts
 * import assert from "node:assert/strict";
 * import { boundStream } from "./result_bounds.ts";
 *
 * const kept = boundStream("x".repeat(1_000_000), "utf-8", 0);
 * assert.equal(kept.truncatedBytes, 1_000_000 - 64 * 1024);
 * assert.match(kept.text, /\n\[status: 934464 bytes dropped here\]\n/);
 * ```
 *
 * @param text The stream as reported.
 * @param encoding `"base64"` when `text` is base64; else text.
 * @param truncatedBytes Bytes the client said it dropped.
 * @returns What is kept.
 */
export function boundStream(
  text: string,
  encoding: "utf-8" | "base64" | null | undefined,
  truncatedBytes: number,
): BoundedStream {
  const kept = RESULT_HEAD_BYTES + RESULT_TAIL_BYTES;
  if (encoding === "base64") {
    if (text.length <= Math.ceil((kept + SLACK_BYTES) / 3) * 4) return { text, truncatedBytes };
    const bytes = fromBase64(text);
    const both = new Uint8Array(kept);
    both.set(bytes.subarray(0, RESULT_HEAD_BYTES));
    both.set(bytes.subarray(bytes.length - RESULT_TAIL_BYTES), RESULT_HEAD_BYTES);
    return { text: toBase64(both), truncatedBytes: truncatedBytes + bytes.length - kept };
  }
  // Every UTF-16 unit is at most 3 bytes of UTF-8: most texts need no encoding to be let through.
  if (text.length * 3 <= kept + SLACK_BYTES) return { text, truncatedBytes };
  const bytes = encoder.encode(text);
  if (bytes.length <= kept + SLACK_BYTES) return { text, truncatedBytes };
  const head = bytes.subarray(0, wholeCharactersEnd(bytes.subarray(0, RESULT_HEAD_BYTES)));
  const tailFrom = bytes.length - RESULT_TAIL_BYTES;
  const tail = bytes.subarray(tailFrom + wholeCharactersStart(bytes.subarray(tailFrom)));
  const dropped = bytes.length - head.length - tail.length;
  const headText = decodeStrict(head) ?? "";
  const marker = `${headText === "" || headText.endsWith("\n") ? "" : "\n"}` +
    `[status: ${dropped} bytes dropped here]\n`;
  return {
    text: `${headText}${marker}${decodeStrict(tail) ?? ""}`,
    truncatedBytes: truncatedBytes + dropped,
  };
}

/**
 * A result's error text, cut to {@link MAX_ERROR_CHARS} characters (whole code points) with a
 * note of how many were dropped.
 *
 * @param error The error as reported.
 * @returns What is kept.
 */
export function boundError(error: string | null): string | null {
  return cutText(error, MAX_ERROR_CHARS);
}

/**
 * A result's signal name, cut to {@link MAX_SIGNAL_CHARS} characters (whole code points) with a
 * note of how many were dropped: a name such as `SIGKILL` is kept as sent, a client's megabyte is
 * not stored and shown in every list of commands.
 *
 * @example A made-up name of a thousand characters
 * ```ts
 * import assert from "node:assert/strict";
 * import { boundSignal } from "./result_bounds.ts";
 *
 * assert.equal(boundSignal("SIGKILL"), "SIGKILL");
 * assert.equal(boundSignal("S".repeat(1000)), `${"S".repeat(64)} [status: 936 characters dropped]`);
 * ```
 *
 * @param signal The signal as reported.
 * @returns What is kept.
 */
export function boundSignal(signal: string | null): string | null {
  return cutText(signal, MAX_SIGNAL_CHARS);
}

/** `text` cut to `max` UTF-16 units, not inside a surrogate pair, with a note of what was dropped. */
function cutText(text: string | null, max: number): string | null {
  if (text === null || text.length <= max) return text;
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--; // not half a surrogate pair
  return `${text.slice(0, end)} [status: ${text.length - end} characters dropped]`;
}
