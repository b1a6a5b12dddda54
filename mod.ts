/**
 * `status`: a fleet command agent and the dashboard command queue it talks to.
 *
 * The same core the `status` CLI is built on, for use from Deno:
 *
 * - **Executor**: {@link runCommand} runs one command line without a shell, under an allowlist
 *   ({@link createPolicy}), a deadline (warn at 80 %, SIGTERM at 90 %, SIGKILL at 100 % to the
 *   whole process group) and bounded output capture.
 * - **Dashboard**: {@link startServer} listens with a durable SQLite {@link CommandStore}
 *   ({@link openSqliteStore}); {@link createApp} builds the HTTP app alone.
 * - **Agent**: {@link runAgent} long-polls a dashboard, runs what it is given, reports, and never
 *   loses a result or runs a command twice.
 * - **Operator**: {@link OperatorClient} enqueues commands and reads results.
 * - **Protocol**: request signing ({@link signedHeaders}, {@link signV2}) and wire types.
 *
 * @example Run a command through the executor
 * ```ts
 * import { createPolicy, runCommand } from "./mod.ts";
 *
 * const result = await runCommand("echo hello", {
 *   policy: createPolicy({ allowedPrograms: ["echo"] }),
 *   defaultTimeoutSecs: 10,
 * });
 * console.log(result.status, result.stdout); // "success" "hello\n"
 * ```
 *
 * @example A dashboard and an agent in one process
 * ```ts ignore
 * import { OperatorClient, runAgent, startServer } from "./mod.ts";
 *
 * await using server = await startServer({ port: 0, db: ":memory:" });
 * const stop = new AbortController();
 * const agent = runAgent({ dashboardUrl: server.url, agentId: "web-1" }, stop.signal);
 * const operator = new OperatorClient({ dashboardUrl: server.url });
 * const { id } = await operator.enqueue({ agentId: "web-1", name: "uname -a" });
 * console.log(await operator.waitForFinal(id));
 * stop.abort();
 * await agent;
 * ```
 *
 * @module
 */

export {
  type AcceptedCommand,
  Cell,
  type CgroupHome,
  type Checked,
  checkPolicy,
  type CheckPolicyOptions,
  type CommandOptions,
  CommandRunner,
  type CommandUser,
  createPolicy,
  type DeadlineWarning,
  DEFAULT_ALLOWED_PATH_PREFIXES,
  DEFAULT_ALLOWED_PROGRAMS,
  defaultPolicy,
  type EnvReader,
  type ExecPolicy,
  type ExecResult,
  type ExecResultWire,
  type ExecStatus,
  type ExitRecord,
  type KillMode,
  type LeftoverOutcome,
  type OutputCaptureOptions,
  parseCommandLine,
  type PolicyInput,
  type ProcessRecord,
  type ProgramRef,
  type ReportFields,
  runCommand,
  type RunnerOptions,
  type RunOptions,
  Sandbox,
  type SandboxOptions,
  type SignalRoute,
  type StartFailure,
  toReportFields,
} from "./src/exec/mod.ts";

export {
  type AppOptions,
  CancelWaiters,
  type CancelWaitRequest,
  type Clock as ServerClock,
  createApp,
  type DashboardApp,
  type HttpApp,
  type HttpListener,
  type RouteInfo,
  type RunningServer,
  RunScheduler,
  type RunSchedulerOptions,
  type ServeOptions,
  startServer,
  StoreAvailability,
  type StoreAvailabilityOptions,
  WaiterHub,
  type WaiterHubOptions,
  type WaitRequest,
} from "./src/server/mod.ts";

