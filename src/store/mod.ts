/**
 * The dashboard's store: the {@link CommandStore} interface and its embedded default on
 * `node:sqlite` ({@link openSqliteStore}). Every implementation passes the contract suite in
 * `tests/store/contract.ts`.
 *
 * @example Open a store, add an agent and enqueue a command
 * ```ts
 * import assert from "node:assert/strict";
 * import { AGENT_SCOPES, openSqliteStore } from "./mod.ts";
 *
 * await using store = openSqliteStore(":memory:");
 * const now = Date.now();
 * await store.addAgent({ id: "web-1", token: "t".repeat(43), scopes: AGENT_SCOPES, now });
 * const { outcome } = await store.enqueue({
 *   id: "cmd-001",
 *   agentId: "web-1",
 *   name: "echo hi",
 *   params: {},
 *   fingerprint: "f",
 *   now,
 * });
 * assert.equal(outcome, "created");
 * ```
 *
 * @module
 */
export {
  type AckOutcome,
  type AckRequest,
  AGENT_SCOPES,
  type AgentPage,
  type AgentRecord,
  type AgentScope,
  type AgentSeen,
  type AgentSummary,
  type AppendOutputOutcome,
  type CancelOutcome,
  type ClaimRequest,
  type CommandQuery,
  type CommandRecord,
  type CommandResult,
  type CommandStore,
  type EndCause,
  type EnqueueOutcome,
  type ExpireOutcome,
  type HeartbeatInput,
  isRequestIdJournal,
  isSharedStore,
  isWatchedFileStore,
  type KeptRequestId,
  type NewCommand,
  type OutputBounds,
  type OutputChunk,
  type OutputChunkInput,
  type OutputQuery,
  type OutputStream,
  type PruneCommandsOutcome,
  type PruneOutputOutcome,
  type RemovedAgent,
  type ReportInput,
  type ReportOutcome,
  type RequestIdJournal,
  type SharedStore,
  type StoreEvent,
  type StoreEventListener,
  type StorePing,
  type StoreSubscription,
  type WatchedFileStore,
} from "./types.ts";
export type {
  AdvanceRunOutcome,
  CancelRunOutcome,
  CreateRunOutcome,
  NewRun,
  RunCommandState,
  RunQuery,
  RunRecord,
  RunState,
  RunStepOutcome,
  RunSummary,
  RunTargetGroup,
  RunTargetOfCommand,
  RunTargetRecord,
  RunTargetState,
} from "./types.ts";
export {
  runCommandId,
  runStatus,
  runTotals,
  targetFailed,
  targetFinal,
  targetState,
} from "./runs.ts";
export { openSqliteStore, SqliteStore, type SqliteStoreOptions } from "./sqlite.ts";
export { StoreError, StoreFullError, StoreUnavailableError } from "./errors.ts";
export { redactUrl } from "./url.ts";
export { openStore, type OpenStoreOptions } from "./open.ts";
