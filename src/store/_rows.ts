/**
 * Rows of the SQL stores as records: the SQLite and the PostgreSQL store share one schema shape
 * (`agents`, `commands` joined with `results` as `r_*` columns) and these mappings.
 *
 * @module
 */
import {
  type CommandParams,
  type CommandStatus,
  type OutputEncoding,
  PRIORITIES,
  type Priority,
  type ReportStatus,
} from "../protocol/mod.ts";
import {
  AGENT_SCOPES,
  type AgentPage,
  type AgentRecord,
  type AgentScope,
  type CommandRecord,
  type ReportInput,
  type ReportOutcome,
  type RunCommandState,
  type RunRecord,
  type RunState,
  type RunSummary,
  type RunTargetGroup,
  type RunTargetRecord,
  type RunTargetState,
} from "./types.ts";

/**
 * Whether a report of a command is to be recorded, as every SQL store answers it: not for another
 * agent's command, one with a result already, or an attempt never delivered.
 *
 * @param command The stored command the report names.
 * @param input The report.
 * @returns The outcome to answer with, or `null` when the report is to be recorded.
 */
export function reportRefusal(command: CommandRecord, input: ReportInput): ReportOutcome | null {
  if (command.agentId !== input.agentId) return { outcome: "forbidden", command };
  if (command.result) return { outcome: "duplicate", command };
  if (command.deliveredAttempt === 0) {
    return { outcome: "conflict", command, reason: `command ${command.id} was never delivered` };
  }
  if (input.attempt !== null && input.attempt > command.deliveredAttempt) {
    return {
      outcome: "conflict",
      command,
      reason: `attempt ${input.attempt} of command ${command.id} was never delivered ` +
        `(last delivered: ${command.deliveredAttempt})`,
    };
  }
  return null;
}

/** Ids looked up at most in one statement (`CommandStore.existingCommandIds`). */
export const IDS_PER_STATEMENT = 500;

/** A row as a driver returns it: numbers may come as `bigint` (SQLite) or strings (PostgreSQL). */
export type Row = Record<string, unknown>;

/** The command's own columns (`c`), without its result. */
export const COMMAND_CORE_COLUMNS = `
  c.seq, c.id, c.agent_id, c.deployment_hash, c.name, c.params, c.priority, c.fingerprint,
  c.status, c.attempt, c.delivered_attempt, c.lease_expires_at, c.cancel_requested, c.created_at,
  c.delivered_at, c.acked_at, c.completed_at, c.expires_at, c.updated_at, c.end_cause`;

/** The result columns (`r_*`), with the expressions that read standard output and error. */
function resultColumns(stdout: string, stderr: string): string {
  return `
  r.command_id AS r_command_id, r.attempt AS r_attempt, r.status AS r_status,
  r.has_output AS r_has_output, r.exit_code AS r_exit_code, r.signal AS r_signal,
  r.duration_secs AS r_duration_secs, ${stdout} AS r_stdout, ${stderr} AS r_stderr,
  r.stdout_truncated_bytes AS r_stdout_truncated_bytes,
  r.stderr_truncated_bytes AS r_stderr_truncated_bytes, r.error AS r_error,
  r.output_escaped AS r_output_escaped, r.stdout_encoding AS r_stdout_encoding,
  r.stderr_encoding AS r_stderr_encoding,
  r.started_at AS r_started_at, r.completed_at AS r_completed_at, r.reported_at AS r_reported_at`;
}

/** The command columns and the result columns (`r_*`) selected by both stores. */
export const COMMAND_COLUMNS = `${COMMAND_CORE_COLUMNS},${resultColumns("r.stdout", "r.stderr")}`;

/** {@link COMMAND_COLUMNS} without the output: `r_stdout` and `r_stderr` are null. */
export const COMMAND_COLUMNS_WITHOUT_OUTPUT = `${COMMAND_CORE_COLUMNS},${
  resultColumns("NULL", "NULL")
}`;

/**
 * A free text of an agent's report (its `error`, its `signal`) as a text column keeps it: each
 * NUL becomes U+FFFD (PostgreSQL refuses NUL in text, failing the whole report; SQLite's text
 * ends at the first one, dropping the rest), as a lone surrogate already does.
 *
 * @param text The text, or `null`.
 * @returns The text to store.
 */
export function reportText(text: string | null): string | null {
  return text === null ? null : text.replaceAll("\u0000", "\ufffd");
}

