/**
 * The `CommandStore` interface: what the dashboard keeps about agents, commands and results, and
 * the state transitions of docs/protocol.md §4 as single atomic operations.
 *
 * Every implementation must pass the contract suite in `tests/store/contract.ts`.
 *
 * @module
 */
import type {
  CommandParams,
  CommandStatus,
  OutputEncoding,
  Priority,
  ReportStatus,
} from "../protocol/mod.ts";
import type { Labels, MaxConcurrency, RunTarget } from "../protocol/runs.ts";
import type { AgentScope } from "../protocol/schemas.ts";

// The scopes are part of the wire (docs/protocol.md §1); the store keeps them.
export { AGENT_SCOPES, type AgentScope } from "../protocol/schemas.ts";

/**
 * Extra time an execution lease grants beyond the command's own timeout, in seconds
 * (docs/protocol.md §4: `lease_expires_at = now + timeout_secs + 60 s`).
 */
export const EXECUTION_LEASE_GRACE_SECS = 60;

/** An agent known to the dashboard. */
export interface AgentRecord {
  /** The agent id. */
  id: string;
  /** The agent's token; `null` for an agent registered on first sight in dev mode. */
  token: string | null;
  /** Granted scopes. */
  scopes: AgentScope[];
  /** When it was added, in ms since the epoch. */
  createdAt: number;
  /** When it was last seen, in ms since the epoch; `null` if never. */
  lastSeenAt: number | null;
}

/** An agent's id and when it was last seen, as {@link CommandStore.listAgentsSeen} gives them. */
export type AgentSeen = Pick<AgentRecord, "id" | "lastSeenAt">;

/** An agent as listed: never its token. */
export interface AgentSummary extends Omit<AgentRecord, "token"> {
  /** Whether the agent has a token (dev-mode agents do not). */
  hasToken: boolean;
  /** How many of its commands are queued. */
  queued: number;
  /** The program version its last heartbeat named; `null` before any. */
  version: string | null;
  /** The deployment hash its last heartbeat named; `null` before any. */
  deploymentHash: string | null;
  /** The instance id (one per agent process) its last heartbeat named; `null` before any. */
  instanceId: string | null;
  /** The figures of its last heartbeat (the agent's metrics sample); `null` before any. */
  heartbeat: Record<string, unknown> | null;
  /** When its last heartbeat arrived, in ms since the epoch; `null` before any. */
  heartbeatAt: number | null;
  /** The labels its last heartbeat named (`AGENT_LABELS`); `{}` before any. */
  labels: Labels;
}

/** The result an agent reported for a command. */
export interface CommandResult {
  /** The reported status. */
  status: ReportStatus;
  /** The attempt the report named, if any. */
  attempt: number | null;
  /** Exit code, when the process exited. */
  exitCode: number | null;
  /** The signal that ended the process, if any. */
  signal: string | null;
  /** Run time in seconds. */
  durationSecs: number | null;
  /**
   * Captured standard output, exactly as reported: text (NUL bytes included), or base64 when
   * {@link CommandResult.stdoutEncoding} is `"base64"`.
   */
  stdout: string | null;
  /** Captured standard error, exactly as reported (see `stdout`). */
  stderr: string | null;
  /** How `stdout` is encoded; `null` when the report did not say (text). */
  stdoutEncoding: OutputEncoding | null;
  /** How `stderr` is encoded; `null` when the report did not say (text). */
  stderrEncoding: OutputEncoding | null;
  /** Bytes of standard output that were dropped. */
  stdoutTruncatedBytes: number | null;
  /** Bytes of standard error that were dropped. */
  stderrTruncatedBytes: number | null;
  /** Why the command failed without running to the end (rejected, interrupted, ...). */
  error: string | null;
  /** When it started, as the agent reported it. */
  startedAt: string | null;
  /** When it completed, as the agent reported it. */
  completedAt: string | null;
  /** When the dashboard recorded the report, in ms since the epoch. */
  reportedAt: number;
  /** Whether the full result object was present (`false` for a report carrying only an error). */
  hasOutput: boolean;
}

/** A command in the store. Times are in ms since the epoch. */
export interface CommandRecord {
  /** The command id. */
  id: string;
  /** The agent that runs it. */
  agentId: string;
  /** Only a wait on this deployment hash receives it; `null`: any wait of the agent. */
  deploymentHash: string | null;
  /** The command line. */
  name: string;
  /** The parameters as enqueued. */
  params: CommandParams;
  /** Delivery priority. */
  priority: Priority;
  /** Current status. */
  status: CommandStatus;
  /**
   * The current (or, when queued, the next) delivery attempt, from 1. A lease that ends without a
   * report puts the command back in the queue with `attempt + 1`.
   */
  attempt: number;
  /** The highest attempt that was handed to the agent; 0 when never delivered. */
  deliveredAttempt: number;
  /** End of the current delivery or execution lease; `null` when not delivered. */
  leaseExpiresAt: number | null;
  /** An operator asked to cancel it after it was delivered. */
  cancelRequested: boolean;
  /** Digest of what was enqueued (agent, name, params), for idempotent enqueue. */
  fingerprint: string;
  /** Enqueue order; larger is newer. */
  seq: number;
  /** When it was enqueued. */
  createdAt: number;
  /** When it was last delivered. */
  deliveredAt: number | null;
  /** When the current attempt was acked. */
  ackedAt: number | null;
  /** When it reached a final status on the dashboard. */
  completedAt: number | null;
  /**
   * Queue expiry: if the command is still `queued` at this time it becomes `expired`;
   * `null`: never.
   */
  expiresAt: number | null;
  /** When the record last changed. */
  updatedAt: number;
  /** The agent's report, once one is accepted. */
  result: CommandResult | null;
  /**
   * Why the dashboard ended it on an operator's decision that was not about this command:
   * `agent_removed` (its agent was removed while it was queued, delivered or running; it is
   * `cancelled`). `null` for every other end, while it is not final, and once a late report
   * replaced the dashboard's end ({@link CommandStore.report}).
   */
  endCause: EndCause | null;
}

