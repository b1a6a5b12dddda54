/**
 * Schema migrations of the PostgreSQL store. The table `status_schema` holds the number of
 * migrations applied; migration `i` takes a database from version `i` to `i + 1`, in one
 * transaction under an advisory lock (instances starting together migrate once). Append new
 * migrations; never edit one that has shipped.
 *
 * Times are `bigint` milliseconds since the epoch, as in the SQLite store.
 *
 * @module
 */

/** Key of the advisory lock held while migrating: "STAT" in ASCII, as the SQLite application id. */
export const PG_MIGRATION_LOCK = 0x53544154;

/** Tables of the schema: a database that has one of them but no `status_schema` is foreign. */
export const PG_TABLES = [
  "agents",
  "commands",
  "results",
  "request_ids",
  "output_chunks",
  "runs",
  "run_targets",
] as const;

/** The migrations, in order. */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: agents, commands, results.
  `
  CREATE TABLE agents (
    id text PRIMARY KEY,
    token text,
    scopes text NOT NULL,
    created_at bigint NOT NULL,
    last_seen_at bigint
  );

  CREATE TABLE commands (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    agent_id text NOT NULL,
    deployment_hash text,
    name text NOT NULL,
    params text NOT NULL,
    priority integer NOT NULL,
    fingerprint text NOT NULL,
    status text NOT NULL,
    attempt integer NOT NULL,
    delivered_attempt integer NOT NULL DEFAULT 0,
    lease_expires_at bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    delivered_at bigint,
    acked_at bigint,
    completed_at bigint,
    updated_at bigint NOT NULL
  );

  CREATE INDEX commands_queue ON commands (agent_id, priority, seq) WHERE status = 'queued';
  CREATE INDEX commands_lease ON commands (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL AND status IN ('delivered', 'running');
  CREATE INDEX commands_agent ON commands (agent_id, seq);
  CREATE INDEX commands_status ON commands (status, seq);

  CREATE TABLE results (
    command_id text PRIMARY KEY REFERENCES commands (id),
    attempt integer,
    status text NOT NULL,
    has_output boolean NOT NULL,
    exit_code integer,
    signal text,
    duration_secs double precision,
    stdout text,
    stderr text,
    stdout_truncated_bytes bigint,
    stderr_truncated_bytes bigint,
    error text,
    started_at text,
    completed_at text,
    reported_at bigint NOT NULL
  );
  `,
  // 2: request ids seen by any instance, for replay protection across instances.
  `
  CREATE TABLE request_ids (
    key text PRIMARY KEY,
    expires_at bigint NOT NULL
  );
  CREATE INDEX request_ids_expiry ON request_ids (expires_at);
  `,
  // 3: queue expiry (TTL): a command still queued at expires_at becomes 'expired'.
  `
  ALTER TABLE commands ADD COLUMN expires_at bigint;
  CREATE INDEX commands_expiry ON commands (expires_at)
    WHERE status = 'queued' AND expires_at IS NOT NULL;
  `,
  // 4: binary-safe output: stdout/stderr kept as JSON string literals (output_escaped; text
  // columns refuse NUL bytes); *_encoding says whether the string is text or base64.
  `
  ALTER TABLE results ADD COLUMN output_escaped boolean NOT NULL DEFAULT false;
  ALTER TABLE results ADD COLUMN stdout_encoding text;
  ALTER TABLE results ADD COLUMN stderr_encoding text;
  `,
  // 5: live output of running commands, kept per command, attempt and stream as head and tail.
  `
  CREATE TABLE output_chunks (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id text NOT NULL,
    attempt integer NOT NULL,
    stream text NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    byte_offset bigint NOT NULL,
    data bytea NOT NULL,
    created_at bigint NOT NULL
  );
  CREATE INDEX output_chunks_stream ON output_chunks (command_id, attempt, stream, byte_offset);
  CREATE INDEX output_chunks_command ON output_chunks (command_id, seq);
  `,
  // 6: what the agents' heartbeats tell the fleet view.
  `
  ALTER TABLE agents ADD COLUMN version text;
  ALTER TABLE agents ADD COLUMN deployment_hash text;
  ALTER TABLE agents ADD COLUMN instance_id text;
  ALTER TABLE agents ADD COLUMN heartbeat text;
  ALTER TABLE agents ADD COLUMN heartbeat_at bigint;
  `,
  // 7: fan-out runs (one command to a group of agents) and agent labels.
  `
  ALTER TABLE agents ADD COLUMN labels text;

  CREATE TABLE runs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    name text NOT NULL,
    params text NOT NULL,
    target text NOT NULL,
    fingerprint text NOT NULL,
    max_concurrency integer NOT NULL,
    max_concurrency_spec text,
    max_errors integer,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at bigint NOT NULL,
    completed_at bigint,
    updated_at bigint NOT NULL
  );

  CREATE INDEX runs_open ON runs (seq) WHERE completed_at IS NULL;

  CREATE TABLE run_targets (
    run_id text NOT NULL REFERENCES runs (id),
    position integer NOT NULL,
    agent_id text NOT NULL,
    command_id text NOT NULL UNIQUE,
    offline_at_creation boolean NOT NULL,
    started_at bigint,
    skipped_at bigint,
    PRIMARY KEY (run_id, position)
  );
  `,
  // 8: the result retention (RESULT_RETENTION_DAYS) finds the oldest final commands and runs.
  `
  CREATE INDEX commands_completed ON commands (completed_at) WHERE completed_at IS NOT NULL;
  CREATE INDEX runs_completed ON runs (completed_at) WHERE completed_at IS NOT NULL;
  `,
  // 9: why the dashboard ended a command of its own accord (agent_removed: its agent was
  // removed while the command was queued, delivered or running).
  `
  ALTER TABLE commands ADD COLUMN end_cause text;
  `,
  // 10: a page of the fleet (GET /api/v1/agents?after=&limit=) read by the index, in byte order
  // whatever the database's collation.
  `
  CREATE INDEX agents_id_c ON agents (id COLLATE "C");
  `,
  // 11: the command each agent of a page of the fleet has in hand (GET /api/v1/agents), and how
  // many an agent has not final, read by the agent instead of through every command in hand.
  `
  CREATE INDEX commands_in_hand ON commands (agent_id, seq)
    WHERE status IN ('delivered', 'running');
  `,
  // 12: an agent's commands in one status, newest first (GET /api/v1/commands?agent_id=&status=,
  // the console's commands page filtered by both), read by the index of both: by the agent's or
  // the status's alone it went through the agent's whole history, or the fleet's commands in that
  // status, when few of them matched.
  `
  CREATE INDEX commands_agent_status ON commands (agent_id, status, seq);
  `,
];