/**
 * Checks the `limit` of `CommandStore.pruneCommands`.
 *
 * @param limit Rows one call deletes at most.
 * @throws {RangeError} When it is not a whole number from 1.
 */
export function checkPruneLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`limit must be a whole number from 1, got ${limit}`);
  }
}

/**
 * Checks the `upTo` of `CommandStore.countOpenCommands`.
 *
 * @param upTo The most the count goes to.
 * @throws {RangeError} When it is not a whole number from 1.
 */
export function checkCountLimit(upTo: number): void {
  if (!Number.isSafeInteger(upTo) || upTo < 1) {
    throw new RangeError(`upTo must be a whole number from 1, got ${upTo}`);
  }
}

/**
 * Checks the page of `CommandStore.listAgents`.
 *
 * @param page The page, or none.
 * @throws {RangeError} When its limit is not a whole number from 1.
 */
export function checkAgentPage(page: AgentPage | undefined): void {
  const limit = page?.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new RangeError(`limit must be a whole number from 1, got ${limit}`);
  }
}

/** A number column (`bigint`, numeric string or number). */
export function num(value: unknown): number {
  return typeof value === "number" ? value : Number(value);
}

/** A nullable number column. */
export function numOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : num(value);
}

/** A nullable text column. */
export function strOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

/** A flag column: SQLite's 0/1 or PostgreSQL's boolean. */
export function flag(value: unknown): boolean {
  return value === true || (value !== false && value !== null && num(value) !== 0);
}

/** An output encoding column. */
export function encodingOrNull(value: unknown): OutputEncoding | null {
  return value === "utf-8" || value === "base64" ? value : null;
}

/**
 * Output as stored: a JSON string literal when `escaped` (rows written since binary-safe output),
 * so that NUL bytes survive text columns (SQLite's bound text ends at a NUL; PostgreSQL's text
 * refuses one).
 */
export function storedOutput(value: unknown, escaped: boolean): string | null {
  const text = strOrNull(value);
  if (text === null || !escaped) return text;
  try {
    const parsed = JSON.parse(text);
    return typeof parsed === "string" ? parsed : text;
  } catch {
    return text;
  }
}

/** The scopes column (a JSON array); a damaged column grants nothing. */
export function parseScopes(text: string): AgentScope[] {
  try {
    const parsed = JSON.parse(text);
    if (Array.isArray(parsed)) {
      return parsed.filter((s): s is AgentScope => AGENT_SCOPES.includes(s));
    }
  } catch {
    // fall through: a damaged scopes column grants nothing
  }
  return [];
}

/** An `agents` row as a record. */
export function toAgent(row: Row): AgentRecord {
  return {
    id: String(row.id),
    token: strOrNull(row.token),
    scopes: parseScopes(String(row.scopes)),
    createdAt: num(row.created_at),
    lastSeenAt: numOrNull(row.last_seen_at),
  };
}

/**
 * A row of {@link COMMAND_COLUMNS} as a record (of {@link COMMAND_CORE_COLUMNS}: one without its
 * result, `result` is `null`).
 */
export function toCommand(row: Row): CommandRecord {
  return {
    id: String(row.id),
    agentId: String(row.agent_id),
    deploymentHash: strOrNull(row.deployment_hash),
    name: String(row.name),
    params: JSON.parse(String(row.params)) as CommandParams,
    priority: PRIORITIES[num(row.priority)] ?? "normal",
    status: String(row.status) as CommandStatus,
    attempt: num(row.attempt),
    deliveredAttempt: num(row.delivered_attempt),
    leaseExpiresAt: numOrNull(row.lease_expires_at),
    cancelRequested: flag(row.cancel_requested),
    fingerprint: String(row.fingerprint),
    seq: num(row.seq),
    createdAt: num(row.created_at),
    deliveredAt: numOrNull(row.delivered_at),
    ackedAt: numOrNull(row.acked_at),
    completedAt: numOrNull(row.completed_at),
    expiresAt: numOrNull(row.expires_at),
    updatedAt: num(row.updated_at),
    result: row.r_command_id === null || row.r_command_id === undefined ? null : {
      status: String(row.r_status) as ReportStatus,
      attempt: numOrNull(row.r_attempt),
      hasOutput: flag(row.r_has_output),
      exitCode: numOrNull(row.r_exit_code),
      signal: strOrNull(row.r_signal),
      durationSecs: numOrNull(row.r_duration_secs),
      stdout: storedOutput(row.r_stdout, flag(row.r_output_escaped ?? 0)),
      stderr: storedOutput(row.r_stderr, flag(row.r_output_escaped ?? 0)),
      stdoutEncoding: encodingOrNull(row.r_stdout_encoding),
      stderrEncoding: encodingOrNull(row.r_stderr_encoding),
      stdoutTruncatedBytes: numOrNull(row.r_stdout_truncated_bytes),
      stderrTruncatedBytes: numOrNull(row.r_stderr_truncated_bytes),
      error: strOrNull(row.r_error),
      startedAt: strOrNull(row.r_started_at),
      completedAt: strOrNull(row.r_completed_at),
      reportedAt: num(row.r_reported_at),
    },
    endCause: row.end_cause === "agent_removed" ? "agent_removed" : null,
  };
}