/** Why the dashboard ended a command of its own accord ({@link CommandRecord.endCause}). */
export type EndCause = "agent_removed";

/** Outcome of {@link CommandStore.removeAgent} for an agent that existed. */
export interface RemovedAgent {
  /**
   * The agent's commands that were not final, now `cancelled` with
   * {@link CommandRecord.endCause} `agent_removed`, in enqueue order.
   */
  ended: CommandRecord[];
}

/** What {@link CommandStore.enqueue} stores. */
export interface NewCommand {
  /** The command id (the caller generates one when the client sent none). */
  id: string;
  /** The agent that should run it. */
  agentId: string;
  /** The command line. */
  name: string;
  /** The parameters; `priority` and `deployment_hash` are read from them. */
  params: CommandParams;
  /** Digest of the request body, compared on a repeated enqueue of the same id. */
  fingerprint: string;
  /** The current time. */
  now: number;
  /**
   * When the command expires if it is still queued then (ms since the epoch); absent or `null`:
   * never.
   */
  expiresAt?: number | null;
}

/** Outcome of {@link CommandStore.enqueue}. */
export type EnqueueOutcome =
  /**
   * Stored as a new queued command (`command` as it was inserted; `cancelled`: a part of a
   * cancelled run, see {@link CommandStore.enqueue}). With a claim,
   * `claimed` is the command claimed for the wait in the same transaction (normally the new one;
   * an older queued command first when one matches), or `null`.
   */
  | { outcome: "created"; command: CommandRecord; claimed?: CommandRecord | null }
  /** The id exists with the same fingerprint: nothing changed. */
  | { outcome: "duplicate"; command: CommandRecord }
  /** The id exists with another fingerprint (or another agent): nothing changed. */
  | { outcome: "conflict"; command: CommandRecord };

/** What {@link CommandStore.claimNext} claims. */
export interface ClaimRequest {
  /** The waiting agent. */
  agentId: string;
  /** The deployment hash of the wait. */
  deploymentHash: string;
  /** The current time. */
  now: number;
  /** Length of the delivery lease, in ms. */
  deliveryLeaseMs: number;
}

/** What {@link CommandStore.ack} acknowledges. */
export interface AckRequest {
  /** The command id. */
  commandId: string;
  /** The agent acking. */
  agentId: string;
  /** The attempt being acked. */
  attempt: number;
  /** The current time. */
  now: number;
  /** Timeout of a command whose params set none, in seconds (the execution lease adds 60 s). */
  defaultTimeoutSecs: number;
}

/** Outcome of {@link CommandStore.ack}. */
export type AckOutcome =
  /** The command is now `running` under its execution lease (also when acked before). */
  | { outcome: "acked"; command: CommandRecord }
  | { outcome: "not_found" }
  /** The command belongs to another agent. */
  | { outcome: "forbidden"; command: CommandRecord }
  /** The attempt is no longer current, or the command is not delivered. */
  | { outcome: "stale"; command: CommandRecord };

/** What {@link CommandStore.report} records. */
export interface ReportInput {
  /** The command id. */
  commandId: string;
  /** The reporting agent. */
  agentId: string;
  /** The attempt the report names, when it names one. */
  attempt: number | null;
  /** The final status. */
  status: ReportStatus;
  /** What running the command produced; `null` when it did not run. */
  result: {
    exitCode: number | null;
    signal: string | null;
    durationSecs: number;
    stdout: string;
    stderr: string;
    stdoutTruncatedBytes: number;
    stderrTruncatedBytes: number;
    /** `"base64"` when `stdout` holds base64; absent, `null` or `"utf-8"`: text. */
    stdoutEncoding?: OutputEncoding | null;
    /** `"base64"` when `stderr` holds base64; absent, `null` or `"utf-8"`: text. */
    stderrEncoding?: OutputEncoding | null;
  } | null;
  /** Why it failed without running to the end. */
  error: string | null;
  /** When it started, as the agent says. */
  startedAt: string | null;
  /** When it completed, as the agent says. */
  completedAt: string | null;
  /** The current time. */
  now: number;
}

/** Outcome of {@link CommandStore.report}. */
export type ReportOutcome =
  /** The result is recorded and the command is final. */
  | { outcome: "accepted"; command: CommandRecord }
  /** A result was recorded before; nothing changed (the first result wins). */
  | { outcome: "duplicate"; command: CommandRecord }
  | { outcome: "not_found" }
  /** The command belongs to another agent. */
  | { outcome: "forbidden"; command: CommandRecord }
  /** The report names an attempt that was never delivered. */
  | { outcome: "conflict"; command: CommandRecord; reason: string };

