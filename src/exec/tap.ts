/**
 * Live output: a tap on a command's output streams that hands every chunk to a callback as it is
 * read, before the bounded capture keeps its head and tail. The agent streams the chunks to the
 * dashboard while the command runs.
 *
 * @module
 */

import type { OutputStreamName } from "../protocol/live.ts";

export type { OutputStreamName };

/**
 * Receives each chunk a command prints, as it is read. The chunk is the callback's own (a copy).
 * It must not block; a throw is ignored.
 */
export type OnOutput = (stream: OutputStreamName, chunk: Uint8Array) => void;

/**
 * Passes a stream through, calling `onOutput` with a copy of every chunk; without `onOutput`
 * the stream itself is returned.
 *
 * @param stream The child's stdout or stderr.
 * @param name Which one it is.
 * @param onOutput The callback.
 * @returns The stream to read instead of `stream`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tapOutput } from "./tap.ts";
 *
 * const seen: string[] = [];
 * const tapped = tapOutput(
 *   ReadableStream.from([new TextEncoder().encode("hi")]),
 *   "stdout",
 *   (stream, chunk) => seen.push(`${stream}:${new TextDecoder().decode(chunk)}`),
 * );
 * await new Response(tapped).arrayBuffer(); // read it to the end
 * assert.deepEqual(seen, ["stdout:hi"]);
 * ```
 */
export function tapOutput(
  stream: ReadableStream<Uint8Array>,
  name: OutputStreamName,
  onOutput: OnOutput | undefined,
): ReadableStream<Uint8Array> {
  if (!onOutput) return stream;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        try {
          onOutput(name, chunk.slice());
        } catch {
          // The tap never disturbs the capture.
        }
        controller.enqueue(chunk);
      },
    }),
  );
}
