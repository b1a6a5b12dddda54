/**
 * The dashboard's app: the lean long-poll routes (`wait_route.ts`) in front of the Hono app
 * (middleware and the other routes), the waiter hub, the lease timer and the last-seen times,
 * wired to one {@link CommandStore}.
 *
 * Last-seen times are kept in memory (`GET /api/v1/agents` shows them) and written to the store
 * in one transaction for every agent seen, at most once a minute and at {@link DashboardApp.close};
 * a request never waits for that write.
 *
 * @module
 */
import { DEFAULT_ACK_TIMEOUT_SECS, DEFAULT_COMMAND_TIMEOUT_SECS } from "../defaults.ts";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { MAX_BODY_BYTES, MAX_TTL_SECS, REPLAY_WINDOW_SECS } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import {
  type CommandRecord,
  type CommandStore,
  type ExpireOutcome,
  isSharedStore,
  type StoreSubscription,
} from "../store/mod.ts";
import type { AuthContext, ServerEnv } from "./auth.ts";
import { CancelWaiters } from "./cancel_waiters.ts";
import { type Clock, systemClock, type TimerId } from "./clock.ts";
import { HttpError } from "./http_error.ts";
import { LeaseTimer } from "./leases.ts";
import { connectInstances, resyncWaits, StoreAvailability, unavailableError } from "./notify.ts";
import { TokenBucketLimiter } from "./rate_limit.ts";
import { ReplayCache } from "./replay.ts";
import { StoreHealth } from "./store_health.ts";
import { agentRoutes, type RouteDeps } from "./routes_agent.ts";
import { every } from "hono/combine";
import { operatorRoutes } from "./routes_operator.ts";
import { cancelAsked, LEAN_ROUTES, leanRoutes } from "./wait_route.ts";
import { mountConsole } from "./web/routes.tsx";
import { WaiterHub } from "./waiters.ts";
import { adminAuth, operatorRateLimit } from "./auth.ts";
import { CommandEvents, eventRoutes } from "./events.ts";
import { InstanceRegistry } from "./instances.ts";
import { LIVE_OUTPUT_HEAD_BYTES, LIVE_OUTPUT_TAIL_BYTES } from "./live_output.ts";
import { DashboardMetrics, type MetricsRenderer, routeLabel } from "./metrics.ts";
import { observeStore } from "./observed_store.ts";
import { refusalOf } from "./refusals.ts";
import { fleetRoutes } from "./routes_fleet.ts";
import { liveRoutes } from "./routes_live.ts";
import { enqueueRunCommand, runRoutes, RunScheduler } from "./runs.ts";
import type { OutputBounds } from "../store/mod.ts";

/** Options of {@link createApp}. */
export interface AppOptions {
  /** Where agents, commands and results live. The app never closes it. */
  store: CommandStore;
  /**
   * Dev mode (PROTOCOL.md §1): token-less agents are accepted unsigned, registered on first sight,
   * and the operator endpoints need no admin token. {@link startServer} decides it from the store.
   * @default {false}
   */
  devMode?: boolean;
  /** `STATUS_ADMIN_TOKEN`; required unless `devMode`. */
  adminToken?: string;
  /**
   * The clock (ms); tests inject one so that leases, skew and rate limits need no real waiting.
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
   * @default {1200}
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
   * Arm the one lease timer. Tests with an injected clock turn it off and call
   * {@link DashboardApp.expireLeases}.
   * @default {true}
   */
  autoExpireLeases?: boolean;
  /**
   * Largest accepted request body, in bytes.
   * @default {1048576}
   */
  maxBodyBytes?: number;
  /**
   * Request ids remembered at most for replay detection.
   * @default {200000}
   */
  replayCacheSize?: number;
  /**
   * Lifetime of a session of the web console, in seconds.
   * @default {43200}
   */
  consoleSessionTtlSecs?: number;
  /**
   * How often the in-memory last-seen times are written to the store at most (one transaction for
   * every agent seen since the last write), in ms. They are also written at close.
   * @default {60000}
   */
  lastSeenFlushMs?: number;
  /**
   * Agents whose last-seen time is kept in memory at most; the least recently seen are forgotten
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
   * What is kept of a running command's live output, per stream.
   * @default {{ headBytes: 32768, tailBytes: 32768 }}
   */
  outputBounds?: OutputBounds;
  /**
   * Interval of keep-alive comments on event streams, in ms.
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
   * How often every open fan-out run is stepped besides when its commands change, in ms; 0:
   * only when they change (tests call {@link DashboardApp.runs}' `sweep`).
   * @default {5000}
   */
  runSweepMs?: number;
}

