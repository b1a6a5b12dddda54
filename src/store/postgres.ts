/**
 * The {@link CommandStore} on PostgreSQL (the `postgres` npm package), for several dashboard
 * instances sharing one database. Schema created and migrated on open, versioned in
 * `status_schema` (see `_pg_migrations.ts`).
 *
 * What the database enforces, so that no instance's memory has to:
 *
 * - **Claims** take the next queued row with `FOR UPDATE SKIP LOCKED` in the same statement that
 *   marks it delivered: two instances never hand out one command, and neither waits for the other.
 * - **Idempotent enqueue**: `INSERT … ON CONFLICT (id) DO NOTHING`, then the existing row is
 *   compared; two instances enqueueing one id concurrently make one command.
 * - **First result wins**: the report locks the command row, and `results.command_id` is the
 *   primary key.
 * - **Leases** are ended by one statement over `FOR UPDATE SKIP LOCKED` rows, re-checked under
 *   the lock: with N instances expiring at once, each lease is requeued (or lost) exactly once.
 *
 * Changes other instances must hear of are sent with `pg_notify` inside the transaction that makes
 * them (delivered only when it commits): a command queued for an agent (enqueue, requeue,
 * release), a cancel of a delivered command, and an agent's token replaced or the agent removed. {@link PostgresStore.subscribe} listens.
 *
 * A database that a newer version of this program migrates while this one runs is found by the
 * next lease lookup or ping: the store then fails every call as a {@link StoreError} rather than
 * write by its older idea of the schema.
 *
 * Errors that mean "the server is not reachable now" (refused, dropped, shutting down), or "try
 * again" (a statement timeout, a deadlock, a serialization failure, resources of the moment), are
 * thrown as {@link StoreUnavailableError}; the pool reconnects on the next call by itself.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import postgres from "postgres";
import type { CommandStatus } from "../protocol/mod.ts";
import { checkBounds, checkChunkEnd, parseHeartbeat, planAppend } from "./_output.ts";
import { logger } from "../log/mod.ts";
import { PG_MIGRATION_LOCK, PG_MIGRATIONS, PG_TABLES } from "./_pg_migrations.ts";
import {
  checkAgentPage,
  checkCountLimit,
  checkPruneLimit,
  COMMAND_COLUMNS,
  COMMAND_COLUMNS_WITHOUT_OUTPUT,
  IDS_PER_STATEMENT,
  num,
  numOrNull,
  parseLabelsColumn,
  parseScopes,
  priorityRank,
  reportRefusal,
  reportText,
  type Row,
  strOrNull,
  TARGET_COLUMNS,
  TARGET_FROM,
  TARGET_GROUPS_SELECT,
  TARGET_STATE_COLUMNS,
  TARGET_STATE_FROM,
  toAgent,
  toCommand,
  toCommandState,
  toRun,
  toRunState,
  toRunSummary,
  toTarget,
  toTargetState,
} from "./_rows.ts";
import {
  isConnectionFailure,
  StoreError,
  StoreFullError,
  StoreUnavailableError,
} from "./errors.ts";
import {
  driverHosts,
  driverSocket,
  isPostgresUrl,
  postgresUrlProblem,
  redactUrl,
  sslModeOf,
  TIMEOUT_FLOOR_MS,
  unreadParams,
  withoutParams,
  withoutPassword,
} from "./url.ts";

export { isPostgresUrl, redactUrl };
import type {
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
  RunTargetOfCommand,
  RunTargetRecord,
  RunTargetState,
} from "./types.ts";
import { planRun, targetFinal } from "./runs.ts";
import {
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
  type CommandStore,
  type EnqueueOutcome,
  EXECUTION_LEASE_GRACE_SECS,
  type ExpireOutcome,
  type HeartbeatInput,
  type NewCommand,
  type OutputChunk,
  type OutputChunkInput,
  type OutputQuery,
  type OutputStream,
  type PruneCommandsOutcome,
  type PruneOutputOutcome,
  type RemovedAgent,
  type ReportInput,
  type ReportOutcome,
  type SharedStore,
  type StoreEvent,
  type StoreEventListener,
  type StorePing,
  type StoreSubscription,
} from "./types.ts";

/** First and largest delay between attempts to listen again after the connection closed, in ms. */
const LISTEN_RETRY_MIN_MS = 250;
const LISTEN_RETRY_MAX_MS = 5000;

/** The channel of {@link StoreEvent}s. */
export const PG_CHANNEL = "status_events";

/**
 * Request ids one sweep of the ended ones deletes at most: a sweep runs in an agent's request, and
 * the ids a big fleet's requests leave in a window, deleted at once, could outlast the query
 * timeout (failing that request and retiring the pool). A sweep that used its whole batch leaves
 * the rest to the next request's.
 */
export const REQUEST_ID_SWEEP_BATCH = 5000;

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /**
   * Connections in the pool.
   * @default {10}
   */
  maxConnections?: number;
  /**
   * How long a connection attempt may take before the call fails as unavailable, in seconds.
   * @default {5}
   */
  connectTimeoutSecs?: number;
  /**
   * How long one store operation may wait for the server before it fails as unavailable (its
   * outcome is then unknown; every operation is safe to repeat), in seconds. A server that stops
   * answering never hangs a request longer than this. The pool whose operation timed out is then
   * replaced (its connections may be gone without a word), and closed after this long again. A
   * transaction of this store idle this long is ended by the server
   * (`idle_in_transaction_session_timeout`).
   * @default {15}
   */
  queryTimeoutSecs?: number;
  /**
   * How often the connection that listens for the other instances' notifications is asked a
   * trivial query, in seconds. One that does not answer within `queryTimeoutSecs` is replaced: a
   * connection dropped without a word (a firewall forgetting an idle connection, a failover moving
   * the server's address) would otherwise lose every notification until TCP keep-alive noticed,
   * many minutes later.
   * @default {30}
   */
  listenCheckSecs?: number;
  /**
   * @internal This instance's clock (ms since the epoch), compared with the database server's;
   * tests pass one that is off.
   * @default {Date.now}
   */
  localClock?: () => number;
}

type Sql = postgres.Sql;
/** Hooks of the client a subscription listens on. */
interface ListenerHooks {
  onnotify(channel: string, payload: string): void;
  onclose(): void;
}
type Tx = postgres.TransactionSql;
type Querier = Sql | Tx;

const log = logger("store");

const FROM = `FROM commands c LEFT JOIN results r ON r.command_id = c.id`;
/** Selects a command with its result from a CTE `c` of updated rows. */
const FROM_UPDATED = `FROM c LEFT JOIN results r ON r.command_id = c.id`;

/**
 * A row when the queued command `commands.id` is a part of a run whose cancel was recorded: a claim
 * passes over it (the cancel's step cancels it), so no part is handed out once a cancel committed.
 */
const CANCELLED_RUN_PART = `SELECT 1 FROM run_targets t JOIN runs r ON r.id = t.run_id
  WHERE t.command_id = commands.id AND r.cancel_requested`;

/**
 * Statements whose cost must follow what they are asked for, not the size of the tables: a page
 * of agents, one agent, a batch of chunks (exported for the tests of their query plans).
 */
export const BOUNDED_SQL = {
  /**
   * `countOpenCommands`: the queued ones by the queue's index, the delivered and running ones by
   * the index of commands in hand (not through the agent's history and the fleet's open commands).
   */
  openCommands: `SELECT
     (SELECT count(*) FROM (SELECT 1 FROM commands
        WHERE agent_id = $1 AND status = 'queued' LIMIT $2) q) +
     (SELECT count(*) FROM (SELECT 1 FROM commands
        WHERE agent_id = $1 AND status IN ('delivered', 'running') LIMIT $2) h) AS n`,
  /**
   * `commandsInHand`: by the index of commands in hand, each agent's few, not every agent's.
   * (Each status alone: PostgreSQL sees that the index holds it, and the index's own IN term as
   * well made it count the fleet's commands in hand as far fewer than they are.)
   */
  commandsInHand: `SELECT ${COMMAND_COLUMNS_WITHOUT_OUTPUT} ${FROM}
     WHERE c.seq IN (
       SELECT coalesce(
         (SELECT h.seq FROM commands h
          WHERE h.agent_id = a.id AND h.status = 'running' ORDER BY h.seq LIMIT 1),
         (SELECT h.seq FROM commands h
          WHERE h.agent_id = a.id AND h.status = 'delivered' ORDER BY h.seq DESC LIMIT 1))
       FROM unnest($1::text[]) AS a(id))`,
  /**
   * `appendOutput`: where a stream's stored bytes end. Its chunks are apart and in order, so the
   * last one ends it (a max() over them read every chunk of the stream at each append).
   */
  streamEnd: `SELECT coalesce((SELECT byte_offset + length(data) FROM output_chunks
       WHERE command_id = $1 AND attempt = $2 AND stream = $3
       ORDER BY byte_offset DESC LIMIT 1), 0) AS e`,
  /**
   * `pruneOutput`: a batch of chunks in the order they came, each command found by its id, then
   * deleted by their keys (an `IN (subquery)` read every chunk to match them); chunks another
   * instance is pruning are skipped.
   */
  pruneOutput: `WITH gone AS (
     DELETE FROM output_chunks WHERE seq = ANY(ARRAY(
       SELECT o.seq FROM output_chunks o JOIN commands c ON c.id = o.command_id
       WHERE c.completed_at IS NOT NULL AND c.completed_at < $1
       ORDER BY o.seq LIMIT $2 FOR UPDATE OF o SKIP LOCKED))
     RETURNING 1
   ) SELECT count(*) AS n FROM gone`,
} as const;

/** SQLSTATE `too_many_connections`: the server's, the role's or the database's limit is reached. */
const TOO_MANY_CONNECTIONS = "53300";
/**
 * How far this instance's clock may be from the database server's before it says so, in ms: the
 * instances decide leases and queue expiry each with its own clock.
 */
const CLOCK_SKEW_WARN_MS = 2000;
/** A clock sample whose round trip took longer than this (a busy pool) is not used, in ms. */
const CLOCK_SAMPLE_MAX_RTT_MS = 1000;
/** The database server's time, in ms since the epoch, as a column `db_now`. */
const DB_NOW = "(extract(epoch FROM clock_timestamp()) * 1000)::float8 AS db_now";
/** The database's schema version, as a column `schema_version` (a newer program may migrate it). */
const SCHEMA_VERSION = "(SELECT max(version) FROM status_schema) AS schema_version";

/** Connections in the pool by default (the listening connection is one more). */
const POOL_SIZE = 10;
/** How long a pool's connection may stay idle before the store closes it, in seconds. */
const POOL_IDLE_SECS = 60;

/**
 * The driver's options the store depends on, whatever the URL's query or the environment's `PG*`
 * variables say: the array types read at connect (its statements take arrays), errors that do
 * not carry their statement's parameters where a log would print them, and a short wait before a
 * connection is made again after a failed one. The driver's own wait grows with each refused
 * connect up to 10 to 20 s, and a call made once the server is back waited that long (or failed
 * as unanswered): the dashboard paces its attempts itself (its probes and the listening
 * connection's, 0.25 s up to 5 s apart; the requests that need the store).
 */
const DRIVER_OPTIONS = { fetch_types: true, debug: false, backoff: () => 0.05 } as const;
/**
 * Settings each connection is opened with, whatever the database's or the role's defaults: binary
 * output in the format the driver reads, and the isolation the transactions are written for (a
 * claim's `SKIP LOCKED`, an enqueue's `ON CONFLICT` then read). The URL may not change them (see
 * `CONNECTION_SETTINGS`).
 */
const CONNECTION = {
  bytea_output: "hex",
  default_transaction_isolation: "read committed",
} as const;

/** SQLSTATE `disk_full`: the server has no room for the write (nothing of it was kept). */
const DISK_FULL = "53100";
/**
 * SQLSTATE `read_only_sql_transaction`: the server takes no writes now (demoted to a standby in a
 * failover, or writes turned off by default): unavailable until it takes them again.
 */
const READ_ONLY = "25006";
/** SQLSTATE `serialization_failure`: the transaction was rolled back. */
const SERIALIZATION_FAILURE = "40001";
/** SQLSTATE `deadlock_detected`: the transaction was rolled back, a deadlock's victim. */
const DEADLOCK = "40P01";
/** Times a transaction rolled back for a {@link SERIALIZATION_FAILURE} or {@link DEADLOCK} is run again. */
const TX_RETRIES = 2;
/**
 * Whether a SQLSTATE says the call may succeed if made again later, with nothing of it kept: class
 * 40 `serialization_failure`, `deadlock_detected` and `statement_completion_unknown` (the
 * transaction was rolled back, or its outcome is unknown); class 53, insufficient resources (out of
 * memory, shared memory or a limit of the moment; a full disk is told apart); `query_canceled` (a
 * `statement_timeout`, or an administrator's cancel); `lock_not_available` (a `lock_timeout`); the
 * server ending an idle session or transaction (`idle_session_timeout`, the idle-in-transaction
 * and transaction timeouts).
 */
