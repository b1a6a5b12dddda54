/**
 * `deno task bench`: every benchmark of issue 6 in one run, beside Redis as the reference, and
 * the results written to `bench/RESULTS.md` (machine, date, commit) and printed.
 *
 * 1. Wake-up latency on `status serve` with N = 1, 1,000 and 10,000 other agents waiting, held by
 *    the load generator (`bench/load_waiters.ts`) with real signed requests.
 * 2. The same on Redis (`LPUSH` → `BLPOP`) with N clients blocked, and our p99 ÷ Redis p99.
 * 3. Idle cost: the dashboard's resident memory and CPU over 30 s with 1,000 and 10,000 agents
 *    waiting and nothing enqueued; a real `status agent`'s CPU while it waits; the same waits on
 *    a bare `Deno.serve` (`bench/floor_server.ts`) as the platform floor.
 * 4. Throughput: enqueue → `true` → report stored, with 1 and 8 agent processes; the dashboard
 *    alone with 100 simulated agents.
 * 5. The executor's overhead (`bench/exec_bench.ts`).
 * 6. `postgres`: the PostgreSQL anchor, a committed `INSERT` + `NOTIFY` → one `LISTEN`
 *    (`bench/_postgres.ts`).
 * 7. `pg-instances`: two `status serve` instances on one PostgreSQL database: wake-up latency with
 *    the enqueue on the waiting agent's instance and on the other one, and the dashboard alone.
 *
 * ```sh
 * deno task bench                 # the full run, about 10 minutes; writes bench/RESULTS.md
 * deno task bench --quick         # a smoke run: small N, few samples, short windows
 * deno task bench --out /tmp/r.md --no-install --no-redis
 * deno task bench --only status --waiting 1000,10000 --idle-waiting 10000 --samples 300 \
 *   --idle-secs 20 --profile /tmp/prof --out /tmp/r.md
 * deno run --allow-read bench/profile_summary.ts /tmp/prof/idle-10000.cpuprofile
 * ```
 *
 * Flags: `--quick`; `--out <file>` (default `bench/RESULTS.md`); `--no-install` (do not
 * `apt-get install redis-server` when it is missing); `--no-redis`; `--only <phases>`
 * (comma-separated `status`, `floor`, `redis`, `postgres`, `throughput`, `exec`, `pg-instances`);
 * `--waiting <N,...>`, `--idle-waiting <N,...>` and `--sim-agents <N,...>` (the curves' points);
 * `--samples <n>`; `--idle-secs <s>`; `--serve-args="<flags>"` (more
 * flags of `status serve`, e.g. `--log-level warning`); `--deno-args="<flags>"` (more flags of the
 * dashboard's `deno run`, e.g. `--v8-flags=--max-semi-space-size=2`; they come after the serve
 * task's `--v8-flags`, which they add to rather than replace: `--heap-growing-percent=0` gives V8
 * back its own factor); `--profile <dir>` (the dashboard runs with
 * the V8 inspector: CPU profiles of the idle windows, the wake-up samples and the simulated-agent
 * load, and heap snapshots; the inspector costs time, so a profiling run's numbers are not the
 * ones to publish).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname, resolve } from "node:path";
import { writeCharts } from "./_charts.ts";
import { generateToken } from "../src/protocol/mod.ts";
import { findPgBin, freePort, type PgCluster, startCluster, testDatabase } from "../tests/_pg.ts";
import { runExecBench } from "./exec_bench.ts";
import {
  type AgentCredentials,
  createStore,
  makeAgents,
  Operator,
  ROOT,
  startAgent,
  startDashboard,
  waitForWaiting,
} from "./_dashboard.ts";
import { Inspector } from "./_inspector.ts";
import { startWaiters, stopWaiters } from "./_load.ts";
import { FULL, type Phase, type Plan, QUICK, type Results, type RunOutcome } from "./_plan.ts";
import { baseEnv, type Child, Children, rssBytes, sampleUsage, sleep } from "./_proc.ts";
import { ensureRedis, type RedisBinary, startRedis } from "./_redis.ts";
import { measurePostgresWake } from "./_postgres.ts";
import { ActivityMonitor, render } from "./_report.ts";
import { infoField, RespConnection } from "./_resp.ts";
import { count } from "./_stats.ts";
import { measureAgentThroughput, measureDashboardThroughput } from "./throughput_bench.ts";
import { measureRedisWake, measureStatusWake } from "./wake_bench.ts";

function say(message: string): void {
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

/** Profiles of the dashboard, when `--profile <dir>` is given. */
class Profiles {
  constructor(readonly inspector: Inspector, readonly dir: string) {}

