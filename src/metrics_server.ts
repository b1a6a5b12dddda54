/**
 * A small HTTP listener that serves only `GET /metrics` of a `prom-client` registry: the agent's
 * `--metrics-port` and the dashboard's `--metrics-bind`.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import { logger } from "./log/mod.ts";

/**
 * Parses `--metrics-port`: `PORT` (on 127.0.0.1) or `HOST:PORT`.
 *
 * @param value The setting.
 * @returns Host name and port.
 * @throws {RangeError} When the port is not 0–65535.
 */
export function parseListenAddress(value: string): { hostname: string; port: number } {
  const match = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) {
    throw new RangeError(`listen address must be PORT or HOST:PORT, got ${JSON.stringify(value)}`);
  }
  return { hostname: match[1] || "127.0.0.1", port };
}

const log = logger("metrics");

/**
 * Serves `GET /metrics` on its own listener (the agent's `--metrics-port`, the
 * dashboard's `--metrics-bind`); anything else is `404`.
 *
 * @param render Renders the metrics (Prometheus text format).
 * @param address Where to listen.
 * @param signal Stops the listener.
 * @returns The listening server.
 * @throws {Error} When the address is in use.
 * @throws {ConfigError} When listening is not permitted (`--allow-net`).
 */
export function serveMetrics(
  render: () => Promise<Response>,
  address: { hostname: string; port: number },
  signal: AbortSignal,
): Deno.HttpServer<Deno.NetAddr> {
  const where = `${address.hostname}:${address.port}`;
  try {
    return listen(render, address, signal);
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new Error(`cannot serve metrics on ${where}: the address is already in use`, {
        cause: error,
      });
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new ConfigError(`cannot serve metrics on ${where}: run with --allow-net`, {
        cause: error,
      });
    }
    throw error;
  }
}

function listen(
  render: () => Promise<Response>,
  address: { hostname: string; port: number },
  signal: AbortSignal,
): Deno.HttpServer<Deno.NetAddr> {
  const server = Deno.serve({
    hostname: address.hostname,
    port: address.port,
    signal,
    onListen: (addr) => log.info("metrics on http://{hostname}:{port}/metrics", { ...addr }),
  }, async (request) => {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" || path !== "/metrics") {
      return new Response("only GET /metrics here\n", { status: 404 });
    }
    return await render();
  });
  return server;
}
