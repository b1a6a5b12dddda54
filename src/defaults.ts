/**
 * The default values the settings table, the agent, the executor and the dashboard share: each is
 * written here once.
 *
 * @module
 */

/** Deadline of a command that sets no `params.timeout_secs`, in seconds. */
export const DEFAULT_COMMAND_TIMEOUT_SECS = 300;
/** Largest deadline a command may ask for, in seconds. */
export const DEFAULT_MAX_TIMEOUT_SECS = 3600;
/**
 * Most processes and threads one command may have at once (its cgroup's `pids.max`): far more
 * than a build or an archive needs, far fewer than a fork bomb takes.
 */
export const DEFAULT_COMMAND_MAX_PROCESSES = 4096;
/**
 * Most memory one command's processes may use together, in bytes (its cgroup's `memory.max`): 2
 * GiB, more than the tools an agent runs take (a package manager's metadata, a log search, an
 * archive), and a bound that leaves the agent, the dashboard and the server's own services their
 * memory on most servers when a command allocates without end.
 */
export const DEFAULT_COMMAND_MAX_MEMORY = 2 * 1024 ** 3;
/** How long one long-poll waits on the dashboard, in seconds. */
export const DEFAULT_POLLING_TIMEOUT_SECS = 30;
/** First back-off delay of the agent after a failure, in seconds. */
export const DEFAULT_POLLING_BACKOFF_SECS = 5;
/** Largest back-off delay of the agent, in seconds. */
export const DEFAULT_POLLING_BACKOFF_MAX_SECS = 60;
/** How long a running command may still run after the agent is asked to stop, in seconds. */
export const DEFAULT_SHUTDOWN_GRACE_SECS = 30;
/** Interval of the agent's metrics heartbeat, in seconds. */
export const DEFAULT_METRICS_INTERVAL_SECS = 30;
/** The dashboard's delivery lease: a command not acked by then is queued again, in seconds. */
export const DEFAULT_ACK_TIMEOUT_SECS = 30;
/** The agent's state directory (journal and outbox). */
export const DEFAULT_STATE_DIR = "./.status-state";
/** The deployment an agent serves when none is set. */
export const DEFAULT_DEPLOYMENT_HASH = "default";
/** Deliveries of one command before the dashboard marks it lost. */
export const DEFAULT_MAX_ATTEMPTS = 3;
/** Requests a minute per agent: a burst of 200 commands (about 5 requests each) fits. */
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 1200;
/** Requests a minute per operator address (an enqueue burst of a script, a console's pages). */
export const DEFAULT_OPERATOR_RATE_LIMIT_PER_MINUTE = 3000;
/** Queue expiry of a command whose params set no `ttl_secs`, in seconds. */
export const DEFAULT_QUEUE_TTL_SECS = 3600;
/** Days a final command and its result are kept; 0: forever. */
export const DEFAULT_RESULT_RETENTION_DAYS = 0;
/** An agent with no open wait not seen for this long is offline, in seconds. */
export const DEFAULT_OFFLINE_AFTER_SECS = 90;
/** Port the dashboard listens on. */
export const DEFAULT_PORT = 5000;
/** Address the dashboard listens on: this machine only. */
export const DEFAULT_BIND = "127.0.0.1";
/** The dashboard's SQLite file. */
export const DEFAULT_DB = "./status.db";
/** The dashboard the agent and operator commands talk to. */
export const DEFAULT_DASHBOARD_URL = `http://localhost:${DEFAULT_PORT}`;
/** A connection that sends no complete request head this long is closed, in seconds. */
export const DEFAULT_HEADER_TIMEOUT_SECS = 10;
/** Most open connections of the dashboard. */
export const DEFAULT_MAX_CONNECTIONS = 20_000;
/**
 * Open waits (and, apart, open cancel-waits) one agent id may hold on the dashboard; a new one
 * beyond it ends the oldest.
 */
export const DEFAULT_MAX_WAITS_PER_AGENT = 8;
