/**
 * Bounded capture of a command's output: the first and the last bytes of a stream, with the count
 * of bytes dropped in between, so memory stays bounded whatever the command prints.
 *
 * @module
 */

/** Bytes kept from the start of each stream. */
export const CAPTURE_HEAD_BYTES = 32 * 1024;
/** Bytes kept from the end of each stream. */
export const CAPTURE_TAIL_BYTES = 32 * 1024;

/** Size of the buffer each stream is read into. */
const READ_BUFFER_BYTES = 64 * 1024;

/** What a capture kept. */
export interface CapturedOutput {
  /** The kept bytes decoded as UTF-8: head then tail; invalid bytes become U+FFFD. */
  text: string;
  /** Every byte seen. */
  totalBytes: number;
  /** Bytes dropped between head and tail (`totalBytes` minus the bytes kept). */
  truncatedBytes: number;
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
 * Keeps the first `headBytes` and the last `tailBytes` of everything pushed into it, in fixed
 * buffers allocated once.
 *
 * @example Head and tail of a long output
 * ```ts
 * import assert from "node:assert/strict";
 * import { OutputCapture } from "./capture.ts";
 *
 * const capture = new OutputCapture({ headBytes: 4, tailBytes: 3 });
 * capture.push(new TextEncoder().encode("0123456789"));
 * assert.deepEqual(capture.result(), { text: "0123789", totalBytes: 10, truncatedBytes: 3 });
 * ```
 */
export class OutputCapture {
  readonly #head: Uint8Array;
  readonly #tail: Uint8Array;
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
    this.#head = new Uint8Array(checkSize("headBytes", options.headBytes ?? CAPTURE_HEAD_BYTES));
    this.#tail = new Uint8Array(checkSize("tailBytes", options.tailBytes ?? CAPTURE_TAIL_BYTES));
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
    if (this.#headLength < this.#head.length) {
      const n = Math.min(this.#head.length - this.#headLength, rest.length);
      this.#head.set(rest.subarray(0, n), this.#headLength);
      this.#headLength += n;
      rest = rest.subarray(n);
    }
    const size = this.#tail.length;
    if (rest.length === 0 || size === 0) return;
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
   * Decodes what was kept. When nothing was dropped head and tail are decoded together; otherwise
   * separately, so a character cut at either seam becomes U+FFFD.
   *
   * @returns The text and the byte counts.
   */
  result(): CapturedOutput {
    const head = this.#head.subarray(0, this.#headLength);
    const tail = this.#tailLength < this.#tail.length
      ? this.#tail.subarray(0, this.#tailLength)
      : concat(this.#tail.subarray(this.#tailPos), this.#tail.subarray(0, this.#tailPos));
    const truncatedBytes = this.#total - head.length - tail.length;
    const text = truncatedBytes === 0 ? decode(concat(head, tail)) : decode(head) + decode(tail);
    return { text, totalBytes: this.#total, truncatedBytes };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function decode(bytes: Uint8Array): string {
  // A fresh decoder each time: `fatal: false` turns invalid bytes into U+FFFD, `ignoreBOM` keeps
  // a leading byte-order mark as output rather than silently dropping it.
  return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
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
 * Reads a byte stream as data arrives into a bounded capture. A byte stream is read with a single
 * reused buffer (BYOB), other streams chunk by chunk.
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
 * const reading = captureStream(ReadableStream.from([new Uint8Array([104, 105, 0xff])]));
 * await reading.done;
 * assert.equal(reading.capture.result().text, "hi\uFFFD");
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
  const done = (async () => {
    try {
      if (byob) {
        let buffer = new Uint8Array(READ_BUFFER_BYTES);
        for (;;) {
          const { done, value } = await byob.read(buffer);
          if (value) {
            capture.push(value);
            buffer = new Uint8Array(value.buffer);
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
        await reader.cancel().catch(() => {});
      }
      await done;
    },
  };
}
