/**
 * Running the dashboard: open the store, decide dev mode, serve the app over `node:http` with the
 * socket defences of `http_listener.ts`, and shut down gracefully.
 *
 * @module
 */
import { RUN_TARGET_BYTES } from "./runs.ts";
import { DEFAULT_BIND, DEFAULT_DB, DEFAULT_PORT } from "../defaults.ts";
import { ConfigError } from "../errors.ts";
import { logger } from "../log/mod.ts";
import { MAX_BODY_BYTES } from "../protocol/mod.ts";
import {
  type CommandStore,
  openStore,
  redactUrl,
  type SqliteStoreOptions,
  StoreError,
} from "../store/mod.ts";
import { createApp, type DashboardApp } from "./app.ts";
import { type AppOptions, resolveAppOptions } from "./app_options.ts";
import {
  checkAddressFree,
  type HttpListener,
  listenHttp,
  listenProbeError,
} from "../http_listener.ts";
import {
  checkMetricsAddressFree,
  type MetricsServer,
  parseListenAddress,
  serveMetrics,
} from "../metrics_server.ts";
import { directHandlerOf } from "./http_app.ts";
import { checkTlsPair } from "./tls.ts";
import { checkNoNulls, checkOptionNames, type OptionNames } from "../options.ts";

/** Options of {@link startServer}. */
export interface ServeOptions extends Omit<AppOptions, "store" | "devMode"> {
  /**
   * @internal Use this store (the caller closes it); otherwise `db` is opened and closed at
   * shutdown.
   */
  store?: CommandStore;
  /**
   * The store: a SQLite file, created on first start, or a `postgres://` URL of a database shared
   * by several instances (schema created or migrated on start).
   * @default {"./status.db"}
   */
  db?: string;
  /**
   * The setting `db` came from (`DATABASE_URL from the environment`), put before the message
   * when the store cannot be opened.
   */
  dbSetting?: string;
  /**
   * The setting `hostname` came from (`BIND from config.json`), named in the errors about it.
   * @default {"--bind"}
   */
  bindSetting?: string;
  /** @internal Options of the SQLite store opened from `db`. */
  dbOptions?: SqliteStoreOptions;
  /**
   * Port to listen on; `0` picks a free one (see {@link RunningServer.port}).
   * @default {5000}
   */
  port?: number;
  /**
   * Address to listen on. Dev mode allows only a loopback address.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * PEM certificate and key (their contents, not paths): the dashboard serves HTTPS. The pair is
   * checked before the store is opened.
   */
  tls?: { cert: string; key: string };
  /**
   * Seconds (a whole number from 1 to 300) a connection may take to send a complete request head,
   * or stay idle between requests, before it is closed (a held long-poll is not idle).
   * @default {10}
   */
  headerTimeoutSecs?: number;
  /**
   * Open connections at most (a whole number from 1 to 1,000,000); never closer than 128 to the
   * process's open-files limit.
   * @default {20000}
   */
  maxConnections?: number;
  /** @internal Descriptors the process can still open; counted at start when not given. */
  availableDescriptors?: number | "plenty" | "unknown";
  /**
   * Also serve `GET /metrics` without the admin token on this `PORT` (on 127.0.0.1) or
   * `HOST:PORT` (`METRICS_BIND`), e.g. for a Prometheus on a private network.
   */
  metricsBind?: string;
}

