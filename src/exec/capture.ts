/**
 * Bounded capture of a command's output: the first and the last bytes of a stream, with the count
 * of bytes dropped in between, so memory stays bounded whatever the command prints.
 *
 * What is kept reaches the operator byte for byte (docs/protocol.md §5): valid UTF-8 as text (NUL
 * bytes included), anything else as base64. When bytes were dropped from text, a marker line
 * stands where they were.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { OutputEncoding } from "../protocol/mod.ts";
import { decodeStrict, wholeCharactersEnd, wholeCharactersStart } from "../utf8.ts";

/** Bytes kept from the start of each stream. */
export const CAPTURE_HEAD_BYTES = 32 * 1024;
/** Bytes kept from the end of each stream. */
export const CAPTURE_TAIL_BYTES = 32 * 1024;

/** Largest buffer a stream is read into. */
const READ_BUFFER_BYTES = 64 * 1024;

/** First size of the read buffer; it doubles (up to {@link READ_BUFFER_BYTES}) when a read fills it. */
const FIRST_READ_BYTES = 4 * 1024;

/** The head buffer's first size; it doubles from there as output arrives. */
const FIRST_HEAD_BYTES = 4 * 1024;

/** What a capture kept. */
export interface CapturedOutput {
  /**
   * The kept bytes: with `encoding` `"utf-8"` the text itself (head, then a
   * {@link droppedMarker} line when bytes were dropped, then tail); with `"base64"` the head and
   * tail bytes in standard padded base64 (they were not valid UTF-8).
   */
  text: string;
  /** How `text` carries the bytes. */
  encoding: OutputEncoding;
  /** Every byte seen. */
  totalBytes: number;
  /** Bytes read and not kept (`totalBytes` minus the bytes `text` carries). */
  truncatedBytes: number;
}

/**
 * The line that stands where bytes were dropped from text output, e.g.
 * `[status: 1234 bytes dropped here]` with a line break after it (and before it, when the kept
 * head does not end with one).
 *
 * @param droppedBytes How many bytes were dropped.
 * @param afterNewline Whether the text before it ends with a line break.
 * @returns The marker.
 */
export function droppedMarker(droppedBytes: number, afterNewline: boolean): string {
  return `${afterNewline ? "" : "\n"}[status: ${droppedBytes} bytes dropped here]\n`;
}

/** Options of {@link OutputCapture}. */
export interface OutputCaptureOptions {
  /**
   * Bytes kept from the start.
   * @default {32768}
   */
  headBytes?: number;
  /**
   * Bytes kept from the end.
   * @default {32768}
   */
  tailBytes?: number;
}

