/**
 * The dashboard (`status serve`): a Hono app on `node:http` holding a command queue per agent in a
 * `CommandStore`, waking waiting agents at once, with the authentication, limits and delivery
 * guarantee of docs/protocol.md §1–4.
 *
 * - {@link startServer} opens the store, decides dev mode and listens;
 * - {@link createApp} builds the app alone (tests use `app.request()` and an injected clock).
 *
 * ## Holding 10,000 waits cheaply
 *
 * Most of the dashboard's life is agents waiting, so the wait path is kept lean:
 *
 * - **The long-polls bypass Hono**: `wait` and `cancel-wait` are dispatched before the Hono app
 *   (in `app.fetch`, so the server and `app.request()` both use it) to a handler that runs the
 *   auth steps of docs/protocol.md §1 as plain functions and then holds only the waiter and its
 *   promise.
 *   On `node:http` they are answered straight on the server's objects, without a web `Request`.
 * - **So do ack, report and enqueue** (the command cycle's other requests): the same plain auth
 *   steps, the body read from `node:http`'s request with the same limits, no web `Request`,
 *   `Headers`, stream or `Response` and no Hono context per request.
 * - **Coalesced timeouts** ({@link Deadlines}): a wait's timeout is rounded up to the next whole
 *   second, and one timer ends each second's waits together; a wait of N s ends between N and
 *   N + 1 s (the agent aborts client-side 10 s after N).
 * - **No store write on a wait**: agents are cached by the store (another process's `status agents`
 *   changes are seen through `PRAGMA data_version`), last-seen times are written in one
 *   transaction a minute for all agents, and a claim on an empty queue only reads.
 * - **One commit per wake-up**: an enqueue that finds a matching open wait inserts and claims in
 *   one transaction ({@link WaiterHub.enqueue}); the wait is answered before the enqueue.
 * - Nothing is logged per request above debug, except the per-command audit lines (enqueued,
 *   delivered, reported); debug lines build their properties only when debug is on.
 *
 * Choices where the protocol leaves room:
 *
 * - **Unknown or another agent's command**: ack, report and cancel-wait answer the same `404`.
 * - **Full store**: `507` with `Retry-After: 30` (`store_health.ts`); `/health` answers `503`
 *   with `"status": "store_full"`. A store that failed (a disk I/O error, a damaged file): `503`
 *   with `Retry-After: 30`, and `/health` `503` with `"status": "store_failing"`; both until a
 *   write commits a change (a failure only reads found: until a read succeeds).
 * - **Sockets**: header timeout, connection limit and malformed requests as in `http_listener.ts`.
 * - **Dev mode** is decided at start: no agent has a token and no admin token is configured. Its
 *   leniency (no bearer, timestamp, signature or request id) applies to token-less agents only;
 *   an agent given a token while the dashboard runs must authenticate at once.
 * - **Scopes**: `commands:wait` (wait, ack and cancel-wait), `commands:report`, `commands:enqueue`.
 *   The wait checks the scope too, besides steps 1–3.
 * - **Request ids** are remembered per agent for 660 s (the timestamps accepted at one moment span
 *   600 s), at most 200 000 (the oldest go first); on a store shared by several instances
 *   (PostgreSQL) they are recorded in the database instead, so that every instance refuses an id
 *   any of them accepted.
 * - **Several instances** on one PostgreSQL database: see `notify.ts` (events between instances with
 *   `LISTEN`/`NOTIFY`, the store going down: `/health` 503, `503` with `Retry-After`, probes with
 *   backoff) and `src/store/postgres.ts`. Rate limits stay per instance.
 * - **Execution lease**: `timeout_secs` (default 300, `defaultTimeoutSecs`) + 60 s from the ack.
 * - **Cancel** of a delivered command sets `cancel_requested` (shown in the command) and wakes the
 *   agent's cancel-wait (below), so the agent stops the command and reports it `cancelled`; if its
 *   lease ends without a report it becomes `cancelled` instead of being delivered again.
 * - **Reports**: the first one wins; a late report of an earlier attempt, or of a `lost`
 *   command, is recorded (see `CommandStore.report`).
 * - **A wait that goes away** (client disconnect) is dropped; a command claimed for it in the
 *   meantime goes to another wait of the agent or back to the queue. A command whose answer was
 *   lost on the wire comes back when its delivery lease ends.
 * - **Open waits per agent**: at most `maxWaitsPerAgent` (default 8) waits, and apart as many
 *   cancel-waits, per agent id (`wait_cap.ts`); a new one beyond it is held and the agent's oldest
 *   is answered `204` as at its timeout, with an audit warning at most once a minute per agent.
 *
 * ## Extension of docs/protocol.md §2: `GET /api/v1/agent/commands/{id}/cancel-wait?timeout=N`
 *
 * How a running command learns that an operator cancelled it. The agent keeps one open from its
 * ack until the run ends, and opens it again after each `204`. Same pipeline as the ack (signed,
 * scope `commands:wait`); `timeout` as for wait (default 30, clamped to 1–120 s).
 *
 * - `200 {"cancel_requested": true}`: held until an operator's cancel of the command is recorded
 *   (the cancel route wakes it directly, nothing polls the store); at once when it already was
 *   (`cancel_requested` set, or the command `cancelled`). The agent cancels the run (SIGTERM, grace,
 *   SIGKILL to the group) and reports `cancelled`.
 * - `204` with an empty body at the timeout, and at shutdown.
 * - `404` unknown command or another agent's, the same answer (and the answer of a dashboard
 *   without this endpoint: the agent stops asking for that command); `409` a command already final
 *   (other than `cancelled`): nothing to cancel.
 * - A command with the id `wait` has none: `…/commands/wait/cancel-wait` is a wait on the
 *   deployment hash `cancel-wait`, and the agent does not ask.
 *
 * ## Live output, event streams, the fleet and metrics
 *
 * - `POST /api/v1/agent/commands/{id}/output` (`routes_live.ts`): chunks of a running command's
 *   output with byte offsets, stored once and bounded to head and tail per stream
 *   (`CommandStore.appendOutput`); `GET /api/v1/commands/{id}` shows them as `live_output`.
 * - `GET /api/v1/commands/{id}/events` (`events.ts`): server-sent `status`, `output` and `end`
 *   events, resumable with `Last-Event-ID`. Every store call goes through `observed_store.ts`,
 *   which wakes the streams of the command it changed and counts it in the metrics.
 * - `POST /api/v1/agent/heartbeat`, `GET /api/v1/agent/ping` (`routes_live.ts`);
 *   `GET/POST /api/v1/agents`, `POST /api/v1/agents/{id}/rotate`, `DELETE /api/v1/agents/{id}`
 *   (`routes_fleet.ts`).
 * - One agent process per agent id (`instances.ts`): a wait from a second instance is `409`.
 * - Fan-out runs (`runs.ts`): `POST/GET /api/v1/runs`, `GET /api/v1/runs/{id}` and its
 *   `/events`, `POST /api/v1/runs/{id}/cancel`; {@link RunScheduler} starts each run's commands
 *   up to its `max_concurrency` and skips the rest after `max_errors` failures.
 * - `GET /metrics` (`metrics.ts`, `prom-client`): admin token outside dev mode, or
 *   `ServeOptions.metricsBind` for a separate listener without one.
 *
 * @example Start a dev-mode dashboard on a free port
 * ```ts
 * import assert from "node:assert/strict";
 * import { startServer } from "./mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * assert.equal(server.devMode, true);
 * const answer = await fetch(`${server.url}/api/v1/agent/commands/enqueue`, {
 *   method: "POST",
 *   headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
 *   body: JSON.stringify({ id: "cmd-001", name: "echo Hello from dashboard", params: {} }),
 * });
 * assert.equal(answer.status, 202);
 * await answer.body?.cancel();
 * ```
 *
 * @module
 */
export { createApp, type DashboardApp } from "./app.ts";
export type { AppOptions } from "./app_options.ts";
export type { HttpApp, RouteInfo } from "./http_app.ts";
export { checkAddressesFree, type RunningServer, type ServeOptions, startServer } from "./serve.ts";
export { checkTlsPair } from "./tls.ts";
export type { Clock } from "./clock.ts";
export type { HttpListener } from "../http_listener.ts";
export { WaiterHub, type WaiterHubOptions, type WaitRequest } from "./waiters.ts";
export { Deadlines } from "./deadlines.ts";
export {
  CancelWaiters,
  type CancelWaitersOptions,
  type CancelWaitRequest,
} from "./cancel_waiters.ts";
export { LeaseTimer } from "./leases.ts";
export { StoreAvailability, type StoreAvailabilityOptions } from "./notify.ts";
export { CommandEvents } from "./events.ts";
export { DashboardMetrics, type MetricsRenderer } from "./metrics.ts";
export { RunScheduler, type RunSchedulerOptions } from "./runs.ts";
