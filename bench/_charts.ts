/**
 * The cost curves of a run as SVG charts written beside the report: wake-up latency and resident
 * memory against the number of waiting agents, throughput against the number of agents.
 *
 * @module
 */
import type { Results } from "./_plan.ts";
import { lineChart, type Series } from "./_svg.ts";

const MB = 1024 * 1024;

/** A chart drawn: its file name (relative to the report) and what it shows. */
export interface ChartFile {
  file: string;
  caption: string;
}

/**
 * Writes the charts the results have points for into `dir`.
 *
 * @param results What the run measured.
 * @param dir The report's directory.
 * @returns The charts written, for the report to link.
 */
export async function writeCharts(results: Results, dir: string): Promise<ChartFile[]> {
  const written: ChartFile[] = [];
  const write = async (file: string, caption: string, svg: string) => {
    await Deno.writeTextFile(`${dir}/${file}`, svg);
    written.push({ file, caption });
  };
  const wake = [...results.statusWake].sort((a, b) => a.waiting - b.waiting);
  if (wake.length > 0) {
    const series: Series[] = [
      { name: "status p50", points: wake.map((w) => [w.waiting, w.latencyMs.p50]) },
      { name: "status p99", points: wake.map((w) => [w.waiting, w.latencyMs.p99]) },
    ];
    for (const system of ["redis-durable", "redis"] as const) {
      const ref = results.redisWake.filter((w) => w.system === system)
        .sort((a, b) => a.waiting - b.waiting);
      const name = system === "redis" ? "Redis, nothing kept" : "Redis, fsync always";
      if (ref.length > 0) {
        series.push({ name: `${name} p99`, points: ref.map((w) => [w.waiting, w.latencyMs.p99]) });
      }
    }
    await write(
      "curve-wake.svg",
      "Wake-up latency against agents waiting",
      lineChart({
        title: "Wake-up latency",
        xLabel: "agents waiting",
        yLabel: "ms",
        series,
      }),
    );
    const memory = wake.filter((w) => w.rssBytes !== undefined);
    if (memory.length > 0) {
      await write(
        "curve-memory.svg",
        "Dashboard resident memory against agents waiting",
        lineChart({
          title: "Dashboard resident memory",
          xLabel: "agents waiting",
          yLabel: "MB",
          series: [{
            name: "status serve",
            points: memory.map((w) => [w.waiting, (w.rssBytes ?? 0) / MB]),
          }],
        }),
      );
    }
  }
  const sim = results.throughput.filter((t) => t.name.startsWith("dashboard alone"))
    .sort((a, b) => a.agents - b.agents);
  if (sim.length > 0) {
    await write(
      "curve-throughput.svg",
      "Dashboard-alone throughput against simulated agents",
      lineChart({
        title: "Throughput, dashboard alone",
        xLabel: "simulated agents (log scale)",
        yLabel: "commands/s",
        logX: true,
        series: [{ name: "commands/s", points: sim.map((t) => [t.agents, t.perSecond]) }],
      }),
    );
  }
  return written;
}
