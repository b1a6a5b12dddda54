/**
 * The options of `createApp` and their checks: each limit validated up front, each default
 * applied once.
 *
 * @module
 */
import {
  DEFAULT_ACK_TIMEOUT_SECS,
  DEFAULT_COMMAND_TIMEOUT_SECS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_OFFLINE_AFTER_SECS,
  DEFAULT_OPERATOR_RATE_LIMIT_PER_MINUTE,
  DEFAULT_QUEUE_TTL_SECS,
  DEFAULT_RATE_LIMIT_PER_MINUTE,
  DEFAULT_RESULT_RETENTION_DAYS,
} from "../defaults.ts";
import { MAX_BODY_BYTES, MAX_TTL_SECS } from "../protocol/mod.ts";
import type { CommandStore, OutputBounds } from "../store/mod.ts";
import { type Clock, systemClock } from "./clock.ts";
import { waitCap } from "./wait_cap.ts";
import { checkFlag } from "../options.ts";

/** The dashboard's settings: options of the app `startServer` serves (see `ServeOptions`). */
export interface AppOptions {
  /** @internal Where agents, commands and results live. The app never closes it. */
  store: CommandStore;
  /**
   * @internal Dev mode (docs/protocol.md §1): token-less agents are accepted unsigned, registered
   * on first sight, and the operator endpoints need no admin token. `startServer` decides it from
   * the store.
   * @default {false}
   */
  devMode?: boolean;
  /**
   * `STATUS_ADMIN_TOKEN`: 16 to 1024 printable ASCII characters, without spaces. Without it the
   * dashboard runs in dev mode, unless an agent has a token.
   */
  adminToken?: string;
  /**
   * @internal The clock (ms); tests inject one so that leases, skew and rate limits need no real waiting.
   * Not the timeouts of agents' waits and cancel-waits (nor the once-a-minute warning of their cap):
   * those stay on the system clock, so that a test's wait of `timeout=1` ends in a second without
   * its fake clock being moved (`WaiterHub` and `CancelWaiters` take a clock of their own).
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Delivery lease: a delivered command not acked in this many seconds goes back to the queue.
   * @default {30}
   */
  ackTimeoutSecs?: number;
  /**
   * Deliveries of one command before it is `lost`.
   * @default {3}
   */
  maxAttempts?: number;
  /**
   * Requests a minute per agent (token bucket) on the agent endpoints (wait, ack, report,
   * cancel-wait, ...). Operator requests never take from it.
   * @default {1200} (`DEFAULT_RATE_LIMIT_PER_MINUTE`)
   */
  rateLimitPerMinute?: number;
  /**
   * Requests a minute per operator client address (token bucket) on the operator endpoints and
   * every enqueue.
   * @default {3000}
   */
  operatorRateLimitPerMinute?: number;
  /**
   * Queue expiry of a command whose params set no `ttl_secs`, in seconds: still queued this long
   * after its enqueue, it becomes `expired`.
   * @default {3600}
   */
  queueTtlSecs?: number;
  /**
   * Open waits one agent id may hold at once, and apart open cancel-waits (an agent keeps one of
   * each; several overlap only after a dropped connection). A new one beyond it is kept and the
   * agent's oldest is answered `204` at once, as at its timeout; a warning is logged at most once
   * a minute per agent. A whole number from 1 to 1000.
   * @default {8}
   */
  maxWaitsPerAgent?: number;
  /**
   * Check timestamp, signature and replay on `GET …/wait` too.
   * @default {false}
   */
  waitRequireSignature?: boolean;
  /**
   * Accept body-only version 1 signatures.
   * @default {false}
   */
  acceptV1Signatures?: boolean;
  /**
   * Timeout assumed for a command whose params set none, for its execution lease (seconds; the
   * lease adds 60). Match the agents' `COMMAND_TIMEOUT_SECS`.
   * @default {300}
   */
  defaultTimeoutSecs?: number;
  /**
   * @internal Arm the one lease timer. Tests with an injected clock turn it off and call
   * `DashboardApp.expireLeases`.
   * @default {true}
   */
  autoExpireLeases?: boolean;
  /**
   * Largest accepted request body, in bytes.
   * @default {1048576}
   */
  maxBodyBytes?: number;
  /**
   * @internal Request ids remembered at most for replay detection.
   * @default {200000}
   */
  replayCacheSize?: number;
  /**
   * Lifetime of a session of the web console, in seconds: a whole number from 60 to 2,592,000
   * (30 days).
   * @default {43200}
   */
  consoleSessionTtlSecs?: number;
  /**
   * @internal How often the in-memory last-seen times are written to the store at most (one transaction for
   * every agent seen since the last write), in ms. They are also written at close.
   * @default {60000}
   */
  lastSeenFlushMs?: number;
  /**
   * @internal Agents whose last-seen time is kept in memory at most; the least recently seen are forgotten
   * first (their time stays in the store).
   * @default {100000}
   */
  lastSeenMax?: number;
  /**
   * An agent that has no open wait and was not seen for this many seconds is offline in the
   * fleet view (`GET /api/v1/agents`) and the metrics.
   * @default {90}
   */
  offlineAfterSecs?: number;
  /**
   * @internal What is kept of a running command's live output, per stream.
   * @default {{ headBytes: 32768, tailBytes: 32768 }}
   */
  outputBounds?: OutputBounds;
  /**
   * @internal Interval of keep-alive comments on event streams, in ms.
   * @default {15000}
   */
  eventKeepAliveMs?: number;
  /**
   * How long the live output of a final command is kept (its result holds the output), in
   * seconds. Pruned once a minute while the lease timer runs (`autoExpireLeases`).
   * @default {600}
   */
  liveOutputRetentionSecs?: number;
  /**
   * `RESULT_RETENTION_DAYS`: a command final for more than this many days is deleted with its
   * result, its live output and its fan-out run once the run is finished too (never a command of
   * an open run), at start and then once an hour while the lease timer runs
   * (`autoExpireLeases`). 0 keeps everything.
   * @default {0}
   */
  resultRetentionDays?: number;
  /**
   * @internal How often every open fan-out run is stepped besides when its commands change, in ms; 0:
   * only when they change (tests call `DashboardApp.runs`' `sweep`).
   * @default {5000}
   */
  runSweepMs?: number;
  /**
   * @internal An agent's own enqueue (signed with its token) is refused with `429` while the agent
   * has this many commands not final (queued, delivered or running), whoever enqueued them; an
   * operator's enqueue is not limited.
   * @default {1000}
   */
  maxOpenCommandsForAgentEnqueue?: number;
  /**
   * @internal How often the dashboard looks whether another process changed its SQLite file (an
   * agent's token rotated with `--db`), in ms of the dashboard's clock.
   * @default {1000}
   */
  otherWritersLookMs?: number;
}

