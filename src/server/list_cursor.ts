/**
 * The cursor of the commands list (docs/protocol.md §3, `before` and `next_before`).
 *
 * @module
 */
import type { CommandRecord } from "../store/mod.ts";

/**
 * The cursor of the commands list that lists the commands enqueued before `command`
 * (docs/protocol.md §3, `next_before`): its enqueue order, which no later enqueue takes, so that
 * pages read one after the other list each command once however many are enqueued in between.
 * Opaque to clients.
 *
 * @param command The last command of a page.
 * @returns The cursor.
 */
export function listCursor(command: Pick<CommandRecord, "seq">): string {
  return String(command.seq);
}

/**
 * A cursor of {@link listCursor} as the store's `before`.
 *
 * @param cursor The `before` of a request.
 * @returns The enqueue order, or `undefined` when no cursor can be this text.
 */
export function parseListCursor(cursor: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(cursor)) return undefined;
  const seq = Number(cursor);
  return Number.isSafeInteger(seq) ? seq : undefined;
}