  /**
   * Runs `fn` under the CPU profiler and the allocation sampler, and writes `<name>.cpuprofile`
   * and `<name>.heapprofile`.
   */
  async cpu<T>(name: string, fn: () => Promise<T>): Promise<T> {
    await this.inspector.startCpuProfile();
    await this.inspector.startAllocationSampling();
    try {
      return await fn();
    } finally {
      await this.inspector.stopAllocationSampling(`${this.dir}/${name}.heapprofile`);
      await this.inspector.stopCpuProfile(`${this.dir}/${name}.cpuprofile`);
    }
  }

  /** Writes `<name>.heapsnapshot` (after a full GC) and returns the heap's used size. */
  async heap(name: string): Promise<number> {
    await this.inspector.heapSnapshot(`${this.dir}/${name}.heapsnapshot`);
    return (await this.inspector.heapUsage()).usedSize;
  }
}

/** The agents of a run, made up front with their tokens. */
interface Fleet {
  /** The load generator's waiting agents. */
  waiters: AgentCredentials[];
  /** The same, as the JSON file the load generator reads. */
  waitersFile: string;
  /** The agent whose wake-ups are measured. */
  probe: AgentCredentials;
  /** The real agent process whose idle CPU is measured. */
  idleAgent: AgentCredentials;
  /** One group of agent processes per throughput run. */
  throughput: AgentCredentials[][];
  /** The simulated agents of the dashboard-alone throughput, and their file. */
  sim: AgentCredentials[];
  simFile: string;
}

/** What every phase of a run shares. */
interface Run {
  plan: Plan;
  results: Results;
  monitor: ActivityMonitor;
  children: Children;
  /** The run's temporary directory: store, logs, agents files. */
  dir: string;
  fleet: Fleet;
  profiles?: Profiles;
}

/** The running dashboard under test. */
interface Dash {
  url: string;
  pid: number;
  adminToken: string;
  operator: Operator;
}

/** Runs one phase; a failure is recorded and the run goes on. */
async function phase(run: Run, name: string, fn: () => Promise<void>): Promise<void> {
  run.monitor.sample();
  say(name);
  try {
    await fn();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    say(`${name} failed: ${message}`);
    run.results.errors.push(`${name}: ${message}`);
  }
  run.monitor.sample();
}

/** Runs `fn` under the CPU profiler when profiling. */
function maybeCpu<T>(run: Run, name: string, fn: () => Promise<T>): Promise<T> {
  return run.profiles ? run.profiles.cpu(name, fn) : fn();
}

async function makeFleet(plan: Plan, dir: string): Promise<Fleet> {
  const counts = [
    ...plan.waiting,
    ...plan.idleWaiting,
    ...(plan.phases.has("pg-instances") ? plan.pgWaiting : []),
  ];
  const fleet: Fleet = {
    waiters: makeAgents("w", Math.max(...counts)),
    waitersFile: `${dir}/waiters.json`,
    probe: makeAgents("probe", 1)[0],
    idleAgent: makeAgents("idle", 1)[0],
    throughput: plan.throughput.map((t) => makeAgents(`tp${t.agents}`, t.agents)),
    sim: makeAgents("sim", Math.max(...plan.simAgents)),
    simFile: `${dir}/sim.json`,
  };
  const all = [fleet.waiters, [fleet.probe, fleet.idleAgent], ...fleet.throughput, fleet.sim];
  say(`creating ${count(all.flat().length)} agents with tokens in ${dir}/status.db`);
  await createStore(`${dir}/status.db`, all.flat());
  await Deno.writeTextFile(fleet.waitersFile, JSON.stringify(fleet.waiters));
  await Deno.writeTextFile(fleet.simFile, JSON.stringify(fleet.sim));
  return fleet;
}

/**
 * Runs `fn` while the load generator holds `n` waits on the dashboard (or floor server) at `url`,
 * then stops it and, with `drain`, waits until the server counts no open wait.
 */
