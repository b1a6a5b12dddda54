/**
 * Header names and paths of the wire protocol (docs/protocol.md §1–3), shared by the agent and the
 * dashboard.
 *
 * @module
 */

/** Header names used by signed agent requests. */
export const HEADER = {
  authorization: "Authorization",
  agentId: "X-Agent-Id",
  timestamp: "X-Timestamp",
  requestId: "X-Request-Id",
  signatureVersion: "X-Signature-Version",
  signature: "X-Agent-Signature",
} as const;
Object.freeze(HEADER); // an importer cannot change what the wire means

/** Paths of the agent-facing and operator endpoints. */
export const PATHS = {
  wait: (deploymentHash: string): string =>
    `/api/v1/agent/commands/wait/${encodeURIComponent(deploymentHash)}`,
  ack: "/api/v1/agent/commands/ack",
  report: "/api/v1/agent/commands/report",
  cancelWait: (commandId: string): string =>
    `/api/v1/agent/commands/${encodeURIComponent(commandId)}/cancel-wait`,
  enqueue: "/api/v1/agent/commands/enqueue",
  command: (id: string): string => `/api/v1/commands/${encodeURIComponent(id)}`,
  commands: "/api/v1/commands",
  cancel: (id: string): string => `/api/v1/commands/${encodeURIComponent(id)}/cancel`,
  agents: "/api/v1/agents",
  health: "/health",
} as const;
Object.freeze(PATHS); // an importer cannot change what the wire means

/** Default and largest `limit` of `GET /api/v1/commands` (docs/protocol.md §3). */
export const LIST_LIMIT = { default: 50, max: 1000 } as const;

/** Largest accepted request body, in bytes (docs/protocol.md §1 step 8). */
export const MAX_BODY_BYTES = 1024 * 1024;

/** Largest accepted distance between the agent's and the dashboard's clocks, in seconds. */
export const MAX_CLOCK_SKEW_SECS = 300;

/**
 * How long a request id is remembered for replay detection, in seconds: longer than the span of
 * timestamps the dashboard accepts at one moment (2 × {@link MAX_CLOCK_SKEW_SECS}), so that a
 * request is refused by its timestamp before its id is forgotten, with a minute to spare for the
 * clocks of several dashboard instances sharing one database.
 */
export const REPLAY_WINDOW_SECS = 2 * MAX_CLOCK_SKEW_SECS + 60;

/**
 * The error of the dashboard's `409` to a signed request whose `X-Request-Id` it has seen
 * (docs/protocol.md §1 step 6). The agent sends every request with a new id, so this answer to it
 * means that the request reached the dashboard twice: a proxy sent it again (nginx resends a `GET`
 * to the next instance when the one it reached went away).
 */
export const REPLAY_REFUSAL = "replay detected: this X-Request-Id was already used";
