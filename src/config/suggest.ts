/**
 * "Did you mean ...?": the nearest of some names to a mistyped one.
 *
 * @module
 */

/**
 * Edit distance with adjacent transpositions (optimal string alignment): `lst` → `list` is 1,
 * `enqeue` → `enqueue` is 1.
 *
 * @param a One word.
 * @param b The other.
 * @returns The number of insertions, deletions, substitutions and swaps of neighbours.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => {
    const row = new Array<number>(cols).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j < cols; j++) d[0][j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate nearest to `word`, when one is near enough to be a likely typo: within a third
 * of the word's length (at least 1, at most 3 edits), or one that starts or ends with the word
 * (`polling_timeout` → `polling_timeout_secs`).
 *
 * @param word The mistyped word.
 * @param candidates The names it may have meant.
 * @returns The nearest candidate, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nearest } from "./suggest.ts";
 *
 * assert.equal(nearest("lst", ["list", "agents", "stop"]), "list");
 * assert.equal(nearest("polling_timeout", ["polling_timeout_secs", "port"]), "polling_timeout_secs");
 * assert.equal(nearest("domain", ["port", "db"]), undefined);
 * ```
 */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  const lower = word.toLowerCase();
  const limit = Math.min(3, Math.max(1, Math.floor(lower.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best !== undefined && bestDistance <= limit) return best;
  if (lower.length >= 4) {
    for (const candidate of candidates) {
      const c = candidate.toLowerCase();
      if (c.startsWith(lower) || c.endsWith(lower)) return candidate;
    }
  }
  return undefined;
}
