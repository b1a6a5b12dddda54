/**
 * The platform floor: a bare `Deno.serve` (or, with `--node`, a bare `node:http` server, the
 * dashboard's own HTTP layer) that holds long-polls like the dashboard's wait route and does
 * nothing else (no Hono, no authentication, no store, no logging). Measured with the same load
 * generator, it shows what N open waits cost on this machine before any of our code runs.
 *
 * - `GET /api/v1/agent/commands/wait/<hash>?timeout=N` answers `204` after N seconds, or ends when
 *   the client goes away;
 * - `GET /health` answers `{"waiting": <open waits>}`.
 *
 * With `--coalesce` the timeouts are not one timer per wait but one sweep a second, which ends
 * every wait due in that second.
 *
 * ```sh
 * deno run --allow-net bench/floor_server.ts --port 0 [--coalesce] [--node]
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

/** Ends waits after their timeout: one timer per wait, or one sweep a second. */
interface Timeouts {
  add(ms: number, done: () => void): () => void;
}

function timerPerWait(): Timeouts {
  return {
    add(ms, done) {
      const timer = setTimeout(done, ms);
      return () => clearTimeout(timer);
    },
  };
}

function sweepEverySecond(): Timeouts {
  const buckets = new Map<number, Set<() => void>>();
  setInterval(() => {
    const now = Date.now();
    for (const [second, waits] of buckets) {
      if (second * 1000 > now) continue;
      buckets.delete(second);
      for (const done of waits) done();
    }
  }, 1000);
  return {
    add(ms, done) {
      const second = Math.ceil((Date.now() + ms) / 1000);
      let waits = buckets.get(second);
      if (!waits) {
        waits = new Set();
        buckets.set(second, waits);
      }
      waits.add(done);
      return () => waits.delete(done);
    },
  };
}

/**
 * Serves the floor.
 *
 * @param port The port (0: any free one).
 * @param coalesce One sweep a second instead of a timer per wait.
 * @returns The server.
 */
export function serveFloor(port: number, coalesce: boolean): Deno.HttpServer<Deno.NetAddr> {
  const timeouts = coalesce ? sweepEverySecond() : timerPerWait();
  let waiting = 0;
  return Deno.serve({
    port,
    hostname: "127.0.0.1",
    onListen: (addr) => console.log(`listening on http://127.0.0.1:${addr.port}`),
  }, async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/health") return Response.json({ status: "ok", waiting });
    if (!url.pathname.startsWith("/api/v1/agent/commands/wait/")) {
      return new Response(null, { status: 404 });
    }
    const seconds = Math.min(120, Math.max(1, Number(url.searchParams.get("timeout") ?? 30)));
    waiting++;
    await new Promise<void>((resolve) => {
      const signal = request.signal;
      const finish = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const cancel = timeouts.add(seconds * 1000, finish);
      const onAbort = () => {
        cancel();
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
    waiting--;
    return new Response(null, { status: 204 });
  });
}

/**
 * Serves the floor on a bare `node:http` server: the same two routes, a client that goes away is
 * noticed by the response's `close`.
 *
 * @param port The port (0: any free one).
 * @param coalesce One sweep a second instead of a timer per wait.
 */
export function serveNodeFloor(port: number, coalesce: boolean): void {
  const timeouts = coalesce ? sweepEverySecond() : timerPerWait();
  let waiting = 0;
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://floor");
    if (url.pathname === "/health") {
      const body = JSON.stringify({ status: "ok", waiting });
      response.writeHead(200, {
        "Content-Type": "application/json",
        "Content-Length": Buffer.byteLength(body),
      });
      response.end(body);
      return;
    }
    if (!url.pathname.startsWith("/api/v1/agent/commands/wait/")) {
      response.writeHead(404, { "Content-Length": 0 }).end();
      return;
    }
    const seconds = Math.min(120, Math.max(1, Number(url.searchParams.get("timeout") ?? 30)));
    waiting++;
    let open = true;
    const cancel = timeouts.add(seconds * 1000, () => {
      if (!open) return;
      open = false;
      waiting--;
      response.writeHead(204).end();
    });
    response.once("close", () => {
      if (!open) return;
      open = false;
      waiting--;
      cancel();
    });
  });
  server.listen(port, "127.0.0.1", () => {
    const address = server.address();
    const bound = typeof address === "object" && address ? address.port : port;
    console.log(`listening on http://127.0.0.1:${bound}`);
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "0" },
      coalesce: { type: "boolean", default: false },
      node: { type: "boolean", default: false },
    },
  });
  if (values.node) serveNodeFloor(Number(values.port), values.coalesce);
  else serveFloor(Number(values.port), values.coalesce);
}
