/**
 * Text a command printed, made safe to show on a terminal (its escape sequences shown, not
 * obeyed), and the standard streams that tell whether they are one.
 *
 * @module
 */
import { BIDI_CONTROLS } from "../protocol/mod.ts";
import type { SyncWriter } from "../write_all.ts";

const encoder = new TextEncoder();

/** A standard stream of the process (`Deno.stdout`, `Deno.stderr`). */
export interface ProcessStream extends SyncWriter {
  /** Whether it is a terminal. */
  isTerminal(): boolean;
}

// What a terminal would obey rather than show: control characters but newline and tab (a
// carriage return only as part of CRLF), and bidirectional formatting characters.
const TERMINAL_CONTROLS = new RegExp(
  `\r(?!\n)|[\u0000-\u0008\u000b-\u000c\u000e-\u001f\u007f-\u009f]|${BIDI_CONTROLS.source}`,
  "g",
);

/**
 * A command's output made safe to show on a terminal, chunk by chunk: decoded as UTF-8 (bytes
 * that are not show as U+FFFD), with every control character but newline and tab (a carriage
 * return only before a newline) and every bidirectional formatting character shown as an escape
 * (`\u001b`), so that what a command prints cannot move the cursor, recolour or retitle the
 * terminal, write to its clipboard or show text in another order. A character (or a CRLF) cut
 * between chunks is held until the next one.
 *
 * @returns `write` for each chunk, `end` for what is held at the end.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { terminalText } from "./terminal_text.ts";
 *
 * const text = terminalText();
 * const shown = text.write(new TextEncoder().encode("\x1b]52;c;cm0gLXJmIH4=\x07ok\r\n"));
 * assert.equal(new TextDecoder().decode(shown), "\\u001b]52;c;cm0gLXJmIH4=\\u0007ok\r\n");
 * ```
 */
export function terminalText(): { write(bytes: Uint8Array): Uint8Array; end(): Uint8Array } {
  const decoder = new TextDecoder();
  let held = "";
  const shown = (text: string) =>
    encoder.encode(
      text.replace(
        TERMINAL_CONTROLS,
        (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
      ),
    );
  return {
    write(bytes) {
      let text = held + decoder.decode(bytes, { stream: true });
      held = "";
      if (text.endsWith("\r")) {
        held = "\r";
        text = text.slice(0, -1);
      }
      return shown(text);
    },
    end() {
      const text = held + decoder.decode();
      held = "";
      return shown(text);
    },
  };
}
