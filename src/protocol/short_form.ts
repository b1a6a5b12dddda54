/**
 * How a value a client sent appears in an error message: whole when short, else cut, so that an
 * answer never echoes an attacker-sized id, path or header.
 *
 * @module
 */

/**
 * The most characters of a client's value an error message shows: every valid id (a run's
 * command id, the longest, has 193) is shown whole.
 */
export const MAX_SHOWN_CHARS = 200;

/**
 * A value from a request as an error message shows it: whole when at most `max` characters, else
 * its first `max` characters, an ellipsis and its length.
 *
 * @example A long value is cut
 * ```ts
 * import { shortForm } from "./short_form.ts";
 *
 * console.assert(shortForm("cmd-1") === "cmd-1");
 * console.assert(shortForm("x".repeat(100_000), 4) === "xxxx… (100000 characters)");
 * ```
 *
 * @param value The value.
 * @param max The most characters shown.
 * @returns The value, or its first characters and how long it was.
 */
export function shortForm(value: string, max: number = MAX_SHOWN_CHARS): string {
  if (value.length <= max) return value;
  // Not between the two halves of a surrogate pair.
  const end = /[\uD800-\uDBFF]/.test(value[max - 1]) ? max - 1 : max;
  return `${value.slice(0, end)}… (${value.length} characters)`;
}

/**
 * A value a caller gave as an error message shows it: its JSON where it has one, else its
 * `String`, cut as {@link shortForm} cuts (an object of any size gives a short message).
 *
 * @example
 * ```ts
 * import { shownValue } from "./short_form.ts";
 *
 * console.assert(shownValue(42) === "42");
 * console.assert(shownValue(undefined) === "undefined");
 * console.assert(shownValue({ a: "x".repeat(300) }).endsWith("… (309 characters)"));
 * ```
 *
 * @param value The value.
 * @returns How it is shown.
 */
export function shownValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    // A cycle, a BigInt: its String.
    text = String(value);
  }
  return shortForm(text);
}

/**
 * An id as the last word of a `status` command line printed for the user to run: after `--`
 * when it begins with a dash (`status result -- -x`), which the CLI would take for an option.
 *
 * @param id A command, run or agent id.
 * @returns The word or words to print.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { idWord } from "./short_form.ts";
 *
 * assert.equal(`status result ${idWord("c1")}`, "status result c1");
 * assert.equal(`status result ${idWord("-x")}`, "status result -- -x");
 * ```
 */
export function idWord(id: string): string {
  return id.startsWith("-") ? `-- ${id}` : id;
}