export {
  type AckOutcome,
  type AckRequest as StoreAckRequest,
  type AdvanceRunOutcome,
  AGENT_SCOPES,
  type AgentRecord,
  type AgentScope,
  type AgentSummary,
  type CancelOutcome,
  type CancelRunOutcome,
  type ClaimRequest,
  type CommandQuery,
  type CommandRecord,
  type CommandResult,
  type CommandStore,
  type CreateRunOutcome,
  type EnqueueOutcome,
  type ExpireOutcome,
  isSharedStore,
  type NewCommand,
  type NewRun,
  openSqliteStore,
  openStore,
  type OpenStoreOptions,
  type ReportInput,
  type ReportOutcome,
  type RunQuery,
  type RunRecord,
  type RunTargetRecord,
  type SharedStore,
  SqliteStore,
  type SqliteStoreOptions,
  StoreError,
  type StoreEvent,
  type StoreEventListener,
  type StoreSubscription,
  StoreUnavailableError,
} from "./src/store/mod.ts";
export {
  openPostgresStore,
  PostgresStore,
  type PostgresStoreOptions,
} from "./src/store/postgres.ts";

export {
  type AgentOptions,
  type AgentRunSummary,
  type AgentState,
  type Clock as AgentClock,
  type CpuTimes,
  createExecutor,
  type ExecOutcome,
  type ExecRequest,
  type Executor,
  type ExecutorOptions,
  type HeartbeatOptions,
  Journal,
  type JournalEntry,
  type JournalOptions,
  type JournalState,
  type MetricsAvailability,
  type MetricsSources,
  Outbox,
  type OutboxItem,
  type OutboxOptions,
  runAgent,
} from "./src/agent/mod.ts";

export {
  type AgentRecord as OperatorAgentRecord,
  type CancelAnswer,
  type CommandRecord as OperatorCommandRecord,
  type EnqueueAnswer,
  type EnqueueOptions,
  type ListOptions,
  OperatorClient,
  type OperatorClientOptions,
  OperatorError,
  type OperatorErrorKind,
  type StoredResult,
  type WaitForFinalOptions,
  type WireTime,
} from "./src/operator/mod.ts";

export {
  type AckRequest,
  canonicalStringV2,
  COMMAND_STATUSES,
  type CommandParams,
  type CommandStatus,
  type DeliveredCommand,
  type EnqueueRequest,
  type ExecResultBody,
  generateToken,
  HEADER,
  MAX_TTL_SECS,
  OUTPUT_ENCODINGS,
  type OutputEncoding,
  PATHS,
  PRIORITIES,
  type Priority,
  REPORT_STATUSES,
  type ReportRequest,
  type ReportStatus,
  signedHeaders,
  type SignedParts,
  type SignOptions,
  signV1,
  signV2,
} from "./src/protocol/mod.ts";

export {
  LOG_LEVELS,
  type LogFormat,
  type LoggingOptions,
  type LogLevel,
  type LogRecordView,
  setupLogging,
} from "./src/log/mod.ts";
export { ConfigError, UsageError } from "./src/errors.ts";
export { type Clock, FakeClock, systemClock, type TimerId } from "./src/clock.ts";

// Live output, event streams, metrics, the fleet view and health checks.
export {
  type AppendOutputOutcome,
  type HeartbeatInput,
  type OutputBounds,
  type OutputChunk,
  type OutputChunkInput,
  type OutputQuery,
  type OutputStream,
} from "./src/store/mod.ts";
export { CommandEvents, type MetricsRenderer } from "./src/server/mod.ts";
export {
  AgentMetrics,
  type ChunkOutcome,
  type MetricsSample,
  OutputStreamer,
  type OutputStreamerOptions,
} from "./src/agent/mod.ts";
export { type OnOutput, tapOutput } from "./src/exec/mod.ts";
export {
  checkHealth,
  followCommand,
  type FollowHandlers,
  type FollowOptions,
  type FollowResult,
  type HealthCheck,
  type HealthOptions,
  type HealthReport,
  parseServerSentEvents,
  type ServerSentEvent,
} from "./src/operator/mod.ts";
export {
  AGENT_INSTANCE_HEADER,
  fromBase64,
  type HeartbeatRequest,
  LIVE_PATHS,
  type OutputChunkRequest,
  type OutputStreamName,
  toBase64,
} from "./src/protocol/mod.ts";

export {
  formatLabels,
  type Labels,
  type MaxConcurrency,
  parseLabels,
  parseMaxConcurrency,
  resolveConcurrency,
  type RunAgentState,
  type RunAgentView,
  type RunRequest,
  type RunStatus,
  type RunTarget,
  type RunView,
} from "./src/protocol/runs.ts";