async function holdingWaits(
  run: Run,
  target: { url: string; operator: Operator; drain: boolean },
  n: number,
  logName: string,
  fn: (load: Child) => Promise<void>,
): Promise<void> {
  const load = await startWaiters(
    run.children,
    {
      kind: "http",
      url: target.url,
      agentsFile: run.fleet.waitersFile,
      timeoutSecs: run.plan.waitTimeoutSecs,
    },
    n,
    `${run.dir}/${logName}.log`,
  );
  try {
    await waitForWaiting(target.operator, n, 120_000);
    await fn(load);
  } finally {
    await stopWaiters(load);
    const deadline = Date.now() + 30_000;
    while (
      target.drain && (await target.operator.waiting()) > 0 && Date.now() < deadline
    ) await sleep(100);
  }
}

/** Wake-up latency and idle cost on the dashboard, for every N of the plan. */
async function statusPhases(run: Run, dash: Dash): Promise<void> {
  const { plan, fleet } = run;
  const counts = [...new Set([...plan.waiting, ...plan.idleWaiting])].sort((a, b) => a - b);
  for (const n of counts) {
    await phase(run, `status serve with ${count(n)} agents waiting`, async () => {
      const target = { url: dash.url, operator: dash.operator, drain: true };
      await holdingWaits(run, target, n, `load-${n}`, async (load) => {
        if (plan.idleWaiting.includes(n)) {
          const withAgent = n === plan.idleWaiting[0] ? fleet.idleAgent : undefined;
          await measureIdle(run, dash, { n, loadPid: load.pid, withAgent });
        }
        if (plan.waiting.includes(n)) {
          say(`wake-up latency, ${plan.samples} samples, ${count(n)} waiting`);
          const options = { waiting: n, samples: plan.samples, warmup: plan.warmup };
          const rss = rssBytes(dash.pid);
          const wake = await maybeCpu(
            run,
            `wake-${n}`,
            () => measureStatusWake(dash.url, dash.adminToken, fleet.probe, options),
          );
          run.results.statusWake.push({ ...wake, rssBytes: rss });
        }
      });
    });
  }
  // A reconnect wave: the largest idle N again, now that every earlier phase's agents have left.
  if (plan.idleWaiting.length === 0) return;
  const n = Math.max(...plan.idleWaiting);
  const after = counts[counts.length - 1];
  await phase(run, `status serve with ${count(n)} agents waiting again`, async () => {
    const target = { url: dash.url, operator: dash.operator, drain: true };
    await holdingWaits(run, target, n, `load-again-${n}`, async () => {
      await sleep(plan.quick ? 1000 : 5000);
      say(`window of ${plan.idleSecs} s with ${count(n)} waiting again`);
      const usage = await sampleUsage({ dashboard: dash.pid }, plan.idleSecs * 1000);
      run.results.rewave = { waiting: n, after, dashboard: usage.dashboard };
    });
  });
}

/** One idle window: CPU and memory of the dashboard, the load generator and maybe an agent. */
async function measureIdle(
  run: Run,
  dash: Dash,
  options: { n: number; loadPid: number; withAgent?: AgentCredentials },
): Promise<void> {
  const { plan, results } = run;
  const pids: Record<string, number> = { dashboard: dash.pid, loadGenerator: options.loadPid };
  const stateDir = `${run.dir}/idle-agent`;
  await Deno.mkdir(stateDir, { recursive: true });
  const agent = options.withAgent
    ? startAgent(run.children, {
      url: dash.url,
      agent: options.withAgent,
      stateDir,
      logFile: `${run.dir}/idle-agent.log`,
    })
    : undefined;
  try {
    if (agent) {
      await waitForWaiting(dash.operator, options.n + 1, 60_000);
      pids.agent = agent.pid;
    }
    // Let start-up work (module loading, the first heartbeat) settle before the window.
    await sleep(plan.quick ? 1000 : 5000);
    say(`idle window of ${plan.idleSecs} s with ${count(options.n)} waiting`);
    const usage = await maybeCpu(
      run,
      `idle-${options.n}`,
      () => sampleUsage(pids, plan.idleSecs * 1000),
    );
    if (run.profiles) {
      const bytes = await run.profiles.heap(`heap-${options.n}`);
      results.heapBytes.push({ waiting: options.n, bytes });
    }
    results.idle.push({
      waiting: options.n,
      dashboard: usage.dashboard,
      loadGenerator: usage.loadGenerator,
      agent: usage.agent,
    });
  } finally {
    await agent?.stop(10_000);
  }
}

