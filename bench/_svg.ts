/**
 * Line charts as standalone SVG files, for the cost curves beside the tables in
 * `bench/RESULTS.md`: no dependency, readable in any browser and on GitHub.
 *
 * @module
 */

/** One line of a chart. */
export interface Series {
  name: string;
  /** `[x, y]` points, in the order they are drawn. */
  points: Array<[number, number]>;
}

/** What a chart shows. */
export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Spread x on a logarithmic axis (for 1, 10, 100, 1,000). */
  logX?: boolean;
}

const WIDTH = 640;
const HEIGHT = 360;
const MARGIN = { left: 70, right: 180, top: 40, bottom: 50 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** A short label for an axis value: 15,000 → "15k", 0.25 → "0.25". */
function tickLabel(value: number): string {
  if (value >= 1000 && value % 1000 === 0) return `${value / 1000}k`;
  if (Number.isInteger(value)) return String(value);
  return value.toPrecision(2);
}

/** About five round steps from 0 to at least `max`. */
function niceTicks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const rough = max / 5;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough) ?? rough;
  const ticks: number[] = [];
  for (let v = 0; v < max + step; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/**
 * Draws the chart.
 *
 * @param spec Title, axes and lines.
 * @returns The SVG document.
 */
export function lineChart(spec: ChartSpec): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const all = spec.series.flatMap((s) => s.points);
  const xs = [...new Set(all.map(([x]) => x))].sort((a, b) => a - b);
  const yTicks = niceTicks(Math.max(0, ...all.map(([, y]) => y)));
  const yMax = yTicks[yTicks.length - 1];
  const xOf = (x: number): number => {
    if (xs.length <= 1) return MARGIN.left + plotW / 2;
    const [lo, hi] = [xs[0], xs[xs.length - 1]];
    const t = spec.logX
      ? (Math.log10(Math.max(x, 1e-9)) - Math.log10(Math.max(lo, 1e-9))) /
        (Math.log10(hi) - Math.log10(Math.max(lo, 1e-9)) || 1)
      : (x - lo) / (hi - lo || 1);
    return MARGIN.left + t * plotW;
  };
  const yOf = (y: number): number => MARGIN.top + plotH - (y / (yMax || 1)) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" ` +
    `viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    `<text x="${WIDTH / 2 - MARGIN.right / 2}" y="22" text-anchor="middle" font-size="14">${
      escapeXml(spec.title)
    }</text>`,
  ];
  for (const tick of yTicks) {
    const y = yOf(tick).toFixed(1);
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${MARGIN.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${
        tickLabel(tick)
      }</text>`,
    );
  }
  for (const x of xs) {
    const px = xOf(x).toFixed(1);
    out.push(
      `<line x1="${px}" x2="${px}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`,
      `<text x="${px}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${tickLabel(x)}</text>`,
    );
  }
  out.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 10}" text-anchor="middle">${
      escapeXml(spec.xLabel)
    }</text>`,
    `<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">${
      escapeXml(spec.yLabel)
    }</text>`,
  );
  for (const [i, series] of spec.series.entries()) {
    const color = COLORS[i % COLORS.length];
    const path = series.points.map(([x, y]) => `${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`);
    if (path.length > 1) {
      out.push(
        `<polyline points="${path.join(" ")}" fill="none" stroke="${color}" stroke-width="2"/>`,
      );
    }
    for (const point of path) {
      const [cx, cy] = point.split(",");
      out.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${color}"/>`);
    }
    const ly = MARGIN.top + 10 + i * 18;
    const lx = MARGIN.left + plotW + 12;
    out.push(
      `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${lx + 24}" y="${ly}" dominant-baseline="middle">${escapeXml(series.name)}</text>`,
    );
  }
  out.push("</svg>", "");
  return out.join("\n");
}