/** Outcome of {@link CommandStore.cancel}. */
export type CancelOutcome =
  /** It was queued and is now `cancelled`. */
  | { outcome: "cancelled"; command: CommandRecord }
  /** It is delivered or running: `cancelRequested` is set. */
  | { outcome: "requested"; command: CommandRecord }
  /** It is already final: nothing changed. */
  | { outcome: "final"; command: CommandRecord }
  | { outcome: "not_found" };

/** What {@link CommandStore.requeueExpired} changed. */
export interface ExpireOutcome {
  /** Commands put back in the queue with `attempt + 1`. */
  requeued: CommandRecord[];
  /** Commands that used their last attempt and are now `lost`. */
  lost: CommandRecord[];
  /** Commands whose cancel was requested: now `cancelled` instead of being redelivered. */
  cancelled: CommandRecord[];
  /** Queued commands whose queue expiry passed: now `expired`. */
  expired: CommandRecord[];
}

/** Filters of {@link CommandStore.listCommands}. */
export interface CommandQuery {
  /** Only this agent's commands. */
  agentId?: string;
  /** Only commands in this status. */
  status?: CommandStatus;
  /**
   * Only commands enqueued before the one of this {@link CommandRecord.seq}: the next page of a
   * list whose last command had it. Commands enqueued since that page are not in it, and none
   * listed on it comes again (a cursor, not an offset).
   */
  before?: number;
  /**
   * Read each command's result without its output: `stdout` and `stderr` are `null` (a list that
   * shows only how each command ended reads none of its output).
   *
   * @default false
   */
  withoutOutput?: boolean;
  /** At most this many, newest first. */
  limit: number;
}

/** A page of {@link CommandStore.listAgents}: the agents by id, after a cursor, up to a limit. */
export interface AgentPage {
  /** Only agents whose id sorts after this one (byte order, as JavaScript's `<` on ids). */
  after?: string;
  /** At most this many; none: every one. */
  limit?: number;
}

/** A command's output stream. */
export type OutputStream = "stdout" | "stderr";

/** How much live output the store keeps per command, attempt and stream. */
export interface OutputBounds {
  /** Bytes kept from the start of the stream (offsets below this). */
  headBytes: number;
  /** Bytes kept from the end of what has arrived. */
  tailBytes: number;
}

/** A chunk of a running command's output, as {@link CommandStore.appendOutput} receives it. */
export interface OutputChunkInput {
  /** The command id. */
  commandId: string;
  /** The delivery attempt that printed it. */
  attempt: number;
  /** Which stream. */
  stream: OutputStream;
  /** Byte offset of `data[0]` in the stream. */
  offset: number;
  /** The bytes. */
  data: Uint8Array;
  /** The current time. */
  now: number;
  /** What is kept: the head and the tail, everything between is dropped (and counted). */
  keep: OutputBounds;
}

/** Outcome of {@link CommandStore.appendOutput}. */
export type AppendOutputOutcome =
  /**
   * New bytes were stored (a part of the chunk already received is skipped). `gapBytes` bytes
   * between what had arrived and `offset` never came.
   */
  | { outcome: "stored"; seq: number; offset: number; bytes: number; gapBytes: number }
  /** Every byte of the chunk had arrived before: nothing changed (a retried chunk). */
  | { outcome: "duplicate" };

/** A stored chunk of live output. */
export interface OutputChunk {
  /** Store-wide order of arrival; larger is later. */
  seq: number;
  /** The command id. */
  commandId: string;
  /** The delivery attempt that printed it. */
  attempt: number;
  /** Which stream. */
  stream: OutputStream;
  /** Byte offset of `data[0]` in the stream. */
  offset: number;
  /** The bytes. */
  data: Uint8Array;
  /** When it was stored, in ms since the epoch. */
  createdAt: number;
}

/** Filters of {@link CommandStore.listOutput}. */
export interface OutputQuery {
  /** Only chunks with a larger `seq`. */
  afterSeq?: number;
  /** Only this attempt's chunks. */
  attempt?: number;
  /** At most this many, in `seq` order. */
  limit?: number;
}

/** What an agent's heartbeat tells the dashboard ({@link CommandStore.recordHeartbeat}). */
export interface HeartbeatInput {
  /** The agent's program version. */
  version: string | null;
  /** The deployment it serves. */
  deploymentHash: string | null;
  /** Its process's instance id. */
  instanceId: string | null;
  /** Its latest figures (CPU, memory, disk, load). */
  sample: Record<string, unknown> | null;
  /** Its labels (`AGENT_LABELS`); absent: unchanged. */
  labels?: Labels;
  /** The current time (also counts as seen). */
  now: number;
}

// -- fan-out runs (one command to a group of agents; see src/store/runs.ts)

/** One targeted agent of a run. */
export interface RunTargetRecord {
  /** Its place in the run (the order commands are started in), from 0. */
  position: number;
  /** The agent. */
  agentId: string;
  /** The id its command has (or will have): `<run id>:<agent id>`. */
  commandId: string;
  /** Whether the agent was offline when the run was created. */
  offlineAtCreation: boolean;
  /** When the run started its command (it may still have to be enqueued); `null`: not yet. */
  startedAt: number | null;
  /** When the run decided never to start it (errors, cancel); `null`: not skipped. */
  skippedAt: number | null;
  /**
   * The command, once it exists; its result's `stdout` and `stderr` hold only their start (about
   * the first 2,000 characters), enough for the first line a run shows: read it with
   * {@link CommandStore.getCommand} for all of it.
   */
  command: CommandRecord | null;
}

