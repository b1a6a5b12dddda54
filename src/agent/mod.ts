/**
 * The agent: long-polls the dashboard, runs each delivered command at most once, reports its
 * result through a crash-safe outbox, sends a metrics heartbeat, and stops cleanly on a signal.
 *
 * - {@link runAgent} runs the poll loop until its signal aborts;
 * - {@link Journal} and {@link Outbox} keep the execution journal and the pending results;
 * - `DashboardClient` (`client.ts`) makes the signed requests of docs/protocol.md §1–2.
 *
 * @example Run an agent against a local dashboard until SIGTERM
 * ```ts ignore
 * import { runAgent } from "./mod.ts";
 *
 * const stop = new AbortController();
 * Deno.addSignalListener("SIGTERM", () => stop.abort());
 * const summary = await runAgent(
 *   { dashboardUrl: "http://localhost:5000", agentId: "web-1", stateDir: "./.status-state" },
 *   stop.signal,
 * );
 * console.log(`ran ${summary.commandsRun} commands`);
 * ```
 *
 * @module
 */
export { type AgentOptions, type AgentRunSummary, runAgent } from "./run_agent.ts";
export {
  Journal,
  type JournalEntry,
  type JournalOptions,
  type JournalState,
  summarizeReport,
} from "./journal.ts";
export { Outbox, type OutboxItem, type OutboxOptions } from "./outbox.ts";
export { type AgentState, openAgentState } from "./state.ts";
export { PollBackoff } from "./backoff.ts";
export type { Clock } from "./clock.ts";
export {
  createExecutor,
  type ExecOutcome,
  type ExecRequest,
  type Executor,
  type ExecutorOptions,
} from "./executor.ts";
export { type HeartbeatOptions, runHeartbeat } from "./heartbeat.ts";
export { type ChunkOutcome, OutputStreamer, type OutputStreamerOptions } from "./output_stream.ts";
export { AgentMetrics } from "./prom.ts";
export {
  type CpuTimes,
  defaultMetricsSources,
  type MetricsAvailability,
  MetricsCollector,
  type MetricsSample,
  type MetricsSources,
  parseDf,
  parseProcStat,
} from "./metrics.ts";
