/**
 * The one line `main.ts` prints for a failed command: its message as it is, unless text from
 * elsewhere (a dashboard's or a proxy's error answer) would make it several lines, drive the
 * terminal or fill the screen.
 *
 * @module
 */
import { visibleText } from "../protocol/mod.ts";

/** The most characters of a message printed; the rest is counted, not shown. */
export const MAX_ERROR_LINE = 2000;

/**
 * A message as one printable line: line breaks as `\n` and `\r`, every other control character
 * (ESC, ...) and bidirectional formatting character as `\uXXXX` (a tab stays: the protocol's
 * `visibleText`, which the console's pages use too), cut after {@link MAX_ERROR_LINE} characters
 * with the number of characters left out.
 *
 * @param message The message.
 * @returns The line, without a line break.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorLine } from "./error_line.ts";
 *
 * assert.equal(errorLine("HTTP 400: bad\n\u001b[31mred"), "HTTP 400: bad\\n\\u001b[31mred");
 * ```
 */
export function errorLine(message: string): string {
  const cut = message.length > MAX_ERROR_LINE
    ? `${message.slice(0, MAX_ERROR_LINE)}… (${message.length - MAX_ERROR_LINE} more characters)`
    : message;
  return visibleText(cut);
}