/**
 * What a step of a run reads of a target's command ({@link RunTargetState}): no more than the
 * rate control and the scheduler decide from.
 */
export interface RunCommandState {
  /** The command's status. */
  status: CommandStatus;
  /** An operator asked to cancel it. */
  cancelRequested: boolean;
  /**
   * When the command last changed (`CommandRecord.updatedAt`): any change a run shows moves it
   * (a report replacing the dashboard's guess may keep the status), live output does not.
   */
  updatedAt: number;
}

/**
 * A run's target as a step reads it ({@link CommandStore.stepRun}): a {@link RunTargetRecord}
 * whose command is its status and cancel flag alone (no result, no output).
 */
export interface RunTargetState extends Omit<RunTargetRecord, "command"> {
  /** The command's status and cancel flag, once it exists. */
  command: RunCommandState | null;
}

/**
 * A run's target found by its command id ({@link CommandStore.getRunTarget}), read as a step reads
 * it, with the run it belongs to.
 */
export interface RunTargetOfCommand extends RunTargetState {
  /** The run's id. */
  runId: string;
}

/**
 * A run as a step reads it ({@link CommandStore.stepRun}): its own fields, and its targets as
 * {@link RunTargetState}. A {@link RunRecord} is one too.
 */
export interface RunState extends Omit<RunRecord, "targets"> {
  /** The targets, in `position` order. */
  targets: RunTargetState[];
}

/** A run in the store. Times are in ms since the epoch. */
export interface RunRecord {
  /** The run id. */
  id: string;
  /** The command line of every command. */
  name: string;
  /** The params of every command. */
  params: CommandParams;
  /** The target as requested. */
  target: RunTarget;
  /** Digest of the request, for idempotent creation. */
  fingerprint: string;
  /** Commands running at once at most (resolved). */
  maxConcurrency: number;
  /** `max_concurrency` as requested; `null`: not given (all at once). */
  maxConcurrencySpec: MaxConcurrency | null;
  /** After more failures than this no command is started; `null`: never stop. */
  maxErrors: number | null;
  /** An operator cancelled the run. */
  cancelRequested: boolean;
  /** Creation order; larger is newer. */
  seq: number;
  /** When it was created. */
  createdAt: number;
  /** When every target was final (command final or skipped); `null` before. */
  completedAt: number | null;
  /** When it last changed. */
  updatedAt: number;
  /** The targets, in `position` order. */
  targets: RunTargetRecord[];
}

/**
 * Targets of one run alike in all that the run's status and totals depend on (skipped, started,
 * their command's status), and how many they are: {@link CommandStore.listRunSummaries} reads
 * these instead of the targets.
 */
export interface RunTargetGroup {
  /** The targets were skipped (never started). */
  skipped: boolean;
  /** The targets were started. */
  started: boolean;
  /** Their command's status; `null`: no command (yet). */
  status: CommandStatus | null;
  /** How many targets (at least 1). */
  count: number;
  /** The lowest position among them: totals name states in the order their first target comes. */
  first: number;
}

/** A run with its targets counted by group instead of read, as the list of runs shows it. */
export interface RunSummary extends Omit<RunRecord, "targets"> {
  /** The run's targets by group, in the order of their first target (`first`). */
  groups: RunTargetGroup[];
}

/** What {@link CommandStore.createRun} stores. */
export interface NewRun {
  /** The run id. */
  id: string;
  /** The command line. */
  name: string;
  /** The params of every command. */
  params: CommandParams;
  /** The target as requested. */
  target: RunTarget;
  /** Digest of the request. */
  fingerprint: string;
  /** Resolved concurrency (at least 1). */
  maxConcurrency: number;
  /** As requested. */
  maxConcurrencySpec: MaxConcurrency | null;
  /** The error budget; `null`: none. */
  maxErrors: number | null;
  /** The agents chosen, in order, each with its command id and whether it was offline. */
  targets: Array<{ agentId: string; commandId: string; offlineAtCreation: boolean }>;
  /** The current time. */
  now: number;
}

/** Outcome of {@link CommandStore.createRun}. */
export type CreateRunOutcome =
  | { outcome: "created"; run: RunRecord }
  /** The id exists with the same fingerprint: nothing changed. */
  | { outcome: "duplicate"; run: RunRecord }
  /** The id exists with another fingerprint: nothing changed. */
  | { outcome: "conflict"; run: RunRecord };

/** Outcome of {@link CommandStore.advanceRun}. */
export interface AdvanceRunOutcome {
  /** The run after the step. */
  run: RunRecord;
  /**
   * Targets that are started but whose command does not exist yet: the caller enqueues them
   * (ids are fixed, so an enqueue repeated after a crash is a duplicate).
   */
  toEnqueue: RunTargetRecord[];
}

/** Outcome of {@link CommandStore.stepRun}: {@link AdvanceRunOutcome} without output. */
export interface RunStepOutcome {
  /** The run after the step, its targets' commands as status and cancel flag. */
  run: RunState;
  /** As {@link AdvanceRunOutcome.toEnqueue}. */
  toEnqueue: RunTargetState[];
}

