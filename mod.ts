/**
 * `status`: a fleet command agent and the dashboard command queue it talks to.
 *
 * The same core the `status` CLI is built on, for use from Deno. This module exports what a
 * program embedding it needs, and nothing of how it is built:
 *
 * - **Executor**: {@link runCommand} runs one command line without a shell, under an allowlist
 *   ({@link createPolicy}, {@link defaultPolicy}), a deadline (warn at 80 %, SIGTERM at 90 %,
 *   SIGKILL at 100 % to the whole process group) and bounded output capture; a {@link Sandbox}
 *   confines it as the agent does.
 * - **Agent**: {@link runAgent} long-polls a dashboard, runs what it is given, reports, and never
 *   loses a result or runs a command twice.
 * - **Dashboard**: {@link startServer} serves the command queue on SQLite (a file, or
 *   `":memory:"`) or on PostgreSQL (a `postgres://` URL shared by several instances); when its
 *   store cannot be opened, the {@link ConfigError}'s `cause` is a {@link StoreError}
 *   ({@link StoreUnavailableError}: try again later; {@link StoreFullError}: free space).
 * - **Operator**: {@link OperatorClient} enqueues commands, reads and cancels them, and adds,
 *   rotates and removes agents; {@link followCommand} streams a command's output as it runs;
 *   {@link createRun} fans a command out to many agents ({@link waitForRun}, {@link cancelRun});
 *   {@link checkHealth} probes a dashboard.
 * - **Protocol**: the wire types (docs/protocol.md), the paths and headers, and request signing
 *   ({@link signedHeaders}, {@link signV2}, {@link canonicalStringV2}, {@link generateToken}).
 *
 * @example Run a command through the executor
 * ```ts
 * import assert from "node:assert/strict";
 * import { createPolicy, runCommand } from "./mod.ts";
 *
 * const result = await runCommand("echo hello", {
 *   policy: createPolicy({ allowedPrograms: ["echo"] }),
 *   defaultTimeoutSecs: 10,
 * });
 * assert.equal(result.status, "success");
 * assert.equal(result.stdout, "hello\n");
 * ```
 *
 * @example A dashboard and an agent in one process
 * ```ts
 * import assert from "node:assert/strict";
 * import { OperatorClient, runAgent, startServer } from "./mod.ts";
 *
 * await using server = await startServer({ port: 0, db: ":memory:" });
 * const stop = new AbortController();
 * const agent = runAgent(
 *   { dashboardUrl: server.url, agentId: "web-1", heartbeat: false },
 *   stop.signal,
 * );
 * const operator = new OperatorClient({ dashboardUrl: server.url });
 * const { id } = await operator.enqueue({ agentId: "web-1", name: "echo hi" });
 * const done = await operator.waitForFinal(id);
 * assert.equal(done.result?.stdout, "hi\n");
 * stop.abort();
 * await agent;
 * ```
 *
 * @module
 */

// The executor.
export {
  type CommandOptions,
  CommandRunner,
  type CommandUser,
  createPolicy,
  type DeadlineWarning,
  DEFAULT_ALLOWED_PATH_PREFIXES,
  DEFAULT_ALLOWED_PROGRAMS,
  defaultPolicy,
  type ExecPolicy,
  type ExecResult,
  type ExecStatus,
  type KillMode,
  type OnOutput,
  type PolicyInput,
  runCommand,
  type RunnerOptions,
  type RunOptions,
  Sandbox,
  type SandboxOptions,
  type StartFailure,
} from "./src/exec/mod.ts";

// The agent.
export {
  type AgentOptions,
  type AgentRunSummary,
  type ExecutorOptions,
  runAgent,
} from "./src/agent/mod.ts";

// The dashboard.
export {
  type AppOptions,
  type RunningServer,
  type ServeOptions,
  startServer,
} from "./src/server/mod.ts";
export { ConfigError } from "./src/errors.ts";
export { StoreError, StoreFullError, StoreUnavailableError } from "./src/store/errors.ts";

// An operator's side.
export {
  type AddAgentOptions,
  type AddedAgent,
  type AgentRecord,
  type AgentToken,
  type CancelAnswer,
  cancelRun,
  checkHealth,
  type CommandPage,
  type CommandRecord,
  createRun,
  type EnqueueAnswer,
  type EnqueueOptions,
  followCommand,
  type FollowHandlers,
  type FollowOptions,
  type FollowResult,
  getRun,
  type HealthCheck,
  type HealthOptions,
  type HealthReport,
  type ListOptions,
  listRuns,
  type ListRunsOptions,
  OperatorClient,
  type OperatorClientOptions,
  OperatorError,
  type OperatorErrorKind,
  type RemovedAgent,
  type RunAnswer,
  runEnded,
  type RunningCommand,
  type StoredResult,
  type WaitForFinalOptions,
  waitForRun,
  type WaitForRunOptions,
  type WireTime,
} from "./src/operator/mod.ts";

// The wire: types, paths, headers and signing.
export {
  type AckRequest,
  AGENT_INSTANCE_HEADER,
  type AgentScope,
  canonicalStringV2,
  COMMAND_STATUSES,
  type CommandParams,
  type CommandStatus,
  type DeliveredCommand,
  type EnqueueRequest,
  type ExecResultBody,
  generateToken,
  HEADER,
  type HeartbeatRequest,
  type Labels,
  LIVE_PATHS,
  MAX_TTL_SECS,
  type MaxConcurrency,
  OUTPUT_ENCODINGS,
  type OutputChunkRequest,
  type OutputEncoding,
  type OutputStreamName,
  PATHS,
  PRIORITIES,
  type Priority,
  REPORT_STATUSES,
  type ReportRequest,
  type ReportStatus,
  RUN_PATHS,
  type RunAgentState,
  type RunAgentView,
  type RunRequest,
  type RunStatus,
  type RunTarget,
  type RunView,
  signedHeaders,
  type SignedParts,
  type SignOptions,
  signV2,
} from "./src/protocol/mod.ts";