/**
 * The platform floor at the largest idle N: a bare `Deno.serve` with a timer per wait, then with
 * one sweep a second, then a bare `node:http` server (the dashboard's HTTP layer) with one sweep.
 */
async function floorPhases(run: Run): Promise<void> {
  const n = Math.max(...run.plan.idleWaiting);
  const variants = [
    { platform: "Deno.serve", coalesced: false },
    { platform: "Deno.serve", coalesced: true },
    { platform: "node:http", coalesced: true },
  ] as const;
  for (const { platform, coalesced } of variants) {
    const timeouts = coalesced ? "one sweep a second" : "a timer per wait";
    await phase(
      run,
      `platform floor: bare ${platform}, ${count(n)} waiting, ${timeouts}`,
      async () => {
        const server = run.children.spawn("floor server", [
          Deno.execPath(),
          "run",
          "--quiet",
          "--allow-net",
          `--allow-write=${run.dir}`,
          `${ROOT}/bench/floor_server.ts`,
          `--sync-file=${run.dir}/floor-writes.log`,
          ...(coalesced ? ["--coalesce"] : []),
          ...(platform === "node:http" ? ["--node"] : []),
        ], { env: baseEnv(), logFile: `${run.dir}/floor.log`, readStdout: true });
        try {
          const line = await server.lines!.take(/listening on/, 30_000);
          const url = /http:\/\/[\d.]+:\d+/.exec(line)![0];
          await sleep(1000);
          const startRssBytes = rssBytes(server.pid);
          using health = await Operator.open(url, "unused");
          const target = { url, operator: health, drain: false };
          await holdingWaits(run, target, n, "load-floor", async () => {
            await sleep(run.plan.quick ? 1000 : 5000);
            const usage = await sampleUsage({ floor: server.pid }, run.plan.idleSecs * 1000);
            // Then the wake-up floor, with the same client as the dashboard's: one durable write
            // and two HTTP exchanges, nothing else.
            const wake = coalesced
              ? await measureStatusWake(url, "unused", run.fleet.probe, {
                waiting: n,
                samples: run.plan.samples,
                warmup: run.plan.warmup,
              })
              : undefined;
            run.results.floor.push({
              waiting: n,
              platform,
              coalesced,
              startRssBytes,
              usage: usage.floor,
              wakeMs: wake?.latencyMs,
            });
          });
        } finally {
          await server.stop();
        }
      },
    );
  }
}

/**
 * `pg-instances`: two `status serve` instances on one PostgreSQL database (a throw-away cluster
 * with PostgreSQL's default durability): wake-up latency with the enqueue on the waiting agent's
 * instance and on the other one, for every N of `pgWaiting`, then the dashboard-alone throughput
 * on one instance. Not the `postgres` anchor (raw `INSERT` + `NOTIFY` → `LISTEN`).
 */
async function pgInstancesPhases(run: Run): Promise<void> {
  const { plan, fleet, results } = run;
  if (findPgBin() === null) {
    results.pgInstancesNote = "skipped: no PostgreSQL binaries in /usr/lib/postgresql/*/bin";
    return;
  }
  let cluster: PgCluster | undefined;
  try {
    await phase(run, "status serve on PostgreSQL: two instances on one database", async () => {
      cluster = await startCluster({ durable: true });
      const db = await testDatabase(cluster);
      const agents = [...fleet.waiters.slice(0, Math.max(...plan.pgWaiting)), fleet.probe];
      say(`creating ${count(agents.length + fleet.sim.length)} agents in PostgreSQL`);
      await createStore(db.url, [...agents, ...fleet.sim]);
      const adminToken = generateToken();
      const start = (name: string) =>
        startDashboard(run.children, {
          db: db.url,
          adminToken,
          cwd: run.dir,
          logFile: `${run.dir}/serve-pg-${name}.log`,
        });
      const [a, b] = [await start("a"), await start("b")];
      try {
        using operator = await Operator.open(a.url, adminToken);
        for (const n of plan.pgWaiting) {
          const target = { url: a.url, operator, drain: true };
          await holdingWaits(run, target, n, `load-pg-${n}`, async () => {
            for (const other of [false, true]) {
              const where = other ? "other instance" : "same instance";
              say(`PostgreSQL wake-up latency, enqueue on the ${where}, ${count(n)} waiting`);
              const wake = await measureStatusWake(a.url, adminToken, fleet.probe, {
                waiting: n,
                samples: plan.samples,
                warmup: plan.warmup,
                enqueueUrl: other ? b.url : undefined,
              });
              results.pgInstancesWake.push({
                ...wake,
                setup: { store: "postgres", enqueue: where },
              });
            }
          });
        }
        for (const agents of plan.simAgents) {
          say(`PostgreSQL: dashboard alone, ${agents} simulated agents`);
          const throughput = await measureDashboardThroughput(run.children, {
            url: a.url,
            adminToken,
            dashboardPid: a.child.pid,
            agentsFile: fleet.simFile,
            agents,
            warmupSecs: plan.simWarmupSecs,
            durationSecs: plan.simDurationSecs,
            logFile: `${run.dir}/sim-pg-${agents}.log`,
          });
          results.pgInstancesThroughput.push({
            ...throughput,
            name: `${throughput.name}, PostgreSQL`,
          });
        }
      } finally {
        await a.child.stop();
        await b.child.stop();
      }
    });
  } finally {
    await cluster?.destroy();
  }
}