function isTransientFailure(code: unknown): code is string {
  return typeof code === "string" &&
    (code.startsWith("53") ||
      ["40001", "40P01", "40003", "57014", "55P03", "57P05", "25P03", "25P04"].includes(code));
}
/**
 * Whether a SQLSTATE says the database server failed (class 58: an I/O error, a file it needs;
 * class XX: data or an index found corrupted, an internal error), not the call.
 */
function isServerFailure(code: unknown): boolean {
  return typeof code === "string" && (code.startsWith("58") || code.startsWith("XX"));
}

/**
 * Whether the server ended the session with its error (severity `FATAL`): it refused a new
 * connection (the database not taking connections, its `CONNECT` privilege revoked, the user's
 * password changed or the role dropped, the database dropped) or ended one. Nothing of the call
 * was kept, and a later one may connect.
 */
function isSessionRefused(error: unknown): boolean {
  const severity = (error as { severity?: unknown } | null)?.severity;
  return error instanceof Error && (severity === "FATAL" || severity === "PANIC");
}

/**
 * Opens (and creates or migrates) the store in the PostgreSQL database at `url`.
 *
 * @param url `postgres://user:password@host:port/database` (query parameters as `libpq`'s, e.g.
 *   `?sslmode=require`).
 * @param options Pool size and connect timeout.
 * @returns The open store; close it with {@link PostgresStore.close} or `await using`.
 * @throws {StoreError} When the server is unreachable, rejects the credentials, the database does
 *   not exist, holds foreign tables, was migrated by a newer version of this program, or cannot be
 *   written by this user (read-only, or privileges missing).
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  if (!isPostgresUrl(url)) {
    throw new TypeError(`not a postgres:// URL: ${JSON.stringify(redactUrl(url))}`);
  }
  const where = redactUrl(url);
  const problem = postgresUrlProblem(url);
  if (problem !== null) throw new StoreError(`cannot open database ${where}: ${problem}`);
  // A Unix socket's directory (libpq's ?host=/var/run/postgresql) is given to the driver apart.
  const socket = driverSocket(url);
  // Refused by Deno, the driver's connect to the socket would throw where nothing catches it.
  const denied = socket === null
    ? []
    : (["read", "write"] as const).filter((name) =>
      Deno.permissions.querySync({ name, path: socket.path }).state !== "granted"
    );
  if (denied.length > 0) {
    throw new StoreError(
      `cannot open database ${where}: permission denied by Deno to connect to the Unix socket ` +
        `${socket!.path}: run with ${denied.map((name) => `--allow-${name}`).join(" and ")} ` +
        "(for that path, or unrestricted; Deno asks for both to connect to a socket)",
    );
  }
  // No TLS over a Unix socket (the server offers none there): libpq ignores sslmode for one.
  const driverUrl = socket ? withoutParams(socket.url, ["sslmode", "sslrootcert"]) : url;
  // The driver's own "allow" insists on TLS; libpq's connects to a server with or without it, as
  // the driver's "prefer" does.
  const ssl = sslModeOf(driverUrl) === "allow" ? { ssl: "prefer" as const } : {};
  // An IPv6 address the driver cannot read from the URL is given to it apart.
  const hosts = (socket ? null : driverHosts(url)) ?? {};
  const path = socket ? { path: socket.path } : {};
  const queryTimeoutMs = (options.queryTimeoutSecs ?? 15) * 1000;
  const pool = () =>
    postgres(driverUrl, {
      ...ssl,
      ...hosts,
      ...path,
      max: options.maxConnections ?? POOL_SIZE,
      connect_timeout: options.connectTimeoutSecs ?? 5,
      idle_timeout: POOL_IDLE_SECS,
      ...DRIVER_OPTIONS,
      onnotice: (notice) => log.debug("PostgreSQL notice: {message}", { message: notice.message }),
      // A transaction left idle for the query timeout belongs to an operation already given up
      // on (this process froze: SIGSTOP, a paused VM): the server ends it then, so its row locks
      // (or the migration lock) do not stop the other instances for as long as the freeze lasts.
      // A setting of each connection, sent once when it opens, not a statement per transaction.
      connection: {
        application_name: "status",
        ...CONNECTION,
        idle_in_transaction_session_timeout: queryTimeoutMs,
      },
    });
  const unread = unreadParams(driverUrl);
  if (unread.length > 0) {
    log.warning(
      "database {location}: its URL's {params} are not read: status sets them itself (a pool of " +
        "{poolSize} connections, its own timeouts and reconnect pace, the driver's array types)",
      {
        location: where,
        params: unread.map((key) => `?${key}=`).join(", "),
        poolSize: options.maxConnections ?? POOL_SIZE,
      },
    );
  }
  let sql: Sql;
  try {
    sql = pool();
  } catch (error) {
    throw new StoreError(
      `cannot open database ${where}: ${withoutPassword((error as Error).message, url)}`,
      { cause: error },
    );
  }
  const store = new PostgresStore(
    sql,
    pool,
    where,
    queryTimeoutMs,
    (options.listenCheckSecs ?? 30) * 1000,
    // Named status-listen whatever the URL's ?application_name= says: the other instances find a
    // frozen instance's by that name (see PostgresStore.#endStuckListeners).
    (hooks) =>
      postgres(withoutParams(driverUrl, ["application_name"]), {
        ...ssl,
        ...hosts,
        ...path,
        ...hooks,
        max: 1,
        idle_timeout: 0,
        max_lifetime: null,
        connect_timeout: options.connectTimeoutSecs ?? 5,
        ...DRIVER_OPTIONS,
        onnotice: () => {},
        connection: { application_name: "status-listen", ...CONNECTION },
      }),
    options.localClock,
  );
  try {
    await firstAnswer(sql, where, options.connectTimeoutSecs ?? 5, queryTimeoutMs / 1000);
    await store.migrate();
    await store.ping(); // and compares the clocks
  } catch (error) {
    await store.close().catch(() => {});
    const typeFetch = store.typeFetchFailure;
    if (typeFetch !== null) {
      throw new StoreError(
        `cannot open database ${where}: ${
          withoutPassword(
            "the server failed the driver's first query on a new connection (it reads the " +
              `array types from pg_catalog.pg_type): ${typeFetch}; is statement_timeout very ` +
              "short for this user or in the URL, or is pg_catalog.pg_type not readable?",
            url,
          )
        }`,
        { cause: error },
      );
    }
    if (error instanceof StoreError) throw error;
    // A server not reachable, or not taking connections now, may be later: a caller may retry.
    const Failure = isConnectionFailure(error) ? StoreUnavailableError : StoreError;
    throw new Failure(
      `cannot open database ${where}: ${withoutPassword(describeOpenError(error, url), url)}`,
      { cause: error },
    );
  }
  return store;
}

/**
 * Waits for the server's first answer, for at most the connect and query timeouts. A port that
 * closes each connection before a whole PostgreSQL message (an HTTP server, a proxy with no server
 * behind it) fails no query of the driver: it reconnects at once, for good.
 *
 * @throws {StoreUnavailableError} When no answer came in time (the pool is then ended).
 */
async function firstAnswer(
  sql: Sql,
  where: string,
  connectTimeoutSecs: number,
  queryTimeoutSecs: number,
): Promise<void> {
  const secs = connectTimeoutSecs + queryTimeoutSecs;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const answer = sql`SELECT 1`;
  answer.catch(() => {});
  const late = new Promise<"late">((resolve) =>
    timer = setTimeout(() => resolve("late"), secs * 1000)
  );
  // A start that waits says so, and for how long (not as a connect times out: that fails it).
  const waitedSecs = connectTimeoutSecs + 1;
  const waiting = setTimeout(() => {
    log.warning(
      "database {location} has not answered within {waitedSecs} s; waiting up to {secs} s in " +
        "all before the start fails",
      { location: where, waitedSecs, secs },
    );
  }, waitedSecs * 1000);
  try {
    if (await Promise.race([answer, late]) !== "late") return;
  } finally {
    clearTimeout(timer);
    clearTimeout(waiting);
  }
  // Ended at once: the query still waiting would keep the driver reconnecting.
  await sql.end({ timeout: 0 }).catch(() => {});
  throw new StoreUnavailableError(
    `cannot open database ${where}: no PostgreSQL server answered within ${secs} s: the ` +
      "connection was made, then closed or left without an answer a PostgreSQL server gives " +
      "(is that address a PostgreSQL server's, and not another service's or a proxy's with no " +
      "server behind it?)",
  );
}