/** Outcome of {@link CommandStore.cancelRun}. */
export type CancelRunOutcome =
  /** The cancel is recorded; targets not started are skipped (also when cancelled before). */
  | { outcome: "cancelled"; run: RunRecord }
  /**
   * The run had ended: nothing changed. Or every target was final, the step that ends the run
   * not taken yet: the run is ended now (`completedAt`), not cancelled.
   */
  | { outcome: "final"; run: RunRecord }
  | { outcome: "not_found" };

/** What one call of {@link CommandStore.pruneCommands} deleted. */
export interface PruneCommandsOutcome {
  /** Commands deleted, each with its result and live output. */
  commands: number;
  /** Finished fan-out runs deleted, each with its targets. */
  runs: number;
  /** The call used its whole limit: more may be left to delete (call it again). */
  more: boolean;
}

/** What one call of {@link CommandStore.pruneOutput} deleted. */
export interface PruneOutputOutcome {
  /** Chunks of live output deleted. */
  chunks: number;
  /** The call used its whole limit: more may be left to delete (call it again). */
  more: boolean;
}

/** Filters of {@link CommandStore.listRuns}. */
export interface RunQuery {
  /** Only runs not completed. */
  open?: boolean;
  /** At most this many, newest first. */
  limit: number;
}

/**
 * Where the dashboard keeps agents, commands and results.
 *
 * Each method is one atomic step: two concurrent calls never see each other half done. Methods
 * return promises so that a networked implementation fits the same interface; the embedded SQLite
 * store completes each call synchronously inside one transaction.
 */
export interface CommandStore extends AsyncDisposable {
  // -- agents

  /**
   * Adds an agent.
   *
   * @returns `false` when an agent with this id exists (nothing changed).
   */
  addAgent(
    agent: { id: string; token: string | null; scopes: readonly AgentScope[]; now: number },
  ): Promise<boolean>;
  /**
   * Adds a token-less agent unless one with this id exists (dev mode: registered on first sight,
   * or named by an operator's enqueue). It is created never seen (`lastSeenAt` `null`): an enqueue
   * for it must not look like the agent connected; {@link CommandStore.touchAgents} records that.
   */
  ensureAgent(id: string, now: number): Promise<AgentRecord>;
  /**
   * The agent, or `null`. Called on every agent request: an implementation may answer from a
   * cache, as long as a change made through any connection (another process's `status agents
   * add/rotate/remove`) is seen by the next call. `lastSeenAt` may lag behind
   * {@link CommandStore.touchAgents}.
   */
  getAgent(id: string): Promise<AgentRecord | null>;
  /**
   * Every agent, sorted by id (byte order), without tokens; or one page of them: those after
   * `page.after` (exclusive), at most `page.limit`, read as a page (a fleet of 100,000 agents is
   * not read for a page of 50).
   *
   * @throws {RangeError} When `page.limit` is not a whole number from 1.
   */
  listAgents(page?: AgentPage): Promise<AgentSummary[]>;
  /**
   * How many agents there are, or, with `through`, how many have an id that sorts at or before it
   * (byte order, as {@link CommandStore.listAgents} pages; it need not be an agent's): where a
   * page starting after `through` lies in the fleet. Counted, not read (a fleet of 100,000 agents
   * is not read to say how many it has).
   *
   * @param through An agent id; none: every agent.
   * @returns The count.
   */
  countAgents(through?: string): Promise<number>;
  /**
   * Every agent's id and last-seen time (in no particular order): what `/metrics` counts the
   * agents online by, without reading each one's heartbeat, labels and queue as
   * {@link CommandStore.listAgents} does.
   */
  listAgentsSeen(): Promise<AgentSeen[]>;
  /**
   * Replaces an agent's token.
   *
   * @returns `false` when no such agent exists.
   */
  setAgentToken(id: string, token: string): Promise<boolean>;
  /**
   * Removes an agent and, in the same transaction, ends its work: each of its commands that is
   * `queued`, `delivered` or `running` becomes `cancelled` at `now` with
   * {@link CommandRecord.endCause} `agent_removed` (its token is gone: it could neither take,
   * ack nor report them, and they would wait for their queue expiry or lease). Its commands and
   * results are kept.
   *
   * @param id The agent id.
   * @param now The current time: when the ended commands completed.
   * @returns The commands ended; `null` when no such agent exists (nothing changed).
   */
  removeAgent(id: string, now: number): Promise<RemovedAgent | null>;
  /**
   * Ends, as {@link CommandStore.removeAgent} does, the commands not final of an agent id that is
   * not registered: one enqueued as its agent was being removed (a fan-out run's part started
   * after the removal, an enqueue that checked the agent just before). Call it after such an
   * enqueue when the agent is gone: a removal after the enqueue ended the command itself.
   *
   * @param agentId The agent id.
   * @param now The current time.
   * @returns The commands ended, in enqueue order; none when the agent is registered.
   */
  endCommandsOfRemovedAgent(agentId: string, now: number): Promise<CommandRecord[]>;
  /** Records that the agent was seen (never moves `lastSeenAt` back). */
  touchAgent(id: string, now: number): Promise<void>;
  /**
   * Records when each agent was last seen, all in one transaction (the dashboard flushes its
   * in-memory last-seen times in batches). Never moves a `lastSeenAt` back; unknown ids are
   * ignored.
   *
   * @param seen Agent id → when it was seen, in ms since the epoch.
   */
  touchAgents(seen: Iterable<readonly [string, number]>): Promise<void>;
  /** Whether any agent has a token (dev mode is off when one does). */
  hasAgentWithToken(): Promise<boolean>;

