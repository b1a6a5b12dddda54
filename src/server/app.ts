/**
 * The dashboard's app: the lean routes (`wait_route.ts`: the long-polls, and the agent `POST`s of
 * `routes_agent.ts`) in front of the Hono app (middleware and the other routes), wired to one
 * `CommandStore`. Each part lives in its own file; this one only builds them and connects them:
 *
 * - options and defaults: `app_options.ts`;
 * - the waits: `waiters.ts`, `cancel_waiters.ts`; leases: `leases.ts` (the timer) and
 *   `lease_expiry.ts` (what an expiry does);
 * - last-seen times and wait hashes: `last_seen.ts`; pruning of live output: `output_pruning.ts`;
 * - other instances on a shared store: `instance_link.ts`, `notify.ts`;
 * - the request middleware, error answers and the HTTP face: `request_log.ts`,
 *   `error_handler.ts`, `http_app.ts`; the routes: `routes_*.ts`, `events.ts`, `runs.ts`,
 *   `web/`.
 *
 * @module
 */
import { Hono } from "hono";
import { every } from "hono/combine";
import { REPLAY_WINDOW_SECS } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import {
  type CommandRecord,
  type CommandStore,
  type ExpireOutcome,
  isRequestIdJournal,
  isSharedStore,
  isWatchedFileStore,
  StoreUnavailableError,
} from "../store/mod.ts";
import { type AppOptions, resolveAppOptions } from "./app_options.ts";
import {
  adminAuth,
  AdminTokenGuesses,
  type AuthContext,
  BodySlots,
  operatorRateLimit,
} from "./auth/mod.ts";
import { RefusalLines } from "../log/refusal_lines.ts";
import { foreignBrowserRequest, type GuardedRequest, isApiPath } from "./browser_guard.ts";
import { CancelWaiters } from "./cancel_waiters.ts";
import { type Clock, monotonicNow } from "./clock.ts";
import type { ServerEnv } from "./env.ts";
import { errorHandler, notFoundHandler } from "./error_handler.ts";
import { CommandEvents, eventRoutes } from "./events.ts";
import { type HttpApp, httpApp, type RouteInfo, routeList } from "./http_app.ts";
import { InstanceLink } from "./instance_link.ts";
import { InstanceRegistry } from "./instances.ts";
import { LastSeen } from "./last_seen.ts";
import { expireLeases, reportExpiryFailure } from "./lease_expiry.ts";
import { LeaseTimer } from "./leases.ts";
import { LIVE_OUTPUT_HEAD_BYTES, LIVE_OUTPUT_TAIL_BYTES } from "./live_output.ts";
import { DashboardMetrics, type MetricsRenderer } from "./metrics.ts";
import {
  dismissRevokedWaits,
  resyncWaits,
  StoreAvailability,
  watchOtherWriters,
} from "./notify.ts";
import { observeStore } from "./observed_store.ts";
import { OutputPruner } from "./output_pruning.ts";
import { ResultPruner, type ResultPruneTotals } from "./result_retention.ts";
import { TokenBucketLimiter } from "./rate_limit.ts";
import { keptReplayGuard, ReplayCache, type RequestIdGuard } from "./replay.ts";
import { requestLog } from "./request_log.ts";
import type { RouteDeps } from "./route_deps.ts";
import { fleetRoutes } from "./routes_fleet.ts";
import { liveRoutes } from "./routes_live.ts";
import { operatorRoutes } from "./routes_operator.ts";
import { enqueueRunCommand, runRoutes, RunScheduler } from "./runs.ts";
import { OpenStreams } from "./sse.ts";
import { StoreHealth } from "./store_health.ts";
import { cancelAsked, LEAN_ROUTES, leanRoutes } from "./wait_route.ts";
import { WaiterHub } from "./waiters.ts";
import { mountConsole } from "./web/routes.tsx";