/**
 * Wake-up latency on Redis for every N of the plan: first with nothing kept (the floor), then
 * durable (`appendonly yes`, `appendfsync always`), the like of our `202`.
 */
async function redisPhases(run: Run, binary: RedisBinary & { ok: true }): Promise<void> {
  for (const durable of [false, true]) {
    const label = durable ? "durable " : "";
    await phase(run, `${label}redis-server ${binary.version}`, async () => {
      const port = freePort();
      const maxClients = Math.max(...run.plan.waiting) + 100;
      const name = durable ? "redis-durable" : "redis";
      let durableDir: string | undefined;
      if (durable) {
        durableDir = `${run.dir}/redis-aof`;
        await Deno.mkdir(durableDir, { recursive: true });
      }
      const redis = await startRedis(
        run.children,
        binary.path,
        port,
        maxClients,
        `${run.dir}/${name}.log`,
        durableDir,
      );
      try {
        await redisWakes(run, port, durable);
      } finally {
        await redis.stop();
      }
    });
  }
}

/** `INSERT` committed + `NOTIFY` → one waiting `LISTEN` on a throwaway PostgreSQL cluster. */
async function postgresPhase(run: Run): Promise<void> {
  await phase(run, "postgres", async () => {
    await using cluster = await startCluster({ durable: true });
    say(`postgres INSERT + NOTIFY → LISTEN, ${run.plan.samples} samples`);
    run.results.postgresWake.push(
      await measurePostgresWake(cluster.port, {
        waiting: 1,
        samples: run.plan.samples,
        warmup: run.plan.warmup,
      }),
    );
  });
}

async function redisWakes(run: Run, port: number, durable: boolean): Promise<void> {
  const { plan } = run;
  const system = durable ? "redis-durable" : "redis";
  for (const n of plan.waiting) {
    const load = await startWaiters(
      run.children,
      { kind: "redis", port },
      n,
      `${run.dir}/load-${system}-${n}.log`,
    );
    try {
      await waitForBlocked(port, n, 60_000);
      say(`${system} wake-up latency, ${plan.samples} samples, ${count(n)} blocked`);
      const wake = await measureRedisWake(port, {
        waiting: n,
        samples: plan.samples,
        warmup: plan.warmup,
      });
      run.results.redisWake.push({ ...wake, system });
    } finally {
      await stopWaiters(load);
    }
  }
}

async function waitForBlocked(port: number, n: number, timeoutMs: number): Promise<void> {
  using conn = await RespConnection.open(port);
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const blocked = infoField(String(await conn.command("INFO", "clients")), "blocked_clients");
    if (blocked >= n) return;
    if (Date.now() > deadline) {
      throw new Error(`redis counts ${blocked} blocked clients after ${timeoutMs} ms, not ${n}`);
    }
    await sleep(100);
  }
}

