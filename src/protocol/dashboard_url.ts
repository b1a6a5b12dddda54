/**
 * What both sides refuse in a dashboard URL given to the library: characters the URL parser
 * drops or escapes without a word.
 *
 * @module
 */

/**
 * Why a dashboard URL cannot be taken as it is written, or `null`: a control character or a space
 * inside it (white space around it is trimmed by the URL parser, as it would be by the settings).
 * The URL parser drops a line break or a tab without a word, so `"http://db\n:5000"` would be
 * read as another URL, `http://db:5000`; it escapes a space in the path (every request answered
 * `404`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dashboardUrlProblem } from "./dashboard_url.ts";
 *
 * assert.equal(
 *   dashboardUrlProblem("http://127.0.0.1\n:5000"),
 *   'it holds the control character "\\n", which the URL parser drops without a word (making ' +
 *     "it another URL); leave it out",
 * );
 * assert.equal(dashboardUrlProblem("http://127.0.0.1:5000\n"), null);
 * ```
 *
 * @param url The URL as given.
 * @returns The reason, or `null`.
 */
export function dashboardUrlProblem(url: string): string | null {
  // deno-lint-ignore no-control-regex -- the control characters are what it finds
  const odd = /[\s\x00-\x1f\x7f]/.exec(url.trim());
  if (odd === null) return null;
  return odd[0] === " "
    ? "it holds a space, which no URL does; leave it out (or write it as %20 in a path)"
    : `it holds the control character ${JSON.stringify(odd[0])}, which the URL parser drops ` +
      "without a word (making it another URL); leave it out";
}