/** What {@link createApp} returns. */
export interface DashboardApp {
  /** The app: `app.fetch` for the HTTP server, `app.request` for tests. */
  app: HttpApp;
  /** The open waits. */
  hub: WaiterHub;
  /** The open cancel-waits of running commands. */
  cancelWaiters: CancelWaiters;
  /** Whether the app runs in dev mode. */
  devMode: boolean;
  /** Whether the store is reachable (it goes down only for a shared store such as PostgreSQL). */
  availability: StoreAvailability;
  /** The app's Prometheus metrics (`GET /metrics`). */
  metrics: MetricsRenderer;
  /** The event streams of commands. */
  events: CommandEvents;
  /**
   * The event streams open (of commands and of runs) and their limit, a quarter of the connection
   * limit: `startServer` sets it from the limit in force ({@link OpenStreams.limitTo}).
   */
  streams: OpenStreams;
  /** The rate control of fan-out runs. */
  runs: RunScheduler;
  /**
   * Every route the app answers (the long-polls, then the Hono routes in the order they were
   * registered), each method and path once; middleware is not listed. `docs/protocol.md`
   * describes each of them (a test checks it).
   */
  routes: readonly RouteInfo[];
  /**
   * Ends every lease that expired by the clock's now: requeue (and wake waiters), `lost` or
   * `cancelled`. The lease timer calls it; tests call it after moving their clock.
   */
  expireLeases(): Promise<ExpireOutcome>;
  /** Writes the in-memory last-seen times of agents to the store now (one transaction). */
  flushLastSeen(): Promise<void>;
  /** How many agents' last-seen times are in memory (at most `lastSeenMax`). */
  readonly trackedAgents: number;
  /** How many agent request bodies are on their way now (at most 8 of one agent). */
  readonly bodiesArriving: number;
  /**
   * Deletes the live output of commands final for longer than `liveOutputRetentionSecs`, in
   * batches; the timer of `autoExpireLeases` calls it once a minute.
   *
   * @returns How many chunks were deleted.
   */
  pruneOutput(): Promise<number>;
  /**
   * Deletes the commands final for more than `resultRetentionDays`, with their results, live
   * output and finished runs, in batches; the timer of `autoExpireLeases` calls it at start and
   * once an hour. Nothing when the retention is 0 (keep everything).
   *
   * @returns How much was deleted.
   */
  pruneResults(): Promise<ResultPruneTotals>;
  /**
   * Answers open waits and cancel-waits with `204`, stops the lease timer and writes the last-seen
   * times. Does not close the store.
   */
  close(): Promise<void>;
}

const log = logger("server");

/** With a shared store, how often the lease timer looks for leases other instances took, in ms. */
const SHARED_LEASE_LOOKUP_MS = 5000;

/**
 * Builds the dashboard app.
 *
 * @param options Store, mode, clock and limits.
 * @returns The app, its waiter hub, a way to expire leases now, and `close`.
 * @throws {TypeError} When no admin token is given outside dev mode, or both are given.
 * @throws {RangeError} When a limit is out of range.
 *
 * @example Enqueue in dev mode, in process
 * ```ts
 * import assert from "node:assert/strict";
 * import { createApp } from "./app.ts";
 * import { openSqliteStore } from "../store/mod.ts";
 *
 * await using store = openSqliteStore(":memory:");
 * const dashboard = createApp({ store, devMode: true });
 * const response = await dashboard.app.request("/api/v1/agent/commands/enqueue", {
 *   method: "POST",
 *   headers: { "Content-Type": "application/json", "X-Agent-Id": "test-agent" },
 *   body: JSON.stringify({ id: "cmd-001", name: "echo Hello from dashboard", params: {} }),
 * });
 * assert.equal(response.status, 202);
 * await dashboard.close();
 * ```
 */
