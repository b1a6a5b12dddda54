/**
 * Percentiles and number formatting of the benchmark tables.
 *
 * @module
 */

/** p50 / p99 / max of a set of samples, in the samples' unit. */
export interface Summary {
  /** How many samples. */
  count: number;
  /** Mean. */
  mean: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Largest sample. */
  max: number;
}

/**
 * The nearest-rank percentile of sorted samples.
 *
 * @param sorted Samples in ascending order.
 * @param q The quantile, 0 < q ≤ 1.
 * @returns The sample at rank ⌈q·n⌉.
 * @throws {RangeError} When there are no samples or `q` is out of range.
 */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new RangeError("percentile of no samples");
  if (!(q > 0 && q <= 1)) throw new RangeError(`quantile must be in (0, 1], got ${q}`);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

/**
 * Summarises samples.
 *
 * @param samples The samples, in any order.
 * @returns Count, mean, p50, p99 and max.
 */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    count: sorted.length,
    mean: sorted.reduce((sum, value) => sum + value, 0) / sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1],
  };
}

/**
 * Formats a number with a fixed count of significant-looking decimals.
 *
 * @param value The number.
 * @param decimals Decimals.
 * @returns The text, or `n/a` for a missing or non-finite value.
 */
export function fmt(value: number | undefined | null, decimals = 2): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return "n/a";
  return value.toFixed(decimals);
}

/**
 * Formats a count with thousands separators: `10000` → `10,000`.
 *
 * @param value The count.
 * @returns The text.
 */
export function count(value: number): string {
  return value.toLocaleString("en-US");
}

/**
 * Renders a Markdown table.
 *
 * @param header The column titles.
 * @param rows The cells.
 * @param align `l` or `r` per column.
 * @returns The table's lines.
 */
export function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly ("l" | "r")[],
): string[] {
  const rule = header.map((_, i) => (align?.[i] === "r" ? "---:" : "---"));
  return [
    `| ${header.join(" | ")} |`,
    `| ${rule.join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
}
