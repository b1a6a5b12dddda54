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
import { decodeStrict, wholeCharactersEnd, wholeCharactersStart } from "../utf8.ts";

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
 * Puts one stream's chunks back together. Where bytes are missing (dropped by the bounds, or
 * never received) a character cut by the gap is cut back to whole characters on both sides (its
 * bytes count as dropped, in the marker), as the agent does for a result: text that is UTF-8
 * stays text when its head and tail were cut in the middle of a character. When the bytes are not
 * UTF-8 even so, they are shown whole, in base64.
 *
 * @param chunks The stream's chunks (any order).
 * @returns The text with markers, and the counts.
 */
export function assembleStream(chunks: readonly OutputChunk[]): LiveStream {
  const sorted = [...chunks].sort((a, b) => a.offset - b.offset);
  const runs: Array<{ start: number; data: Uint8Array }> = [];
  let end = 0;
  for (const chunk of sorted) {
    if (chunk.offset + chunk.data.length <= end) continue;
    const data = chunk.offset < end ? chunk.data.subarray(end - chunk.offset) : chunk.data;
    const start = Math.max(chunk.offset, end);
    runs.push({ start, data });
    end = start + data.length;
  }
  const whole = joinRuns(wholeCharacterRuns(runs));
  const text = decodeStrict(whole.bytes);
  if (text !== undefined) {
    return { text, encoding: "utf-8", bytes: end, droppedBytes: whole.dropped };
  }
  const joined = joinRuns(runs);
  return {
    text: toBase64(joined.bytes),
    encoding: "base64",
    bytes: end,
    droppedBytes: joined.dropped,
  };
}

/**
 * The runs with the characters that a gap cut left out: the bytes before a gap end with a whole
 * character, and those after it begin with one.
 */
function wholeCharacterRuns(
  runs: ReadonlyArray<{ start: number; data: Uint8Array }>,
): Array<{ start: number; data: Uint8Array }> {
  const out: Array<{ start: number; data: Uint8Array }> = [];
  runs.forEach((run, i) => {
    const prev = runs[i - 1];
    const next = runs[i + 1];
    const gapBefore = prev ? run.start > prev.start + prev.data.length : run.start > 0;
    const gapAfter = next !== undefined && next.start > run.start + run.data.length;
    let from = gapBefore ? wholeCharactersStart(run.data) : 0;
    const to = gapAfter ? wholeCharactersEnd(run.data) : run.data.length;
    from = Math.min(from, to);
    if (to > from) out.push({ start: run.start + from, data: run.data.subarray(from, to) });
  });
  return out;
}

/** The runs' bytes in order with a marker wherever bytes are missing, and the missing count. */
function joinRuns(
  runs: ReadonlyArray<{ start: number; data: Uint8Array }>,
): { bytes: Uint8Array; dropped: number } {
  const parts: Uint8Array[] = [];
  let end = 0;
  let dropped = 0;
  for (const run of runs) {
    if (run.start > end) {
      dropped += run.start - end;
      parts.push(encoder.encode(droppedMarker(run.start - end)));
    }
    parts.push(run.data);
    end = run.start + run.data.length;
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, dropped };
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