/** A running dashboard. */
export interface RunningServer extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:5000`. */
  url: string;
  /** The port it listens on (the real one when `port: 0` was asked). */
  port: number;
  /** The address it listens on. */
  hostname: string;
  /** Whether it runs in dev mode. */
  devMode: boolean;
  /** Where `--metrics-bind` serves `/metrics`, when it is set. */
  metricsUrl?: string;
  /** @internal The app, its hub and lease expiry, for the CLI and tests. */
  dashboard: DashboardApp;
  /** @internal The sockets: open connections, the limit in force, refused connections. */
  listener: HttpListener;
  /**
   * Stops accepting connections, answers open waits and cancel-waits with `204`, lets in-flight
   * requests finish (their store writes are complete when they answer; a request still arriving
   * is held to the header and body timeouts), closes the connections still open 20 s later, then
   * closes the store. Idempotent.
   *
   * @param options `now`: close every connection at once, those with a request in flight too (a
   *   second Ctrl-C), also when a shutdown is under way already.
   */
  shutdown(options?: { now?: boolean }): Promise<void>;
  /** Resolves when the server has shut down and the store is closed. */
  finished: Promise<void>;
}

import { isLoopback } from "./loopback.ts";
export { isLoopback };

const log = logger("server");

/** How `METRICS_BIND` is named in the errors of its address. */
const METRICS_BIND_SETTING = "METRICS_BIND, --metrics-bind";

/**
 * The store holds agents with tokens but no admin token is configured: the dashboard is not in dev
 * mode, and its operator API would have no token. `status up`, which runs in dev mode only,
 * catches it to say what to do instead.
 */
export class AdminTokenRequiredError extends ConfigError {
  /** Creates the error with the sentence `status serve` shows. */
  constructor(message: string) {
    super(message);
    this.name = "AdminTokenRequiredError";
  }
}

/**
 * Decides dev mode (docs/protocol.md §1): on when no admin token is configured and no agent has a
 * token.
 *
 * @param store The store.
 * @param adminToken `STATUS_ADMIN_TOKEN`, if configured.
 * @returns Whether dev mode is on.
 * @throws {AdminTokenRequiredError} When agents have tokens but no admin token is configured.
 */
export async function resolveDevMode(store: CommandStore, adminToken?: string): Promise<boolean> {
  if (adminToken) return false;
  if (await store.hasAgentWithToken()) {
    throw new AdminTokenRequiredError(
      "set STATUS_ADMIN_TOKEN (or --status-admin-token) to a random secret of at least 16 " +
        "characters: agents with tokens are configured, so the dashboard is not in dev mode and " +
        "its operator API needs an admin token (e.g. STATUS_ADMIN_TOKEN=$(openssl rand -base64 32))",
    );
  }
  return true;
}

/**
 * How to add an agent to a dashboard that did not start: on its store (`--db`), since no
 * dashboard answers `status agents add` over the API.
 */
function addAgentCommand(options: ServeOptions): string {
  const db = options.store === undefined ? options.db ?? DEFAULT_DB : ":memory:";
  if (db === ":memory:") return "status agents add <id>";
  return `status agents add <id> --db ${
    /^postgres(ql)?:/i.test(db) ? "<its postgres:// URL>" : db
  }`;
}

/** Every option of {@link startServer}. */
const SERVE_OPTIONS: OptionNames<ServeOptions> = {
  adminToken: true,
  clock: true,
  ackTimeoutSecs: true,
  maxAttempts: true,
  rateLimitPerMinute: true,
  operatorRateLimitPerMinute: true,
  queueTtlSecs: true,
  maxWaitsPerAgent: true,
  waitRequireSignature: true,
  acceptV1Signatures: true,
  defaultTimeoutSecs: true,
  autoExpireLeases: true,
  maxBodyBytes: true,
  replayCacheSize: true,
  consoleSessionTtlSecs: true,
  lastSeenFlushMs: true,
  lastSeenMax: true,
  offlineAfterSecs: true,
  outputBounds: true,
  eventKeepAliveMs: true,
  liveOutputRetentionSecs: true,
  resultRetentionDays: true,
  runSweepMs: true,
  maxOpenCommandsForAgentEnqueue: true,
  otherWritersLookMs: true,
  store: true,
  db: true,
  dbSetting: true,
  bindSetting: true,
  dbOptions: true,
  port: true,
  hostname: true,
  tls: true,
  headerTimeoutSecs: true,
  maxConnections: true,
  availableDescriptors: true,
  metricsBind: true,
};

/** The largest `headerTimeoutSecs`, as `HEADER_TIMEOUT_SECS` allows. */
const MAX_HEADER_TIMEOUT_SECS = 300;
/** The largest `maxConnections`, as `MAX_CONNECTIONS` allows. */
const MAX_MAX_CONNECTIONS = 1_000_000;

function wholeNumber(name: string, value: number | undefined, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be a whole number from 1 to ${max}, got ${value}`);
  }
}

function urlOf(hostname: string, port: number, tls: boolean): string {
  const host = hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
  return `${tls ? "https" : "http"}://${host}:${port}`;
}

/** The error of a dashboard port another process listens on. */
function addressInUse(hostname: string, port: number, cause: unknown): Error {
  return new Error(`cannot listen on ${hostname}:${port}: the address is already in use`, {
    cause,
  });
}

