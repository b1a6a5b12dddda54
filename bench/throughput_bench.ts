/**
 * Throughput: commands a second through the whole path (enqueue → the agent runs `true` → the
 * report is stored) with real `status agent` processes, and through the dashboard alone
 * (enqueue → deliver → ack → report, no process spawned) with simulated agents.
 *
 * @module
 */
import { type AgentCredentials, Operator, startAgent, waitForWaiting } from "./_dashboard.ts";
import { spawnLoadGenerator } from "./_load.ts";
import { type Children, procSample, sampleUsage, sleep } from "./_proc.ts";

/** Commands a second through one configuration. */
export interface ThroughputResult {
  /** What ran. */
  name: string;
  /** Agents (processes or simulated). */
  agents: number;
  /** Commands finished in the measured time. */
  commands: number;
  /** The measured time, in seconds. */
  seconds: number;
  /** Commands a second. */
  perSecond: number;
  /** Commands that did not end in `success`. */
  unsuccessful: number;
  /** The dashboard's CPU over the measured time, in percent of one core. */
  dashboardCpuPercent: number;
}

const FINAL = new Set([
  "success",
  "failed",
  "timeout",
  "killed",
  "rejected",
  "cancelled",
  "interrupted",
  "lost",
]);

/**
 * Enqueues `commands` × `true` round-robin for real agent processes and times until every result
 * is stored: from the first enqueue to the latest `reported_at` the dashboard recorded.
 *
 * @param children Where the agent processes are registered.
 * @param options Dashboard, agents, how many commands, and where state and logs go.
 * @returns Commands a second.
 */
export async function measureAgentThroughput(
  children: Children,
  options: {
    url: string;
    adminToken: string;
    dashboardPid: number;
    agents: readonly AgentCredentials[];
    commands: number;
    dir: string;
    timeoutMs?: number;
  },
): Promise<ThroughputResult> {
  const { url, agents } = options;
  using operator = await Operator.open(url, options.adminToken);
  const before = await operator.waiting();
  const processes = [];
  for (const agent of agents) {
    const stateDir = `${options.dir}/${agent.id}`;
    await Deno.mkdir(stateDir, { recursive: true });
    processes.push(
      startAgent(children, { url, agent, stateDir, logFile: `${options.dir}/${agent.id}.log` }),
    );
  }
  try {
    await waitForWaiting(operator, before + agents.length, 60_000);
    const enqueuers = Math.min(4, options.commands);
    let next = 0;
    const cpuBefore = procSample(options.dashboardPid).cpuSeconds;
    const started = Date.now();
    await Promise.all(Array.from({ length: enqueuers }, async () => {
      using client = await Operator.open(url, options.adminToken);
      while (next < options.commands) {
        const n = next++;
        await client.enqueue(agents[n % agents.length].id, `tp${agents.length}-${n}`, "true");
      }
    }));
    const deadline = Date.now() + (options.timeoutMs ?? 300_000);
    while (true) {
      let done = 0;
      let unsuccessful = 0;
      let last = started;
      for (const agent of agents) {
        for (const command of await operator.commands(agent.id)) {
          if (!FINAL.has(String(command.status))) continue;
          done++;
          if (command.status !== "success") unsuccessful++;
          const reported = Date.parse(String(command.reported_at ?? command.completed_at));
          if (Number.isFinite(reported)) last = Math.max(last, reported);
        }
      }
      if (done >= options.commands) {
        const cpuSeconds = procSample(options.dashboardPid).cpuSeconds - cpuBefore;
        const seconds = (last - started) / 1000;
        return {
          name: `${agents.length} agent${agents.length === 1 ? "" : "s"}, run \`true\``,
          agents: agents.length,
          commands: done,
          seconds,
          perSecond: done / seconds,
          unsuccessful,
          // Up to the check that saw the last result: a little past the measured time.
          dashboardCpuPercent: (cpuSeconds / ((Date.now() - started) / 1000)) * 100,
        };
      }
      if (Date.now() > deadline) {
        throw new Error(`only ${done} of ${options.commands} commands finished in time`);
      }
      await sleep(250);
    }
  } finally {
    await Promise.all(processes.map((child) => child.stop(10_000)));
  }
}

/**
 * Runs the load generator's `sim` mode: simulated agents doing wait → ack → report with an
 * operator enqueueing for them, and counts the reports stored a second.
 *
 * @param children Where the load generator is registered.
 * @param options Dashboard, the agents file, how many agents, the window and the log file.
 * @returns Commands a second.
 */
export async function measureDashboardThroughput(
  children: Children,
  options: {
    url: string;
    adminToken: string;
    dashboardPid: number;
    agentsFile: string;
    agents: number;
    warmupSecs: number;
    durationSecs: number;
    logFile: string;
  },
): Promise<ThroughputResult> {
  const child = spawnLoadGenerator(children, "load generator (sim)", [
    "--mode",
    "sim",
    "--url",
    options.url,
    "--agents",
    options.agentsFile,
    "--count",
    String(options.agents),
    "--warmup-secs",
    String(options.warmupSecs),
    "--duration-secs",
    String(options.durationSecs),
  ], { logFile: options.logFile, env: { STATUS_ADMIN_TOKEN: options.adminToken } });
  try {
    const timeoutMs = (options.warmupSecs + options.durationSecs + 60) * 1000;
    await child.lines!.take(/"event":"ready"/, 60_000);
    await sleep(options.warmupSecs * 1000);
    const usage = await sampleUsage(
      { dashboard: options.dashboardPid },
      options.durationSecs * 1000,
      options.durationSecs * 1000,
    );
    const line = await child.lines!.take(/"event":"result"/, timeoutMs);
    const result = JSON.parse(line) as { reports: number; seconds: number; errors: number };
    return {
      name: `dashboard alone, ${options.agents} simulated agents`,
      agents: options.agents,
      commands: result.reports,
      seconds: result.seconds,
      perSecond: result.reports / result.seconds,
      unsuccessful: result.errors,
      dashboardCpuPercent: usage.dashboard.cpuPercent,
    };
  } finally {
    await child.closeStdin();
    await child.stop();
  }
}
