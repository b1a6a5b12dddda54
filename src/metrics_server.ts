/**
 * A small HTTP listener that serves only `GET /metrics` of a `prom-client` registry: the agent's
 * `--metrics-port` and the dashboard's `--metrics-bind`.
 *
 * @module
 */
import { type Clock, systemClock } from "./clock.ts";
import { ConfigError } from "./errors.ts";
import {
  checkAddressFree,
  type HttpListener,
  listenHttp,
  listenProbeError,
} from "./http_listener.ts";
import { logger } from "./log/mod.ts";
import { shortForm } from "./protocol/short_form.ts";
import { visibleText } from "./protocol/visible_text.ts";
import { isLoopback } from "./server/loopback.ts";

/**
 * Parses `--metrics-port`: `PORT` (on 127.0.0.1) or `HOST:PORT`.
 *
 * @param value The setting.
 * @param name What the errors call it (`metricsBind`).
 * @returns Host name and port.
 * @throws {TypeError} When it is not a string.
 * @throws {RangeError} When it is not `PORT` or `HOST:PORT` with a port from 0 to 65535.
 */
export function parseListenAddress(
  value: string,
  name = "listen address",
): { hostname: string; port: number } {
  if (typeof value !== "string") {
    // A number (`metricsPort: 9100`) failed as "value.trim is not a function".
    throw new TypeError(
      `${name} must be a string, PORT or HOST:PORT, got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
  const match = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new RangeError(`${name} must be PORT or HOST:PORT, got ${JSON.stringify(value)}`);
  }
  return { hostname: match[1] || "127.0.0.1", port };
}

const log = logger("metrics");

/** Connections the metrics listener holds at most (a scraper or two, and a margin). */
export const METRICS_MAX_CONNECTIONS = 64;

/**
 * Least time between two renders of the metrics, in ms: scrapes within it get the last one. A
 * render reads the store (a count of every command: 90 ms of a blocked event loop at a million),
 * and the listener needs no token, so a client scraping in a loop would otherwise stall the
 * dashboard; Prometheus scrapes every 10 s or so.
 */
export const METRICS_MIN_INTERVAL_MS = 1000;

/** One render of the metrics, kept for the scrapes that follow it closely. */
interface Rendered {
  at: number;
  body: string;
  status: number;
  headers: Headers;
}

/** A listener of {@link serveMetrics}. */
export interface MetricsServer {
  /** The address it listens on. */
  hostname: string;
  /** The port it listens on. */
  port: number;
  /** Resolves once it stopped (after the signal, when in-flight scrapes are answered). */
  finished: Promise<void>;
}

/**
 * Marks an answer of the listener as the dashboard marks every answer of its routes: kept by no
 * cache (a proxy would serve an old scrape as a new one) and read only as its type.
 */
function unkept(response: Response): Response {
  response.headers.set("Cache-Control", "no-store");
  response.headers.set("X-Content-Type-Options", "nosniff");
  return response;
}

/** The error of a metrics address another process listens on. */
function metricsAddressInUse(address: { hostname: string; port: number }, cause: unknown): Error {
  return new Error(
    `cannot serve metrics on ${address.hostname}:${address.port}: the address is already in use`,
    { cause },
  );
}

/**
 * The error of a metrics address that is no address here: said as the dashboard's own BIND is,
 * not as getaddrinfo's or listen's words alone ("getaddrinfo ENOTFOUND 999.1.1.1", "listen
 * EINVAL"); `undefined` for another failure.
 */
function notAnAddress(
  error: unknown,
  address: { hostname: string; port: number },
  setting: string | undefined,
): ConfigError | undefined {
  const code = (error as { code?: string }).code;
  const message = (error as Error).message ?? "";
  const where = `${address.hostname}:${address.port}`;
  const host = `${address.hostname}${setting ? ` (${setting})` : ""}`;
  if (
    code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EAI_NONAME" ||
    /getaddrinfo|failed to lookup address/.test(message)
  ) {
    return new ConfigError(
      `cannot serve metrics on ${where}: ${host} is not an IP address or a host name that ` +
        "resolves",
      { cause: error },
    );
  }
  if (code === "EADDRNOTAVAIL" || code === "EINVAL" || /EADDRNOTAVAIL|EINVAL/.test(message)) {
    return new ConfigError(
      `cannot serve metrics on ${where}: ${host} is not an address of this machine`,
      { cause: error },
    );
  }
  return undefined;
}

/**
 * Throws the error {@link serveMetrics} would throw for an address in use, or for a host that is
 * no address here, without listening there for longer than a moment (see
 * {@link checkAddressFree} and {@link listenProbeError}).
 *
 * @param address Where the metrics will listen.
 * @param setting How the setting of the address is named in errors (`METRICS_BIND, --metrics-bind`).
 * @throws {Error} When something listens there (its `cause` has the `code` `EADDRINUSE`).
 * @throws {ConfigError} When the host does not resolve or is not an address of this machine.
 */
export function checkMetricsAddressFree(
  address: { hostname: string; port: number },
  setting?: string,
): void {
  try {
    checkAddressFree(address.hostname, address.port);
  } catch (error) {
    throw metricsAddressInUse(address, error);
  }
  const error = listenProbeError(address.hostname);
  const refusal = error === undefined ? undefined : notAnAddress(error, address, setting);
  if (refusal) throw refusal;
}

/**
 * Serves `GET /metrics` (and `HEAD`) on its own listener (the agent's `--metrics-port`, the
 * dashboard's `--metrics-bind`); another method there is `405`, another path `404`. The listener
 * has the dashboard's socket defences: a connection that sends no complete request head within
 * the header timeout is closed, and beyond {@link METRICS_MAX_CONNECTIONS} connections new ones
 * are refused, so idle sockets cannot run the process out of descriptors. The metrics are
 * rendered at most once every {@link METRICS_MIN_INTERVAL_MS} (scrapes in between, and scrapes at
 * the same time, share one). On a loopback address it answers only requests addressed to a
 * loopback name (`Host: localhost`, `127.0.0.1`, `[::1]`), as dev mode does: another name is `403`,
 * so that a web page whose domain a DNS-rebinding attack made resolve to `127.0.0.1` cannot read
 * the metrics through the browser of someone on this machine.
 *
 * @param render Renders the metrics (Prometheus text format).
 * @param address Where to listen.
 * @param signal Stops the listener.
 * @param limits @internal Header timeout, connection limit, the least time between renders and its
 *   clock (tests make them small, or fake), and how the setting of the address is named in errors
 *   (`METRICS_BIND, --metrics-bind`).
 * @returns The listening server.
 * @throws {Error} When the address is in use.
 * @throws {ConfigError} When listening is not permitted (`--allow-net`), or the host is not an
 *   address of this machine.
 */
export async function serveMetrics(
  render: () => Promise<Response>,
  address: { hostname: string; port: number },
  signal: AbortSignal,
  limits: {
    headerTimeoutSecs?: number;
    maxConnections?: number;
    minIntervalMs?: number;
    clock?: Clock;
    setting?: string;
  } = {},
): Promise<MetricsServer> {
  const where = `${address.hostname}:${address.port}`;
  const clock = limits.clock ?? systemClock;
  const minIntervalMs = limits.minIntervalMs ?? METRICS_MIN_INTERVAL_MS;
  let last: Rendered | undefined;
  let rendering: Promise<Rendered> | undefined;
  const scrape = (): Promise<Rendered> => {
    // A render from the future (the wall clock was set back) is no recent one.
    const age = last === undefined ? Infinity : clock.now() - last.at;
    if (age >= 0 && age < minIntervalMs) return Promise.resolve(last!);
    if (rendering === undefined) {
      const now = (async () => {
        const response = await render();
        const body = await response.text();
        last = { at: clock.now(), body, status: response.status, headers: response.headers };
        return last;
      })();
      rendering = now;
      // A failed render is not kept: the next scrape tries again.
      now.finally(() => rendering === now && (rendering = undefined)).catch(() => {});
    }
    return rendering;
  };
  // Scrapers of a listener on another address reach it by whatever name they know it by. Loopback
  // is told by the address listened on as well, once known: `127.1`, `0::1` or a host name of
  // 127.0.0.1 is loopback too.
  let loopbackOnly = isLoopback(address.hostname);
  let listener: HttpListener;
  try {
    listener = await listenHttp({
      hostname: address.hostname,
      port: address.port,
      maxConnections: limits.maxConnections ?? METRICS_MAX_CONNECTIONS,
      headerTimeoutSecs: limits.headerTimeoutSecs,
      logCategory: "metrics",
      fetch: async (request) => {
        const url = new URL(request.url);
        if (loopbackOnly && !isLoopback(url.hostname)) {
          const name = visibleText(JSON.stringify(shortForm(url.hostname)));
          return unkept(
            new Response(
              "metrics on a loopback address answer requests addressed to this machine by a " +
                `loopback name (localhost, 127.0.0.1, [::1]) only; this one was addressed to ${name} ` +
                "(a DNS-rebinding page?)\n",
              { status: 403 },
            ),
          );
        }
        const path = url.pathname;
        if (path !== "/metrics") {
          return unkept(new Response("only GET /metrics here\n", { status: 404 }));
        }
        if (request.method !== "GET" && request.method !== "HEAD") {
          return unkept(
            new Response("only GET /metrics here\n", {
              status: 405,
              headers: { Allow: "GET, HEAD" },
            }),
          );
        }
        try {
          const { body, status, headers } = await scrape();
          // A HEAD (a monitor checking the endpoint is up) gets the headers alone.
          return unkept(new Response(request.method === "HEAD" ? null : body, { status, headers }));
        } catch (error) {
          // Not the client's fault: a 500, not the listener's "malformed request" 400.
          log.error("metrics could not be rendered: {error}", { error });
          return unkept(new Response("metrics could not be rendered\n", { status: 500 }));
        }
      },
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "EADDRINUSE" || error instanceof Deno.errors.AddrInUse) {
      throw metricsAddressInUse(address, error);
    }
    const refusal = notAnAddress(error, address, limits.setting);
    if (refusal) throw refusal;
    if (error instanceof Deno.errors.NotCapable || code === "EACCES") {
      throw new ConfigError(
        `cannot serve metrics on ${where}: ${
          code === "EACCES" ? "permission denied by the operating system" : "run with --allow-net"
        }`,
        { cause: error },
      );
    }
    throw error;
  }
  loopbackOnly ||= isLoopback(listener.hostname);
  // An IPv6 address in brackets, as a URL has it: "http://::1:9100/metrics" is none.
  const host = listener.hostname.includes(":") ? `[${listener.hostname}]` : listener.hostname;
  log.info("metrics on http://{host}:{port}/metrics", {
    host,
    hostname: listener.hostname,
    port: listener.port,
  });
  const finished = Promise.withResolvers<void>();
  const stop = () => listener.close().then(finished.resolve, finished.resolve);
  if (signal.aborted) stop();
  else signal.addEventListener("abort", stop, { once: true });
  return { hostname: listener.hostname, port: listener.port, finished: finished.promise };
}