/**
 * Throws the error {@link startServer} would throw for its port, or its metrics address, in use,
 * without making anything: it checks them before it opens the store (an SQLite file made, and its
 * folder by `status up`), so that a start on a port in use fails with nothing left behind.
 *
 * @param options The address and port of the dashboard, and `METRICS_BIND`.
 * @throws {Error} When one of them is in use (its `cause` has the `code` `EADDRINUSE`).
 */
export function checkAddressesFree(
  options: { hostname?: string; port?: number; metricsBind?: string },
): void {
  const hostname = options.hostname ?? DEFAULT_BIND;
  const port = options.port ?? DEFAULT_PORT;
  try {
    checkAddressFree(hostname, port);
  } catch (error) {
    throw addressInUse(hostname, port, error);
  }
  if (options.metricsBind === undefined) return;
  let metrics: { hostname: string; port: number };
  try {
    metrics = parseListenAddress(options.metricsBind);
  } catch {
    return; // Said by the metrics' own start.
  }
  checkMetricsAddressFree(metrics, METRICS_BIND_SETTING);
}

/** The host of `METRICS_BIND`, when it is given and well-formed (a malformed one is said later). */
function metricsHostOf(metricsBind: string | undefined): string | undefined {
  if (metricsBind === undefined) return undefined;
  try {
    return parseListenAddress(metricsBind).hostname;
  } catch {
    return undefined;
  }
}

/**
 * The refusal of dev mode (loopback only) to listen on `hostname`, or on `METRICS_BIND`'s host,
 * when either is not loopback.
 */
function devModeRefusal(hostname: string, options: ServeOptions): ConfigError | undefined {
  // Its metrics too: dev mode is for one machine, and they say what its fleet runs.
  const metricsHost = metricsHostOf(options.metricsBind);
  const [setting, host] = !isLoopback(hostname)
    ? [options.bindSetting ?? "--bind", hostname]
    : metricsHost !== undefined && !isLoopback(metricsHost)
    ? ["METRICS_BIND (--metrics-bind)", metricsHost]
    : [];
  if (host === undefined) return undefined;
  return new ConfigError(
    `dev mode (no agent tokens and no STATUS_ADMIN_TOKEN) listens on loopback only, but ` +
      `${setting} is ${host}; bind 127.0.0.1, or add an agent with ` +
      `"${addAgentCommand(options)}" and set STATUS_ADMIN_TOKEN`,
  );
}

/** Whether `db` names a SQLite file that does not exist yet (opening the store would make it). */
function isNewFile(db: unknown): boolean {
  // Anything else is refused, as such, when the store is opened.
  if (typeof db !== "string" || db === ":memory:" || /^([a-z][a-z0-9+.-]*):\/\//i.test(db.trim())) {
    return false;
  }
  try {
    Deno.lstatSync(db);
    return false;
  } catch (error) {
    return error instanceof Deno.errors.NotFound;
  }
}

/**
 * The error of a listen that failed for its address: a host name that does not resolve, or an
 * address that is not this machine's; `undefined` for another failure.
 */
