/**
 * The executor's overhead: running `true` through {@link runCommand} (parse, policy, PATH lookup,
 * process group, timers, bounded capture, group kill) against a bare `Deno.Command` in the same
 * run.
 *
 * Run it alone with `deno run --allow-run --allow-read --allow-env bench/exec_bench.ts`, or call
 * {@link runExecBench} from a combined bench runner.
 *
 * @module
 */
import { createPolicy, resolveProgram, runCommand } from "../src/exec/mod.ts";

/** One line of the results table; times in milliseconds. */
export interface ExecBenchRow {
  /** What was measured. */
  name: string;
  /** How many runs were timed. */
  iterations: number;
  /** Mean time of a run. */
  meanMs: number;
  /** Median time of a run. */
  p50Ms: number;
  /** 95th percentile time of a run. */
  p95Ms: number;
  /** Fastest run. */
  minMs: number;
}

/** What {@link runExecBench} measured. */
export interface ExecBenchReport {
  /**
   * The bare spawn, the same spawn in its own process group (`detached`), the executor, and the
   * difference between the executor and the bare spawn (the overhead).
   */
  rows: ExecBenchRow[];
  /** Median overhead of the executor per command, in milliseconds. */
  overheadP50Ms: number;
}

/** Options of {@link runExecBench}. */
export interface ExecBenchOptions {
  /**
   * Timed runs of each variant.
   * @default {200}
   */
  iterations?: number;
  /**
   * Untimed runs of each variant first.
   * @default {20}
   */
  warmup?: number;
}

function stats(name: string, samples: number[]): ExecBenchRow {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    name,
    iterations: samples.length,
    meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
    p50Ms: at(0.5),
    p95Ms: at(0.95),
    minMs: sorted[0],
  };
}

/**
 * Measures `true` through a bare `Deno.Command` and through the executor, interleaved so both
 * see the same machine state.
 *
 * @param options Iterations and warm-up.
 * @returns The rows of the table and the median overhead.
 * @throws {Error} When `true` cannot be found or does not succeed.
 */
export async function runExecBench(options: ExecBenchOptions = {}): Promise<ExecBenchReport> {
  const iterations = options.iterations ?? 200;
  const warmup = options.warmup ?? 20;
  const policy = createPolicy({ allowedPrograms: ["true"] });
  const found = resolveProgram(
    { kind: "name", name: "true" },
    Deno.env.get("PATH") ?? "/usr/bin:/bin",
  );
  if (!found.ok) throw new Error(`Cannot benchmark: ${found.reason}`);
  const truePath = found.path;

  const bare = async () => {
    const output = await new Deno.Command(truePath, {
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) throw new Error("true failed under Deno.Command");
  };
  // The same spawn in its own process group, as the executor does it, to split the overhead
  // between the process group and the executor's own work.
  const detached = async () => {
    const output = await new Deno.Command(truePath, {
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).output();
    if (!output.success) throw new Error("true failed under Deno.Command (detached)");
  };
  const executor = async () => {
    const result = await runCommand("true", { policy, timeoutSecs: 30 });
    if (result.status !== "success") throw new Error(`true failed: ${result.error}`);
  };

  const variants = [bare, detached, executor];
  for (let i = 0; i < warmup; i++) {
    for (const run of variants) await run();
  }
  const samples = new Map(variants.map((run) => [run, [] as number[]]));
  for (let i = 0; i < iterations; i++) {
    // Rotate which goes first so none always runs on a warmer cache.
    for (let j = 0; j < variants.length; j++) {
      const run = variants[(i + j) % variants.length];
      const started = performance.now();
      await run();
      samples.get(run)!.push(performance.now() - started);
    }
  }
  const bareRow = stats("bare Deno.Command (true)", samples.get(bare)!);
  const detachedRow = stats("bare Deno.Command, detached (true)", samples.get(detached)!);
  const executorRow = stats("runCommand (true)", samples.get(executor)!);
  // The overhead of each iteration (both ran in it, back to back), then its distribution: the
  // difference of two distributions' quantiles is not a quantile of the difference.
  const bareSamples = samples.get(bare)!;
  const overhead = stats(
    "executor overhead (paired, vs bare)",
    samples.get(executor)!.map((ms, i) => ms - bareSamples[i]),
  );
  return {
    rows: [bareRow, detachedRow, executorRow, overhead],
    overheadP50Ms: overhead.p50Ms,
  };
}

/**
 * Renders rows as a Markdown table.
 *
 * @param rows The rows.
 * @returns The table's lines.
 */
export function formatExecBenchTable(rows: readonly ExecBenchRow[]): string[] {
  const ms = (value: number) => value.toFixed(3);
  return [
    "| benchmark | runs | mean ms | p50 ms | p95 ms | min ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((row) =>
      `| ${row.name} | ${row.iterations} | ${ms(row.meanMs)} | ${ms(row.p50Ms)} | ${
        ms(row.p95Ms)
      } | ${ms(row.minMs)} |`
    ),
  ];
}

if (import.meta.main) {
  const iterations = Number(Deno.args[0] ?? 200);
  const report = await runExecBench({ iterations });
  for (const line of formatExecBenchTable(report.rows)) console.log(line);
}
