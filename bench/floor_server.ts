/**
 * The platform floor: a bare `Deno.serve` that holds long-polls like the dashboard's wait route
 * and does nothing else (no Hono, no authentication, no store, no logging). Measured with the same
 * load generator, it shows what N open waits cost on this machine before any of our code runs.
 *
 * - `GET /api/v1/agent/commands/wait/<hash>?timeout=N` answers `204` after N seconds, or ends when
 *   the client goes away;
 * - `GET /health` answers `{"waiting": <open waits>}`.
 *
 * With `--coalesce` the timeouts are not one timer per wait but one sweep a second, which ends
 * every wait due in that second.
 *
 * ```sh
 * deno run --allow-net bench/floor_server.ts --port 0 [--coalesce]
 * ```
 *
 * @module
 */
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

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "0" },
      coalesce: { type: "boolean", default: false },
    },
  });
  serveFloor(Number(values.port), values.coalesce);
}