function notListenable(
  error: unknown,
  hostname: string,
  port: number,
  bindSetting: string | undefined,
): ConfigError | undefined {
  const code = (error as { code?: string }).code;
  const bindName = bindSetting ?? "BIND, --bind";
  const message = (error as Error).message ?? "";
  if (
    code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME" ||
    /getaddrinfo|failed to lookup address/.test(message)
  ) {
    return new ConfigError(
      `cannot listen on ${hostname}:${port}: ${hostname} (${bindName}) is not an IP ` +
        "address or a host name that resolves",
      { cause: error },
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "EINVAL" || /EADDRNOTAVAIL|EINVAL/.test(message)) {
    return new ConfigError(
      `cannot listen on ${hostname}:${port}: ${hostname} (${bindName}) is not an address ` +
        "of this machine",
      { cause: error },
    );
  }
  return undefined;
}

/**
 * Refuses, before the store is opened (and its file made), an address the dashboard could not
 * listen on: a host name that does not resolve, or an address that is not this machine's. It
 * listens on the address's port 0 a moment, when allowed to; any other failure is left to the
 * listener, which says it.
 */
function checkListenable(hostname: string, port: number, bindSetting: string | undefined): void {
  const error = listenProbeError(hostname);
  const refusal = error === undefined
    ? undefined
    : notListenable(error, hostname, port, bindSetting);
  if (refusal) throw refusal;
}

/**
 * Starts the dashboard.
 *
 * @param options Store, address, TLS, mode and limits.
 * @returns The running server; call {@link RunningServer.shutdown} to stop it.
 * @throws {TypeError} When `options` is not an object or has a key that is not one of its
 *   options or is `null`, `hostname` is not a non-empty string, `db` not a non-blank string,
 *   `metricsBind` not a string, `waitRequireSignature` or `acceptV1Signatures` not a boolean, or
 *   `tls` not an object holding the PEM texts `cert` and `key`.
 * @throws {RangeError} When `port` is not a whole number from 0 to 65535, `headerTimeoutSecs`
 *   not one from 1 to 300, `maxConnections` not one from 1 to 1,000,000, `metricsBind` not
 *   `PORT` or `HOST:PORT`, or another limit is out of its range.
 * @throws {ConfigError} When the store cannot be opened (its `cause` is a {@link StoreError}: a
 *   {@link StoreUnavailableError} may succeed later, a {@link StoreFullError} once space is
 *   freed), `tls` is not a PEM certificate and its private key, dev mode would listen beyond
 *   loopback, an admin token is needed and missing, `hostname` is not an address of this
 *   machine, or listening is not permitted.
 * @throws {Error} When the address is already in use (its `cause` has the `code` `EADDRINUSE`).
 *
 * @example Start on a free port and stop
 * ```ts
 * import assert from "node:assert/strict";
 * import { startServer } from "./serve.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const health = await fetch(`${server.url}/health`);
 * assert.equal((await health.json()).status, "ok");
 * ```
 */
export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`startServer's options must be an object, got ${String(options)}`);
  }
  checkOptionNames("startServer", options, SERVE_OPTIONS);
  checkNoNulls(options);
  const hostname = options.hostname ?? DEFAULT_BIND;
  if (typeof hostname !== "string" || hostname.trim() === "") {
    throw new TypeError(
      `hostname must be an address to listen on, such as "127.0.0.1", got ${
        JSON.stringify(hostname) ?? String(hostname)
      }`,
    );
  }
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`port must be a whole number from 0 to 65535, got ${port}`);
  }
  wholeNumber("headerTimeoutSecs", options.headerTimeoutSecs, MAX_HEADER_TIMEOUT_SECS);
  wholeNumber("maxConnections", options.maxConnections, MAX_MAX_CONNECTIONS);
  if (options.tls !== undefined) checkTlsPair(options.tls);
  if (options.metricsBind !== undefined) parseListenAddress(options.metricsBind, "metricsBind");
  if (typeof options.db === "string" && options.db !== "" && options.db.trim() === "") {
    // " " made a SQLite file named " " in the working directory.
    throw new TypeError(
      `db must be a SQLite file path or a postgres:// URL, got ${JSON.stringify(options.db)}`,
    );
  }
  // The app's limits and admin token, before the store is opened: a bad one left a new SQLite
  // file behind. Dev mode is decided from the store later; here it is what the token says.
  resolveAppOptions({ ...options, devMode: !options.adminToken });
  // A store not made yet has no agents: dev mode, unless an admin token is given. What dev mode
  // refuses is refused before the store is made, and before the port is looked at: a start
  // refused for its settings says so whatever else listens there.
  if (!options.adminToken && options.store === undefined && isNewFile(options.db ?? DEFAULT_DB)) {
    const refusal = devModeRefusal(hostname, options);
    if (refusal) throw refusal;
  }
  checkAddressesFree({ hostname, port, metricsBind: options.metricsBind });
  checkListenable(hostname, port, options.bindSetting);
  const ownsStore = options.store === undefined;
  let store: CommandStore;
  if (options.store) {
    store = options.store;
  } else {
    try {
      store = await openStore(options.db ?? DEFAULT_DB, {
        sqlite: { serving: true, ...options.dbOptions },
      });
    } catch (error) {
      if (error instanceof StoreError) {
        const message = options.dbSetting
          ? `${options.dbSetting}: ${error.message}`
          : error.message;
        throw new ConfigError(message, { cause: error });
      }
      throw error;
    }
  }
  let dashboard: DashboardApp | undefined;
  try {
    const devMode = await resolveDevMode(store, options.adminToken);
    const refusal = devMode ? devModeRefusal(hostname, options) : undefined;
    if (refusal) throw refusal;
    dashboard = createApp({ ...options, store, devMode });
    const app = dashboard.app;
    let listener: HttpListener;
    try {
      listener = await listenHttp({
        port,
        hostname,
        tls: options.tls,
        headerTimeoutSecs: options.headerTimeoutSecs,
        maxConnections: options.maxConnections,
        // The largest body any route takes: a run's (§16).
        maxBodyBytes: (options.maxBodyBytes ?? MAX_BODY_BYTES) + RUN_TARGET_BYTES,
        availableDescriptors: options.availableDescriptors,
        clock: options.clock,
        direct: directHandlerOf(app),
        fetch: (request, remote) =>
          app.fetch(
            request,
            remote === undefined ? undefined : {
              remoteAddr: { transport: "tcp", hostname: remote, port: 0 },
            },
          ),
      });
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "EADDRINUSE") throw addressInUse(hostname, port, error);
      const unlistenable = notListenable(error, hostname, port, options.bindSetting);
      if (unlistenable) throw unlistenable;
      if (error instanceof Deno.errors.NotCapable || code === "EACCES") {
        throw new ConfigError(
          `cannot listen on ${hostname}:${port}: ${
            code === "EACCES" ? "permission denied by the operating system" : "run with --allow-net"
          }`,
          { cause: error },
        );
      }
      throw error;
    }
    dashboard.metrics.bindConnections(listener);
    // Event streams hold at most a quarter of the connections, whatever their clients' tokens.
    dashboard.streams.limitTo(listener.maxConnections);
    const addr = { hostname: listener.hostname, port: listener.port };
    const url = urlOf(addr.hostname, addr.port, options.tls !== undefined);
    const metricsStop = new AbortController();
    let metricsServer: MetricsServer | undefined;
    if (options.metricsBind !== undefined) {
      try {
        const metrics = dashboard.metrics;
        metricsServer = await serveMetrics(
          () => metrics.render(),
          parseListenAddress(options.metricsBind),
          metricsStop.signal,
          // Its sockets are defended as the main port's are.
          { headerTimeoutSecs: options.headerTimeoutSecs, setting: METRICS_BIND_SETTING },
        );
      } catch (error) {
        await listener.close();
        throw error;
      }
    }
    if (devMode) {
      log.warning(
        "DEV MODE: no agent tokens and no STATUS_ADMIN_TOKEN are configured. Unsigned requests " +
          "from any X-Agent-Id are accepted and the operator API is open, on loopback only. Add " +
          'agents with "status agents add <id>" and set STATUS_ADMIN_TOKEN to leave dev mode.',
      );
    }
    if (!devMode && options.tls === undefined && !isLoopback(addr.hostname)) {
      // Every operator request carries the admin token, and every agent request its agent's
      // token, as a bearer token (docs/protocol.md §1): over plain HTTP anyone on the path
      // reads them.
      log.warning(
        `the dashboard serves plain HTTP on ${addr.hostname}, which other machines reach: the ` +
          "admin token and each agent's token cross the network in clear text in every request " +
          "(anyone on the path may read and use them); serve HTTPS (--tls-cert and --tls-key), " +
          "or bind it to an address that only a proxy serving HTTPS reaches (examples/nginx.conf)",
      );
    }
    log.info("dashboard listening", {
      url,
      devMode,
      db: ownsStore && options.db !== undefined ? redactUrl(options.db) : undefined,
      maxConnections: listener.maxConnections,
    });

    const done = Promise.withResolvers<void>();
    let stopping: Promise<void> | undefined;
    const current = dashboard;
    const shutdown = (options: { now?: boolean } = {}) => {
      // Before the sequence below gets to the listener: it then finds its close done already.
      if (options.now) void listener.closeNow();
      stopping ??= (async () => {
        log.info("dashboard shutting down");
        try {
          // Answer open waits first: listener.close() waits for every in-flight request.
          metricsStop.abort();
          await metricsServer?.finished;
          await current.close();
          await listener.close();
          // Requests that were still running may have seen agents after close's write.
          await current.flushLastSeen();
        } finally {
          if (ownsStore) await store.close();
          log.info("dashboard stopped");
          done.resolve();
        }
      })();
      return stopping;
    };
    return {
      url,
      port: addr.port,
      hostname: addr.hostname,
      devMode,
      metricsUrl: metricsServer
        ? urlOf(metricsServer.hostname, metricsServer.port, false) + "/metrics"
        : undefined,
      dashboard: current,
      listener,
      shutdown,
      finished: done.promise,
      [Symbol.asyncDispose]: () => shutdown(),
    };
  } catch (error) {
    await dashboard?.close();
    if (ownsStore) await store.close();
    throw error;
  }
}