  // -- commands

  /**
   * Stores a new queued command; idempotent on the id.
   *
   * A run's part (a command id of a run's target) whose run's cancel was recorded is stored
   * `cancelled` instead, completed at `command.now`, and never claimed: the run's cancel flag is
   * read in the enqueue's transaction, atomic against {@link CommandStore.cancelRun}, so a step that
   * read the run before its cancel (another instance's) hands out no part after the cancel.
   *
   * With `claim` (the dashboard has an open wait that the new command matches), a newly created
   * command is followed in the same transaction by a claim as {@link CommandStore.claimNext}
   * makes it, for a wait on `claim.deploymentHash` at `command.now`, returned as `claimed`: the
   * wake-up costs one commit, not two.
   */
  enqueue(
    command: NewCommand,
    claim?: Pick<ClaimRequest, "deploymentHash" | "deliveryLeaseMs">,
  ): Promise<EnqueueOutcome>;
  /**
   * Takes the agent's next queued command matching the deployment hash (priority, then first in
   * first out), marks it `delivered` under a delivery lease and returns it; `null` when none.
   * A command whose queue expiry is at or before `now` is never claimed, nor a run's part whose
   * run's cancel was recorded (the cancel's step cancels it). Two claims never return the same
   * command. Cheap when nothing matches (no write).
   */
  claimNext(request: ClaimRequest): Promise<CommandRecord | null>;
  /**
   * Undoes a claim whose answer was never sent: the command is `queued` again with the same
   * attempt. Does nothing unless the command is `delivered` in exactly this attempt.
   *
   * @returns Whether the command went back to the queue.
   */
  release(commandId: string, attempt: number, now: number): Promise<boolean>;
  /** Turns a delivery lease into the execution lease (`delivered` → `running`). */
  ack(request: AckRequest): Promise<AckOutcome>;
  /**
   * Records an agent's final report. The first report an agent makes wins; later ones are
   * `duplicate` and change nothing. A report is accepted whenever the command was delivered to
   * this agent in the attempt it names (or in any attempt, when it names none), whatever the
   * command's status now:
   *
   * - `delivered`/`running`, the current or an earlier attempt: a late but genuine result is
   *   better than running the command again;
   * - `queued` after its lease expired: the result arrived late; the command is not redelivered;
   * - `lost`, or `cancelled` by the dashboard (never by a report; also when its agent was
   *   removed): the dashboard only guessed, the agent knows; its result replaces the guess.
   *
   * A report for an attempt that was never delivered is a `conflict`.
   */
  report(input: ReportInput): Promise<ReportOutcome>;
  /** Cancels a queued command, or flags a delivered one. */
  cancel(commandId: string, now: number): Promise<CancelOutcome>;
  /**
   * Ends every lease that expired at `now`: back to the queue with `attempt + 1`, or `lost` after
   * `maxAttempts`, or `cancelled` when a cancel was requested. Then every `queued` command whose
   * {@link CommandRecord.expiresAt} is at or before `now` (also one just queued again) becomes
   * `expired`.
   */
  requeueExpired(now: number, maxAttempts: number): Promise<ExpireOutcome>;
  /**
   * The earliest time at which {@link CommandStore.requeueExpired} has something to do: the
   * earliest lease end of a delivered or running command, or queue expiry of a queued one;
   * `null` when there is none.
   */
  nextLeaseExpiry(): Promise<number | null>;
  /** One command with its result, or `null`. */
  getCommand(id: string): Promise<CommandRecord | null>;
  /**
   * One command's status, cancel flag and last change, or `null`: what a run's scheduler reads of
   * a command that changed (live output changes none of them), without its result or output.
   *
   * @param id The command id.
   */
  getCommandState(id: string): Promise<RunCommandState | null>;
  /**
   * Which of `ids` are the ids of commands: a few statements for any number of ids (a run of
   * 10,000 agents checks its commands' ids before it is created), not one each.
   *
   * @param ids Command ids.
   * @returns Those that exist, in the order given; none when none does.
   */
  existingCommandIds(ids: readonly string[]): Promise<string[]>;
  /** Commands, newest first. */
  listCommands(query: CommandQuery): Promise<CommandRecord[]>;

  /** How many commands are in each status (statuses with none are absent). */
  countCommandsByStatus(): Promise<Partial<Record<CommandStatus, number>>>;
  /**
   * How many of an agent's commands are not final (`queued`, `delivered` or `running`), counted
   * up to `upTo`: the count stops there, so that it costs no more than `upTo` rows however many
   * the agent has.
   *
   * @param agentId The agent.
   * @param upTo The most the count goes to (a whole number of at least 1).
   * @returns The count, at most `upTo`.
   */
  countOpenCommands(agentId: string, upTo: number): Promise<number>;
  /**
   * The command each of these agents has in hand, as the fleet shows it: its oldest `running`
   * command, else its newest `delivered` one. Read by each agent (a page of 50 agents reads no more
   * than those 50 agents' commands in hand, however many the fleet has), not by listing every
   * command in hand.
   *
   * @param agentIds The agents (a page of the fleet); unknown ids and repeats are allowed.
   * @returns At most one command an agent, in the order of `agentIds` (a repeated id once, at its
   *   first place); agents with none are left out. Each result is read without its output.
   */
  commandsInHand(agentIds: readonly string[]): Promise<CommandRecord[]>;