/**
 * The HTTP side of the dashboard: the long-poll routes, then a Hono app for everything else,
 * described by the two methods callers use so that the public API does not depend on Hono's types.
 */
export interface HttpApp {
  /** Answers a request; the HTTP server calls it (the second argument may carry `remoteAddr`). */
  fetch(request: Request, env?: { remoteAddr?: Deno.Addr }): Response | Promise<Response>;
  /** Answers a request built from a path or URL, in process (tests). */
  request(input: string | URL | Request, init?: RequestInit): Response | Promise<Response>;
}

/** A route the app answers: a method and a path in Hono's syntax (`:id` for a parameter). */
export interface RouteInfo {
  /** The HTTP method, upper case. */
  method: string;
  /** The path, e.g. `/api/v1/commands/:id`. */
  path: string;
}

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
  /**
   * Deletes the live output of commands final for longer than `liveOutputRetentionSecs`; the
   * timer of `autoExpireLeases` calls it once a minute.
   *
   * @returns How many chunks were deleted.
   */
  pruneOutput(): Promise<number>;
  /**
   * Answers open waits and cancel-waits with `204`, stops the lease timer and writes the last-seen
   * times. Does not close the store.
   */
  close(): Promise<void>;
}

const log = logger("server");

/** With a shared store, how often the lease timer looks for leases other instances took, in ms. */
const SHARED_LEASE_LOOKUP_MS = 5000;
/** Default requests a minute per agent: a burst of 200 commands (about 5 requests each) fits. */
export const DEFAULT_AGENT_RATE_LIMIT = 1200;
/**
 * Default requests a minute per operator client address: dozens of `status enqueue --wait` polling
 * at once from one machine fit.
 */
export const DEFAULT_OPERATOR_RATE_LIMIT = 3000;
/** Default queue expiry of a command, in seconds. */
export const DEFAULT_QUEUE_TTL_SECS = 3600;

