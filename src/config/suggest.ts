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
  // Three rows (two back for a swap of neighbours), not the whole matrix.
  let before = new Array<number>(b.length + 1).fill(0);
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  let current = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        current[j] = Math.min(current[j], before[j - 2] + 1);
      }
    }
    [before, previous, current] = [previous, current, before];
  }
  return previous[b.length];
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
    // The distance is at least the difference in length: a word much longer or shorter than a
    // candidate costs nothing to rule out (a key of two million characters included).
    if (Math.abs(candidate.length - lower.length) > limit) continue;
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
