/**
 * The report of a benchmark run: the machine, what else ran, the summary table (figure |
 * measured | target | met?), the detail tables, the method, and the hand-written analysis from
 * `bench/ANALYSIS.md`.
 *
 * @module
 */
import type { ChartFile } from "./_charts.ts";
import { ROOT } from "./_dashboard.ts";
import { formatExecBenchTable } from "./exec_bench.ts";
import type { Children } from "./_proc.ts";
import { type Plan, type Results, type RunOutcome, TARGET } from "./_plan.ts";
import { count, fmt, table } from "./_stats.ts";
import type { WakeResult } from "./wake_bench.ts";

const decoder = new TextDecoder();

/**
 * Runs a shell command for the report and returns its output, or `""` when it fails.
 *
 * @param command The command line.
 * @returns Its standard output, trimmed.
 */
export function sh(command: string): string {
  try {
    const out = new Deno.Command("bash", { args: ["-c", command], cwd: ROOT, stderr: "null" })
      .outputSync();
    return decoder.decode(out.stdout).trim();
  } catch {
    return "";
  }
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

function machineInfo(redisVersion: string): string[] {
  // Deno reads /proc only with --allow-all; cat does it.
  const model = /^model name\s*:\s*(.+)$/m.exec(sh("cat /proc/cpuinfo"))?.[1] ?? "unknown";
  const commit = sh("git rev-parse --short HEAD") || "unknown";
  // What this run writes itself (the results and their charts) does not count as a change.
  const dirty = sh(
    "git status --porcelain -- . ':(exclude)bench/RESULTS.md' ':(exclude)bench/curve-*.svg'",
  ) !== "";
  return [
    `- CPU: ${navigator.hardwareConcurrency} × ${model}`,
    `- memory: ${fmt(Deno.systemMemoryInfo().total / 1024 ** 3, 1)} GiB`,
    `- kernel: Linux ${Deno.osRelease()}`,
    `- Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); Redis ${redisVersion}`,
    `- commit: ${commit}${dirty ? " + uncommitted changes" : ""}`,
  ];
}

/**
 * What else runs on the machine: Deno and Node processes not started by this run, and the
 * highest one-minute load average. Sampled between phases only (spawning `ps` while measuring
 * would disturb the measurement).
 */
export class ActivityMonitor {
  readonly #others = new Map<string, string>();
  readonly #children: Children;
  #maxLoad = 0;

  /** @param children The processes of this run, which are not "else". */
  constructor(children: Children) {
    this.#children = children;
  }

  /** Takes a sample now. */
  sample(): void {
    this.#maxLoad = Math.max(this.#maxLoad, Deno.loadavg()[0]);
    const ours = new Set([Deno.pid, Deno.ppid, ...this.#children.pids]);
    for (const line of sh("ps -eo pid=,ppid=,pgid=,args=").split("\n")) {
      const [pid, ppid, pgid, ...args] = line.trim().split(/\s+/);
      const command = args.join(" ");
      if (!/(^|\/)(deno|node)\b/.test(command)) continue;
      if ([pid, ppid, pgid].some((id) => ours.has(Number(id)))) continue;
      const short = command.replace(/\s--(allow-\S+|quiet|config\s+\S+)/g, "")
        .replace(/^\S*\/(deno|node)\b/, "$1");
      this.#others.set(pid, short.slice(0, 110));
    }
  }

  /** One line (plus a line per process) for the report. */
  describe(): string {
    const others = [...this.#others].map(([pid, command]) => `\n  - pid ${pid}: ${command}`);
    return `highest 1-minute load average seen between phases ${
      fmt(this.#maxLoad)
    } (this run's own processes included); ` +
      `other Deno/Node processes seen: ${others.length === 0 ? "none" : others.join("")}`;
  }
}

const MB = 1024 * 1024;

function met(ok: boolean | undefined): string {
  return ok === undefined ? "not measured" : ok ? "yes" : "**no**";
}

function wakeAt(list: WakeResult[], n: number): WakeResult | undefined {
  return list.find((w) => w.waiting === n);
}

/**
 * The wake-up floor (a bare server whose enqueue is one write and `fdatasync`): its latency, its
 * ratio to durable Redis at the same N, and ours to it.
 */
function floorWakeRows(results: Results): string[][] {
  const rows: string[][] = [];
  for (const floor of results.floor) {
    const wake = floor.wakeMs;
    if (!wake) continue;
    const n = floor.waiting;
    const name = `bare ${floor.platform}, enqueue = one write + fdatasync`;
    rows.push([
      `platform floor wake-up p50 / p99 / max, ${count(n)} waiting (${name})`,
      `${fmt(wake.p50)} / ${fmt(wake.p99)} / ${fmt(wake.max)} ms`,
      "reference",
      "—",
    ]);
    const redis = results.redisWake.find((w) => w.waiting === n && w.system === "redis-durable");
    if (redis) {
      rows.push([
        `that floor's p50 / p99 ÷ durable Redis (appendfsync always), ${count(n)} waiting`,
        `${fmt(wake.p50 / redis.latencyMs.p50, 1)} × / ${fmt(wake.p99 / redis.latencyMs.p99, 1)} ×`,
        "—",
        "—",
      ]);
    }
    const ours = wakeAt(results.statusWake, n);
    if (ours) {
      rows.push([
        `our p50 / p99 ÷ that floor's, ${count(n)} waiting`,
        `${fmt(ours.latencyMs.p50 / wake.p50, 1)} × / ${fmt(ours.latencyMs.p99 / wake.p99, 1)} ×`,
        "—",
        "—",
      ]);
    }
  }
  return rows;
}

function summaryTable(results: Results): string[] {
  const rows: string[][] = [];
  for (const wake of results.statusWake) {
    const n = wake.waiting;
    const isTarget = n === TARGET.wakeAtWaiting;
    rows.push([
      `wake-up p50 / p99 / max, ${count(n)} waiting (status)`,
      `${fmt(wake.latencyMs.p50)} / ${fmt(wake.latencyMs.p99)} / ${fmt(wake.latencyMs.max)} ms`,
      isTarget ? `p99 ≤ ${TARGET.wakeP99Ms} ms` : "—",
      isTarget ? met(wake.latencyMs.p99 <= TARGET.wakeP99Ms) : "—",
    ]);
    for (const system of ["redis", "redis-durable"] as const) {
      const redis = results.redisWake.find((w) => w.waiting === n && w.system === system);
      if (!redis) continue;
      const durable = system === "redis-durable";
      const name = durable ? "durable Redis (appendfsync always)" : "Redis BLPOP, nothing kept";
      rows.push([
        `wake-up p50 / p99 / max, ${count(n)} waiting (${name})`,
        `${fmt(redis.latencyMs.p50)} / ${fmt(redis.latencyMs.p99)} / ${
          fmt(redis.latencyMs.max)
        } ms`,
        "reference",
        "—",
      ]);
      const p50 = wake.latencyMs.p50 / redis.latencyMs.p50;
      const p99 = wake.latencyMs.p99 / redis.latencyMs.p99;
      rows.push([
        `our p50 / p99 ÷ ${name}, ${count(n)} waiting`,
        `${fmt(p50, 1)} × / ${fmt(p99, 1)} ×`,
        durable ? "p50 ≤ 2 ×, p99 ≤ 1.5 ×" : isTarget ? `p99 ≤ ${TARGET.redisRatio} ×` : "—",
        durable ? met(p50 <= 2 && p99 <= 1.5) : isTarget ? met(p99 <= TARGET.redisRatio) : "—",
      ]);
    }
  }
  const postgres = results.postgresWake[0];
  if (postgres) {
    rows.push([
      "wake-up p50 / p99 / max, 1 listener (PostgreSQL INSERT + NOTIFY → LISTEN)",
      `${fmt(postgres.latencyMs.p50)} / ${fmt(postgres.latencyMs.p99)} / ${
        fmt(postgres.latencyMs.max)
      } ms`,
      "reference",
      "—",
    ]);
    for (const wake of results.statusWake) {
      rows.push([
        `our p50 / p99 ÷ PostgreSQL's, ${count(wake.waiting)} waiting`,
        `${fmt(wake.latencyMs.p50 / postgres.latencyMs.p50, 1)} × / ${
          fmt(wake.latencyMs.p99 / postgres.latencyMs.p99, 1)
        } ×`,
        "—",
        "—",
      ]);
    }
  }
  if (results.baselineRssBytes !== undefined) {
    rows.push([
      "dashboard resident memory, 0 waiting (after start)",
      `${fmt(results.baselineRssBytes / MB, 1)} MB`,
      "—",
      "—",
    ]);
  }
  for (const idle of results.idle) {
    const n = idle.waiting;
    const rssTarget = n === TARGET.rssAtWaiting;
    const cpuTarget = n === TARGET.idleCpuAtWaiting;
    rows.push([
      `dashboard resident memory (max), ${count(n)} waiting`,
      `${fmt(idle.dashboard.rssMaxBytes / MB, 1)} MB`,
      rssTarget ? `≤ ${TARGET.rssBytes / MB} MB` : "—",
      rssTarget ? met(idle.dashboard.rssMaxBytes <= TARGET.rssBytes) : "—",
    ]);
    rows.push([
      `dashboard CPU, idle ${fmt(idle.dashboard.seconds, 0)} s, ${count(n)} waiting`,
      `${fmt(idle.dashboard.cpuPercent)} %`,
      cpuTarget ? `< ${TARGET.idleCpuPercent} %` : "—",
      cpuTarget ? met(idle.dashboard.cpuPercent < TARGET.idleCpuPercent) : "—",
    ]);
    rows.push([
      `load generator holding ${count(n)} waits: CPU / resident memory`,
      `${fmt(idle.loadGenerator.cpuPercent)} % / ${fmt(idle.loadGenerator.rssMaxBytes / MB, 1)} MB`,
      "—",
      "—",
    ]);
    if (idle.agent) {
      rows.push([
        `agent CPU while it waits (${fmt(idle.agent.seconds, 0)} s)`,
        `${fmt(idle.agent.cpuPercent, 3)} %`,
        `< ${TARGET.agentCpuPercent} %`,
        met(idle.agent.cpuPercent < TARGET.agentCpuPercent),
      ]);
      rows.push([
        "agent resident memory while it waits",
        `${fmt(idle.agent.rssMaxBytes / MB, 1)} MB`,
        "—",
        "—",
      ]);
    }
  }
  if (results.rewave) {
    const { waiting, after, dashboard } = results.rewave;
    rows.push([
      `dashboard resident memory (max), ${count(waiting)} waiting again after ${
        count(after)
      } had left (a reconnect wave)`,
      `${fmt(dashboard.rssMaxBytes / MB, 1)} MB`,
      "—",
      "—",
    ]);
  }
  for (const floor of results.floor) {
    rows.push([
      `platform floor: bare ${floor.platform} holding ${count(floor.waiting)} waits (${
        floor.coalesced ? "one sweep a second" : "a timer per wait"
      }): resident memory (max) / CPU`,
      `${fmt(floor.usage.rssMaxBytes / MB, 1)} MB / ${fmt(floor.usage.cpuPercent)} %`,
      "reference",
      "—",
    ]);
  }
  rows.push(...floorWakeRows(results));
  for (const t of results.throughput) {
    rows.push([`throughput: ${t.name}`, `${fmt(t.perSecond, 1)} commands/s`, "—", "—"]);
  }
  rows.push(...pgInstancesRows(results));
  if (results.exec) {
    const p50 = results.exec.overheadP50Ms;
    rows.push([
      "executor overhead per command (p50, paired vs bare detached Deno.Command)",
      `${fmt(p50, 3)} ms (mean ${fmt(results.exec.overheadMeanMs, 3)} ms)`,
      "≤ 1 ms",
      p50 <= 1 ? "yes" : "**no**",
    ]);
  }
  // Targets whose N was not part of this run (quick mode).
  const missing: string[][] = [];
  const crossAtTarget = results.pgInstancesWake.some((w) =>
    w.waiting === TARGET.pgWakeAtWaiting && w.setup?.enqueue === "other instance"
  );
  if (!crossAtTarget) {
    missing.push([
      `status serve on PostgreSQL, two instances: cross-instance wake-up p99, ${
        count(TARGET.pgWakeAtWaiting)
      } waiting`,
      "—",
      `≤ ${TARGET.pgCrossWakeP99Ms} ms`,
      met(undefined),
    ]);
  }
  if (!wakeAt(results.statusWake, TARGET.wakeAtWaiting)) {
    missing.push([
      `wake-up p99, ${count(TARGET.wakeAtWaiting)} waiting`,
      "—",
      `≤ ${TARGET.wakeP99Ms} ms, ≤ ${TARGET.redisRatio} × Redis`,
      met(undefined),
    ]);
  }
  if (!results.idle.some((i) => i.waiting === TARGET.rssAtWaiting)) {
    missing.push([
      `dashboard memory and idle CPU, ${count(TARGET.rssAtWaiting)} waiting`,
      "—",
      `≤ ${TARGET.rssBytes / MB} MB, < ${TARGET.idleCpuPercent} %`,
      met(undefined),
    ]);
  }
  if (!results.idle.some((i) => i.agent)) {
    missing.push([
      "agent CPU while it waits",
      "—",
      `< ${TARGET.agentCpuPercent} %`,
      met(undefined),
    ]);
  }
  return table(
    ["figure", "measured", "target", "met?"],
    [...rows, ...missing],
    ["l", "r", "l", "l"],
  );
}

/**
 * Summary rows of `pg-instances`: two `status serve` instances on PostgreSQL (issue 10), beside
 * the SQLite rows. Not the PostgreSQL anchor (`INSERT` + `NOTIFY`).
 */
function pgInstancesRows(results: Results): string[][] {
  const rows: string[][] = [];
  for (const wake of results.pgInstancesWake) {
    const cross = wake.setup?.enqueue === "other instance";
    const isTarget = cross && wake.waiting === TARGET.pgWakeAtWaiting;
    rows.push([
      `status serve on PostgreSQL, two instances: wake-up p50 / p99 / max, ${
        count(wake.waiting)
      } waiting, ` +
      `enqueue on the ${wake.setup?.enqueue ?? "same instance"}`,
      `${fmt(wake.latencyMs.p50)} / ${fmt(wake.latencyMs.p99)} / ${fmt(wake.latencyMs.max)} ms`,
      isTarget ? `p99 ≤ ${TARGET.pgCrossWakeP99Ms} ms` : "—",
      isTarget ? met(wake.latencyMs.p99 <= TARGET.pgCrossWakeP99Ms) : "—",
    ]);
  }
  for (const t of results.pgInstancesThroughput) {
    rows.push([`throughput: ${t.name}`, `${fmt(t.perSecond, 1)} commands/s`, "—", "—"]);
  }
  if (results.pgInstancesNote) {
    rows.push(["status serve on PostgreSQL, two instances", results.pgInstancesNote, "—", "—"]);
  }
  return rows;
}

/** The server column of the wake-up table. */
function wakeServer(w: WakeResult): string {
  switch (w.system) {
    case "redis":
      return "Redis (nothing kept)";
    case "redis-durable":
      return "Redis (appendfsync always)";
    case "postgres":
      return "PostgreSQL INSERT + NOTIFY (anchor)";
    case "status":
      return w.setup?.store === "postgres"
        ? `status serve on PostgreSQL, enqueue on the ${w.setup.enqueue}`
        : "status serve";
  }
}

function detailTables(results: Results): string[] {
  const lines: string[] = [];
  const wakeRows = [
    ...results.statusWake,
    ...results.pgInstancesWake,
    ...results.redisWake,
    ...results.postgresWake,
  ].map((w) => [
    wakeServer(w),
    count(w.waiting),
    count(w.latencyMs.count),
    fmt(w.latencyMs.mean, 3),
    fmt(w.latencyMs.p50, 3),
    fmt(w.latencyMs.p99, 3),
    fmt(w.latencyMs.max, 3),
    String(w.unconfirmed),
    w.rssBytes === undefined ? "—" : fmt(w.rssBytes / MB, 1),
  ]);
  lines.push("### Wake-up latency (ms)", "");
  lines.push(
    ...table(
      [
        "server",
        "other waiters",
        "samples",
        "mean",
        "p50",
        "p99",
        "max",
        "unconfirmed",
        "server resident MB",
      ],
      wakeRows,
      ["l", "r", "r", "r", "r", "r", "r", "r", "r"],
    ),
  );
  lines.push(
    "",
    '"unconfirmed": samples where the server did not count N + 1 waiters before the enqueue ' +
      '(measured anyway). "server resident MB": the dashboard\'s resident memory with the N ' +
      "waiting, sampled just before the series (the memory curve).",
    "",
  );
  lines.push("### Idle cost (nothing enqueued)", "");
  lines.push(
    ...table(
      ["waiting", "process", "CPU %", "resident MB (mean)", "resident MB (max)", "window s"],
      results.idle.flatMap((idle) =>
        (["dashboard", "loadGenerator", "agent"] as const)
          .filter((name) => idle[name] !== undefined)
          .map((name) => {
            const usage = idle[name]!;
            return [
              count(idle.waiting),
              name === "loadGenerator" ? "load generator" : name,
              fmt(usage.cpuPercent, 3),
              fmt(usage.rssMeanBytes / MB, 1),
              fmt(usage.rssMaxBytes / MB, 1),
              fmt(usage.seconds, 1),
            ];
          })
      ),
      ["r", "l", "r", "r", "r", "r"],
    ),
    "",
  );
  if (results.floor.length > 0) {
    lines.push("### Platform floor (`bench/floor_server.ts`, same load generator)", "");
    lines.push(
      ...table(
        [
          "server",
          "waiting",
          "timeouts",
          "CPU %",
          "resident MB at start",
          "resident MB (max)",
          "window s",
          "wake-up p50 / p99 / max ms",
        ],
        results.floor.map((f) => [
          f.platform,
          count(f.waiting),
          f.coalesced ? "one sweep a second" : "a timer per wait",
          fmt(f.usage.cpuPercent, 3),
          fmt(f.startRssBytes / MB, 1),
          fmt(f.usage.rssMaxBytes / MB, 1),
          fmt(f.usage.seconds, 1),
          f.wakeMs
            ? `${fmt(f.wakeMs.p50, 3)} / ${fmt(f.wakeMs.p99, 3)} / ${fmt(f.wakeMs.max, 3)}`
            : "—",
        ]),
        ["l", "r", "l", "r", "r", "r", "r", "r"],
      ),
      "",
      "Wake-up: measured after the idle window with the same N waiting and the same client as " +
        "the dashboard's; the enqueue route appends its body to a file and `fdatasync`s it on " +
        "the JS thread, then answers the wait (one durable write and two HTTP exchanges, " +
        "nothing else).",
      "",
    );
  }
  if (results.heapBytes.length > 0) {
    lines.push("### V8 heap of the dashboard (after a full GC; profiling run)", "");
    lines.push(
      ...table(
        ["waiting", "heap used MB"],
        results.heapBytes.map((h) => [count(h.waiting), fmt(h.bytes / MB, 1)]),
        ["r", "r"],
      ),
      "",
    );
  }
  lines.push("### Throughput", "");
  lines.push(
    ...table(
      ["configuration", "commands", "seconds", "commands/s", "dashboard CPU %", "not success"],
      [...results.throughput, ...results.pgInstancesThroughput].map((t) => [
        t.name,
        count(t.commands),
        fmt(t.seconds, 2),
        fmt(t.perSecond, 1),
        fmt(t.dashboardCpuPercent, 0),
        String(t.unsuccessful),
      ]),
      ["l", "r", "r", "r", "r", "r"],
    ),
    "",
  );
  if (results.exec) {
    lines.push("### Executor overhead (`bench/exec_bench.ts`)", "");
    lines.push(...formatExecBenchTable(results.exec.rows), "");
  }
  return lines;
}

const METHOD = `## Method

- **Dashboard**: \`deno run <the V8 flags of deno.json's serve task> --allow-net --allow-read
  --allow-write --allow-env main.ts serve --port 0 --db <tmp>/status.db
  --rate-limit-per-minute 1000000\`, not in dev mode: every agent
  has a token in the store (made up front through \`src/store\`, as \`status agents add\` does),
  \`STATUS_ADMIN_TOKEN\` is set, default settings otherwise (SQLite \`synchronous=FULL\`, log level
  info, JSON lines to a file). Every child runs in its own process group with \`ulimit -n 65536\`.
- **Load generator** (\`bench/load_waiters.ts\`, its own process): one TCP connection per agent,
  raw HTTP/1.1, each wait signed (version 2) like the real agent's; it waits again at every \`204\`.
  Wait timeout 120 s; the first wait of each agent has a random timeout of 1–120 s, so the fleet's
  re-polls are spread evenly (N ÷ 120 a second) instead of all ending in the same second.
- **Wake-up latency**: the measuring client (raw TCP in the runner process, the same code for
  both servers) sends its wait (\`GET …/wait\` / \`BLPOP\`), then asks the server until it counts
  N + 1 waiters (\`GET /health\` → \`waiting\` / \`INFO clients\` → \`blocked_clients\`); the clock
  starts just before the enqueue (\`POST …/enqueue\` with the admin token / \`LPUSH\`) is written and
  stops when the waiting connection has parsed the whole answer. Each delivered command is then
  acked and reported. Warm-up samples are dropped.
- **\`status serve\` on PostgreSQL, two instances** (\`pg-instances\`, issue 10): a throw-away
  cluster (\`initdb\`, PostgreSQL's default durability: fsync and synchronous commit on) on
  loopback; two \`status serve --db postgres://…\` instances.
  The load generator's agents wait on instance A; the measuring agent waits on A, and the enqueue
  goes to A ("same instance") or to B ("other instance": B commits, \`NOTIFY\`, A's \`LISTEN\`
  connection hears it and A claims with \`FOR UPDATE SKIP LOCKED\`). Dashboard alone: the same
  simulated agents against instance A.
- **Platform floor**: \`bench/floor_server.ts\`, a bare \`Deno.serve\` that holds the same
  waits and does nothing else (no Hono, no auth, no store, no log), under the same load generator
  and idle window: once with a timer per wait, once with one sweep a second; then a bare
  \`node:http\` server (the dashboard's own HTTP layer) with one sweep a second. After each
  one-sweep idle window, the wake-up floor with the same N waiting and the same measuring client:
  the floor's enqueue appends its body to a file and \`fdatasync\`s it on the JS thread before it
  answers the wait (what one durable write and two HTTP exchanges cost, with no auth, routing,
  validation, store or log).
- **Redis**: \`redis-server --save '' --appendonly no --bind 127.0.0.1\`, N idle connections
  from the load generator blocked in \`BLPOP\` on keys of their own.
- **Idle cost**: \`/proc/<pid>/stat\` (utime + stime) over the window, \`/proc/<pid>/status\`
  VmRSS every second. The agent is a real \`status agent\` (default 30 s long-poll, metrics
  heartbeat every 30 s), measured during the first idle window. After the wake-up phases, the
  largest idle N waits once more (a reconnect wave, every earlier phase's agents gone) and the
  dashboard's resident memory is sampled the same way: what closed connections leave behind.
- **Throughput with agents**: real \`status agent\` processes allowed to run \`true\`; the commands
  are enqueued at once (4 operator connections, round-robin over the agents); the time runs from
  the first enqueue to the latest \`reported_at\` stored. **Dashboard alone**: simulated agents in the
  load generator doing wait → ack → report with a fake result, 4 enqueuing connections keeping at
  most 200 commands in flight; reports stored a second after a warm-up.
- **Executor** (\`bench/exec_bench.ts\`): \`true\` through a \`CommandRunner\` made once, as the agent's
  executor keeps one, against bare spawns of \`true\` in the same process (plain, \`detached\`, through
  \`setsid\`), interleaved; the overheads are paired per iteration.
- All numbers are from one run on one machine; the client, the load generator and the server
  share its cores.`;

/**
 * Renders `bench/RESULTS.md`.
 *
 * @param plan What the run measured.
 * @param run What it found.
 * @param started When it started.
 * @param seconds How long it took.
 * @returns The Markdown text.
 */
export function render(
  plan: Plan,
  run: RunOutcome,
  started: Date,
  seconds: number,
  charts: ChartFile[] = [],
): string {
  const { results } = run;
  const lines = [
    "# Benchmark results",
    "",
    `Written by \`deno task bench${plan.quick ? " --quick" : ""}\` on ${started.toISOString()} ` +
    `(the run took ${fmt(seconds / 60, 1)} min).${
      plan.quick ? " **Quick mode: small N and few samples; not the figures to size a fleet.**" : ""
    }`,
    "",
    "## Machine",
    "",
    ...machineInfo(run.redisVersion),
    `- what else ran: ${run.activity}`,
    "",
    "## Summary",
    "",
    ...summaryTable(results),
    "",
  ];
  if (run.results.redisNote) lines.push(`Redis: ${run.results.redisNote}.`, "");
  if (run.results.postgresNote) {
    lines.push(`PostgreSQL: ${run.results.postgresNote}; its rows are skipped.`, "");
  }
  if (run.serveArgs.length > 0) {
    lines.push(`\`status serve\` ran with the extra flags \`${run.serveArgs.join(" ")}\`.`, "");
  }
  if (run.denoArgs.length > 0) {
    lines.push(
      `The dashboard's \`deno run\` had the extra flags \`${run.denoArgs.join(" ")}\`.`,
      "",
    );
  }
  if (results.errors.length > 0) {
    lines.push("**Phases that failed:**", "", ...results.errors.map((e) => `- ${e}`), "");
  }
  if (charts.length > 0) {
    lines.push("## Curves", "");
    for (const chart of charts) lines.push(`![${chart.caption}](${chart.file})`, "");
  }
  lines.push("## Details", "", ...detailTables(results));
  lines.push(METHOD, "");
  const analysis = readText(`${ROOT}/bench/ANALYSIS.md`).trim();
  if (analysis) lines.push(analysis, "");
  return lines.join("\n");
}