function positiveInteger(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be a whole number from 1 to ${max}, got ${value}`);
  }
  return value;
}

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
  const devMode = options.devMode ?? false;
  if (devMode && options.adminToken) {
    throw new TypeError("devMode and adminToken exclude each other: an admin token ends dev mode");
  }
  if (!devMode && !options.adminToken) {
    throw new TypeError("adminToken is required outside dev mode");
  }
  const clock = options.clock ?? systemClock;
  // Every store call is timed, and every change of a command reaches its event streams.
  const metrics = new DashboardMetrics();
  const events = new CommandEvents();
  const store = observeStore(options.store, { events, metrics });
  const ackTimeoutSecs = positiveInteger(
    "ackTimeoutSecs",
    options.ackTimeoutSecs ?? DEFAULT_ACK_TIMEOUT_SECS,
  );
  const maxAttempts = positiveInteger("maxAttempts", options.maxAttempts ?? 3, 100);
  const rateLimitPerMinute = positiveInteger(
    "rateLimitPerMinute",
    options.rateLimitPerMinute ?? DEFAULT_AGENT_RATE_LIMIT,
  );
  const operatorRateLimitPerMinute = positiveInteger(
    "operatorRateLimitPerMinute",
    options.operatorRateLimitPerMinute ?? DEFAULT_OPERATOR_RATE_LIMIT,
  );
  const queueTtlSecs = positiveInteger(
    "queueTtlSecs",
    options.queueTtlSecs ?? DEFAULT_QUEUE_TTL_SECS,
    MAX_TTL_SECS,
  );
  const defaultTimeoutSecs = positiveInteger(
    "defaultTimeoutSecs",
    options.defaultTimeoutSecs ?? DEFAULT_COMMAND_TIMEOUT_SECS,
  );
  const maxBodyBytes = positiveInteger("maxBodyBytes", options.maxBodyBytes ?? MAX_BODY_BYTES);
  const autoExpire = options.autoExpireLeases ?? true;
  const lastSeenFlushMs = positiveInteger("lastSeenFlushMs", options.lastSeenFlushMs ?? 60_000);
  const lastSeenMax = positiveInteger("lastSeenMax", options.lastSeenMax ?? 100_000);
  const offlineAfterSecs = positiveInteger("offlineAfterSecs", options.offlineAfterSecs ?? 90);
  const retentionMs = positiveInteger(
    "liveOutputRetentionSecs",
    options.liveOutputRetentionSecs ?? 600,
  ) * 1000;
  const startedAt = clock.now();
  // A store shared by several instances (PostgreSQL): events between them, request ids in the
  // database, and a store that can go away and come back.
  const shared = isSharedStore(store) ? store : null;

  const storeHealth = new StoreHealth(clock);
  const leases = new LeaseTimer({
    clock,
    nextExpiry: () => store.nextLeaseExpiry(),
    expire: () => expireLeases(),
    onError: (error) => {
      if (availability.observe(error)) return;
      if (storeHealth.map(error) !== error) {
        log.warning("lease expiry waits for the store to have room again");
      } else log.error("lease expiry failed: {error}", { error });
    },
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
        deliveryLeaseMs: ackTimeoutSecs * 1000,
      });
      if (command?.leaseExpiresAt != null) leases.schedule(command.leaseExpiresAt);
      return command;
    },
    release: (command: CommandRecord) => store.release(command.id, command.attempt, clock.now()),
    onError: (error) => log.error("could not release a claimed command: {error}", { error }),
  });

  const cancelWaiters = new CancelWaiters();

  let subscription: StoreSubscription | null = null;
  let subscribing: Promise<void> | undefined;
  const subscribe = () => {
    if (!shared || subscription || subscribing) return;
    subscribing = connectInstances({
      store: shared,
      hub,
      cancelWaiters,
      availability,
      resync: () => resyncWaits(store, hub, cancelWaiters, cancelAsked),
      changed: (commandId) => events.publish(commandId),
    }).then(async (opened) => {
      if (closed) await opened?.close();
      else subscription = opened;
    }, (error) => log.error("could not listen for other instances: {error}", { error }))
      .finally(() => subscribing = undefined);
  };
  const availability = new StoreAvailability({
    clock,
    ping: () => shared ? shared.ping() : Promise.resolve(),
    onRecovered() {
      if (closed) return;
      subscribe();
      resyncWaits(store, hub, cancelWaiters, cancelAsked).catch((error) =>
        availability.observe(error)
      );
      if (autoExpire) void leases.start();
    },
  });

  async function expireLeases(): Promise<ExpireOutcome> {
    const outcome = await store.requeueExpired(clock.now(), maxAttempts);
    if (outcome.requeued.length + outcome.lost.length + outcome.cancelled.length > 0) {
      storeHealth.wrote();
    }
    const agents = new Set<string>();
    for (const command of outcome.requeued) {
      log.warning("lease of command {commandId} expired; queued again as attempt {attempt}", {
        commandId: command.id,
        agentId: command.agentId,
        attempt: command.attempt,
      });
      agents.add(command.agentId);
    }
    for (const command of outcome.lost) {
      log.error("command {commandId} is lost after {attempts} attempts", {
        commandId: command.id,
        agentId: command.agentId,
        attempts: command.attempt,
      });
    }
    for (const command of outcome.cancelled) {
      log.info("command {commandId} cancelled at the end of its lease", {
        commandId: command.id,
        agentId: command.agentId,
      });
    }
    for (const command of outcome.expired) {
      log.warning("command {commandId} expired: agent {agentId} did not take it in time", {
        commandId: command.id,
        agentId: command.agentId,
        attempt: command.attempt,
      });
    }
    for (const agentId of agents) hub.notify(agentId);
    return outcome;
  }

  // Last seen: kept in memory; the times not yet written go to the store in one transaction at
  // most every lastSeenFlushMs (one timer, armed only while some are unwritten), and at close.
  const lastSeen = new Map<string, number>();
  // The deployment hash of each agent's latest wait (one entry per agent, like lastSeen).
  const lastWaitHash = new Map<string, string>();
  let unwritten = new Map<string, number>();
  let flushTimer: TimerId | undefined;
  let closed = false;
  const flushLastSeen = async () => {
    clock.clearTimeout(flushTimer);
    flushTimer = undefined;
    if (unwritten.size === 0) return;
    const batch = unwritten;
    unwritten = new Map();
    try {
      await store.touchAgents(batch);
      storeHealth.wrote();
    } catch (error) {
      storeHealth.map(error);
      log.warning("could not record when {count} agents were seen: {error}", {
        count: batch.size,
        error,
      });
    }
  };
  const seen = (agentId: string) => {
    const now = clock.now();
    // Most recently seen last; beyond the bound the least recently seen is forgotten here (its
    // time is in the store, or in `unwritten` until the next write).
    lastSeen.delete(agentId);
    lastSeen.set(agentId, now);
    if (lastSeen.size > lastSeenMax) lastSeen.delete(lastSeen.keys().next().value!);
    unwritten.set(agentId, now);
    if (unwritten.size >= lastSeenMax) void flushLastSeen();
    if (flushTimer === undefined && !closed) {
      flushTimer = clock.setTimeout(() => {
        flushTimer = undefined;
        void flushLastSeen();
      }, lastSeenFlushMs);
    }
  };

  const auth: AuthContext = { store, clock, devMode, maxBodyBytes, seen };
  const deps: RouteDeps = {
    store,
    clock,
    hub,
    cancelWaiters,
    leases,
    devMode,
    adminToken: options.adminToken,
    auth,
    limiter: new TokenBucketLimiter({ perMinute: rateLimitPerMinute, clock }),
    operatorLimiter: new TokenBucketLimiter({ perMinute: operatorRateLimitPerMinute, clock }),
    queueTtlSecs,
    offlineAfterMs: offlineAfterSecs * 1000,
    waitingHashes: (agentId) => hub.waitingHashes(agentId),
    noteWaitHash: (agentId, hash) => {
      if (lastWaitHash.get(agentId) !== hash) lastWaitHash.set(agentId, hash);
    },
    lastWaitHash: (agentId) => lastWaitHash.get(agentId),
    replay: shared
      ? {
        remember: (id) => shared.rememberRequestId(id, clock.now(), REPLAY_WINDOW_SECS * 1000),
      }
      : new ReplayCache({
        windowMs: REPLAY_WINDOW_SECS * 1000,
        clock,
        maxEntries: options.replayCacheSize,
      }),
    availability,
    waitRequireSignature: options.waitRequireSignature ?? false,
    acceptV1Signatures: options.acceptV1Signatures ?? false,
    defaultTimeoutSecs,
    deliveryLeaseMs: ackTimeoutSecs * 1000,
    maxBodyBytes,
    lastSeen: (agentId) => lastSeen.get(agentId) ?? null,
    storeHealth,
    instances: new InstanceRegistry(clock),
  };

  const app = new Hono<ServerEnv>();

  app.use("*", async function requestLog(c, next) {
    const started = log.isEnabledFor("debug") ? performance.now() : 0;
    await next();
    // A state change that succeeded wrote to the store: it has room (again).
    if (c.req.method === "POST" && c.res.status >= 200 && c.res.status < 300) storeHealth.wrote();
    if (!c.res.headers.has("Date")) {
      c.res.headers.set("Date", new Date(clock.now()).toUTCString());
    }
    log.debug("{method} {path} {status}", () => ({
      method: c.req.method,
      path: new URL(c.req.url).pathname,
      status: c.res.status,
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      agentId: c.get("agent")?.id,
    }));
  });

  // The web console first: its middleware lets a session cookie read the operator API.
  mountConsole(app, {
    devMode,
    adminToken: options.adminToken,
    clock,
    sessionTtlSecs: options.consoleSessionTtlSecs,
    api: (request) => fetch(request),
  });
  agentRoutes(app, deps);
  operatorRoutes(app, deps, startedAt);
  // Every operator route takes from the operators' buckets, never from an agent's.
  const operatorAuth = every(
    operatorRateLimit(deps.operatorLimiter),
    adminAuth({ adminToken: options.adminToken, devMode }),
  );
  liveRoutes(app, deps, {
    outputLimiter: new TokenBucketLimiter({ perMinute: rateLimitPerMinute * 5, clock }),
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
  });
  const fleet = fleetRoutes(app, deps, {
    auth: operatorAuth,
    offlineAfterMs: offlineAfterSecs * 1000,
  });
  const runs = new RunScheduler({
    store,
    clock,
    events,
    enqueue: (run, target) => enqueueRunCommand(deps, run, target),
    cancelRequested: (commandId) => cancelWaiters.notify(commandId),
    sweepMs: options.runSweepMs ?? 5000,
  });
  runRoutes(app, deps, {
    auth: operatorAuth,
    scheduler: runs,
    offlineAfterMs: offlineAfterSecs * 1000,
    keepAliveMs: options.eventKeepAliveMs,
  });
  runs.start().catch((error) => log.error("could not resume the open runs: {error}", { error }));
  metrics.bind({
    waiting: () => hub.size,
    online: () => fleet.online(),
    countByStatus: () => store.countCommandsByStatus(),
  });
  app.get("/metrics", operatorAuth, function metricsRoute() {
    return metrics.render();
  });

  // Middleware (`app.use`) is registered under the method "ALL"; no route uses it.
  const routes: RouteInfo[] = [...LEAN_ROUTES];
  for (const route of app.routes) {
    if (route.method === "ALL") continue;
    if (!routes.some((r) => r.method === route.method && r.path === route.path)) {
      routes.push({ method: route.method, path: route.path });
    }
  }

  app.notFound((c) => {
    return c.json({ error: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404);
  });

  app.onError((thrown, c) => {
    const unavailable = unavailableError(thrown);
    if (unavailable) availability.observe(thrown);
    const error = unavailable ?? storeHealth.map(thrown);
    if (error instanceof HttpError) {
      for (const [name, value] of Object.entries(error.headers)) c.header(name, value);
      return c.json(error.toJSON(), error.status);
    }
    if (error instanceof HTTPException) {
      return c.json({ error: error.message || "request failed" }, error.status);
    }
    log.error("request {method} {path} failed: {error}", {
      method: c.req.method,
      path: new URL(c.req.url).pathname,
      error,
    });
    return c.json({ error: "internal error; see the dashboard's log" }, 500);
  });

  if (autoExpire) void leases.start();
  subscribe();
  // Live output of final commands is redundant with their results after a while.
  const pruneOutput = () => store.pruneOutput(clock.now() - retentionMs);
  let pruneTimer: TimerId | undefined;
  const armPrune = () => {
    pruneTimer = clock.setTimeout(() => {
      armPrune();
      pruneOutput().catch((error) => {
        log.warning("could not prune live output: {error}", { error });
      });
    }, 60_000);
  };
  if (autoExpire) armPrune();

  // The long-polls first (they hold no Hono context while waiting), Hono for the rest.
  const lean = leanRoutes(deps);
  const count = (request: Request, response: Response) => {
    const status = response.status;
    metrics.requests.inc({ route: routeLabel(new URL(request.url).pathname), status });
    if (status === 429) metrics.rateLimited.inc();
    else if (status >= 400) {
      const reason = refusalOf(request);
      if (reason !== undefined) metrics.authRefusals.inc({ reason });
    }
    return response;
  };
  // Counted with `then`, not an async frame: a held wait keeps nothing more than before.
  const fetch: HttpApp["fetch"] = (request, env) => {
    const addr = env?.remoteAddr;
    const answer = lean(request, addr && "hostname" in addr ? addr.hostname : undefined) ??
      app.fetch(request, env);
    return answer instanceof Promise
      ? answer.then((response) => count(request, response))
      : count(request, answer);
  };
  const http: HttpApp = {
    fetch,
    // As Hono's `app.request`: a path is resolved against http://localhost.
    request(input, init) {
      if (input instanceof Request) return fetch(init ? new Request(input, init) : input);
      const text = input.toString();
      const url = /^https?:\/\//.test(text)
        ? text
        : `http://localhost${text.startsWith("/") ? "" : "/"}${text}`;
      return fetch(new Request(url, init));
    },
  };

  return {
    app: http,
    hub,
    cancelWaiters,
    devMode,
    availability,
    metrics,
    events,
    runs,
    routes,
    expireLeases,
    flushLastSeen,
    get trackedAgents() {
      return lastSeen.size;
    },
    pruneOutput,
    async close() {
      if (!closed) {
        closed = true;
        hub.close();
        cancelWaiters.close();
        events.close();
        runs.close();
        clock.clearTimeout(pruneTimer);
        leases.close();
        availability.close();
        await subscribing;
        await subscription?.close();
        await flushLastSeen();
      }
    },
  };
}