/** Throughput with agent processes, then the dashboard alone with simulated agents. */
async function throughputPhases(run: Run, dash: Dash): Promise<void> {
  const { plan, fleet, results } = run;
  for (const [i, agents] of fleet.throughput.entries()) {
    await phase(run, `throughput with ${agents.length} agent process(es)`, async () => {
      results.throughput.push(
        await measureAgentThroughput(run.children, {
          url: dash.url,
          adminToken: dash.adminToken,
          dashboardPid: dash.pid,
          agents,
          commands: plan.throughput[i].commands,
          dir: `${run.dir}/tp${agents.length}`,
        }),
      );
    });
  }
  for (const agents of plan.simAgents) {
    await phase(run, `dashboard alone, ${agents} simulated agents`, async () => {
      results.throughput.push(
        await maybeCpu(run, `sim-${agents}`, () =>
          measureDashboardThroughput(run.children, {
            url: dash.url,
            adminToken: dash.adminToken,
            dashboardPid: dash.pid,
            agentsFile: fleet.simFile,
            agents,
            warmupSecs: plan.simWarmupSecs,
            durationSecs: plan.simDurationSecs,
            logFile: `${run.dir}/sim-${agents}.log`,
          })),
      );
    });
  }
}

/** The phases that need the dashboard, around one `status serve` process. */
async function dashboardPhases(
  run: Run,
  args: { serveArgs: string[]; denoArgs: string[] },
  profileDir?: string,
) {
  const adminToken = generateToken();
  const inspectPort = profileDir ? freePort() : undefined;
  const dashboard = await startDashboard(run.children, {
    db: `${run.dir}/status.db`,
    adminToken,
    cwd: run.dir,
    logFile: `${run.dir}/serve.log`,
    inspectPort,
    extraArgs: args.serveArgs,
    denoArgs: args.denoArgs,
  });
  say(`status serve listens on ${dashboard.url} (pid ${dashboard.child.pid})`);
  using operator = await Operator.open(dashboard.url, adminToken);
  const dash: Dash = { url: dashboard.url, pid: dashboard.child.pid, adminToken, operator };
  if (inspectPort && profileDir) {
    await Deno.mkdir(profileDir, { recursive: true });
    run.profiles = new Profiles(await Inspector.connect(inspectPort), profileDir);
  }
  try {
    await sleep(2000);
    run.results.baselineRssBytes = rssBytes(dash.pid);
    if (run.profiles) {
      run.results.heapBytes.push({ waiting: 0, bytes: await run.profiles.heap("heap-0") });
    }
    if (run.plan.phases.has("status")) await statusPhases(run, dash);
    if (run.plan.phases.has("throughput")) await throughputPhases(run, dash);
  } finally {
    run.profiles?.inspector[Symbol.dispose]();
    await dashboard.child.stop();
  }
}

