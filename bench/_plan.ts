/**
 * What a benchmark run measures (the full run and `--quick`), the targets of issue 6, and the
 * shapes of the results.
 *
 * @module
 */
import type { ExecBenchReport } from "./exec_bench.ts";
import type { Usage } from "./_proc.ts";
import type { Summary } from "./_stats.ts";
import type { ThroughputResult } from "./throughput_bench.ts";
import type { WakeResult } from "./wake_bench.ts";

/** The parts of a run, for `--only`. */
export type Phase =
  | "status"
  | "floor"
  | "redis"
  | "postgres"
  | "throughput"
  | "exec"
  | "pg-instances";

/** What one run measures. */
export interface Plan {
  /** A smoke run (`--quick`): small N, few samples, short windows. */
  quick: boolean;
  /** The parts that run. */
  phases: Set<Phase>;
  /** N of the wake-up measurements. */
  waiting: number[];
  /** N of the wake-up measurements on two `status serve` instances sharing PostgreSQL (`pg-instances`). */
  pgWaiting: number[];
  /** N of the idle-cost windows; the agent's idle CPU is measured during the first. */
  idleWaiting: number[];
  /** Timed wake-up samples at each N. */
  samples: number;
  /** Untimed wake-up samples first. */
  warmup: number;
  /** Length of an idle window, in seconds. */
  idleSecs: number;
  /** Long-poll timeout of the load generator's agents. */
  waitTimeoutSecs: number;
  /** Throughput runs with agent processes: how many agents, how many commands. */
  throughput: Array<{ agents: number; commands: number }>;
  /** Simulated agents of the dashboard-alone throughput runs (one run per count: the curve). */
  simAgents: number[];
  /** Its warm-up and measured time, in seconds. */
  simWarmupSecs: number;
  simDurationSecs: number;
  /** Timed and untimed runs of each executor variant. */
  execIterations: number;
  execWarmup: number;
}

/** Every phase. */
export const ALL_PHASES: Set<Phase> = new Set([
  "status",
  "floor",
  "redis",
  "postgres",
  "throughput",
  "exec",
  "pg-instances",
]);

/** The full run: `deno task bench`. */
export const FULL: Plan = {
  quick: false,
  phases: ALL_PHASES,
  waiting: [1, 1000, 5000, 10000, 15000],
  pgWaiting: [1, 1000],
  idleWaiting: [1000, 10000],
  samples: 1000,
  warmup: 50,
  idleSecs: 30,
  waitTimeoutSecs: 120,
  throughput: [{ agents: 1, commands: 300 }, { agents: 8, commands: 800 }],
  simAgents: [1, 10, 100, 1000],
  simWarmupSecs: 2,
  simDurationSecs: 10,
  execIterations: 200,
  execWarmup: 20,
};

/** The smoke run: `deno task bench --quick`. */
export const QUICK: Plan = {
  quick: true,
  phases: ALL_PHASES,
  waiting: [1, 100],
  pgWaiting: [1, 100],
  idleWaiting: [100],
  samples: 100,
  warmup: 10,
  idleSecs: 3,
  waitTimeoutSecs: 120,
  throughput: [{ agents: 1, commands: 20 }, { agents: 2, commands: 20 }],
  simAgents: [1, 10],
  simWarmupSecs: 1,
  simDurationSecs: 2,
  execIterations: 20,
  execWarmup: 5,
};

/** The targets of issue 6 (resident memory: issue 14 item 4). */
export const TARGET = {
  wakeP99Ms: 5,
  wakeAtWaiting: 1000,
  redisRatio: 3,
  rssBytes: 200 * 1024 * 1024,
  rssAtWaiting: 10000,
  idleCpuPercent: 2,
  idleCpuAtWaiting: 10000,
  agentCpuPercent: 0.5,
  /** Issue 10: cross-instance wake-up p99 of `status serve` on PostgreSQL, at this many waiting. */
  pgCrossWakeP99Ms: 10,
  pgWakeAtWaiting: 1000,
};

/**
 * The platform floor: a bare `Deno.serve` or `node:http` server holding the same waits
 * (`bench/floor_server.ts`).
 */
export interface FloorResult {
  waiting: number;
  /** The HTTP server under test. */
  platform: "Deno.serve" | "node:http";
  /** `true`: one sweep a second ends due waits; `false`: one timer per wait. */
  coalesced: boolean;
  /** Resident memory right after start, in bytes. */
  startRssBytes: number;
  usage: Usage;
  /**
   * Wake-up latency with the N waiting, the enqueue doing one appended write and `fdatasync` on
   * the JS thread (measured on the coalesced variants), in milliseconds.
   */
  wakeMs?: Summary;
}

/** One idle window: nothing enqueued, N agents waiting. */
export interface IdleResult {
  waiting: number;
  dashboard: Usage;
  loadGenerator: Usage;
  agent?: Usage;
}

/** Everything measured; a phase that failed leaves its error instead. */
export interface Results {
  baselineRssBytes?: number;
  statusWake: WakeResult[];
  redisWake: WakeResult[];
  redisNote?: string;
  /** `INSERT` + `NOTIFY` → `LISTEN` on PostgreSQL, one listener. */
  postgresWake: WakeResult[];
  postgresNote?: string;
  idle: IdleResult[];
  /**
   * The largest idle N waiting again after every earlier phase's agents left (a reconnect wave):
   * what the closed connections leave behind.
   */
  rewave?: { waiting: number; after: number; dashboard: Usage };
  floor: FloorResult[];
  throughput: ThroughputResult[];
  /**
   * `pg-instances`: two `status serve` instances on one PostgreSQL database: wake-ups (enqueue on
   * the same and on the other instance), throughput.
   */
  pgInstancesWake: WakeResult[];
  pgInstancesThroughput: ThroughputResult[];
  /** Why the `pg-instances` phase did not run, if it did not. */
  pgInstancesNote?: string;
  exec?: ExecBenchReport;
  /** V8 heap in use after a full GC, when profiling. */
  heapBytes: Array<{ waiting: number; bytes: number }>;
  errors: string[];
}

/** What a run hands to the report. */
export interface RunOutcome {
  results: Results;
  /** The Redis version, or `unavailable`. */
  redisVersion: string;
  /** What else ran on the machine. */
  activity: string;
  /** Extra flags `status serve` ran with. */
  serveArgs: string[];
  /** Extra flags of `deno run` the dashboard ran with. */
  denoArgs: string[];
}