/** The stored rank of a priority (0 = critical); unknown or absent is `normal`. */
export function priorityRank(priority: Priority | undefined): number {
  const rank = PRIORITIES.indexOf(priority ?? "normal");
  return rank < 0 ? PRIORITIES.indexOf("normal") : rank;
}

/** The labels column (a JSON object of strings); `{}` when absent or damaged. */
export function parseLabelsColumn(value: unknown): Record<string, string> {
  const labels: Record<string, string> = {};
  if (typeof value !== "string") return labels;
  try {
    const parsed = JSON.parse(value);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
      for (const [key, v] of Object.entries(parsed)) if (typeof v === "string") labels[key] = v;
    }
  } catch {
    // a damaged column: no labels
  }
  return labels;
}

/**
 * How many characters of each stored output stream a run's target is read with: enough for its
 * first line (the run's view shows no more), so that reading a run of thousands of agents does not
 * read all of their output (up to 128 KiB each).
 */
export const TARGET_OUTPUT_CHARS = 2048;

/**
 * A run's targets with their commands (`c`, `r` as in {@link COMMAND_COLUMNS}, the output cut to
 * its first {@link TARGET_OUTPUT_CHARS} characters as stored).
 */
export const TARGET_COLUMNS = `t.position AS t_position, t.agent_id AS t_agent_id,
  t.command_id AS t_command_id, t.offline_at_creation AS t_offline,
  t.started_at AS t_started_at, t.skipped_at AS t_skipped_at, ${COMMAND_CORE_COLUMNS},${
  resultColumns(
    `substr(r.stdout, 1, ${TARGET_OUTPUT_CHARS})`,
    `substr(r.stderr, 1, ${TARGET_OUTPUT_CHARS})`,
  )
}`;
/** The tables of {@link TARGET_COLUMNS}. */
export const TARGET_FROM = `FROM run_targets t LEFT JOIN commands c ON c.id = t.command_id
  LEFT JOIN results r ON r.command_id = c.id`;

/**
 * A run's targets as a step reads them ({@link TARGET_COLUMNS} without the command's other
 * columns, its result and output: `c_status`, `c_cancel_requested`, `c_updated_at`, null without
 * a command);
 * from {@link TARGET_STATE_FROM}.
 */
export const TARGET_STATE_COLUMNS = `t.position AS t_position, t.agent_id AS t_agent_id,
  t.command_id AS t_command_id, t.offline_at_creation AS t_offline,
  t.started_at AS t_started_at, t.skipped_at AS t_skipped_at,
  c.status AS c_status, c.cancel_requested AS c_cancel_requested, c.updated_at AS c_updated_at`;
/** The tables of {@link TARGET_STATE_COLUMNS} (no `results`). */
export const TARGET_STATE_FROM = `FROM run_targets t LEFT JOIN commands c ON c.id = t.command_id`;

/**
 * A run's targets counted by group (`skipped`, `started`, `status`, `count`, `first` as in
 * {@link RunTargetGroup}), for one run: followed by `WHERE t.run_id = ...` and `GROUP BY 1, 2, 3`.
 */
export const TARGET_GROUPS_SELECT = `SELECT t.skipped_at IS NOT NULL AS skipped,
  t.started_at IS NOT NULL AS started, c.status AS status, count(*) AS count,
  min(t.position) AS first
  FROM run_targets t LEFT JOIN commands c ON c.id = t.command_id`;

/** A run's row and its targets. */
export function toRun(row: Row, targets: RunTargetRecord[]): RunRecord {
  return { ...runFields(row), targets };
}