/** The options of `createApp` checked, with every default applied. */
export interface AppSettings {
  /** Dev mode. */
  devMode: boolean;
  /** The admin token (absent only in dev mode). */
  adminToken: string | undefined;
  /** The clock. */
  clock: Clock;
  /** Delivery lease, in seconds. */
  ackTimeoutSecs: number;
  /** Deliveries of one command before it is `lost`. */
  maxAttempts: number;
  /** Requests a minute per agent. */
  rateLimitPerMinute: number;
  /** Requests a minute per operator client address. */
  operatorRateLimitPerMinute: number;
  /** Queue expiry of a command whose params set none, in seconds. */
  queueTtlSecs: number;
  /** Timeout assumed for a command whose params set none, in seconds. */
  defaultTimeoutSecs: number;
  /** Largest accepted request body, in bytes. */
  maxBodyBytes: number;
  /** Open waits (and, apart, cancel-waits) one agent id may hold. */
  maxWaitsPerAgent: number;
  /** Commands not final an agent may have for its own enqueue to be taken. */
  maxOpenCommandsForAgentEnqueue: number;
  /** Whether the lease timer (and the output pruning) run. */
  autoExpire: boolean;
  /** How often last-seen times are written at most, in ms. */
  lastSeenFlushMs: number;
  /** Agents whose last-seen time is kept in memory at most. */
  lastSeenMax: number;
  /** An agent not seen for this long is offline, in seconds. */
  offlineAfterSecs: number;
  /** How long the live output of a final command is kept, in ms. */
  liveOutputRetentionMs: number;
  /** How long a final command is kept, in days; 0: forever. */
  resultRetentionDays: number;
}

/**
 * Commands not final (queued, delivered or running) an agent may have when it enqueues for itself:
 * its own enqueues cannot pile up commands (and their params, up to 64 KiB each) without bound.
 */
export const MAX_OPEN_COMMANDS_FOR_AGENT_ENQUEUE = 1000;

/** The longest `consoleSessionTtlSecs`: 30 days. */
const MAX_CONSOLE_SESSION_TTL_SECS = 30 * 86_400;

/** The most days `resultRetentionDays` may be: ten years. */
export const MAX_RESULT_RETENTION_DAYS = 3650;