  // -- live output and heartbeats

  /**
   * Stores a chunk of a command's live output, once: bytes that arrived before (a retried chunk)
   * are skipped; a chunk starting past what arrived leaves a gap. Then only the first
   * `keep.headBytes` and the last `keep.tailBytes` bytes of the stream are kept; stored chunks
   * in between are dropped or cut. Does not check that the command exists (the route does).
   *
   * @throws {RangeError} When the bounds are not whole numbers, or the chunk ends beyond
   *   `Number.MAX_SAFE_INTEGER` (nothing is stored).
   */
  appendOutput(chunk: OutputChunkInput): Promise<AppendOutputOutcome>;
  /** A command's stored output chunks, in `seq` order. */
  listOutput(commandId: string, query?: OutputQuery): Promise<OutputChunk[]>;
  /**
   * Deletes one batch of the live output of commands that reached a final status
   * (`completedAt`) before `completedBefore`: their result holds the output from then on. A
   * command's chunks may go over several calls.
   *
   * @param completedBefore Ms since the epoch: the output of what was final before this goes.
   * @param limit Chunks deleted at most, so that one call holds the store briefly (a backlog of
   *   millions of chunks goes over many calls, none outlasting the store's operation timeout).
   * @returns What was deleted; `more` when the limit was reached.
   * @throws {RangeError} When `limit` is not a whole number from 1.
   */
  pruneOutput(completedBefore: number, limit: number): Promise<PruneOutputOutcome>;
  /**
   * Deletes one batch of what the result retention (`RESULT_RETENTION_DAYS`) lets go, in one
   * transaction: commands that reached a final status (`completedAt`) before `completedBefore`,
   * each with its result and live output, and fan-out runs completed before then, each with its
   * targets and their commands. A command of a run is deleted only with its run: never while the
   * run is open, nor while one of the run's commands is not final or was final at or after
   * `completedBefore`. A run's commands may go over several calls; the run goes with its last
   * target.
   *
   * @param completedBefore Ms since the epoch: what was final before this goes.
   * @param limit Rows deleted at most (commands, targets without a command, runs), so that one
   *   call holds the write lock briefly.
   * @returns What was deleted; `more` when the limit was reached.
   * @throws {RangeError} When `limit` is not a whole number from 1.
   */
  pruneCommands(completedBefore: number, limit: number): Promise<PruneCommandsOutcome>;
  /**
   * Records an agent's heartbeat (version, deployment, instance, figures) and that it was seen.
   *
   * @returns `false` when no such agent exists.
   */
  recordHeartbeat(agentId: string, heartbeat: HeartbeatInput): Promise<boolean>;

  // -- fan-out runs (the decisions are planRun in src/store/runs.ts, shared by every store)

  /**
   * Stores a run and its targets (none started); idempotent on the id. Creates no command.
   */
  createRun(run: NewRun): Promise<CreateRunOutcome>;
  /** One run with its targets and their commands, or `null`. */
  getRun(id: string): Promise<RunRecord | null>;
  /** Runs with their targets, newest first. */
  listRuns(query: RunQuery): Promise<RunRecord[]>;
  /**
   * The ids of the runs not completed, newest first, as `listRuns({ open: true, limit })` would
   * return them, without reading a run's targets (the run sweep needs no more).
   *
   * @param limit At most this many.
   * @returns The ids; none when no run is open.
   */
  listOpenRunIds(limit: number): Promise<string[]>;
  /**
   * The runs `listRuns` would return, in the same order, each with its targets counted by group
   * (skipped, started, command status) instead of read with their commands and output: enough
   * for the run's status and totals (`runStatus`, `runTotals` of `runs.ts`).
   *
   * @param query The same filters as `listRuns`.
   * @returns The runs, newest first; none when no run matches.
   */
  listRunSummaries(query: RunQuery): Promise<RunSummary[]>;
  /**
   * One step of a run's rate control, atomic against every other step of the same run: applies
   * `planRun` of `runs.ts` (start targets up to the concurrency, skip the rest after too many errors or
   * a cancel) and records the run completed once every target is final.
   *
   * @returns `null` when no such run exists.
   */
  advanceRun(id: string, now: number): Promise<AdvanceRunOutcome | null>;
  /**
   * The step of {@link CommandStore.advanceRun}, deciding the same and answering the run as it
   * decided from: each target's command read as its status and cancel flag only, not with its
   * result and output (the run sweep steps every open run every few seconds, and most steps change
   * nothing; read the whole run with `getRun` when it is to be shown).
   *
   * @returns `null` when no such run exists.
   */
  stepRun(id: string, now: number): Promise<RunStepOutcome | null>;
  /**
   * The run as {@link CommandStore.stepRun} reads it (each command as status and cancel flag),
   * or `null`.
   */
  getRunState(id: string): Promise<RunState | null>;
  /**
   * The run target whose command has (or will have) this id, read as a step reads it (its
   * command as status and cancel flag), without reading the run's other targets: what an enqueue
   * naming a run's part (`<run id>:<agent id>`) checks, however many agents the run has.
   *
   * @param commandId A command id.
   * @returns The target and its run's id; `null` when no run has a target of that command id.
   */
  getRunTarget(commandId: string): Promise<RunTargetOfCommand | null>;
  /** Records an operator's cancel of a run and skips its targets not started. */
  cancelRun(id: string, now: number): Promise<CancelRunOutcome>;

