/**
 * The operator side of the protocol: an HTTP client of the dashboard's operator endpoints
 * (enqueue, read, list, cancel, wait until final), the wire types it reads, the exit code a
 * finished command maps to, and human-readable renderings for the CLI.
 *
 * @example Enqueue and wait
 * ```ts ignore
 * import { exitCodeOf, OperatorClient } from "./mod.ts";
 *
 * const client = new OperatorClient({ dashboardUrl: "http://localhost:5000" });
 * const { id } = await client.enqueue({ agentId: "test-agent", name: "echo hi" });
 * const record = await client.waitForFinal(id, {
 *   onProgress: (r, ms) => console.error(r.status, ms),
 * });
 * console.log(record.result?.stdout, exitCodeOf(record));
 * ```
 *
 * @module
 */
export {
  type AddAgentOptions,
  type CancelAnswer,
  type CommandPage,
  type EnqueueOptions,
  type ListOptions,
  OperatorClient,
  operatorClientFromSettings,
  type OperatorClientOptions,
  OperatorError,
  type OperatorErrorKind,
  type WaitForFinalOptions,
} from "./client.ts";
export {
  type AddedAgent,
  type AgentRecord,
  type AgentToken,
  type CommandRecord,
  type EnqueueAnswer,
  EXIT_WAIT_TIMEOUT,
  exitCodeOf,
  isFinalStatus,
  type RemovedAgent,
  type RunningCommand,
  type StoredResult,
  type WireTime,
} from "./types.ts";
export {
  alignColumns,
  formatElapsed,
  formatProgress,
  formatRecord,
  formatTable,
  idWord,
  outputBytes,
  truncationNotes,
  unmarkedTruncationNote,
} from "./format.ts";
export {
  followCommand,
  type FollowHandlers,
  type FollowOptions,
  type FollowResult,
  parseServerSentEvents,
  type ServerSentEvent,
  type ServerSentEventOptions,
} from "./follow.ts";
export { checkHealth, type HealthCheck, type HealthOptions, type HealthReport } from "./health.ts";
export {
  cancelRun,
  createRun,
  getRun,
  listRuns,
  type ListRunsOptions,
  type RunAnswer,
  runEnded,
  waitForRun,
  type WaitForRunOptions,
} from "./run_client.ts";