function describeOpenError(error: unknown, url: string): string {
  const e = error as { code?: string; message?: string; routine?: string };
  const sslmode = sslModeOf(url);
  if (
    sslmode !== null && !["disable", "allow", "prefer"].includes(sslmode) &&
    /\bTLS\b|\bSSL\b|certificate/i.test(e?.message ?? "")
  ) {
    const trust = sslmode === "require"
      ? ""
      : ", with a certificate this machine trusts for that host name";
    return `the TLS connection failed (${e?.code ? `${e.code} ` : ""}${e?.message}); the URL ` +
      `asks for sslmode=${sslmode}: does the server accept TLS${trust}?`;
  }
  if (e?.code === "28P01" || e?.code === "28000") {
    return `the server rejected the credentials (${e.message}); check the URL's user name and ` +
      "password (with @, :, / and % in them percent-encoded) and the server's pg_hba.conf for " +
      "this host";
  }
  if (e?.code === "3D000") return `${e.message}; create it first (createdb)`;
  if (e?.code === "42501") {
    // PostgreSQL 15 and later let only the database's owner create tables in schema public.
    return `${e.message}; the schema is created on first start, so the URL's user must own the ` +
      "database (createdb -O USER NAME, or ALTER DATABASE NAME OWNER TO USER) or be granted " +
      "CREATE on its schema";
  }
  if (e?.code === TOO_MANY_CONNECTIONS) {
    return `the server takes no more connections now (${e.code} ${e.message}); each status ` +
      `instance uses up to ${POOL_SIZE + 1}: raise max_connections (or the role's or ` +
      "database's CONNECTION LIMIT), or stop clients that hold connections";
  }
  if (e?.code === "ENOTFOUND" || e?.code === "EAI_AGAIN") {
    const host = (error as { hostname?: unknown }).hostname ??
      /(?:ENOTFOUND|EAI_AGAIN) (\S+)/.exec(e.message ?? "")?.[1] ?? "of the URL";
    return e.code === "ENOTFOUND"
      ? `the host name ${host} could not be found (ENOTFOUND); check the URL's host`
      : `the host name ${host} could not be resolved now (EAI_AGAIN); is DNS reachable?`;
  }
  const socket = driverSocket(url);
  if (socket !== null && e?.code === "ENOENT") {
    return `no PostgreSQL server listens on the Unix socket ${socket.path} (ENOENT): is the ` +
      "server running, with that directory among its unix_socket_directories, on that port?";
  }
  if (e?.code === "57P03") {
    // It answered: starting up (or recovering after a crash), shutting down, or a standby that
    // takes no connections yet.
    return `the server does not take connections now (${e.code} ${e.message}); start status ` +
      "again once it does";
  }
  if (isConnectionFailure(error)) {
    return `the server is not reachable (${e?.code ?? ""} ${e?.message ?? ""})`.replace(
      /\(\s+/,
      "(",
    ) + "; is PostgreSQL running, and listening on that host and port (its listen_addresses " +
      "and port), with no firewall in between?";
  }
  if (error instanceof Deno.errors.NotCapable || (error as Error)?.name === "NotCapable") {
    return "permission denied by Deno; run with --allow-net (and --allow-env, --allow-read for " +
      "the driver's defaults)";
  }
  return e?.message ?? String(error);
}

/**
 * Whether an uncaught error is the `postgres` driver's known fault on a connection that closed
 * while a small write was still scheduled: it writes to a socket it has already dropped
 * (`Cannot read properties of null (reading 'write')` in `nextWrite`; porsager/postgres#1066,
 * #1154, denoland/deno#34667). The query it belonged to has already failed as `CONNECTION_CLOSED`.
 *
 * @param error What was thrown.
 */
export function isDriverFault(error: unknown): boolean {
  return error instanceof TypeError && /reading 'write'/.test(error.message) &&
    /nextWrite/.test(error.stack ?? "") && /postgres/.test(error.stack ?? "");
}

/**
 * Whether an unhandled rejection is the `postgres` driver's read of the array types, which it
 * sends first on each new connection and which nothing awaits: its failure (a `statement_timeout`
 * too short for it, set for the user or in the URL; a database that does not let the user read
 * `pg_catalog.pg_type`) would otherwise end the process.
 *
 * @param reason What was rejected.
 */
export function isTypeFetchFailure(reason: unknown): boolean {
  const query = (reason as { query?: unknown } | null)?.query;
  return reason instanceof Error && typeof query === "string" &&
    /from pg_catalog\.pg_type a\s+left join pg_catalog\.pg_type b/.test(query);
}

/** The open stores, each told of a failure of the driver's read of the array types. */
const typeFetchWatchers = new Set<(message: string) => void>();
let typeFetchGuarded = false;

/**
 * Keeps a failure of the driver's read of the array types ({@link isTypeFetchFailure}) from
 * ending the process, for as long as it runs: a connection of a store being closed, or of a pool
 * retired, may fail it after its store stopped listening. Open stores are told of each.
 */
function guardTypeFetch(): void {
  if (typeFetchGuarded) return;
  typeFetchGuarded = true;
  globalThis.addEventListener("unhandledrejection", (event) => {
    if (!isTypeFetchFailure(event.reason)) return;
    event.preventDefault();
    const message = (event.reason as Error).message;
    // The connection was lost under it (a server shutting down): its calls fail as unavailable,
    // and the next connection reads the array types again; nothing to say of the read itself.
    if (isConnectionFailure(event.reason)) {
      log.debug("a connection was lost while the driver read the array types: {error}", {
        error: message,
      });
      return;
    }
    if (typeFetchWatchers.size === 0) {
      log.debug("the driver's read of the array types failed: {error}", { error: message });
    }
    for (const watcher of typeFetchWatchers) watcher(message);
  });
}

/** The {@link CommandStore} on PostgreSQL. See {@link openPostgresStore}. */
export class PostgresStore implements CommandStore, SharedStore {
  /** The database URL without its password. */
  readonly location: string;
  /** This store's id in notifications: it ignores its own. */
  readonly instanceId: string = crypto.randomUUID();
  #sql: Sql;
  readonly #pool: () => Sql;
  readonly #listenerConnection: (hooks: ListenerHooks) => Sql;
  /** Called when the driver faulted (see {@link isDriverFault}): the subscriptions start afresh. */
  readonly #onFault = new Set<() => void>();
  readonly #faultGuard: (event: ErrorEvent) => void;
  readonly #typeFetchWatcher: (message: string) => void;
  /** The last failure of the driver's read of the array types, or `null`. */
  #typeFetchFailure: string | null = null;
  readonly #queryTimeoutMs: number;
  readonly #listenCheckMs: number;
  #closed = false;
  #lastSweep = 0;
  /** Pools replaced after a timeout ({@link PostgresStore.#retirePool}), by their closing timer. */
  readonly #retired = new Map<ReturnType<typeof setTimeout>, Sql>();
  readonly #localClock: () => number;
  /** Whether this instance's clock was last found too far from the database server's. */
  #clockOff = false;
  /** How far it was then ahead of the server's, in ms (negative: behind), or `null` if not off. */
  #clockAheadMs: number | null = null;
  /**
   * Why this store is no longer used, once a newer version of status migrated its database while
   * it ran (found by {@link PostgresStore.ping} and the lease lookups), or `null`.
   */
  #newerSchema: string | null = null;

  /**
   * Wraps an open connection pool; use {@link openPostgresStore}.
   *
   * @param sql The pool.
   * @param pool Makes another pool like it (after a fault of the driver).
   * @param location The URL without its password.
   * @param queryTimeoutMs How long one operation may wait for the server.
   * @param listenCheckMs How often a listening connection is checked.
   * @param listenerConnection Makes the one-connection client that a subscription listens on.
   * @param localClock This instance's clock, compared with the database server's.
   */
  constructor(
    sql: Sql,
    pool: () => Sql,
    location: string,
    queryTimeoutMs: number,
    listenCheckMs: number,
    listenerConnection: (hooks: ListenerHooks) => Sql,
    localClock: () => number = Date.now,
  ) {
    this.#sql = sql;
    this.#pool = pool;
    this.#faultGuard = (event) => {
      if (!isDriverFault(event.error)) return;
      event.preventDefault();
      if (!this.#closed) this.#recover(event.error);
    };
    globalThis.addEventListener("error", this.#faultGuard);
    this.#typeFetchWatcher = (message) => {
      if (this.#typeFetchFailure === null) {
        log.error(
          "database {location} failed the driver's first query on a new connection (it reads " +
            "the array types from pg_catalog.pg_type): {error}; operations that pass lists of " +
            "values fail until a connection reads them (is statement_timeout very short for " +
            "this user, or is pg_catalog.pg_type not readable?)",
          { location, error: message },
        );
      }
      this.#typeFetchFailure = message;
    };
    guardTypeFetch();
    typeFetchWatchers.add(this.#typeFetchWatcher);
    this.location = location;
    this.#queryTimeoutMs = queryTimeoutMs;
    this.#listenCheckMs = listenCheckMs;
    this.#listenerConnection = listenerConnection;
    this.#localClock = localClock;
  }

  /**
   * @internal The last failure of the driver's read of the array types on a new connection (see
   * {@link isTypeFetchFailure}), or `null`: the reason an open failed, when one did.
   */
  get typeFetchFailure(): string | null {
    return this.#typeFetchFailure;
  }

  /** The schema version this program writes. */
  static get schemaVersion(): number {
    return PG_MIGRATIONS.length;
  }

  /**
   * Creates or migrates the schema (open does it; idempotent).
   *
   * @throws {StoreError} When the database is foreign or newer than this program.
   */
  async migrate(): Promise<void> {
    const sql = this.#sql;
    await sql.begin(async (tx) => {
      // Warned of as they are before the migrations are freed of them.
      await this.#checkTimeouts(tx);
      // A migration building an index on a large table (or waiting for the other instances'
      // transactions to let go of it), and another instance's wait for the lock meanwhile, may
      // take longer than the statement_timeout of the URL, the user or the database, which would
      // fail it at every start; the server's transaction_timeout (PostgreSQL 17) likewise. Set for
      // this transaction alone.
      await tx.unsafe(
        `SELECT set_config(name, '0', true) FROM pg_settings
         WHERE name IN ('statement_timeout', 'transaction_timeout')`,
      );
      // An instance frozen while it holds the lock loses it once idle for the query timeout (the
      // pool's connections end such a transaction): the others do not wait as long as it lasts.
      await this.#migrationLock(tx);
      await tx.unsafe("SET LOCAL client_min_messages = warning");
      const [{ present }] = await tx.unsafe(
        "SELECT to_regclass('status_schema') IS NOT NULL AS present",
      );
      let version = 0;
      if (present) {
        // Another program's table of that name has no such column, or not one integer in it.
        const [{ fits }] = await tx.unsafe(
          `SELECT count(*) = 1 AS fits FROM pg_attribute
           WHERE attrelid = to_regclass('status_schema') AND attname = 'version'
             AND atttypid = 'integer'::regtype AND NOT attisdropped`,
        );
        const rows = fits ? await tx.unsafe("SELECT version FROM status_schema") : [];
        if (rows.length !== 1 || !Number.isInteger(rows[0].version) || rows[0].version < 0) {
          throw new StoreError(
            `${this.location} is not a status database (its table status_schema does not hold ` +
              "one schema version)",
          );
        }
        version = num(rows[0].version);
      } else {
        const foreign = await tx.unsafe(
          `SELECT table_name FROM information_schema.tables
           WHERE table_schema = current_schema() AND table_name = ANY($1::text[])`,
          [[...PG_TABLES]],
        );
        if (foreign.length > 0) {
          throw new StoreError(
            `${this.location} is not a status database (it has a table ${foreign[0].table_name} ` +
              `but no status_schema)`,
          );
        }
        await tx.unsafe("CREATE TABLE status_schema (version integer NOT NULL)");
        await tx.unsafe("INSERT INTO status_schema (version) VALUES (0)");
      }
      if (version > PG_MIGRATIONS.length) {
        throw new StoreError(
          `${this.location} has schema version ${version}, newer than this program's ` +
            `${PG_MIGRATIONS.length}; use a newer version of status`,
        );
      }
      for (let v = version; v < PG_MIGRATIONS.length; v++) {
        try {
          await tx.unsafe(PG_MIGRATIONS[v]);
        } catch (error) {
          // Class 42 (a table or column that exists): the schema is not the one its version says.
          // A privilege missing (42501) is told with how to grant it. One transaction: all rolled
          // back.
          const code = (error as { code?: unknown } | null)?.code;
          if (typeof code !== "string" || !code.startsWith("42") || code === "42501") throw error;
          throw new StoreError(
            `cannot migrate database ${this.location} from schema version ${v} to ${v + 1}: ` +
              `${(error as Error).message}; it is left at version ${version}, as it was (was its ` +
              "schema changed by another program or by hand?)",
            { cause: error },
          );
        }
        await tx.unsafe("UPDATE status_schema SET version = $1", [v + 1]);
        log.info("database {location} migrated to schema version {version}", {
          location: this.location,
          version: v + 1,
        });
      }
      await this.#checkWritable(tx);
    });
  }

  /**
   * Warns of a server timeout set for this user or database (the URL's are refused before) so
   * short that most calls would fail: the database's own settings are its administrator's.
   */
  async #checkTimeouts(tx: Tx): Promise<void> {
    const short = await tx.unsafe(
      `SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[]) AND unit = 'ms'
         AND setting::bigint > 0 AND setting::bigint < $2::bigint ORDER BY name`,
      [["lock_timeout", "statement_timeout", "transaction_timeout"], TIMEOUT_FLOOR_MS],
    );
    for (const { name, setting } of short) {
      log.warning(
        "{name} is {ms} ms on {location} (set for this user or database, or by the URL's " +
          "?options=): the store's calls " +
          "that take longer fail, answered 503; set it to at least 1s, or 0 for none",
        { name, ms: Number(setting), location: this.location },
      );
    }
    // No row on a server without the setting (before PostgreSQL 14). The listening connection
    // turns it off for itself (see subscribe).
    const idle = await tx.unsafe(
      `SELECT setting FROM pg_settings WHERE name = 'idle_session_timeout' AND unit = 'ms'
         AND setting::bigint > 0 AND setting::bigint <= $1::bigint`,
      [POOL_IDLE_SECS * 1000],
    );
    for (const { setting } of idle) {
      log.warning(
        "idle_session_timeout is {ms} ms on {location} (set for this user or database, or by " +
          "the URL's ?options=): the server ends the store's connections idle that long, and a " +
          "call sent on one just then fails; set it to 0 for this user (ALTER ROLE ... SET " +
          "idle_session_timeout = 0) or above {poolIdleSecs} s",
        { ms: Number(setting), location: this.location, poolIdleSecs: POOL_IDLE_SECS },
      );
    }
  }

  /** Takes the migration lock; says who holds it when that means waiting. */
  async #migrationLock(tx: Tx): Promise<void> {
    const [{ locked }] = await tx.unsafe("SELECT pg_try_advisory_xact_lock($1) AS locked", [
      PG_MIGRATION_LOCK,
    ]);
    if (locked) return;
    const holders = await tx.unsafe(
      `SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = $1
         AND l.objsubid = 1 AND l.database = (
           SELECT oid FROM pg_database WHERE datname = current_database())`,
      [PG_MIGRATION_LOCK],
    );
    const holder = holders.length
      ? `process ${holders[0].pid} (${JSON.stringify(holders[0].application_name ?? "")})`
      : "another session";
    log.warning(
      "waiting for the schema lock of {location}, held by {holder}: another instance is " +
        "creating or migrating the schema",
      { location: this.location, holder },
    );
    await tx.unsafe("SELECT pg_advisory_xact_lock($1)", [PG_MIGRATION_LOCK]);
  }

  /**
   * Refuses a database this connection can read but not write (a standby, a read-only default, a
   * user granted SELECT only): the dashboard would start, say it is healthy, and fail every write.
   */
  async #checkWritable(tx: Tx): Promise<void> {
    const [{ read_only: readOnly, standby, user }] = await tx.unsafe(
      `SELECT current_setting('transaction_read_only') = 'on' AS read_only,
         pg_is_in_recovery() AS standby, current_user AS user`,
    );
    if (readOnly) {
      throw new StoreError(
        `${this.location} is read-only (${
          standby
            ? "a standby server in recovery"
            : "default_transaction_read_only is on for this user or database"
        }); status writes to its database: use the primary server's URL, or a user and ` +
          "database where writes are allowed",
      );
    }
    const missing = await tx.unsafe(
      `SELECT t.name, p.privilege FROM unnest($1::text[]) WITH ORDINALITY AS t (name, i)
         CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS p (privilege, j)
       WHERE NOT has_table_privilege(t.name, p.privilege) ORDER BY t.i, p.j`,
      [[...PG_TABLES], ["SELECT", "INSERT", "UPDATE", "DELETE"]],
    );
    if (missing.length > 0) {
      const list = missing.map((row) => `${row.privilege} on ${row.name}`);
      throw new StoreError(
        `${this.location}: user ${JSON.stringify(user)} lacks ${list.slice(0, 3).join(", ")}` +
          `${list.length > 3 ? ` and ${list.length - 3} more privileges` : ""}; status reads ` +
          "and writes all its tables: connect as the database's owner, or grant that user SELECT, " +
          "INSERT, UPDATE and DELETE on its tables",
      );
    }
  }

  /**
   * Runs one store operation, mapping connection failures to {@link StoreUnavailableError}.
   *
   * @param onPool Whether it runs on the pool (which is replaced when it times out).
   */
  async #run<T>(what: string, fn: (sql: Sql) => Promise<T>, onPool = true): Promise<T> {
    if (this.#closed) throw new StoreError(`database ${this.location} is closed`);
    if (this.#newerSchema !== null) throw new StoreError(this.#newerSchema);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const sql = this.#sql;
      const answer = fn(sql);
      // Settled even when the timeout wins the race (its late failure is of no interest then).
      answer.catch(() => {});
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          if (onPool) this.#retirePool(sql, what);
          reject(
            new StoreUnavailableError(
              `database ${this.location} did not answer within ` +
                `${this.#queryTimeoutMs / 1000} s (${what}); the outcome is unknown`,
            ),
          );
        }, this.#queryTimeoutMs);
      });
      return await Promise.race([answer, timeout]);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      if (this.#closed) {
        throw new StoreError(`database ${this.location} is closed`, { cause: error });
      }
      if ((error as { code?: unknown })?.code === DISK_FULL) {
        throw new StoreFullError(
          `database ${this.location} is full (${what}): ${(error as Error).message}`,
          { cause: error },
        );
      }
      if ((error as { code?: unknown })?.code === READ_ONLY) {
        throw new StoreUnavailableError(
          `database ${this.location} takes no writes now (${what}): ${(error as Error).message}`,
          { cause: error },
        );
      }
      if (isConnectionFailure(error)) {
        const e = error as { code?: string; message?: string };
        throw new StoreUnavailableError(
          `database ${this.location} is unavailable (${what}): ${e.code ?? ""} ${e.message ?? ""}`
            .trimEnd(),
          { cause: error },
        );
      }
      const code = (error as { code?: unknown })?.code;
      if (isTransientFailure(code)) {
        // The dashboard answers 503 with Retry-After: the same request may succeed in a moment.
        throw new StoreUnavailableError(
          `database ${this.location} could not finish the call now (${what}): ` +
            `${(error as Error).message} (SQLSTATE ${code}); it may succeed if made again`,
          { cause: error },
        );
      }
      if (isSessionRefused(error)) {
        // Answered 503 with Retry-After, and probed until it takes connections again.
        throw new StoreUnavailableError(
          `database ${this.location} refused the connection (${what}): ` +
            `${(error as Error).message} (SQLSTATE ${code})`,
          { cause: error },
        );
      }
      if (isServerFailure(code)) {
        // The dashboard answers 503 and its /health says the store is failing.
        throw new StoreError(
          `database ${this.location} failed (${what}): ${(error as Error).message} (SQLSTATE ` +
            `${(error as { code: string }).code})`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * After an operation on the pool `sql` timed out: its connections may be gone without a word (a
   * failover moved the server's address, a firewall forgot them), and the driver would go on
   * queueing every operation behind them until TCP gives up, many minutes later. New operations
   * get a new pool (once per pool: the first timeout of the pool in use); the old one is given
   * the query timeout to finish what it was doing (its operations have given up by then), and is
   * then closed.
   */
  #retirePool(sql: Sql, what: string): void {
    if (this.#closed || sql !== this.#sql) return;
    log.warning(
      "database {location} did not answer within {secs} s ({what}): its connections may be gone " +
        "without a word (a failover, a firewall that forgot them); new operations use new " +
        "connections",
      { location: this.location, secs: this.#queryTimeoutMs / 1000, what },
    );
    this.#sql = this.#pool();
    const timer = setTimeout(() => {
      this.#retired.delete(timer);
      sql.end({ timeout: 0 }).catch(() => {});
    }, this.#queryTimeoutMs);
    this.#retired.set(timer, sql);
  }

  /**
   * Runs one store operation in a transaction (which the server ends once idle for the query
   * timeout: see the pool's `idle_in_transaction_session_timeout`). A transaction the server
   * rolled back as a deadlock's victim or for a serialization failure is run again, up to
   * {@link TX_RETRIES} times within the operation's timeout: nothing of it was kept, and nothing
   * was told (its notifications go at commit), so callers rarely see a `503` for it.
   */
  #tx<T>(what: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.#run(what, async (sql) => {
      for (let retry = 0;; retry++) {
        try {
          return await (sql.begin((tx) => fn(tx)) as Promise<T>);
        } catch (error) {
          const code = (error as { code?: unknown })?.code;
          // Not once the operation timed out (its pool was retired) or the store was closed.
          const again = (code === SERIALIZATION_FAILURE || code === DEADLOCK) &&
            retry < TX_RETRIES && sql === this.#sql && !this.#closed;
          if (!again) throw error;
          log.debug("database {location} rolled back {what} (SQLSTATE {code}); running it again", {
            location: this.location,
            what,
            code,
          });
        }
      }
    });
  }

  async #command(q: Querier, id: string, lock = false): Promise<CommandRecord | null> {
    // FOR UPDATE OF c: lock the command row (a LEFT JOIN's nullable side cannot be locked).
    const rows = await q.unsafe(
      `SELECT ${COMMAND_COLUMNS} ${FROM} WHERE c.id = $1${lock ? " FOR UPDATE OF c" : ""}`,
      [id],
    );
    return rows.length ? toCommand(rows[0] as Row) : null;
  }

  async #mustCommand(q: Querier, id: string): Promise<CommandRecord> {
    const command = await this.#command(q, id);
    if (!command) throw new StoreError(`command ${id} vanished inside a transaction`);
    return command;
  }

  /** Sends events to the other instances when the transaction commits (one round trip). */
  #notify(q: Querier, ...events: StoreEvent[]): Promise<unknown> {
    return q.unsafe(
      "SELECT pg_notify($1, e) FROM unnest($2::text[]) WITH ORDINALITY AS x(e, i) ORDER BY i",
      [
        PG_CHANNEL,
        events.map((event) => JSON.stringify({ ...event, instance: this.instanceId })),
      ],
    );
  }

  // -- agents

  /** {@inheritDoc CommandStore.addAgent} */
  addAgent(
    agent: { id: string; token: string | null; scopes: readonly AgentScope[]; now: number },
  ): Promise<boolean> {
    return this.#run("add agent", async (sql) => {
      const rows = await sql.unsafe(
        `INSERT INTO agents (id, token, scopes, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [agent.id, agent.token, JSON.stringify([...agent.scopes]), agent.now],
      );
      return rows.length === 1;
    });
  }

  /** {@inheritDoc CommandStore.ensureAgent} */
  ensureAgent(id: string, now: number): Promise<AgentRecord> {
    return this.#run("register agent", async (sql) => {
      await sql.unsafe(
        `INSERT INTO agents (id, token, scopes, created_at, last_seen_at)
         VALUES ($1, NULL, $2, $3, NULL) ON CONFLICT (id) DO NOTHING`,
        [id, JSON.stringify(AGENT_SCOPES), now],
      );
      const rows = await sql.unsafe("SELECT * FROM agents WHERE id = $1", [id]);
      if (!rows.length) throw new StoreError(`agent ${id} was removed while it was registered`);
      return toAgent(rows[0] as Row);
    });
  }

  /**
   * {@inheritDoc CommandStore.getAgent}
   *
   * Not cached: one indexed read, so another instance's or process's change is seen at once.
   */
  getAgent(id: string): Promise<AgentRecord | null> {
    return this.#run("read agent", async (sql) => {
      const rows = await sql.unsafe("SELECT * FROM agents WHERE id = $1", [id]);
      return rows.length ? toAgent(rows[0] as Row) : null;
    });
  }

  /** {@inheritDoc CommandStore.listAgents} */
  listAgents(page?: AgentPage): Promise<AgentSummary[]> {
    return this.#run("list agents", async (sql) => {
      checkAgentPage(page);
      const args: string[] = [];
      // Ids compare as bytes ("C"), as in JavaScript and SQLite, by the index agents_id_c.
      const where = page?.after === undefined
        ? ""
        : `WHERE a.id COLLATE "C" > $${args.push(page.after)}`;
      const limit = page?.limit === undefined ? "" : `LIMIT $${args.push(String(page.limit))}`;
      const rows = await sql.unsafe(
        `SELECT a.id, a.token IS NOT NULL AS has_token, a.scopes, a.created_at, a.last_seen_at,
           a.version, a.deployment_hash, a.instance_id, a.heartbeat, a.heartbeat_at, a.labels,
           (SELECT count(*) FROM commands c WHERE c.agent_id = a.id AND c.status = 'queued')
             AS queued
         FROM agents a ${where} ORDER BY a.id COLLATE "C" ${limit}`,
        args,
      );
      return rows.map((row) => ({
        id: String(row.id),
        hasToken: row.has_token === true,
        scopes: parseScopes(String(row.scopes)),
        createdAt: num(row.created_at),
        lastSeenAt: numOrNull(row.last_seen_at),
        queued: num(row.queued),
        version: strOrNull(row.version),
        deploymentHash: strOrNull(row.deployment_hash),
        instanceId: strOrNull(row.instance_id),
        heartbeat: parseHeartbeat(row.heartbeat),
        heartbeatAt: numOrNull(row.heartbeat_at),
        labels: parseLabelsColumn(row.labels),
      }));
    });
  }

  /** {@inheritDoc CommandStore.countAgents} */
  countAgents(through?: string): Promise<number> {
    return this.#run("count agents", async (sql) => {
      // In byte order ("C"), as listAgents pages, by the index agents_id_c.
      const rows = through === undefined
        ? await sql.unsafe("SELECT count(*) AS n FROM agents")
        : await sql.unsafe(`SELECT count(*) AS n FROM agents WHERE id COLLATE "C" <= $1`, [
          through,
        ]);
      return num(rows[0].n);
    });
  }

  /** {@inheritDoc CommandStore.listAgentsSeen} */
  listAgentsSeen(): Promise<AgentSeen[]> {
    return this.#run("list agents' last-seen times", async (sql) => {
      const rows = await sql.unsafe(`SELECT id, last_seen_at FROM agents`);
      return rows.map((row) => ({ id: String(row.id), lastSeenAt: numOrNull(row.last_seen_at) }));
    });
  }

  /** {@inheritDoc CommandStore.setAgentToken} */
  setAgentToken(id: string, token: string): Promise<boolean> {
    return this.#tx("set agent token", async (tx) => {
      const rows = await tx.unsafe("UPDATE agents SET token = $1 WHERE id = $2 RETURNING id", [
        token,
        id,
      ]);
      // Every instance ends the waits the agent opened with the old token.
      if (rows.length === 1) await this.#notify(tx, { type: "revoked", agentId: id });
      return rows.length === 1;
    });
  }

  /** {@inheritDoc CommandStore.removeAgent} */
  removeAgent(id: string, now: number): Promise<RemovedAgent | null> {
    return this.#tx("remove agent", async (tx): Promise<RemovedAgent | null> => {
      const rows = await tx.unsafe("DELETE FROM agents WHERE id = $1 RETURNING id", [id]);
      if (rows.length !== 1) return null;
      // Every instance ends the waits the agent opened (the ended commands' events follow).
      await this.#notify(tx, { type: "revoked", agentId: id });
      return { ended: await this.#endCommandsOf(tx, id, now) };
    });
  }

  /** {@inheritDoc CommandStore.endCommandsOfRemovedAgent} */
  endCommandsOfRemovedAgent(agentId: string, now: number): Promise<CommandRecord[]> {
    return this.#tx("end commands of a removed agent", async (tx) => {
      const agent = await tx.unsafe("SELECT 1 FROM agents WHERE id = $1", [agentId]);
      return agent.length > 0 ? [] : await this.#endCommandsOf(tx, agentId, now);
    });
  }

  /**
   * Cancels the agent's commands not final as its removal does, inside a transaction, and tells
   * the other instances of each.
   */
  async #endCommandsOf(tx: Querier, agentId: string, now: number): Promise<CommandRecord[]> {
    // The commands are locked in enqueue order, as a report or a claim would find them.
    const ended = await tx.unsafe(
      `WITH due AS (
         SELECT seq FROM commands
         WHERE agent_id = $1 AND status IN ('queued', 'delivered', 'running')
         ORDER BY seq FOR UPDATE
       ), c AS (
         UPDATE commands u SET status = 'cancelled', lease_expires_at = NULL, completed_at = $2,
           updated_at = $2, end_cause = 'agent_removed'
         FROM due WHERE u.seq = due.seq
         RETURNING u.*
       )
       SELECT ${COMMAND_COLUMNS} ${FROM_UPDATED} ORDER BY c.seq`,
      [agentId, now],
    );
    if (ended.length > 0) {
      await this.#notify(
        tx,
        ...ended.map((row): StoreEvent => ({ type: "changed", commandId: String(row.id) })),
      );
    }
    return ended.map((row) => toCommand(row as Row));
  }

  /** {@inheritDoc CommandStore.touchAgent} */
  touchAgent(id: string, now: number): Promise<void> {
    return this.touchAgents([[id, now]]);
  }

  /** {@inheritDoc CommandStore.touchAgents} */
  touchAgents(seen: Iterable<readonly [string, number]>): Promise<void> {
    const latest = new Map<string, number>();
    for (const [id, at] of seen) latest.set(id, Math.max(at, latest.get(id) ?? at));
    if (latest.size === 0) return Promise.resolve();
    return this.#run("record last seen", async (sql) => {
      // The rows are locked in the order of their ids first: every instance flushes the agents
      // it saw, in the order it saw them, and two flushes locking shared rows in other orders
      // deadlock (one of them then fails). Not for a key update: an enqueue holding its agent's
      // row (against a removal) does not wait for a flush.
      await sql.unsafe(
        `WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS v (id, at)),
         locked AS MATERIALIZED (
           SELECT a.id FROM agents a JOIN v ON v.id = a.id
           WHERE a.last_seen_at IS NULL OR a.last_seen_at < v.at
           ORDER BY a.id FOR NO KEY UPDATE OF a
         )
         UPDATE agents a SET last_seen_at = v.at FROM v, locked l
         WHERE a.id = v.id AND l.id = a.id AND (a.last_seen_at IS NULL OR a.last_seen_at < v.at)`,
        [[...latest.keys()], [...latest.values()].map(String)],
      );
    });
  }

  /** {@inheritDoc CommandStore.hasAgentWithToken} */
  hasAgentWithToken(): Promise<boolean> {
    return this.#run("read agents", async (sql) => {
      const rows = await sql.unsafe("SELECT 1 FROM agents WHERE token IS NOT NULL LIMIT 1");
      return rows.length > 0;
    });
  }

  // -- commands

  /** {@inheritDoc CommandStore.enqueue} */
  enqueue(
    command: NewCommand,
    claim?: Pick<ClaimRequest, "deploymentHash" | "deliveryLeaseMs">,
  ): Promise<EnqueueOutcome> {
    return this.#tx("enqueue", async (tx): Promise<EnqueueOutcome> => {
      // A run's part whose run was cancelled is stored cancelled, never queued: a step that read
      // the run before the cancel (another instance's, enqueueing its parts one by one) hands out
      // none after the cancel committed. The run's row is read under a shared lock: a cancel
      // under way commits before this reads it, or waits until this enqueue has committed.
      // The agent's row is held as well (a removal deletes it): a removal under way on another
      // instance commits first, the caller then finding the agent gone, or waits for this enqueue
      // and ends the new command with the agent's others.
      const inserted = await tx.unsafe(
        `WITH agent AS MATERIALIZED (
           SELECT 1 FROM agents WHERE id = $2 FOR KEY SHARE
         ), part AS MATERIALIZED (
           SELECT r.cancel_requested FROM run_targets t JOIN runs r ON r.id = t.run_id
           WHERE t.command_id = $1 FOR SHARE OF r
         ), s AS (
           SELECT CASE WHEN EXISTS (SELECT 1 FROM part WHERE cancel_requested)
             THEN 'cancelled' ELSE 'queued' END AS status
         )
         INSERT INTO commands (id, agent_id, deployment_hash, name, params, priority, fingerprint,
           status, attempt, created_at, updated_at, expires_at, completed_at)
         SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::integer, $7::text, s.status,
           1, $8::bigint, $8::bigint, $9::bigint,
           CASE WHEN s.status = 'cancelled' THEN $8::bigint END
         FROM s CROSS JOIN (SELECT count(*) FROM agent) AS held
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [
          command.id,
          command.agentId,
          command.params.deployment_hash ?? null,
          command.name,
          JSON.stringify(command.params),
          priorityRank(command.params.priority),
          command.fingerprint,
          command.now,
          command.expiresAt ?? null,
        ],
      );
      if (inserted.length === 0) {
        // Another transaction (any instance) inserted this id first; it has committed by now.
        const existing = await this.#mustCommand(tx, command.id);
        const same = existing.fingerprint === command.fingerprint &&
          existing.agentId === command.agentId;
        return { outcome: same ? "duplicate" : "conflict", command: existing };
      }
      const created = await this.#mustCommand(tx, command.id);
      let claimed: CommandRecord | null | undefined;
      if (claim) {
        claimed = await this.#claimIn(tx, {
          agentId: command.agentId,
          deploymentHash: claim.deploymentHash,
          now: command.now,
          deliveryLeaseMs: claim.deliveryLeaseMs,
        });
      }
      // Unless this instance's own wait took it, a wait elsewhere may want it.
      const events: StoreEvent[] = [{ type: "changed", commandId: command.id }];
      if (claimed && claimed.id !== command.id) {
        events.push({ type: "changed", commandId: claimed.id });
      }
      if (created.status === "queued" && claimed?.id !== command.id) {
        events.push({ type: "queued", agentId: command.agentId });
      }
      await this.#notify(tx, ...events);
      return claim
        ? { outcome: "created", command: created, claimed: claimed ?? null }
        : { outcome: "created", command: created };
    });
  }

  /** {@inheritDoc CommandStore.claimNext} */
  claimNext(request: ClaimRequest): Promise<CommandRecord | null> {
    // One statement (its own transaction); with nothing queued it changes no row and writes nothing.
    return this.#run("claim", (sql) => this.#claimIn(sql, request));
  }

  async #claimIn(q: Querier, request: ClaimRequest): Promise<CommandRecord | null> {
    const rows = await q.unsafe(
      `WITH next AS (
         SELECT seq FROM commands
         WHERE agent_id = $1 AND status = 'queued'
           AND (deployment_hash IS NULL OR deployment_hash = $2)
           AND (expires_at IS NULL OR expires_at > $4)
           AND NOT EXISTS (${CANCELLED_RUN_PART})
         ORDER BY priority, seq LIMIT 1
         FOR UPDATE SKIP LOCKED
       ), c AS (
         UPDATE commands u SET status = 'delivered', lease_expires_at = $3, delivered_at = $4,
           delivered_attempt = u.attempt, acked_at = NULL, updated_at = $4
         FROM next WHERE u.seq = next.seq AND u.status = 'queued'
         RETURNING u.*
       ), notified AS (
         SELECT pg_notify($5, json_build_object('type', 'changed', 'commandId', c.id,
           'instance', $6::text)::text) FROM c
       )
       SELECT ${COMMAND_COLUMNS} ${FROM_UPDATED} CROSS JOIN (SELECT count(*) FROM notified) AS n`,
      [
        request.agentId,
        request.deploymentHash,
        request.now + request.deliveryLeaseMs,
        request.now,
        PG_CHANNEL,
        this.instanceId,
      ],
    );
    return rows.length ? toCommand(rows[0] as Row) : null;
  }

  /** {@inheritDoc CommandStore.release} */
  release(commandId: string, attempt: number, now: number): Promise<boolean> {
    return this.#tx("release", async (tx) => {
      const rows = await tx.unsafe(
        `UPDATE commands SET status = 'queued', lease_expires_at = NULL,
           delivered_attempt = attempt - 1, updated_at = $1
         WHERE id = $2 AND status = 'delivered' AND attempt = $3 RETURNING agent_id`,
        [now, commandId, attempt],
      );
      if (rows.length === 0) return false;
      await this.#notify(
        tx,
        { type: "queued", agentId: String(rows[0].agent_id) },
        { type: "changed", commandId },
      );
      return true;
    });
  }

  /** {@inheritDoc CommandStore.ack} */
  ack(request: AckRequest): Promise<AckOutcome> {
    return this.#tx("ack", async (tx): Promise<AckOutcome> => {
      const command = await this.#command(tx, request.commandId, true);
      if (!command) return { outcome: "not_found" };
      if (command.agentId !== request.agentId) return { outcome: "forbidden", command };
      if (command.attempt !== request.attempt) return { outcome: "stale", command };
      if (command.status === "running") return { outcome: "acked", command };
      if (command.status !== "delivered") return { outcome: "stale", command };
      const timeoutSecs = command.params.timeout_secs ?? request.defaultTimeoutSecs;
      const lease = request.now + (timeoutSecs + EXECUTION_LEASE_GRACE_SECS) * 1000;
      await tx.unsafe(
        `UPDATE commands SET status = 'running', lease_expires_at = $1, acked_at = $2,
           updated_at = $2 WHERE id = $3`,
        [lease, request.now, command.id],
      );
      await this.#notify(tx, { type: "changed", commandId: command.id });
      return { outcome: "acked", command: await this.#mustCommand(tx, command.id) };
    });
  }

  /** {@inheritDoc CommandStore.report} */
  report(input: ReportInput): Promise<ReportOutcome> {
    return this.#tx("report", async (tx): Promise<ReportOutcome> => {
      const command = await this.#command(tx, input.commandId, true);
      if (!command) return { outcome: "not_found" };
      const refused = reportRefusal(command, input);
      if (refused) return refused;
      const r = input.result;
      const inserted = await tx.unsafe(
        `INSERT INTO results (command_id, attempt, status, has_output, exit_code, signal,
           duration_secs, stdout, stderr, stdout_truncated_bytes, stderr_truncated_bytes, error,
           started_at, completed_at, reported_at, output_escaped, stdout_encoding, stderr_encoding)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, true, $16, $17)
         ON CONFLICT (command_id) DO NOTHING RETURNING command_id`,
        [
          command.id,
          input.attempt,
          input.status,
          r !== null,
          r?.exitCode ?? null,
          reportText(r?.signal ?? null),
          r?.durationSecs ?? null,
          r ? JSON.stringify(r.stdout) : null,
          r ? JSON.stringify(r.stderr) : null,
          r?.stdoutTruncatedBytes ?? null,
          r?.stderrTruncatedBytes ?? null,
          reportText(input.error),
          input.startedAt,
          input.completedAt,
          input.now,
          r?.stdoutEncoding ?? null,
          r?.stderrEncoding ?? null,
        ],
      );
      if (inserted.length === 0) {
        return { outcome: "duplicate", command: await this.#mustCommand(tx, command.id) };
      }
      await tx.unsafe(
        `UPDATE commands SET status = $1, lease_expires_at = NULL, completed_at = $2,
           updated_at = $2, end_cause = NULL WHERE id = $3`,
        [input.status, input.now, command.id],
      );
      await this.#notify(tx, { type: "changed", commandId: command.id });
      return { outcome: "accepted", command: await this.#mustCommand(tx, command.id) };
    });
  }

  /** {@inheritDoc CommandStore.cancel} */
  cancel(commandId: string, now: number): Promise<CancelOutcome> {
    return this.#tx("cancel", async (tx): Promise<CancelOutcome> => {
      const command = await this.#command(tx, commandId, true);
      if (!command) return { outcome: "not_found" };
      if (command.status === "queued") {
        await tx.unsafe(
          `UPDATE commands SET status = 'cancelled', completed_at = $1, updated_at = $1
           WHERE id = $2`,
          [now, commandId],
        );
        await this.#notify(tx, { type: "cancel", commandId });
        return { outcome: "cancelled", command: await this.#mustCommand(tx, commandId) };
      }
      if (command.status === "delivered" || command.status === "running") {
        if (!command.cancelRequested) {
          await tx.unsafe(
            "UPDATE commands SET cancel_requested = true, updated_at = $1 WHERE id = $2",
            [now, commandId],
          );
        }
        await this.#notify(tx, { type: "cancel", commandId });
        return { outcome: "requested", command: await this.#mustCommand(tx, commandId) };
      }
      return { outcome: "final", command };
    });
  }

  /** {@inheritDoc CommandStore.requeueExpired} */
  requeueExpired(now: number, maxAttempts: number): Promise<ExpireOutcome> {
    return this.#tx("expire leases", async (tx) => {
      const rows = await tx.unsafe(
        `WITH due AS (
           SELECT seq, lease_expires_at AS old_lease FROM commands
           WHERE lease_expires_at IS NOT NULL AND lease_expires_at <= $1
             AND status IN ('delivered', 'running')
           FOR UPDATE SKIP LOCKED
         ), c AS (
           UPDATE commands u SET
             status = CASE WHEN u.cancel_requested THEN 'cancelled'
                           WHEN u.attempt >= $2 THEN 'lost' ELSE 'queued' END,
             attempt = CASE WHEN NOT u.cancel_requested AND u.attempt < $2
                            THEN u.attempt + 1 ELSE u.attempt END,
             acked_at = CASE WHEN NOT u.cancel_requested AND u.attempt < $2
                             THEN NULL ELSE u.acked_at END,
             completed_at = CASE WHEN NOT u.cancel_requested AND u.attempt < $2
                                 THEN u.completed_at ELSE $1 END,
             lease_expires_at = NULL,
             updated_at = $1
           FROM due
           WHERE u.seq = due.seq AND u.lease_expires_at <= $1
             AND u.status IN ('delivered', 'running')
           RETURNING u.*, due.old_lease
         )
         SELECT ${COMMAND_COLUMNS}, c.old_lease ${FROM_UPDATED}
         ORDER BY c.old_lease, c.seq`,
        [now, maxAttempts],
      );
      const outcome: ExpireOutcome = { requeued: [], lost: [], cancelled: [], expired: [] };
      for (const row of rows) {
        const command = toCommand(row as Row);
        if (command.status === "queued") outcome.requeued.push(command);
        else if (command.status === "lost") outcome.lost.push(command);
        else outcome.cancelled.push(command);
      }
      // Then queue expiry (also of a command just queued again: reported once, as expired).
      const expired = await tx.unsafe(
        `WITH due AS (
           SELECT seq FROM commands
           WHERE status = 'queued' AND expires_at IS NOT NULL AND expires_at <= $1
           FOR UPDATE SKIP LOCKED
         ), c AS (
           UPDATE commands u SET status = 'expired', completed_at = $1, updated_at = $1
           FROM due WHERE u.seq = due.seq AND u.status = 'queued'
           RETURNING u.*
         )
         SELECT ${COMMAND_COLUMNS} ${FROM_UPDATED} ORDER BY c.expires_at, c.seq`,
        [now],
      );
      outcome.expired = expired.map((row) => toCommand(row as Row));
      const gone = new Set(outcome.expired.map((c) => c.id));
      outcome.requeued = outcome.requeued.filter((c) => !gone.has(c.id));
      const events: StoreEvent[] = [
        ...[...rows, ...expired].map((row): StoreEvent => ({
          type: "changed",
          commandId: String(row.id),
        })),
        ...[...new Set(outcome.requeued.map((c) => c.agentId))].map((agentId): StoreEvent => ({
          type: "queued",
          agentId,
        })),
      ];
      if (events.length > 0) await this.#notify(tx, ...events);
      return outcome;
    });
  }

  /** {@inheritDoc CommandStore.nextLeaseExpiry} */
  nextLeaseExpiry(): Promise<number | null> {
    return this.#run("read leases", async (sql) => {
      // Looked up every few seconds by each instance: the clocks are compared too.
      const sentAt = this.#localClock();
      const rows = await sql.unsafe(
        `SELECT least(
           (SELECT min(lease_expires_at) FROM commands
            WHERE lease_expires_at IS NOT NULL AND status IN ('delivered', 'running')),
           (SELECT min(expires_at) FROM commands
            WHERE status = 'queued' AND expires_at IS NOT NULL)) AS at, ${DB_NOW},
           ${SCHEMA_VERSION}, pg_notification_queue_usage() > 0 AS behind`,
      );
      this.#compareClocks(rows[0]?.db_now, sentAt);
      this.#checkSchema(rows[0]?.schema_version);
      if (rows[0]?.behind === true) {
        await this.#endStuckListeners(sql).catch((error) =>
          log.debug("could not look for frozen instances' notification connections: {error}", {
            error,
          })
        );
      }
      return numOrNull(rows[0]?.at);
    });
  }

  /** {@inheritDoc CommandStore.getCommand} */
  getCommand(id: string): Promise<CommandRecord | null> {
    return this.#run("read command", (sql) => this.#command(sql, id));
  }

  /** {@inheritDoc CommandStore.getCommandState} */
  getCommandState(id: string): Promise<RunCommandState | null> {
    return this.#run("read command state", async (sql) => {
      const rows = await sql.unsafe(
        `SELECT status AS c_status, cancel_requested AS c_cancel_requested,
         updated_at AS c_updated_at FROM commands WHERE id = $1`,
        [id],
      );
      return rows.length === 0 ? null : toCommandState(rows[0] as Row);
    });
  }

  /** {@inheritDoc CommandStore.existingCommandIds} */
  existingCommandIds(ids: readonly string[]): Promise<string[]> {
    return this.#run("read command ids", async (sql) => {
      const found = new Set<string>();
      for (let start = 0; start < ids.length; start += IDS_PER_STATEMENT) {
        const rows = await sql.unsafe("SELECT id FROM commands WHERE id = ANY($1::text[])", [
          ids.slice(start, start + IDS_PER_STATEMENT),
        ]);
        for (const row of rows as unknown as Row[]) found.add(String(row.id));
      }
      return ids.filter((id) => found.has(id));
    });
  }

  /** {@inheritDoc CommandStore.listCommands} */
  listCommands(query: CommandQuery): Promise<CommandRecord[]> {
    return this.#run("list commands", async (sql) => {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (query.agentId !== undefined) {
        args.push(query.agentId);
        where.push(`c.agent_id = $${args.length}`);
      }
      if (query.status !== undefined) {
        args.push(query.status);
        where.push(`c.status = $${args.length}`);
      }
      if (query.before !== undefined) {
        args.push(query.before);
        where.push(`c.seq < $${args.length}`);
      }
      args.push(Math.max(0, Math.floor(query.limit)));
      const columns = query.withoutOutput ? COMMAND_COLUMNS_WITHOUT_OUTPUT : COMMAND_COLUMNS;
      const rows = await sql.unsafe(
        `SELECT ${columns} ${FROM}
         ${where.length ? "WHERE " + where.join(" AND ") : ""}
         ORDER BY c.seq DESC LIMIT $${args.length}`,
        args,
      );
      return rows.map((row) => toCommand(row as Row));
    });
  }

  /** {@inheritDoc CommandStore.countCommandsByStatus} */
  countCommandsByStatus(): Promise<Partial<Record<CommandStatus, number>>> {
    return this.#run("count commands", async (sql) => {
      const rows = await sql.unsafe("SELECT status, count(*) AS n FROM commands GROUP BY status");
      const counts: Partial<Record<CommandStatus, number>> = {};
      for (const row of rows) counts[String(row.status) as CommandStatus] = num(row.n);
      return counts;
    });
  }

  /** {@inheritDoc CommandStore.countOpenCommands} */
  countOpenCommands(agentId: string, upTo: number): Promise<number> {
    return this.#run("count open commands", async (sql) => {
      checkCountLimit(upTo);
      const rows = await sql.unsafe(BOUNDED_SQL.openCommands, [agentId, upTo]);
      return Math.min(upTo, num(rows[0].n));
    });
  }

  /** {@inheritDoc CommandStore.commandsInHand} */
  commandsInHand(agentIds: readonly string[]): Promise<CommandRecord[]> {
    return this.#run("read commands in hand", async (sql) => {
      const byAgent = new Map<string, CommandRecord>();
      const ids = [...new Set(agentIds)];
      for (let start = 0; start < ids.length; start += IDS_PER_STATEMENT) {
        const rows = await sql.unsafe(
          BOUNDED_SQL.commandsInHand,
          [ids.slice(start, start + IDS_PER_STATEMENT)],
        );
        for (const row of rows as unknown as Row[]) {
          const command = toCommand(row);
          byAgent.set(command.agentId, command);
        }
      }
      return ids.flatMap((id) => byAgent.get(id) ?? []);
    });
  }

  // -- live output and heartbeats

  /**
   * {@inheritDoc CommandStore.appendOutput}
   *
   * Appends to one stream are serialized by an advisory lock on the stream (a retried chunk may
   * reach another instance while the first is still being stored).
   */
  async appendOutput(chunk: OutputChunkInput): Promise<AppendOutputOutcome> {
    const { headBytes } = checkBounds(chunk.keep);
    checkChunkEnd(chunk);
    return await this.#tx("append output", async (tx): Promise<AppendOutputOutcome> => {
      const key = [chunk.commandId, chunk.attempt, chunk.stream] as const;
      await tx.unsafe("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [
        `output\n${chunk.commandId}\n${chunk.attempt}\n${chunk.stream}`,
      ]);
      const [{ e }] = await tx.unsafe(BOUNDED_SQL.streamEnd, [...key]);
      const plan = planAppend(num(e), chunk.offset, chunk.data, chunk.keep);
      if (plan.duplicate) return { outcome: "duplicate" };
      const { cut } = plan;
      // Stored tail chunks that fell out of the tail go; one that straddles the cut is cut.
      await tx.unsafe(
        `DELETE FROM output_chunks WHERE command_id = $1 AND attempt = $2 AND stream = $3
         AND byte_offset >= $4 AND byte_offset + length(data) <= $5`,
        [...key, headBytes, cut],
      );
      await tx.unsafe(
        `UPDATE output_chunks
         SET data = substring(data from ($4::bigint - byte_offset + 1)::int), byte_offset = $4
         WHERE command_id = $1 AND attempt = $2 AND stream = $3
         AND byte_offset >= $5 AND byte_offset < $4 AND byte_offset + length(data) > $4`,
        [...key, cut, headBytes],
      );
      let seq = 0;
      for (const [at, bytes] of plan.pieces) {
        const [row] = await tx.unsafe(
          `INSERT INTO output_chunks (command_id, attempt, stream, byte_offset, data, created_at)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq`,
          [...key, at, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), chunk.now],
        );
        seq = num(row.seq);
      }
      await this.#notify(tx, { type: "changed", commandId: chunk.commandId });
      return {
        outcome: "stored",
        seq,
        offset: plan.offset,
        bytes: plan.bytes,
        gapBytes: plan.gapBytes,
      };
    });
  }

  /** {@inheritDoc CommandStore.listOutput} */
  listOutput(commandId: string, query: OutputQuery = {}): Promise<OutputChunk[]> {
    return this.#run("list output", async (sql) => {
      const where = ["command_id = $1", "seq > $2"];
      const args: (string | number)[] = [commandId, query.afterSeq ?? 0];
      if (query.attempt !== undefined) {
        args.push(query.attempt);
        where.push(`attempt = $${args.length}`);
      }
      args.push(Math.max(0, Math.floor(query.limit ?? 1_000_000)));
      const rows = await sql.unsafe(
        `SELECT seq, command_id, attempt, stream, byte_offset, data, created_at FROM output_chunks
         WHERE ${where.join(" AND ")} ORDER BY seq LIMIT $${args.length}`,
        args,
      );
      return rows.map((row) => ({
        seq: num(row.seq),
        commandId: String(row.command_id),
        attempt: num(row.attempt),
        stream: String(row.stream) as OutputStream,
        offset: num(row.byte_offset),
        data: row.data instanceof Uint8Array ? new Uint8Array(row.data) : new Uint8Array(),
        createdAt: num(row.created_at),
      }));
    });
  }

  /** {@inheritDoc CommandStore.pruneOutput} */
  async pruneOutput(completedBefore: number, limit: number): Promise<PruneOutputOutcome> {
    checkPruneLimit(limit);
    // One batch a statement: a backlog in one DELETE outlasted the operation timeout, which
    // retired the pool, so it never went.
    return await this.#run("prune output", async (sql) => {
      const [{ n }] = await sql.unsafe(BOUNDED_SQL.pruneOutput, [completedBefore, limit]);
      const chunks = num(n);
      return { chunks, more: chunks >= limit };
    });
  }

  /** {@inheritDoc CommandStore.pruneCommands} */
  async pruneCommands(completedBefore: number, limit: number): Promise<PruneCommandsOutcome> {
    checkPruneLimit(limit);
    // Rows another instance is pruning are skipped (SKIP LOCKED); the locks keep a late report
    // from changing a command between its choice and its deletion.
    return await this.#tx("prune commands", async (tx) => {
      let left = limit;
      const ids = (await tx.unsafe(
        `SELECT c.id FROM commands c
         WHERE c.completed_at < $1
           AND NOT EXISTS (SELECT 1 FROM run_targets t WHERE t.command_id = c.id)
         ORDER BY c.completed_at LIMIT $2 FOR UPDATE OF c SKIP LOCKED`,
        [completedBefore, left],
      )).map((row) => row.id as string);
      let commands = await deleteCommands(tx, ids);
      left -= ids.length;
      let runs = 0;
      // Runs completed before the cutoff whose every command was final before it too.
      while (left > 0) {
        const [run] = await tx.unsafe(
          `SELECT r.id FROM runs r
           WHERE r.completed_at < $1
             AND NOT EXISTS (
               SELECT 1 FROM run_targets t JOIN commands c ON c.id = t.command_id
               WHERE t.run_id = r.id AND (c.completed_at IS NULL OR c.completed_at >= $1))
           ORDER BY r.completed_at LIMIT 1 FOR UPDATE OF r SKIP LOCKED`,
          [completedBefore],
        );
        if (run === undefined) break;
        const runId = run.id as string;
        const targets = (await tx.unsafe(
          `SELECT command_id FROM run_targets WHERE run_id = $1 ORDER BY position LIMIT $2`,
          [runId, left],
        )).map((row) => row.command_id as string);
        await tx.unsafe(
          "SELECT id FROM commands WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
          [targets],
        );
        commands += await deleteCommands(tx, targets);
        await tx.unsafe(
          "DELETE FROM run_targets WHERE run_id = $1 AND command_id = ANY($2::text[])",
          [runId, targets],
        );
        left -= targets.length;
        if (left === 0) break; // the run may have more targets: the next call takes them
        await tx.unsafe("DELETE FROM runs WHERE id = $1", [runId]);
        runs++;
        left--;
      }
      return { commands, runs, more: left <= 0 };
    });
  }

  /** {@inheritDoc CommandStore.recordHeartbeat} */
  recordHeartbeat(agentId: string, heartbeat: HeartbeatInput): Promise<boolean> {
    return this.#run("record heartbeat", async (sql) => {
      const rows = await sql.unsafe(
        `UPDATE agents SET version = $1, deployment_hash = $2, instance_id = $3, heartbeat = $4,
           heartbeat_at = $5, last_seen_at = greatest(coalesce(last_seen_at, 0), $5),
           labels = coalesce($7, labels)
         WHERE id = $6 RETURNING id`,
        [
          heartbeat.version,
          heartbeat.deploymentHash,
          heartbeat.instanceId,
          heartbeat.sample === null ? null : JSON.stringify(heartbeat.sample),
          heartbeat.now,
          agentId,
          heartbeat.labels === undefined ? null : JSON.stringify(heartbeat.labels),
        ],
      );
      return rows.length === 1;
    });
  }

  // -- shared-store features

  /** {@inheritDoc SharedStore.rememberRequestId} */
  rememberRequestId(key: string, now: number, windowMs: number): Promise<boolean> {
    return this.#run("remember request id", async (sql) => {
      // A row returned: the id is new, or its last use is older than the window.
      const rows = await sql.unsafe(
        `INSERT INTO request_ids (key, expires_at) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
           WHERE request_ids.expires_at <= $3
         RETURNING key`,
        [key, now + windowMs, now],
      );
      // Each end was set by the clock of the instance that recorded the id: the sweep leaves ids
      // for a window more, so that an instance whose clock is minutes ahead does not forget the
      // ids another instance would still accept (an id that ended is overwritten above anyway).
      if (now - this.#lastSweep >= windowMs) {
        this.#lastSweep = now;
        // A batch, skipping the ids another instance's sweep holds.
        const [{ n }] = await sql.unsafe(
          `WITH gone AS (
             DELETE FROM request_ids WHERE key = ANY(ARRAY(
               SELECT key FROM request_ids WHERE expires_at <= $1
               LIMIT $2 FOR UPDATE SKIP LOCKED))
             RETURNING 1
           ) SELECT count(*) AS n FROM gone`,
          [now - windowMs, REQUEST_ID_SWEEP_BATCH],
        );
        if (num(n) >= REQUEST_ID_SWEEP_BATCH) this.#lastSweep = 0;
      }
      return rows.length === 1;
    });
  }

  /**
   * {@inheritDoc SharedStore.subscribe}
   *
   * Listens on a connection of its own. When that connection closes (the server restarted, the
   * network dropped it), `LISTEN` is sent again on a new one after 250 ms, 500 ms, 1 s, ... up to
   * 5 s between attempts, and `resync` is called once it listens again. The connection is asked
   * `SELECT 1` every `listenCheckSecs`; one that does not answer within the query timeout (dropped
   * without a word) is replaced the same way. The first failed attempt of an outage is logged as a
   * warning, and the success after it. A subscription that fails (the first `LISTEN` not
   * answered within the query timeout, too) leaves no connection behind.
   */
  subscribe(listener: StoreEventListener): Promise<StoreSubscription> {
    if (this.#closed) return Promise.reject(new StoreError(`database ${this.location} is closed`));
    let closed = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let delay = LISTEN_RETRY_MIN_MS;
    // When the attempts to listen again first failed (said once as a warning), or null.
    let failingSince: number | null = null;
    const deliver = (payload: string) => {
      let event: (StoreEvent & { instance?: string }) | undefined;
      try {
        event = JSON.parse(payload);
      } catch {
        log.warning("ignored a malformed notification on {channel}", { channel: PG_CHANNEL });
        return;
      }
      if (!event || event.instance === this.instanceId) return;
      listener.event(event);
    };
    const connect = (): Sql => {
      const made: Sql = this.#listenerConnection({
        onnotify: (channel, payload) => {
          if (channel === PG_CHANNEL) deliver(payload);
        },
        onclose: () => {
          if (closed || made !== connection) return;
          // Each failed attempt's connection closes too: said once an outage, not per attempt.
          if (failingSince === null) {
            log.warning("the notification connection to {location} closed; listening again", {
              location: this.location,
            });
          } else log.debug("the notification connection closed again; listening again");
          retry();
        },
      });
      return made;
    };
    let connection = connect();
    const listen = async () => {
      const listening = connection;
      // An idle_session_timeout the database or the role sets (PostgreSQL 14 and later) would
      // end this connection each time it waits that long between checks: it is turned off for
      // it (no row, and nothing set, on a server without the setting).
      await listening.unsafe(
        `SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'`,
      );
      await listening.unsafe(`LISTEN ${PG_CHANNEL}`);
    };
    const retry = () => {
      if (closed || timer !== undefined) return;
      timer = setTimeout(async () => {
        timer = undefined;
        try {
          await listen();
        } catch (error) {
          if (closed) return;
          if (failingSince === null) {
            failingSince = Date.now();
            listener.lost?.(error);
            log.warning(
              "could not listen for the other instances' notifications on {location} again: " +
                "{error}; trying again every {maxSecs} s at most; until then the waits held here " +
                "are not woken by the other instances' changes",
              {
                location: this.location,
                error: (error as Error)?.message ?? String(error),
                maxSecs: LISTEN_RETRY_MAX_MS / 1000,
              },
            );
          } else log.debug("LISTEN failed; retrying: {error}", { error });
          delay = Math.min(delay * 2, LISTEN_RETRY_MAX_MS);
          retry();
          return;
        }
        delay = LISTEN_RETRY_MIN_MS;
        if (failingSince !== null) {
          log.info(
            "listening for the other instances' notifications on {location} again after " +
              "{secs} s",
            {
              location: this.location,
              secs: Math.round((Date.now() - failingSince) / 100) / 10,
            },
          );
          failingSince = null;
        }
        if (!closed) listener.resync();
      }, delay);
    };
    // After a fault of the driver: a new connection (the old one may hold half a message).
    const restart = () => {
      if (closed) return;
      const old = connection;
      connection = connect();
      old.end({ timeout: 0 }).catch(() => {});
      retry();
    };
    // A connection that is silently gone never closes: it is asked a question now and then.
    let checking = false;
    const check = async () => {
      if (closed || checking || timer !== undefined) return;
      checking = true;
      const asked = connection;
      let deadline: ReturnType<typeof setTimeout> | undefined;
      const silent = new Promise<"silent">((resolve) => {
        deadline = setTimeout(() => resolve("silent"), this.#queryTimeoutMs);
      });
      try {
        const answer = asked.unsafe("SELECT 1").then(() => "answered" as const);
        if (await Promise.race([answer, silent]) === "silent" && asked === connection) {
          log.warning(
            "the notification connection to {location} did not answer within {secs} s; " +
              "listening again on a new one",
            { location: this.location, secs: this.#queryTimeoutMs / 1000 },
          );
          restart();
        }
      } catch {
        // closed or failed: its onclose listens again
      } finally {
        clearTimeout(deadline);
        checking = false;
      }
    };
    let checks: ReturnType<typeof setInterval> | undefined;
    const subscribed = this.#run("listen", async () => {
      try {
        await listen();
      } catch (error) {
        closed = true;
        await connection.end({ timeout: 1 }).catch(() => {});
        throw error;
      }
      // Given up on (the operation's timeout) before the server answered: the caller subscribes
      // again later, so this connection must not go on listening beside that one.
      if (closed) throw new StoreUnavailableError(`database ${this.location} listened too late`);
      checks = setInterval(() => void check(), this.#listenCheckMs);
      this.#onFault.add(restart);
      return {
        close: async () => {
          if (closed) return;
          closed = true;
          clearInterval(checks);
          this.#onFault.delete(restart);
          if (timer !== undefined) clearTimeout(timer);
          await connection.end({ timeout: 1 }).catch(() => {});
        },
      };
    }, false);
    return subscribed.catch(async (error) => {
      if (!closed) {
        closed = true;
        await connection.end({ timeout: 0 }).catch(() => {});
      }
      throw error;
    });
  }

  /**
   * {@inheritDoc SharedStore.ping}
   *
   * A server that answers but takes no writes (SQLSTATE 25006, read-only) is unavailable too: the
   * dashboard says so in `/health` until it takes them again. The answer says how far this
   * instance's clock is off the server's, when more than 2 s.
   */
  ping(): Promise<StorePing> {
    return this.#run("ping", async (sql): Promise<StorePing> => {
      const sentAt = this.#localClock();
      const [{ read_only: readOnly, db_now: dbNow, schema_version: schema }] = await sql.unsafe(
        `SELECT current_setting('transaction_read_only') = 'on' AS read_only, ${DB_NOW},
           ${SCHEMA_VERSION}`,
      );
      this.#compareClocks(dbNow, sentAt);
      this.#checkSchema(schema);
      if (readOnly) {
        throw new StoreUnavailableError(
          `database ${this.location} takes no writes now (ping): it is read-only`,
        );
      }
      return { clockAheadMs: this.#clockAheadMs };
    });
  }

  /**
   * Ends the notification connections of frozen instances (SIGSTOP, a paused VM): PostgreSQL keeps
   * every notification until each listener has read it, so one whose client stopped reading holds
   * them all, and once its queue is full (8 GB) every instance's writes fail (each notifies in its
   * transaction). Such a connection's server process waits to write to its client
   * (`ClientWrite`) and has run no query for longer than a live instance's checks allow (one
   * every `listenCheckMs`, given the query timeout to answer). Looked for by the lease lookups,
   * and only while the queue holds unread notifications; connections of roles this one may not
   * signal are left alone. The instance, once it runs again, listens on a new connection and
   * re-checks its waits.
   */
  async #endStuckListeners(sql: Sql): Promise<void> {
    const ended = await sql.unsafe(
      `SELECT pid, client_addr::text AS client, pg_terminate_backend(pid) AS ended,
         round(extract(epoch FROM clock_timestamp() - state_change))::int AS secs
       FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'status-listen'
         AND wait_event = 'ClientWrite' AND pid <> pg_backend_pid()
         AND state_change < clock_timestamp() - make_interval(secs => $1::float8)
         AND pg_has_role(usesysid, 'MEMBER')`,
      [(this.#listenCheckMs + this.#queryTimeoutMs) / 1000],
    );
    for (const { pid, client, ended: done, secs } of ended) {
      if (done !== true) continue;
      log.warning(
        "ended the notification connection of another instance (server process {pid}, client " +
          "{client}) on {location}: it had sent no query for {secs} s and does not read the " +
          "notifications sent to it (a frozen instance: SIGSTOP, a paused VM), and PostgreSQL " +
          "keeps every notification until each " +
          "listener has read it (once its queue is full, every instance's writes fail); that " +
          "instance listens again once it runs",
        { pid, client: client ?? "local socket", location: this.location, secs },
      );
    }
  }

  /**
   * Stops using the database once its schema `version` (read with a lease lookup or a ping) is
   * newer than this program's: a newer version of status migrated it while this one ran, and this
   * one would go on writing by its older idea of the schema, as it refuses to at start. Every call
   * then fails as a {@link StoreError} (the dashboard answers `503` and its `/health` says the
   * store is failing), said once as an error.
   *
   * @throws {StoreError} When it is newer.
   */
  #checkSchema(version: unknown): void {
    const found = Number(version);
    if (!Number.isInteger(found) || found <= PG_MIGRATIONS.length) return;
    if (this.#newerSchema === null) {
      this.#newerSchema = `${this.location} was migrated to schema version ${found} by a newer ` +
        `version of status while this one ran (it writes version ${PG_MIGRATIONS.length}); ` +
        "this instance no longer uses it: replace it with the newer version";
      log.error("{error}", { error: this.#newerSchema });
    }
    throw new StoreError(this.#newerSchema);
  }

  /**
   * Compares this instance's clock with the database server's time `dbNow` read by a query sent
   * at `sentAt`: says so (once) when they are further apart than {@link CLOCK_SKEW_WARN_MS}, and
   * again when they are close again. Each instance ends leases and queued commands' time to live
   * by its own clock, so one that is off ends the others' leases early or hands out leases the
   * others end at once.
   */
  #compareClocks(dbNow: unknown, sentAt: number): void {
    const answeredAt = this.#localClock();
    const server = Number(dbNow);
    const roundTrip = answeredAt - sentAt;
    if (!Number.isFinite(server) || roundTrip < 0 || roundTrip > CLOCK_SAMPLE_MAX_RTT_MS) return;
    const ahead = (sentAt + answeredAt) / 2 - server;
    const off = Math.abs(ahead) - roundTrip / 2 > CLOCK_SKEW_WARN_MS;
    this.#clockAheadMs = off ? Math.round(ahead) : null;
    if (off === this.#clockOff) return;
    this.#clockOff = off;
    const limitSecs = CLOCK_SKEW_WARN_MS / 1000;
    if (!off) {
      log.info(
        "this instance's clock is within {limitSecs} s of database server {location}'s " +
          "again",
        { limitSecs, location: this.location },
      );
      return;
    }
    log.warning(
      "this instance's clock is {secs} s {direction} database server {location}'s (more than " +
        "{limitSecs} s): each instance ends leases and queued commands by its own clock, so this " +
        "one {effect}; set its clock right (NTP)",
      {
        secs: Math.round(Math.abs(ahead) / 100) / 10,
        direction: ahead > 0 ? "ahead of" : "behind",
        location: this.location,
        limitSecs,
        effect: ahead > 0
          ? "ends leases and queued commands' time to live early (a running command queued " +
            "again or lost, a queued one expired)"
          : "hands out leases and times to live that the other instances end early (a running " +
            "command queued again or lost, a queued one expired)",
      },
    );
  }

  // -- fan-out runs (decisions: planRun in runs.ts)

  async #runTargets(q: Querier, runId: string): Promise<RunTargetRecord[]> {
    const rows = await q.unsafe(
      `SELECT ${TARGET_COLUMNS} ${TARGET_FROM}
       WHERE t.run_id = $1 ORDER BY t.position`,
      [runId],
    );
    return (rows as unknown as Row[]).map(toTarget);
  }

  async #getRun(q: Querier, id: string, lock = false): Promise<RunRecord | null> {
    const rows = await q.unsafe(`SELECT * FROM runs WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [
      id,
    ]);
    if (rows.length === 0) return null;
    return toRun(rows[0] as Row, await this.#runTargets(q, id));
  }

  /** The run as a step reads it: each target's command as its status and cancel flag. */
  async #runState(q: Querier, id: string, lock = false): Promise<RunState | null> {
    const rows = await q.unsafe(`SELECT * FROM runs WHERE id = $1${lock ? " FOR UPDATE" : ""}`, [
      id,
    ]);
    if (rows.length === 0) return null;
    const targets = await q.unsafe(
      `SELECT ${TARGET_STATE_COLUMNS} ${TARGET_STATE_FROM}
       WHERE t.run_id = $1 ORDER BY t.position`,
      [id],
    );
    return toRunState(rows[0] as Row, (targets as unknown as Row[]).map(toTargetState));
  }

  /** {@inheritDoc CommandStore.createRun} */
  createRun(run: NewRun): Promise<CreateRunOutcome> {
    return this.#tx("create run", async (tx): Promise<CreateRunOutcome> => {
      const inserted = await tx.unsafe(
        `INSERT INTO runs (id, name, params, target, fingerprint, max_concurrency,
         max_concurrency_spec, max_errors, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [
          run.id,
          run.name,
          JSON.stringify(run.params),
          JSON.stringify(run.target),
          run.fingerprint,
          run.maxConcurrency,
          run.maxConcurrencySpec === null ? null : JSON.stringify(run.maxConcurrencySpec),
          run.maxErrors,
          run.now,
        ],
      );
      if (inserted.length === 0) {
        const existing = await this.#getRun(tx, run.id);
        if (!existing) throw new StoreError(`run ${run.id} vanished inside a transaction`);
        return {
          outcome: existing.fingerprint === run.fingerprint ? "duplicate" : "conflict",
          run: existing,
        };
      }
      // One statement for every target: a round trip each made 10,000 targets outlast the
      // operation's timeout on a database a millisecond away.
      await tx.unsafe(
        `INSERT INTO run_targets (run_id, position, agent_id, command_id, offline_at_creation)
         SELECT $1, v.position - 1, v.agent_id, v.command_id, v.offline
         FROM unnest($2::text[], $3::text[], $4::text[]::boolean[]) WITH ORDINALITY
           AS v (agent_id, command_id, offline, position)`,
        [
          run.id,
          run.targets.map((t) => t.agentId),
          run.targets.map((t) => t.commandId),
          run.targets.map((t) => String(t.offlineAtCreation)),
        ],
      );
      return { outcome: "created", run: (await this.#getRun(tx, run.id))! };
    });
  }

  /** {@inheritDoc CommandStore.getRun} */
  getRun(id: string): Promise<RunRecord | null> {
    return this.#run("read run", (sql) => this.#getRun(sql, id));
  }

  /** {@inheritDoc CommandStore.listRuns} */
  listRuns(query: RunQuery): Promise<RunRecord[]> {
    return this.#run("list runs", async (sql) => {
      const rows = await sql.unsafe(
        `SELECT * FROM runs WHERE ($1::boolean = false OR completed_at IS NULL)
         ORDER BY seq DESC LIMIT $2`,
        [query.open === true, Math.max(0, Math.floor(query.limit))],
      );
      const runs: RunRecord[] = [];
      for (const row of rows as unknown as Row[]) {
        runs.push(toRun(row, await this.#runTargets(sql, String(row.id))));
      }
      return runs;
    });
  }

  /** {@inheritDoc CommandStore.listRunSummaries} */
  listRunSummaries(query: RunQuery): Promise<RunSummary[]> {
    return this.#run("list runs", async (sql) => {
      // One statement (one snapshot, one round trip): each run's groups from its own targets.
      const rows = await sql.unsafe(
        `SELECT r.*, (SELECT coalesce(json_agg(g), '[]') FROM
             (${TARGET_GROUPS_SELECT} WHERE t.run_id = r.id GROUP BY 1, 2, 3) g) AS target_groups
         FROM runs r WHERE ($1::boolean = false OR r.completed_at IS NULL)
         ORDER BY r.seq DESC LIMIT $2`,
        [query.open === true, Math.max(0, Math.floor(query.limit))],
      );
      return (rows as unknown as Row[]).map(toRunSummary);
    });
  }

  /** {@inheritDoc CommandStore.listOpenRunIds} */
  listOpenRunIds(limit: number): Promise<string[]> {
    return this.#run("list open runs", async (sql) => {
      const rows = await sql.unsafe(
        `SELECT id FROM runs WHERE completed_at IS NULL ORDER BY seq DESC LIMIT $1`,
        [Math.max(0, Math.floor(limit))],
      );
      return (rows as unknown as Row[]).map((row) => String(row.id));
    });
  }

  /** {@inheritDoc CommandStore.advanceRun} */
  advanceRun(id: string, now: number): Promise<AdvanceRunOutcome | null> {
    return this.#tx(
      "step run",
      (tx) => this.#advance(tx, id, now, (runId, lock) => this.#getRun(tx, runId, lock)),
    );
  }

  /** {@inheritDoc CommandStore.stepRun} */
  stepRun(id: string, now: number): Promise<RunStepOutcome | null> {
    return this.#tx(
      "step run",
      (tx) => this.#advance(tx, id, now, (runId, lock) => this.#runState(tx, runId, lock)),
    );
  }

  /** {@inheritDoc CommandStore.getRunState} */
  getRunState(id: string): Promise<RunState | null> {
    return this.#run("read run", (sql) => this.#runState(sql, id));
  }

  /** {@inheritDoc CommandStore.getRunTarget} */
  getRunTarget(commandId: string): Promise<RunTargetOfCommand | null> {
    return this.#run("read run target", async (sql) => {
      // By the unique index of the targets' command ids: the one target, not the run's others.
      const rows = await sql.unsafe(
        `SELECT t.run_id AS t_run_id, ${TARGET_STATE_COLUMNS} ${TARGET_STATE_FROM}
         WHERE t.command_id = $1`,
        [commandId],
      );
      if (rows.length === 0) return null;
      const row = rows[0] as Row;
      return { runId: String(row.t_run_id), ...toTargetState(row) };
    });
  }

  /**
   * One step of the run (inside the transaction `tx`), deciding from the run as `read` reads it
   * (the decision needs only each command's status) and answering it so.
   */
  async #advance<T extends RunTargetState>(
    tx: Querier,
    id: string,
    now: number,
    read: (id: string, lock: boolean) => Promise<(RunState & { targets: T[] }) | null>,
  ): Promise<{ run: RunState & { targets: T[] }; toEnqueue: T[] } | null> {
    // The run's row lock orders every step of it, whichever instance makes it.
    const run = await read(id, true);
    if (!run) return null;
    // The run as read, unless the step changed it: most steps (every sweep of every open run)
    // change nothing.
    let after = run;
    if (run.completedAt === null) {
      const plan = planRun(run);
      for (const [column, positions] of [["started_at", plan.start], ["skipped_at", plan.skip]]) {
        if ((positions as number[]).length === 0) continue;
        await tx.unsafe(
          `UPDATE run_targets SET ${column} = $1 WHERE run_id = $2 AND position = ANY($3::int[])
           AND started_at IS NULL AND skipped_at IS NULL`,
          [now, id, positions as number[]],
        );
      }
      if (plan.start.length + plan.skip.length > 0 || plan.complete) {
        await tx.unsafe(`UPDATE runs SET updated_at = $1, completed_at = $2 WHERE id = $3`, [
          now,
          plan.complete ? now : null,
          id,
        ]);
        after = (await read(id, false))!;
      }
    }
    const targets: T[] = after.targets;
    const toEnqueue = targets.filter((t) =>
      t.startedAt !== null && t.skippedAt === null && t.command === null
    );
    return { run: after, toEnqueue };
  }

  /** {@inheritDoc CommandStore.cancelRun} */
  cancelRun(id: string, now: number): Promise<CancelRunOutcome> {
    return this.#tx("cancel run", async (tx): Promise<CancelRunOutcome> => {
      const run = await this.#getRun(tx, id, true);
      if (!run) return { outcome: "not_found" };
      if (run.completedAt !== null) return { outcome: "final", run };
      if (run.targets.every(targetFinal)) {
        // Every part had ended, the step that says so not taken yet (another instance's, paused):
        // the run ends as it would.
        await tx.unsafe(`UPDATE runs SET updated_at = $1, completed_at = $1 WHERE id = $2`, [
          now,
          id,
        ]);
        return { outcome: "final", run: (await this.#getRun(tx, id))! };
      }
      await tx.unsafe("UPDATE runs SET cancel_requested = true, updated_at = $1 WHERE id = $2", [
        now,
        id,
      ]);
      await tx.unsafe(
        `UPDATE run_targets SET skipped_at = $1 WHERE run_id = $2
         AND started_at IS NULL AND skipped_at IS NULL`,
        [now, id],
      );
      return { outcome: "cancelled", run: (await this.#getRun(tx, id))! };
    });
  }

  /** {@inheritDoc CommandStore.close} */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      for (const [timer, sql] of this.#retired) {
        clearTimeout(timer);
        sql.end({ timeout: 0 }).catch(() => {});
      }
      this.#retired.clear();
      await this.#sql.end({ timeout: 5 });
      // The write the driver scheduled on a connection that was closing faults a turn later.
      await new Promise((resolve) => setTimeout(resolve, 0));
    } finally {
      globalThis.removeEventListener("error", this.#faultGuard);
      typeFetchWatchers.delete(this.#typeFetchWatcher);
    }
  }

  /**
   * After a fault of the driver, its connection objects may hold half a message: the pool is
   * replaced (operations under way on the old one get 5 s, then fail as unavailable and are
   * retried by their callers), and every subscription listens on a new connection.
   */
  #recover(error: unknown): void {
    log.error("the PostgreSQL driver failed on a closing connection: {error}; reconnecting", {
      error,
    });
    const old = this.#sql;
    this.#sql = this.#pool();
    old.end({ timeout: 5 }).catch(() => {});
    for (const restart of this.#onFault) restart();
  }

  /** Closes the store. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Deletes commands with their results and live output.
 *
 * @returns How many commands existed.
 */
async function deleteCommands(tx: Querier, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const list = [...ids];
  await tx.unsafe("DELETE FROM output_chunks WHERE command_id = ANY($1::text[])", [list]);
  await tx.unsafe("DELETE FROM results WHERE command_id = ANY($1::text[])", [list]);
  const [{ n }] = await tx.unsafe(
    `WITH gone AS (DELETE FROM commands WHERE id = ANY($1::text[]) RETURNING 1)
     SELECT count(*) AS n FROM gone`,
    [list],
  );
  return num(n);
}