  /** Closes the store; later calls fail. Idempotent. */
  close(): Promise<void>;
}

/**
 * A change another dashboard instance must hear of: a command became claimable for an agent
 * (enqueued, requeued after its lease, released), a command's cancel was recorded, a command
 * changed at all (for its event streams: status, live output), or an agent's token was replaced or
 * the agent removed (the waits it opened with the old token end).
 */
export type StoreEvent =
  | { type: "queued"; agentId: string }
  | { type: "cancel"; commandId: string }
  /** A command changed in any way (its event streams re-read it). */
  | { type: "changed"; commandId: string }
  /** The agent's token was replaced, or the agent removed. */
  | { type: "revoked"; agentId: string };

/** Receives the {@link StoreEvent}s of other instances. */
export interface StoreEventListener {
  /** One event made by another instance (never called for this store's own changes). */
  event(event: StoreEvent): void;
  /**
   * Events may have been missed (the listening connection was re-established): re-check every
   * open wait and cancel-wait against the store.
   */
  resync(): void;
  /**
   * The listening connection was lost and could not listen again at once: events are missed
   * until the next `resync` (called once per outage, at its first failed attempt).
   *
   * @param error Why listening again failed.
   */
  lost?(error: unknown): void;
}

/** An open subscription of {@link SharedStore.subscribe}. */
export interface StoreSubscription {
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * What a store shared by several dashboard instances adds to {@link CommandStore} (the
 * PostgreSQL store): events between instances, request ids remembered in the database, and a
 * health check. The embedded SQLite store has one instance and does not need them.
 */
export interface SharedStore {
  /**
   * Listens for the events of other instances.
   *
   * @param listener Gets each event, and `resync` after a reconnect of the listening connection.
   * @returns The subscription, once listening.
   */
  subscribe(listener: StoreEventListener): Promise<StoreSubscription>;
  /**
   * Records a request id for replay protection, atomically for every instance.
   *
   * @param key The request id scoped by the caller (`agent\nrequest-id`).
   * @param now The current time, in ms.
   * @param windowMs How long the id is remembered.
   * @returns `true` when the id is new (or last used longer than the window ago), `false` on a
   *   replay.
   */
  rememberRequestId(key: string, now: number, windowMs: number): Promise<boolean>;
  /** Resolves when the database answers a trivial query, with what it found of the clocks. */
  ping(): Promise<StorePing | void>;
}

/** What {@link SharedStore.ping} found besides the answer. */
export interface StorePing {
  /**
   * How far this instance's clock is ahead of the database server's, in ms (negative: behind),
   * when further than the store tolerates; `null` when within it.
   */
  clockAheadMs: number | null;
}

/**
 * Whether a store is shared by several instances (implements {@link SharedStore}).
 *
 * @param store A store.
 */
export function isSharedStore(store: CommandStore): store is CommandStore & SharedStore {
  const s = store as Partial<SharedStore>;
  return typeof s.subscribe === "function" && typeof s.rememberRequestId === "function" &&
    typeof s.ping === "function";
}

/** A request id kept by a {@link RequestIdJournal}. */
export interface KeptRequestId {
  /** The request id scoped by the caller (`agent\nrequest-id`). */
  key: string;
  /** When it may be forgotten, in ms. */
  expiresAt: number;
  /** When the request says it was sent (its signed `X-Timestamp`), in ms, if known. */
  sentAtMs: number | null;
}

/**
 * A store that keeps the request ids a dashboard accepted (the SQLite store), so that a restarted
 * dashboard still refuses a request the one before it accepted. Several instances on one database
 * use {@link SharedStore.rememberRequestId} instead.
 */
export interface RequestIdJournal {
  /**
   * Keeps a request id until `expiresAt`. It is written with the store's next commit, no later
   * than whatever the request itself then writes.
   *
   * @param id The id, its expiry and when it was sent.
   * @param now The current time, in ms (expired ids are deleted as it goes).
   * @returns Once the id is committed.
   */
  keepRequestId(id: KeptRequestId, now: number): Promise<void>;
  /**
   * The request ids kept that have not expired by `now`, the soonest to expire first.
   *
   * @param now The current time, in ms.
   */
  keptRequestIds(now: number): Promise<KeptRequestId[]>;
}

/**
 * Whether a store keeps accepted request ids ({@link RequestIdJournal}).
 *
 * @param store A store.
 */
export function isRequestIdJournal(store: CommandStore): store is CommandStore & RequestIdJournal {
  const s = store as Partial<RequestIdJournal>;
  return typeof s.keepRequestId === "function" && typeof s.keptRequestIds === "function";
}

/**
 * A store whose file other processes may change while the dashboard runs (the SQLite store, which
 * `status agents ... --db` opens too): nothing tells the dashboard of their changes, so it looks.
 */
export interface WatchedFileStore {
  /**
   * Counts the commits of other processes seen so far; looks now.
   *
   * @returns A count that only grows.
   * @throws {StoreUnavailableError} When the file was removed or replaced since it was opened.
   */
  otherCommits(): number;
}

/**
 * Whether a store can say that other processes changed its file ({@link WatchedFileStore}).
 *
 * @param store A store.
 */
export function isWatchedFileStore(store: CommandStore): store is CommandStore & WatchedFileStore {
  return typeof (store as Partial<WatchedFileStore>).otherCommits === "function";
}
