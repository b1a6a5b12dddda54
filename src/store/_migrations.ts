/**
 * Schema migrations of the SQLite store. `PRAGMA user_version` holds the number of migrations
 * applied; migration `i` takes a database from version `i` to `i + 1`. Append new migrations;
 * never edit one that has shipped.
 *
 * @module
 */

/** Marks a database file as ours (`PRAGMA application_id`): "STAT" in ASCII. */
export const APPLICATION_ID = 0x53544154;

/** The migrations, in order. */
export const MIGRATIONS: readonly string[] = [
  // 1: agents, commands, results.
  `
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    token TEXT,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER
  ) STRICT;

  CREATE TABLE commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    deployment_hash TEXT,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    priority INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    delivered_attempt INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    acked_at INTEGER,
    completed_at INTEGER,
    updated_at INTEGER NOT NULL
  ) STRICT;

  CREATE INDEX commands_queue ON commands (agent_id, priority, seq) WHERE status = 'queued';
  CREATE INDEX commands_lease ON commands (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
  CREATE INDEX commands_agent ON commands (agent_id, seq);
  CREATE INDEX commands_status ON commands (status, seq);

  CREATE TABLE results (
    command_id TEXT PRIMARY KEY REFERENCES commands (id),
    attempt INTEGER,
    status TEXT NOT NULL,
    has_output INTEGER NOT NULL,
    exit_code INTEGER,
    signal TEXT,
    duration_secs REAL,
    stdout TEXT,
    stderr TEXT,
    stdout_truncated_bytes INTEGER,
    stderr_truncated_bytes INTEGER,
    error TEXT,
    started_at TEXT,
    completed_at TEXT,
    reported_at INTEGER NOT NULL
  ) STRICT;
  `,
  // 2: live output of running commands, kept per command, attempt and stream as head and tail.
  `
  CREATE TABLE output_chunks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    byte_offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL
  ) STRICT;

  CREATE INDEX output_chunks_stream ON output_chunks (command_id, attempt, stream, byte_offset);
  CREATE INDEX output_chunks_command ON output_chunks (command_id, seq);
  `,
  // 3: what the agents' heartbeats tell the fleet view.
  `
  ALTER TABLE agents ADD COLUMN version TEXT;
  ALTER TABLE agents ADD COLUMN deployment_hash TEXT;
  ALTER TABLE agents ADD COLUMN instance_id TEXT;
  ALTER TABLE agents ADD COLUMN heartbeat TEXT;
  ALTER TABLE agents ADD COLUMN heartbeat_at INTEGER;
  `,
  // 4: queue expiry (TTL): a command still queued at expires_at becomes 'expired'.
  `
  ALTER TABLE commands ADD COLUMN expires_at INTEGER;
  CREATE INDEX commands_expiry ON commands (expires_at)
    WHERE status = 'queued' AND expires_at IS NOT NULL;
  `,
  // 5: binary-safe output. SQLite text bound from JavaScript ends at the first NUL, so rows
  // written from now on keep stdout/stderr as JSON string literals (output_escaped = 1);
  // *_encoding says whether the string is text or base64.
  `
  ALTER TABLE results ADD COLUMN output_escaped INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE results ADD COLUMN stdout_encoding TEXT;
  ALTER TABLE results ADD COLUMN stderr_encoding TEXT;
  `,
  // 6: fan-out runs (one command to a group of agents) and agent labels.
  `
  ALTER TABLE agents ADD COLUMN labels TEXT;

  CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    target TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    max_concurrency INTEGER NOT NULL,
    max_concurrency_spec TEXT,
    max_errors INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    updated_at INTEGER NOT NULL
  ) STRICT;

  CREATE INDEX runs_open ON runs (seq) WHERE completed_at IS NULL;

  CREATE TABLE run_targets (
    run_id TEXT NOT NULL REFERENCES runs (id),
    position INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    command_id TEXT NOT NULL UNIQUE,
    offline_at_creation INTEGER NOT NULL,
    started_at INTEGER,
    skipped_at INTEGER,
    PRIMARY KEY (run_id, position)
  ) STRICT;
  `,
  // 7: the result retention (RESULT_RETENTION_DAYS) finds the oldest final commands and runs.
  `
  CREATE INDEX commands_completed ON commands (completed_at) WHERE completed_at IS NOT NULL;
  CREATE INDEX runs_completed ON runs (completed_at) WHERE completed_at IS NOT NULL;
  `,
  // 8: request ids the dashboard accepted, kept for the replay window, so that a restarted
  // dashboard still refuses a signed request the one before it accepted. Appended in the order
  // they expire and deleted by rowid range, so no index: each signed request adds one row.
  `
  CREATE TABLE request_ids (
    key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    sent_at INTEGER
  ) STRICT;
  `,
  // 9: why the dashboard ended a command of its own accord (agent_removed: its agent was
  // removed while the command was queued, delivered or running).
  `
  ALTER TABLE commands ADD COLUMN end_cause TEXT;
  `,
  // 10: the command each agent of a page of the fleet has in hand (GET /api/v1/agents), and how
  // many an agent has not final, read by the agent instead of through every command in hand.
  `
  CREATE INDEX commands_in_hand ON commands (agent_id, seq)
    WHERE status IN ('delivered', 'running');
  `,
  // 11: an agent's commands in one status, newest first (GET /api/v1/commands?agent_id=&status=,
  // the console's commands page filtered by both), read by the index of both: by the agent's or
  // the status's alone it went through the agent's whole history, or the fleet's commands in that
  // status, when few of them matched.
  `
  CREATE INDEX commands_agent_status ON commands (agent_id, status, seq);
  `,
  // 12: request_ids as migration 8 makes it now. Its first form (2026-12-01, for an hour) made the
  // key the primary key, with an index on expires_at: an id accepted again once its window was
  // over, kept before its expired row was deleted, failed the commit of every write it joined.
  // Copied with their rowids, which say the order the ids are deleted in.
  `
  DROP INDEX IF EXISTS request_ids_expiry;
  CREATE TABLE request_ids_copy (
    key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    sent_at INTEGER
  ) STRICT;
  INSERT INTO request_ids_copy (rowid, key, expires_at, sent_at)
    SELECT rowid, key, expires_at, sent_at FROM request_ids;
  DROP TABLE request_ids;
  ALTER TABLE request_ids_copy RENAME TO request_ids;
  `,
];