/** A run's row and its targets as a step reads them ({@link toTargetState}). */
export function toRunState(row: Row, targets: RunTargetState[]): RunState {
  return { ...runFields(row), targets };
}

/**
 * A run's row with its target groups as a JSON array (`target_groups`, text or parsed) of objects
 * with the columns of {@link TARGET_GROUPS_SELECT}.
 */
export function toRunSummary(row: Row): RunSummary {
  const raw = row.target_groups;
  const parsed = (typeof raw === "string" ? JSON.parse(raw) : raw ?? []) as Row[];
  const groups: RunTargetGroup[] = parsed.map((group) => ({
    skipped: flag(group.skipped),
    started: flag(group.started),
    status: strOrNull(group.status) as CommandStatus | null,
    count: num(group.count),
    first: num(group.first),
  }));
  groups.sort((a, b) => a.first - b.first);
  return { ...runFields(row), groups };
}

/** A run's own columns. */
function runFields(row: Row): Omit<RunRecord, "targets"> {
  const spec = strOrNull(row.max_concurrency_spec);
  return {
    id: String(row.id),
    name: String(row.name),
    params: JSON.parse(String(row.params)) as CommandParams,
    target: JSON.parse(String(row.target)),
    fingerprint: String(row.fingerprint),
    maxConcurrency: num(row.max_concurrency),
    maxConcurrencySpec: spec === null ? null : JSON.parse(spec),
    maxErrors: numOrNull(row.max_errors),
    cancelRequested: flag(row.cancel_requested),
    seq: num(row.seq),
    createdAt: num(row.created_at),
    completedAt: numOrNull(row.completed_at),
    updatedAt: num(row.updated_at),
  };
}

/** A run target's row (`t_` columns) with its command's (null when it has none yet). */
export function toTarget(row: Row): RunTargetRecord {
  return {
    ...targetFields(row),
    command: row.id === null || row.id === undefined ? null : outputStart(toCommand(row), row),
  };
}

/** A row of {@link TARGET_STATE_COLUMNS} as a target; its command null when it has none yet. */
export function toTargetState(row: Row): RunTargetState {
  return {
    ...targetFields(row),
    command: row.c_status === null || row.c_status === undefined ? null : toCommandState(row),
  };
}

/**
 * A command's `c_status`, `c_cancel_requested` and `c_updated_at` as a {@link RunCommandState}.
 *
 * @param row The row.
 */
export function toCommandState(row: Row): RunCommandState {
  return {
    status: String(row.c_status) as CommandStatus,
    cancelRequested: flag(row.c_cancel_requested),
    updatedAt: num(row.c_updated_at),
  };
}

/** A run target's own columns (`t_`). */
function targetFields(row: Row): Omit<RunTargetRecord, "command"> {
  return {
    position: num(row.t_position),
    agentId: String(row.t_agent_id),
    commandId: String(row.t_command_id),
    offlineAtCreation: flag(row.t_offline),
    startedAt: numOrNull(row.t_started_at),
    skippedAt: numOrNull(row.t_skipped_at),
  };
}

/** A target row's command, its output read as the start it is ({@link TARGET_COLUMNS}). */
function outputStart(command: CommandRecord, row: Row): CommandRecord {
  if (!command.result) return command;
  const escaped = flag(row.r_output_escaped ?? 0);
  return {
    ...command,
    result: {
      ...command.result,
      stdout: storedOutputStart(row.r_stdout, escaped),
      stderr: storedOutputStart(row.r_stderr, escaped),
    },
  };
}

/**
 * The start of output as stored (see {@link storedOutput}): an escaped one cut inside its JSON
 * string literal is read up to its last whole character (an escape cut short is left out).
 */
function storedOutputStart(value: unknown, escaped: boolean): string | null {
  const text = strOrNull(value);
  if (text === null || !escaped) return text;
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed === "string") return parsed;
  } catch {
    // cut inside the literal: closed below
  }
  // An odd run of backslashes at the end (alone or before "u" and up to 3 hex digits) opens an
  // escape that was cut: its last backslash and what follows go.
  const open = /(\\+)(u[0-9a-fA-F]{0,3})?$/.exec(text);
  const end = open && open[1].length % 2 === 1 ? open.index + open[1].length - 1 : text.length;
  try {
    const parsed = JSON.parse(`${text.slice(0, end)}"`);
    return typeof parsed === "string" ? parsed : text;
  } catch {
    return text;
  }
}
