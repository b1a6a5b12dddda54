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