function checkSize(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

/**
 * Keeps the first `headBytes` and the last `tailBytes` of everything pushed into it. Buffers are
 * allocated as bytes arrive (a command that prints little costs little): the head grows by
 * doubling up to its size, the tail ring is allocated whole the first time the head overflows.
 *
 * @example Head and tail of a long output
 * ```ts
 * import assert from "node:assert/strict";
 * import { OutputCapture } from "./capture.ts";
 *
 * const capture = new OutputCapture({ headBytes: 4, tailBytes: 3 });
 * capture.push(new TextEncoder().encode("0123456789"));
 * assert.deepEqual(capture.result(), {
 *   text: "0123\n[status: 3 bytes dropped here]\n789",
 *   encoding: "utf-8",
 *   totalBytes: 10,
 *   truncatedBytes: 3,
 * });
 * ```
 */
export class OutputCapture {
  readonly #headSize: number;
  readonly #tailSize: number;
  #head: Uint8Array = new Uint8Array(0);
  #tail: Uint8Array = new Uint8Array(0);
  #headLength = 0;
  /** Where the next tail byte goes in the ring. */
  #tailPos = 0;
  #tailLength = 0;
  #total = 0;

  /**
   * Creates an empty capture.
   *
   * @param options Sizes of the head and the tail.
   * @throws {RangeError} When a size is not a non-negative integer.
   */
  constructor(options: OutputCaptureOptions = {}) {
    this.#headSize = checkSize("headBytes", options.headBytes ?? CAPTURE_HEAD_BYTES);
    this.#tailSize = checkSize("tailBytes", options.tailBytes ?? CAPTURE_TAIL_BYTES);
  }

  /** Grows the head buffer to hold at least `need` bytes (never beyond its size). */
  #growHead(need: number): void {
    if (need <= this.#head.length) return;
    const size = Math.min(this.#headSize, Math.max(need, this.#head.length * 2, FIRST_HEAD_BYTES));
    const grown = new Uint8Array(size);
    grown.set(this.#head.subarray(0, this.#headLength));
    this.#head = grown;
  }

  /** Every byte pushed so far. */
  get totalBytes(): number {
    return this.#total;
  }

  /**
   * Adds bytes; they are copied, so the caller may reuse `chunk`.
   *
   * @param chunk The bytes read.
   */
  push(chunk: Uint8Array): void {
    this.#total += chunk.length;
    let rest = chunk;
    if (this.#headLength < this.#headSize) {
      const n = Math.min(this.#headSize - this.#headLength, rest.length);
      this.#growHead(this.#headLength + n);
      this.#head.set(rest.subarray(0, n), this.#headLength);
      this.#headLength += n;
      rest = rest.subarray(n);
    }
    const size = this.#tailSize;
    if (rest.length === 0 || size === 0) return;
    if (this.#tail.length === 0) this.#tail = new Uint8Array(size);
    if (rest.length >= size) {
      this.#tail.set(rest.subarray(rest.length - size));
      this.#tailPos = 0;
      this.#tailLength = size;
      return;
    }
    const first = Math.min(size - this.#tailPos, rest.length);
    this.#tail.set(rest.subarray(0, first), this.#tailPos);
    this.#tail.set(rest.subarray(first), 0);
    this.#tailPos = (this.#tailPos + rest.length) % size;
    this.#tailLength = Math.min(size, this.#tailLength + rest.length);
  }

  /**
   * What was kept, byte for byte: text when it is valid UTF-8, else base64. When bytes were
   * dropped from text, head and tail are cut back to whole characters (the bytes of a cut
   * character count as dropped) and a marker line stands between them.
   *
   * @returns The kept output, its encoding and the byte counts.
   */
  result(): CapturedOutput {
    const head = this.#head.subarray(0, this.#headLength);
    const tail = this.#tailLength < this.#tailSize
      ? this.#tail.subarray(0, this.#tailLength)
      : concat(this.#tail.subarray(this.#tailPos), this.#tail.subarray(0, this.#tailPos));
    const totalBytes = this.#total;
    const dropped = totalBytes - head.length - tail.length;
    if (dropped === 0) {
      const bytes = concat(head, tail);
      const text = decodeStrict(bytes);
      return text === undefined
        ? { text: base64Of(bytes), encoding: "base64", totalBytes, truncatedBytes: 0 }
        : { text, encoding: "utf-8", totalBytes, truncatedBytes: 0 };
    }
    const headEnd = wholeCharactersEnd(head);
    const tailStart = wholeCharactersStart(tail);
    const headText = decodeStrict(head.subarray(0, headEnd));
    const tailText = decodeStrict(tail.subarray(tailStart));
    if (headText !== undefined && tailText !== undefined) {
      const truncatedBytes = dropped + (head.length - headEnd) + tailStart;
      const marker = droppedMarker(truncatedBytes, headText === "" || headText.endsWith("\n"));
      return { text: headText + marker + tailText, encoding: "utf-8", totalBytes, truncatedBytes };
    }
    return {
      text: base64Of(concat(head, tail)),
      encoding: "base64",
      totalBytes,
      truncatedBytes: dropped,
    };
  }
}

function base64Of(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A stream being read into an {@link OutputCapture}. */
export interface StreamCapture {
  /** Settles when the stream ended, failed or was stopped; never rejects. */
  readonly done: Promise<void>;
  /** Stops reading (cancels the stream) and waits until reading has ended. */
  stop(): Promise<void>;
  /** The capture the stream is read into. */
  readonly capture: OutputCapture;
}

/**
 * Reads a byte stream as data arrives into a bounded capture. A byte stream is read into a reused
 * buffer (BYOB) that starts at 4 KiB and doubles up to 64 KiB while reads fill it; other streams
 * are read chunk by chunk.
 *
 * @param stream The stream, e.g. a child's `stdout`.
 * @param options Sizes of the head and the tail.
 * @returns The running capture; call `stop()` to cancel reading early.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { captureStream } from "./capture.ts";
 *
 * const reading = captureStream(ReadableStream.from([new Uint8Array([104, 105, 0, 10])]));
 * await reading.done;
 * assert.equal(reading.capture.result().text, "hi\u0000\n");
 * ```
 */
export function captureStream(
  stream: ReadableStream<Uint8Array>,
  options: OutputCaptureOptions = {},
): StreamCapture {
  const capture = new OutputCapture(options);
  let byob: ReadableStreamBYOBReader | undefined;
  let reader: ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;
  try {
    byob = stream.getReader({ mode: "byob" });
    reader = byob;
  } catch {
    reader = stream.getReader();
  }
  let stopped = false;
  let ended = false;
  const done = (async () => {
    try {
      if (byob) {
        // A command that prints little costs little: the buffer grows only while reads fill it.
        let buffer = new Uint8Array(FIRST_READ_BYTES);
        for (;;) {
          const { done, value } = await byob.read(buffer);
          if (value) {
            capture.push(value);
            buffer = value.length === value.buffer.byteLength &&
                value.buffer.byteLength < READ_BUFFER_BYTES
              ? new Uint8Array(value.buffer.byteLength * 2)
              : new Uint8Array(value.buffer);
          }
          if (done || stopped) break;
        }
      } else {
        const plain = reader as ReadableStreamDefaultReader<Uint8Array>;
        for (;;) {
          const { done, value } = await plain.read();
          if (value) capture.push(value);
          if (done || stopped) break;
        }
      }
    } catch {
      // A stream that errors or is cancelled ends the capture with what was read.
    } finally {
      ended = true;
      try {
        reader.releaseLock();
      } catch {
        // already released
      }
    }
  })();
  return {
    capture,
    done,
    async stop() {
      if (!stopped) {
        stopped = true;
        // A stream read to its end has nothing to cancel (and its reader is released).
        if (!ended) await reader.cancel().catch(() => {});
      }
      await done;
    },
  };
}
