/**
 * Live output of a command as the operator API shows it: the stored chunks of the current
 * attempt put back together per stream, with a marker where bytes were dropped (the store keeps
 * only the head and the tail, and chunks that never arrived leave gaps), under the same bounds
 * and in the same encoding as a final result (text when the bytes are UTF-8, else base64).
 *
 * @module
 */
import type { CommandRecord, CommandStore, OutputChunk, OutputStream } from "../store/mod.ts";
import { toBase64 } from "../protocol/mod.ts";
import { commandView } from "./views.ts";

/** Bytes of each stream's head kept while a command runs (as the final result keeps). */
export const LIVE_OUTPUT_HEAD_BYTES = 32 * 1024;
/** Bytes of each stream's tail kept while a command runs. */
export const LIVE_OUTPUT_TAIL_BYTES = 32 * 1024;

/**
 * The marker put where bytes were dropped.
 *
 * @param bytes How many bytes were dropped there.
 */
export function droppedMarker(bytes: number): string {
  return `\n[... ${bytes} bytes dropped ...]\n`;
}

/** One stream of live output, put back together. */
export interface LiveStream {
  /** The kept bytes with markers, as text (or base64, see `encoding`). */
  text: string;
  /** `"base64"` when the bytes are not UTF-8. */
  encoding: "utf-8" | "base64";
  /** Bytes the stream has reached (the end of the last chunk). */
  bytes: number;
  /** Bytes not kept (dropped by the bounds or never received). */
  droppedBytes: number;
}

const encoder = new TextEncoder();

/**
 * Puts one stream's chunks back together.
 *
 * @param chunks The stream's chunks (any order).
 * @returns The text with markers, and the counts.
 */
export function assembleStream(chunks: readonly OutputChunk[]): LiveStream {
  const sorted = [...chunks].sort((a, b) => a.offset - b.offset);
  const parts: Uint8Array[] = [];
  let end = 0;
  let dropped = 0;
  for (const chunk of sorted) {
    if (chunk.offset + chunk.data.length <= end) continue;
    const data = chunk.offset < end ? chunk.data.subarray(end - chunk.offset) : chunk.data;
    const start = Math.max(chunk.offset, end);
    if (start > end) {
      dropped += start - end;
      parts.push(encoder.encode(droppedMarker(start - end)));
    }
    parts.push(data);
    end = start + data.length;
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  try {
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    return { text, encoding: "utf-8", bytes: end, droppedBytes: dropped };
  } catch {
    return { text: toBase64(bytes), encoding: "base64", bytes: end, droppedBytes: dropped };
  }
}

/**
 * The `live_output` field of a command: its current attempt's output so far.
 *
 * @param attempt The attempt.
 * @param chunks That attempt's chunks.
 */
export function liveOutputView(
  attempt: number,
  chunks: readonly OutputChunk[],
): Record<string, unknown> {
  const view: Record<string, unknown> = { attempt };
  for (const stream of ["stdout", "stderr"] as OutputStream[]) {
    const assembled = assembleStream(chunks.filter((c) => c.stream === stream));
    view[stream] = assembled.text;
    view[`${stream}_bytes`] = assembled.bytes;
    view[`${stream}_truncated_bytes`] = assembled.droppedBytes;
    if (assembled.encoding === "base64") view[`${stream}_encoding`] = "base64";
  }
  return view;
}

/**
 * A command as the operator API shows it, with `live_output` (its current attempt's output so
 * far) when it has live output and no final result carrying output.
 *
 * @param store The store.
 * @param command The command.
 */
export async function commandWithLiveOutput(
  store: CommandStore,
  command: CommandRecord,
): Promise<Record<string, unknown>> {
  const view = commandView(command);
  if (command.result?.hasOutput) return view;
  const attempt = Math.max(1, command.deliveredAttempt);
  const chunks = await store.listOutput(command.id, { attempt });
  if (chunks.length > 0) view.live_output = liveOutputView(attempt, chunks);
  return view;
}