function positiveInteger(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be a whole number from 1 to ${max}, got ${value}`);
  }
  return value;
}

function wholeDays(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_RESULT_RETENTION_DAYS) {
    throw new RangeError(
      `resultRetentionDays must be a whole number from 0 to ${MAX_RESULT_RETENTION_DAYS}, ` +
        `got ${value}`,
    );
  }
  return value;
}

/**
 * Checks the options of `createApp` and applies their defaults.
 *
 * @param options The options as given.
 * @returns The checked options.
 * @throws {TypeError} When no admin token is given outside dev mode, or both are given.
 * @throws {RangeError} When a limit is out of range, or the admin token is not one a request can
 *   carry.
 */
export function resolveAppOptions(options: Omit<AppOptions, "store">): AppSettings {
  const devMode = options.devMode ?? false;
  if (devMode && options.adminToken) {
    throw new TypeError("devMode and adminToken exclude each other: an admin token ends dev mode");
  }
  if (!devMode && !options.adminToken) {
    throw new TypeError("adminToken is required outside dev mode");
  }
  // What `Authorization: Bearer <token>` can carry, as STATUS_ADMIN_TOKEN is checked: a token
  // with a space or a control character would be refused on every request.
  // "" too: it was taken as no token, so the dashboard ran in dev mode, its operator API open.
  if (options.adminToken !== undefined && !/^[\x21-\x7e]{16,1024}$/.test(options.adminToken)) {
    throw new RangeError(
      "adminToken must be 16 to 1024 printable ASCII characters, without spaces",
    );
  }
  // "false" is truthy: it turned on what it meant to turn off (v1 signatures accepted).
  checkFlag("waitRequireSignature", options.waitRequireSignature);
  checkFlag("acceptV1Signatures", options.acceptV1Signatures);
  checkFlag("autoExpireLeases", options.autoExpireLeases);
  // Checked by the console's session keeper too, which named it "ttlSecs".
  const sessionTtl = options.consoleSessionTtlSecs;
  if (
    sessionTtl !== undefined &&
    (!Number.isInteger(sessionTtl) || sessionTtl < 60 || sessionTtl > MAX_CONSOLE_SESSION_TTL_SECS)
  ) {
    throw new RangeError(
      `consoleSessionTtlSecs must be a whole number from 60 to ${MAX_CONSOLE_SESSION_TTL_SECS}, ` +
        `got ${sessionTtl}`,
    );
  }
  return {
    devMode,
    adminToken: options.adminToken,
    clock: options.clock ?? systemClock,
    ackTimeoutSecs: positiveInteger(
      "ackTimeoutSecs",
      options.ackTimeoutSecs ?? DEFAULT_ACK_TIMEOUT_SECS,
    ),
    maxAttempts: positiveInteger("maxAttempts", options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, 100),
    rateLimitPerMinute: positiveInteger(
      "rateLimitPerMinute",
      options.rateLimitPerMinute ?? DEFAULT_RATE_LIMIT_PER_MINUTE,
    ),
    operatorRateLimitPerMinute: positiveInteger(
      "operatorRateLimitPerMinute",
      options.operatorRateLimitPerMinute ?? DEFAULT_OPERATOR_RATE_LIMIT_PER_MINUTE,
    ),
    queueTtlSecs: positiveInteger(
      "queueTtlSecs",
      options.queueTtlSecs ?? DEFAULT_QUEUE_TTL_SECS,
      MAX_TTL_SECS,
    ),
    defaultTimeoutSecs: positiveInteger(
      "defaultTimeoutSecs",
      options.defaultTimeoutSecs ?? DEFAULT_COMMAND_TIMEOUT_SECS,
    ),
    maxBodyBytes: positiveInteger("maxBodyBytes", options.maxBodyBytes ?? MAX_BODY_BYTES),
    maxWaitsPerAgent: waitCap(options.maxWaitsPerAgent),
    maxOpenCommandsForAgentEnqueue: positiveInteger(
      "maxOpenCommandsForAgentEnqueue",
      options.maxOpenCommandsForAgentEnqueue ?? MAX_OPEN_COMMANDS_FOR_AGENT_ENQUEUE,
    ),
    autoExpire: options.autoExpireLeases ?? true,
    lastSeenFlushMs: positiveInteger("lastSeenFlushMs", options.lastSeenFlushMs ?? 60_000),
    lastSeenMax: positiveInteger("lastSeenMax", options.lastSeenMax ?? 100_000),
    offlineAfterSecs: positiveInteger(
      "offlineAfterSecs",
      options.offlineAfterSecs ?? DEFAULT_OFFLINE_AFTER_SECS,
    ),
    liveOutputRetentionMs: positiveInteger(
      "liveOutputRetentionSecs",
      options.liveOutputRetentionSecs ?? 600,
    ) * 1000,
    resultRetentionDays: wholeDays(
      options.resultRetentionDays ?? DEFAULT_RESULT_RETENTION_DAYS,
    ),
  };
}
