/**
 * The executor's overhead: running `true` through a {@link CommandRunner} made once, as the
 * agent's executor keeps one (parse, policy, cached PATH lookup, own session and process group,
 * timers, bounded capture, group kill), against bare `Deno.Command` spawns in the same run.
 *
 * Run it alone with `deno run --allow-run --allow-read --allow-env bench/exec_bench.ts [runs]`,
 * or call {@link runExecBench} from `bench/run.ts`.
 *
 * @module
 */
import { CommandRunner, createPolicy, resolveProgram } from "../src/exec/mod.ts";
import { setsidProgram } from "../src/exec/sandbox.ts";
import { fmt, summarize, type Summary, table } from "./_stats.ts";

/** One line of the results table; times in milliseconds. */
export interface ExecBenchRow extends Summary {
  /** What was measured. */
  name: string;
}

/** What {@link runExecBench} measured. */
export interface ExecBenchReport {
  /** Each spawn variant, then the paired differences (the overheads). */
  rows: ExecBenchRow[];
  /** Median overhead of the executor over a bare detached `Deno.Command` (issue 14's target). */
  overheadP50Ms: number;
  /** Mean of the same. */
  overheadMeanMs: number;
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

/**
 * Measures `true` through bare spawns and through the executor, interleaved (the order rotating)
 * so all see the same machine state; the overheads are paired per iteration.
 *
 * @param options Iterations and warm-up.
 * @returns The rows of the table and the median overhead.
 * @throws {Error} When `true` cannot be found or does not succeed.
 */
export async function runExecBench(options: ExecBenchOptions = {}): Promise<ExecBenchReport> {
  const iterations = options.iterations ?? 200;
  const warmup = options.warmup ?? 20;
  const found = resolveProgram({ kind: "name", name: "true" }, Deno.env.get("PATH") ?? "/bin");
  if (!found.ok) throw new Error(`Cannot benchmark: ${found.reason}`);
  // spawn() then output(), as the executor spawns: `Command.output()` ignores `detached`.
  const spawn = (program: string, extra: Partial<Deno.CommandOptions> = {}) => async () => {
    const child = new Deno.Command(program, {
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...extra,
    }).spawn();
    if (!(await child.output()).success) throw new Error(`${program} failed`);
  };
  const runner = new CommandRunner({ policy: createPolicy({ allowedPrograms: ["true"] }) });
  const variants = new Map<string, () => Promise<void>>([
    ["bare Deno.Command", spawn(found.path)],
    // Deno's `detached` spawn: a fork of this (small) process and setsid (issue 14's baseline).
    ["bare Deno.Command, detached", spawn(found.path, { detached: true })],
  ]);
  // The spawn the executor makes: util-linux setsid, for a session and process group of its own.
  const setsid = setsidProgram();
  if (setsid) variants.set("bare setsid -- true", spawn(setsid, { args: ["--", found.path] }));
  let spawned = 0;
  variants.set("executor (CommandRunner.run)", async () => {
    // With an onSpawn, as the agent's executor runs (its journal records the process).
    const result = await runner.run("true", { timeoutSecs: 30, onSpawn: () => spawned++ });
    if (result.status !== "success") throw new Error(`true failed: ${result.error}`);
  });

  const runs = [...variants.values()];
  for (let i = 0; i < warmup; i++) {
    for (const run of runs) await run();
  }
  const samples = runs.map(() => [] as number[]);
  for (let i = 0; i < iterations; i++) {
    for (let j = 0; j < runs.length; j++) {
      const k = (i + j) % runs.length;
      const started = performance.now();
      await runs[k]();
      samples[k].push(performance.now() - started);
    }
  }
  const names = [...variants.keys()];
  const rows = names.map((name, k) => ({ name, ...summarize(samples[k]) }));
  const executor = samples[samples.length - 1];
  // The difference within each iteration, then its distribution: the difference of two
  // distributions' quantiles is not a quantile of the difference.
  const paired = (k: number) => ({
    name: `executor overhead (paired, vs ${names[k]})`,
    ...summarize(executor.map((ms, i) => ms - samples[k][i])),
  });
  const overhead = paired(1);
  rows.push(paired(0), overhead);
  if (setsid) rows.push(paired(2));
  if (spawned !== warmup + iterations) throw new Error(`onSpawn ran ${spawned} times`);
  return { rows, overheadP50Ms: overhead.p50, overheadMeanMs: overhead.mean };
}

/**
 * Renders rows as a Markdown table.
 *
 * @param rows The rows.
 * @returns The table's lines.
 */
export function formatExecBenchTable(rows: readonly ExecBenchRow[]): string[] {
  return table(
    ["benchmark", "runs", "mean ms", "p50 ms", "p99 ms", "max ms"],
    rows.map((r) => [
      r.name,
      String(r.count),
      fmt(r.mean, 3),
      fmt(r.p50, 3),
      fmt(r.p99, 3),
      fmt(r.max, 3),
    ]),
    ["l", "r", "r", "r", "r", "r"],
  );
}

if (import.meta.main) {
  const report = await runExecBench({ iterations: Number(Deno.args[0] ?? 200) });
  for (const line of formatExecBenchTable(report.rows)) console.log(line);
}
