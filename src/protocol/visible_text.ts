/**
 * Text another party wrote (an agent's error, a dashboard's error answer, a command line in a
 * store) as one line that shows every character it holds: a terminal or a web page shows its
 * control and bidirectional formatting characters as escapes instead of obeying them.
 *
 * @module
 */
import { BIDI_CONTROLS } from "./schemas.ts";

/** Control characters (C0, DEL, C1), line separators and bidirectional formatting characters. */
const UNPRINTABLE = new RegExp(`[\\p{Cc}\u2028\u2029]|${BIDI_CONTROLS.source}`, "gu");

/**
 * Text as one printable line: line breaks as `\n` and `\r`, every other control character
 * (ESC, BEL, NUL, ...), line or paragraph separator and bidirectional formatting character as
 * `\uXXXX` (a tab stays). So a terminal escape (`ESC [ 2 J`) is shown, not obeyed, and an override
 * (U+202E) cannot make the text read in another order than its characters come
 * (`1.0\u202egnp.exe` shown as `1.0exe.png`).
 *
 * @param text The text.
 * @returns The text with those characters as escapes; other text as it is.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { visibleText } from "./visible_text.ts";
 *
 * assert.equal(visibleText("disk\u001b[31mfull\r\n"), "disk\\u001b[31mfull\\r\\n");
 * assert.equal(visibleText("1.0\u202egnp.exe"), "1.0\\u202egnp.exe");
 * ```
 */
export function visibleText(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    if (c === "\t") return c;
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

/**
 * A terminal's control sequences: CSI (colours, cursor moves, erases: `ESC [ … final`), OSC
 * (window titles, links: `ESC ] … BEL` or `ESC ] … ESC \`), character-set choices (`ESC ( B`)
 * and the two-byte ones (`ESC 7`, `ESC M`, …). A web page or a one-line summary is no terminal:
 * they would show as a box and stray brackets (`□[32mok□[0m`). The same expression is in the
 * console's `static/console.js`.
 */
export const TERMINAL_SEQUENCE: RegExp =
  // deno-lint-ignore no-control-regex -- the escape character is what it finds
  /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+][ -~]|[78=>DEHMNOZc])/g;

/**
 * Output as a page or a summary shows it: without terminal control sequences
 * ({@link TERMINAL_SEQUENCE}).
 *
 * @param text Output text.
 */
export function withoutTerminalCodes(text: string): string {
  return text.includes("\x1b") ? text.replace(TERMINAL_SEQUENCE, "") : text;
}
