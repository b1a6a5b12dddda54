/**
 * Live output kept as head and tail, and heartbeats: the parts of `appendOutput` and
 * `recordHeartbeat` that do not depend on the database, shared by the SQLite and PostgreSQL stores.
 *
 * @module
 */
import type { OutputBounds } from "./types.ts";

/** What one append stores, given where the stream's stored bytes end. */
export type AppendPlan =
  | { duplicate: true }
  | {
    duplicate: false;
    /** Offset of the first new byte (a part already received is skipped). */
    offset: number;
    /** How many new bytes arrived. */
    bytes: number;
    /** Bytes between what had arrived and `offset` that never came. */
    gapBytes: number;
    /** Stored bytes at offsets from `headBytes` up to `cut` are dropped from now on. */
    cut: number;
    /** The pieces to insert: the part in the head, then the part in the tail. */
    pieces: Array<[number, Uint8Array]>;
  };

/**
 * Checks the bounds of an append.
 *
 * @param keep Head and tail sizes.
 * @returns The same bounds.
 * @throws {RangeError} When they are not whole numbers (a tail of at least one byte).
 */
export function checkBounds(keep: OutputBounds): OutputBounds {
  if (!Number.isSafeInteger(keep.headBytes) || keep.headBytes < 0) {
    throw new RangeError(`keep.headBytes must be a whole number >= 0, got ${keep.headBytes}`);
  }
  if (!Number.isSafeInteger(keep.tailBytes) || keep.tailBytes < 1) {
    throw new RangeError(`keep.tailBytes must be a whole number >= 1, got ${keep.tailBytes}`);
  }
  return keep;
}

/**
 * Checks that a chunk ends at a safe integer offset: a stream's end is read back as a number.
 *
 * @param chunk The chunk's offset and bytes.
 * @throws {RangeError} When `offset + data.length` is beyond `Number.MAX_SAFE_INTEGER` (or the
 *   offset is not a whole number >= 0).
 */
export function checkChunkEnd(chunk: { offset: number; data: Uint8Array }): void {
  if (
    !Number.isSafeInteger(chunk.offset) || chunk.offset < 0 ||
    chunk.offset + chunk.data.length > Number.MAX_SAFE_INTEGER
  ) {
    throw new RangeError(
      `a chunk must end at an offset of at most ${Number.MAX_SAFE_INTEGER}, got offset ` +
        `${chunk.offset} and ${chunk.data.length} bytes`,
    );
  }
}

/**
 * Plans an append of `data` at `offset` to a stream whose stored bytes end at `end`.
 *
 * @param end Where the stored bytes end.
 * @param offset The chunk's offset.
 * @param data The chunk.
 * @param keep Head and tail sizes.
 * @returns What to store and what to drop.
 */
export function planAppend(
  end: number,
  offset: number,
  data: Uint8Array,
  keep: OutputBounds,
): AppendPlan {
  const { headBytes, tailBytes } = keep;
  if (data.length === 0 || offset + data.length <= end) return { duplicate: true };
  if (offset < end) {
    data = data.subarray(end - offset);
    offset = end;
  }
  const gapBytes = offset - end;
  const newEnd = offset + data.length;
  const cut = Math.max(headBytes, newEnd - tailBytes);
  const pieces: Array<[number, Uint8Array]> = [];
  if (offset < headBytes) {
    pieces.push([offset, data.subarray(0, Math.min(data.length, headBytes - offset))]);
  }
  const restFrom = Math.max(offset, cut);
  if (restFrom < newEnd) pieces.push([restFrom, data.subarray(restFrom - offset)]);
  return { duplicate: false, offset, bytes: data.length, gapBytes, cut, pieces };
}

/** The stored heartbeat figures (a JSON object), or `null`. */
export function parseHeartbeat(value: unknown): Record<string, unknown> | null {
  if (typeof value !== "string") return null;
  try {
    const parsed = JSON.parse(value);
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : null;
  } catch {
    return null;
  }
}