export function createApp(options: AppOptions): DashboardApp {
  const settings = resolveAppOptions(options);
  const { clock, devMode, adminToken, autoExpire } = settings;
  // Every store call is timed, and every change of a command reaches its event streams.
  const metrics = new DashboardMetrics({ clock });
  const events = new CommandEvents();
  const streams = new OpenStreams();
  // Told by the store's wrapper of every write that committed a change.
  const storeHealth = new StoreHealth(clock);
  const store = observeStore(options.store, {
    events,
    metrics,
    committed: () => storeHealth.wrote(),
    read: () => storeHealth.read(),
    failed: (error, read) => storeHealth.failed(error, read),
  });
  // On the monotonic clock, as uptime is measured: a wall clock step is no uptime.
  const startedAt = monotonicNow(clock);
  // A store shared by several instances (PostgreSQL): events between them, request ids in the
  // database, and a store that can go away and come back.
  const shared = isSharedStore(store) ? store : null;
  let closed = false;

  const expire = () =>
    expireLeases({
      store,
      clock,
      maxAttempts: settings.maxAttempts,
      notify: (agentId) => hub.notify(agentId),
    });
  const leases = new LeaseTimer({
    clock,
    nextExpiry: () => store.nextLeaseExpiry(),
    expire,
    onError: (error) => reportExpiryFailure(error, availability, storeHealth),
    enabled: autoExpire,
    // Leases taken by other instances: looked up again at least this often.
    maxIdleMs: shared ? SHARED_LEASE_LOOKUP_MS : undefined,
  });

  const hub = new WaiterHub({
    claim: async (agentId, deploymentHash) => {
      const command = await store.claimNext({
        agentId,
        deploymentHash,
        now: clock.now(),
        deliveryLeaseMs: settings.ackTimeoutSecs * 1000,
      });
      if (command?.leaseExpiresAt != null) leases.schedule(command.leaseExpiresAt);
      return command;
    },
    release: (command: CommandRecord) => store.release(command.id, command.attempt, clock.now()),
    onError: (error) => log.error("could not release a claimed command: {error}", { error }),
    maxWaitsPerAgent: settings.maxWaitsPerAgent,
  });

  const cancelWaiters = new CancelWaiters({ maxWaitsPerAgent: settings.maxWaitsPerAgent });
  const resync = () => {
    // A revoked event may have been missed: the requests whose steps began before now read their
    // agent again once their body is in (see `WaiterHub.dismissedSince`).
    hub.forgetDismissals();
    return resyncWaits(store, hub, cancelWaiters, cancelAsked);
  };
  const availability = new StoreAvailability({
    clock,
    // A SQLite file (and its -wal file) is looked at: removed or replaced under the dashboard, the
    // store is down until it is back.
    ping: () =>
      shared ? shared.ping() : Promise.resolve().then(() => {
        if (isWatchedFileStore(options.store)) options.store.otherCommits();
      }),
    onRecovered() {
      if (closed) return;
      link?.connect();
      resync().catch((error) => availability.observe(error));
      if (autoExpire) void leases.start();
    },
  });
  // A background job (a pruning, a sweep of the runs) that finds the store failing tells /health
  // as a request would. Not a store unavailable for a moment (a pruning that outlasts a timeout
  // each minute would make /health flap): requests and the health probe tell an outage.
  const backgroundFailed = (what: string) => (error: unknown) => {
    if (!(error instanceof StoreUnavailableError)) storeHealth.map(error);
    // An outage already said (once, and again when it ends) is not said at each run of the job
    // (the runs' sweep, every 5 s, for as long as the outage lasts).
    if (error instanceof StoreUnavailableError && availability.down) {
      log.debug(`could not ${what}: {error}`, { error });
    } else log.warning(`could not ${what}: {error}`, { error });
  };
  const link = shared
    ? new InstanceLink({
      store: shared,
      hub,
      cancelWaiters,
      availability,
      resync,
      changed: (commandId) => events.publish(commandId),
      changedAll: () => events.publishAll(),
    })
    : null;

  const lastSeen = new LastSeen({
    store,
    clock,
    storeHealth,
    // The other instances tell online from offline by the times in the store: written at least
    // three times within OFFLINE_AFTER_SECS, the agents holding a long-poll here included.
    flushMs: shared
      ? Math.min(
        settings.lastSeenFlushMs,
        Math.max(1, Math.floor(settings.offlineAfterSecs * 1000 / 3)),
      )
      : settings.lastSeenFlushMs,
    max: settings.lastSeenMax,
    held: shared
      ? () => new Set([...hub.waitingAgents(), ...cancelWaiters.waitingAgents()])
      : undefined,
  });
  const bodySlots = new BodySlots();
  const auth: AuthContext = {
    store,
    clock,
    devMode,
    maxBodyBytes: settings.maxBodyBytes,
    seen: (agentId) => lastSeen.seen(agentId),
    bodySlots,
    // On a shared store, the other instances' revocations come as events: while they are not
    // heard (the listening connection lost), every agent may have been dismissed meanwhile.
    dismissals: shared
      ? {
        get mark() {
          return hub.mark;
        },
        dismissedSince: (agentId, mark) => availability.deaf || hub.dismissedSince(agentId, mark),
      }
      : hub,
  };
  const offlineAfterMs = settings.offlineAfterSecs * 1000;
  const deps: RouteDeps = {
    store,
    clock,
    hub,
    cancelWaiters,
    leases,
    devMode,
    adminToken,
    auth,
    limiter: new TokenBucketLimiter({ perMinute: settings.rateLimitPerMinute, clock }),
    operatorLimiter: new TokenBucketLimiter({
      perMinute: settings.operatorRateLimitPerMinute,
      clock,
    }),
    refusalLines: new RefusalLines({ clock }),
    adminGuesses: new AdminTokenGuesses({ clock }),
    queueTtlSecs: settings.queueTtlSecs,
    maxOpenCommandsForAgentEnqueue: settings.maxOpenCommandsForAgentEnqueue,
    offlineAfterMs,
    waitingHashes: (agentId) => hub.waitingHashes(agentId),
    noteWaitHash: (agentId, hash) => lastSeen.noteWaitHash(agentId, hash),
    lastWaitHash: (agentId) => lastSeen.lastWaitHash(agentId),
    replay: shared
      ? {
        remember: (id) => shared.rememberRequestId(id, clock.now(), REPLAY_WINDOW_SECS * 1000),
      }
      : replayGuard(options.store, clock, options.replayCacheSize),
    availability,
    waitRequireSignature: options.waitRequireSignature ?? false,
    acceptV1Signatures: options.acceptV1Signatures ?? false,
    defaultTimeoutSecs: settings.defaultTimeoutSecs,
    deliveryLeaseMs: settings.ackTimeoutSecs * 1000,
    maxBodyBytes: settings.maxBodyBytes,
    lastSeen: (agentId, stored) => lastSeen.freshest(agentId, stored),
    forgetAgent: (agentId) => lastSeen.forget(agentId),
    storeHealth,
    instances: new InstanceRegistry(clock),
  };

  const app = new Hono<ServerEnv>();
  app.use("*", (c, next) => {
    c.set("refusalLines", deps.refusalLines);
    return next();
  });
  app.use("*", requestLog(clock));
  // The web console first: its middleware lets a session cookie read the operator API.
  mountConsole(app, {
    devMode,
    adminToken,
    clock,
    sessionTtlSecs: options.consoleSessionTtlSecs,
    guesses: deps.adminGuesses,
    api: (request, remote) =>
      http.fetch(
        request,
        remote === undefined
          ? undefined
          : { remoteAddr: { transport: "tcp", hostname: remote, port: 0 } },
      ),
    countAgents: (through) => store.countAgents(through),
    // Registered below, before any request is answered.
    agent: (id) => fleet.agent(id),
  });
  operatorRoutes(app, deps, startedAt);
  // Every operator route takes from the operators' buckets, never from an agent's.
  const operatorAuth = every(
    operatorRateLimit(deps.operatorLimiter),
    adminAuth({ adminToken, devMode, guesses: deps.adminGuesses }),
  );
  liveRoutes(app, deps, {
    outputLimiter: new TokenBucketLimiter({ perMinute: settings.rateLimitPerMinute * 5, clock }),
    keep: options.outputBounds ?? {
      headBytes: LIVE_OUTPUT_HEAD_BYTES,
      tailBytes: LIVE_OUTPUT_TAIL_BYTES,
    },
  });
  eventRoutes(app, {
    store,
    events,
    auth: operatorAuth,
    keepAliveMs: options.eventKeepAliveMs,
    clock,
    streams,
  });
  const fleet = fleetRoutes(app, deps, { auth: operatorAuth, offlineAfterMs });
  const runs = new RunScheduler({
    store,
    clock,
    events,
    enqueue: (run, target) => enqueueRunCommand(deps, run, target),
    cancelRequested: (commandId) => cancelWaiters.notify(commandId),
    sweepMs: options.runSweepMs ?? 5000,
    onError: backgroundFailed("step the open runs"),
  });
  runRoutes(app, deps, {
    auth: operatorAuth,
    scheduler: runs,
    offlineAfterMs,
    keepAliveMs: options.eventKeepAliveMs,
    streams,
  });
  runs.start().catch(backgroundFailed("resume the open runs"));
  metrics.bind({
    waiting: () => hub.agentsWaiting,
    online: () => fleet.online(),
    countByStatus: () => store.countCommandsByStatus(),
    evictedWaits: () => ({ wait: hub.evictions, cancelWait: cancelWaiters.evictions }),
    eventStreams: () => streams.open,
  });
  app.get("/metrics", operatorAuth, function metricsRoute() {
    return metrics.render();
  });
  const routes = routeList(LEAN_ROUTES, app);
  app.notFound(notFoundHandler(routes, LEAN_ROUTES));
  app.onError(errorHandler(availability, storeHealth));

  if (autoExpire) void leases.start();
  link?.connect();
  // Another process may rotate or remove an agent in the same SQLite file (`--db`): no event
  // says so, so the file is looked at, the waits opened with a replaced token end, and the
  // followers of commands (event streams, runs) read them again: a removal cancels commands.
  const raw = options.store;
  const otherWriters = isWatchedFileStore(raw)
    ? watchOtherWriters({
      store: raw,
      clock,
      everyMs: options.otherWritersLookMs,
      changed() {
        events.publishAll();
        // A token may have changed: the requests whose steps are under way check theirs again.
        hub.forgetDismissals();
        dismissRevokedWaits(store, hub, cancelWaiters).catch((error) => {
          if (!availability.observe(error)) {
            log.error("could not check the open waits' tokens: {error}", { error });
          }
        });
      },
      failed(error) {
        // A store that failed (a disk I/O error) is told by /health, as when a request found it.
        if (!availability.observe(error) && storeHealth.map(error) === error) {
          log.debug("could not look for other writers of the store: {error}", { error });
        }
      },
    })
    : null;
  // Live output of final commands is redundant with their results after a while.
  const pruner = new OutputPruner({
    store,
    clock,
    retentionMs: settings.liveOutputRetentionMs,
    onError: backgroundFailed("prune live output"),
  });
  if (autoExpire) pruner.start();
  // Old final commands and their results, when the operator set a retention.
  const retention = settings.resultRetentionDays > 0
    ? new ResultPruner({
      store,
      clock,
      retentionDays: settings.resultRetentionDays,
      onError: backgroundFailed("delete old results"),
    })
    : null;
  if (autoExpire) retention?.start();

  // The long-polls (they hold no Hono context while waiting) and the agent POSTs (the command
  // cycle's hot path) first, Hono for the rest.
  // In dev mode, the API refuses what a browser sends for a foreign page; the console's pages
  // check the name themselves (with a page) and their forms a CSRF token.
  const browserGuard = (request: GuardedRequest) =>
    isApiPath(request.url) ? foreignBrowserRequest(request) : null;
  const http = httpApp(leanRoutes(deps), app, metrics, devMode ? browserGuard : undefined);

  return {
    app: http,
    hub,
    cancelWaiters,
    devMode,
    availability,
    metrics,
    events,
    streams,
    runs,
    routes,
    expireLeases: expire,
    flushLastSeen: () => lastSeen.flush(),
    get trackedAgents() {
      return lastSeen.size;
    },
    get bodiesArriving() {
      return bodySlots.total;
    },
    pruneOutput: () => pruner.prune(),
    pruneResults: () => retention?.prune() ?? Promise.resolve({ commands: 0, runs: 0 }),
    async close() {
      if (!closed) {
        closed = true;
        lastSeen.stop();
        hub.close();
        cancelWaiters.close();
        events.close();
        runs.close();
        pruner.close();
        leases.close();
        availability.close();
        otherWriters?.close();
        await retention?.close();
        await link?.close();
        await lastSeen.flush();
      }
    },
  };
}

/**
 * The request ids of one dashboard: in memory, and also in the store when it keeps them (SQLite),
 * so that a request accepted before a restart is still refused as a replay after it.
 */
function replayGuard(store: CommandStore, clock: Clock, maxEntries?: number): RequestIdGuard {
  const windowMs = REPLAY_WINDOW_SECS * 1000;
  const cache = new ReplayCache({ windowMs, clock, maxEntries });
  if (!isRequestIdJournal(store)) return cache;
  return keptReplayGuard({
    cache,
    journal: store,
    windowMs,
    clock,
    onError: (error, what) =>
      what === "read"
        ? log.error("could not read the request ids kept for replay protection: {error}", {
          error,
        })
        : log.warning(
          "could not keep request ids in the store (a restarted dashboard would not refuse " +
            "their replay): {error}",
          { error },
        ),
  });
}