async function runAll(
  plan: Plan,
  options: {
    install: boolean;
    redis: boolean;
    profileDir?: string;
    serveArgs: string[];
    denoArgs: string[];
  },
): Promise<RunOutcome> {
  const redisBinary: RedisBinary = options.redis && plan.phases.has("redis")
    ? ensureRedis(options.install)
    : { ok: false, reason: "skipped (--no-redis)" };
  const results: Results = {
    statusWake: [],
    redisWake: [],
    postgresWake: [],
    idle: [],
    floor: [],
    throughput: [],
    pgInstancesWake: [],
    pgInstancesThroughput: [],
    heapBytes: [],
    errors: [],
  };
  if (!redisBinary.ok) results.redisNote = redisBinary.reason;
  const postgres = plan.phases.has("postgres") && findPgBin() !== null;
  if (!postgres) {
    results.postgresNote = plan.phases.has("postgres")
      ? "PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin)"
      : "skipped (--only)";
  }
  const dir = await Deno.makeTempDir({ prefix: "status-bench-" });
  const children = new Children();
  const monitor = new ActivityMonitor(children);
  monitor.sample();
  const onSignal = () => {
    say("interrupted: stopping every child process");
    children.stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const run: Run = { plan, results, monitor, children, dir, fleet: await makeFleet(plan, dir) };
    if (plan.phases.has("status") || plan.phases.has("throughput")) {
      await dashboardPhases(run, options, options.profileDir);
    }
    if (plan.phases.has("pg-instances")) await pgInstancesPhases(run);
    if (plan.phases.has("floor")) await floorPhases(run);
    if (redisBinary.ok && plan.phases.has("redis")) await redisPhases(run, redisBinary);
    if (postgres) await postgresPhase(run);
    await children.stopAll();
    if (plan.phases.has("exec")) {
      await phase(run, "executor overhead", async () => {
        results.exec = await runExecBench({
          iterations: plan.execIterations,
          warmup: plan.execWarmup,
        });
      });
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    say(`the run failed: ${message}`);
    results.errors.push(`run: ${message}`);
  } finally {
    await children.stopAll();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  monitor.sample();
  return {
    results,
    redisVersion: redisBinary.ok ? redisBinary.version : "unavailable",
    activity: monitor.describe(),
    serveArgs: options.serveArgs,
    denoArgs: options.denoArgs,
  };
}

function parsePlan(values: {
  quick?: boolean;
  waiting?: string;
  "idle-waiting"?: string;
  "sim-agents"?: string;
  samples?: string;
  "idle-secs"?: string;
  only?: string;
}): Plan {
  const numbers = (text: string | undefined) =>
    text === undefined ? undefined : text.split(",").filter(Boolean).map(Number);
  const base = values.quick ? QUICK : FULL;
  const plan: Plan = {
    ...base,
    waiting: numbers(values.waiting) ?? base.waiting,
    idleWaiting: numbers(values["idle-waiting"]) ?? base.idleWaiting,
    simAgents: numbers(values["sim-agents"]) ?? base.simAgents,
    samples: Number(values.samples ?? base.samples),
    idleSecs: Number(values["idle-secs"] ?? base.idleSecs),
    phases: values.only === undefined
      ? base.phases
      : new Set(values.only.split(",").map((p) => p.trim()) as Phase[]),
  };
  for (
    const n of [
      ...plan.waiting,
      ...plan.idleWaiting,
      ...plan.simAgents,
      plan.samples,
      plan.idleSecs,
    ]
  ) {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(`counts, samples and seconds must be whole numbers above 0, got ${n}`);
    }
  }
  for (const name of plan.phases) {
    if (!FULL.phases.has(name)) {
      throw new RangeError(`--only takes ${[...FULL.phases].join(", ")}; got "${name}"`);
    }
  }
  return plan;
}

/** The flags, as the module documentation above describes them. */
const USAGE = `usage: deno task bench [--quick] [--out <file>] [--no-install] [--no-redis]
  [--only <status,floor,redis,postgres,throughput,exec,pg-instances>]
  [--waiting <N,...>] [--idle-waiting <N,...>] [--sim-agents <N,...>] [--samples <n>]
  [--idle-secs <s>] [--serve-args="<flags>"] [--deno-args="<flags>"] [--profile <dir>]
(the full run takes about 10 minutes and writes bench/RESULTS.md; see bench/run.ts)`;

/** The flags of a run, or a usage error (exit 2) naming what is wrong. */
function parseFlags(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        help: { type: "boolean", short: "h", default: false },
        quick: { type: "boolean", default: false },
        out: { type: "string" },
        "no-install": { type: "boolean", default: false },
        "no-redis": { type: "boolean", default: false },
        waiting: { type: "string" },
        "idle-waiting": { type: "string" },
        "sim-agents": { type: "string" },
        samples: { type: "string" },
        "idle-secs": { type: "string" },
        only: { type: "string" },
        profile: { type: "string" },
        "serve-args": { type: "string" },
        "deno-args": { type: "string" },
      },
    }).values;
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
}

if (import.meta.main) {
  const values = parseFlags(Deno.args);
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  let plan: ReturnType<typeof parsePlan>;
  try {
    plan = parsePlan(values);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  const out = values.out ?? `${ROOT}/bench/RESULTS.md`;
  const started = new Date();
  const t0 = performance.now();
  const outcome = await runAll(plan, {
    install: !values["no-install"],
    redis: !values["no-redis"],
    profileDir: values.profile,
    serveArgs: values["serve-args"]?.split(/\s+/).filter(Boolean) ?? [],
    denoArgs: values["deno-args"]?.split(/\s+/).filter(Boolean) ?? [],
  });
  const charts = await writeCharts(outcome.results, dirname(resolve(out)));
  const report = render(plan, outcome, started, (performance.now() - t0) / 1000, charts);
  await Deno.writeTextFile(out, report);
  console.log(report);
  say(`written to ${out}`);
  if (outcome.results.errors.length > 0) Deno.exitCode = 1;
}
