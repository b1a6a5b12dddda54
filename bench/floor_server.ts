/**
 * The platform floor: a bare `Deno.serve` (or, with `--node`, a bare `node:http` server, the
 * dashboard's own HTTP layer) that holds long-polls like the dashboard's wait route and does
 * nothing else (no Hono, no authentication, no store, no logging). Measured with the same load
 * generator, it shows what N open waits cost on this machine before any of our code runs.
 *
 * - `GET /api/v1/agent/commands/wait/<hash>?timeout=N` answers `204` after N seconds, or ends when
 *   the client goes away;
 * - `GET /health` answers `{"waiting": <open waits>}`;
 * - `POST /api/v1/agent/commands/enqueue` (`{"id", "agent_id", "name"}`) appends its body to the
 *   `--sync-file`, `fdatasync`s it on the JS thread (as the dashboard's SQLite commit does), answers
 *   the oldest open wait of that agent (`X-Agent-Id`) with `{"id", "attempt": 1}`, then `202`:
 *   the wake-up floor, what one durable write and two HTTP exchanges cost here;
 * - `POST …/ack` and `POST …/report` answer `200` (the wake-up client sends them).
 *
 * With `--coalesce` the timeouts are not one timer per wait but one sweep a second, which ends
 * every wait due in that second.
 *
 * ```sh
 * deno run --allow-net --allow-write bench/floor_server.ts --port 0 --sync-file /tmp/floor.log \
 *   [--coalesce] [--node]
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createServer, type ServerResponse } from "node:http";
import { parseArgs } from "node:util";

/** The enqueue route: what the dashboard's would do at the least (a durable write). */
export class Enqueues {
  readonly #file: Deno.FsFile | null;
  /** Open waits by agent, oldest first: each answers with a body (a command) or with none. */
  readonly #waits = new Map<string, Array<(body: string) => void>>();

  constructor(syncFile: string | undefined) {
    this.#file = syncFile ? Deno.openSync(syncFile, { create: true, append: true }) : null;
  }

  /** Registers a wait of `agentId`; the returned function drops it. */
  hold(agentId: string, answer: (body: string) => void): () => void {
    let list = this.#waits.get(agentId);
    if (!list) {
      list = [];
      this.#waits.set(agentId, list);
    }
    list.push(answer);
    return () => {
      const at = list.indexOf(answer);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0 && this.#waits.get(agentId) === list) this.#waits.delete(agentId);
    };
  }

  /** Writes the command durably, then answers the oldest wait of its agent. */
  enqueue(text: string): void {
    if (!this.#file) throw new Error("the floor server runs without --sync-file");
    const command = JSON.parse(text) as { id?: unknown; agent_id?: unknown };
    if (typeof command?.id !== "string" || typeof command.agent_id !== "string") {
      throw new Error('an enqueue names its "id" and "agent_id"');
    }
    this.#file.writeSync(new TextEncoder().encode(`${text}\n`));
    this.#file.syncDataSync();
    const list = this.#waits.get(command.agent_id);
    const answer = list?.shift();
    if (list?.length === 0) this.#waits.delete(command.agent_id);
    answer?.(JSON.stringify({ id: command.id, attempt: 1 }));
  }
}

const COMMANDS = "/api/v1/agent/commands/";

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
 * @param enqueues The enqueue route's writes and the waits it answers.
 * @returns The server.
 */
export function serveFloor(
  port: number,
  coalesce: boolean,
  enqueues: Enqueues,
): Deno.HttpServer<Deno.NetAddr> {
  const timeouts = coalesce ? sweepEverySecond() : timerPerWait();
  let waiting = 0;
  return Deno.serve({
    port,
    hostname: "127.0.0.1",
    onListen: (addr) => console.log(`listening on http://127.0.0.1:${addr.port}`),
  }, async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/health") return Response.json({ status: "ok", waiting });
    if (request.method === "POST" && url.pathname.startsWith(COMMANDS)) {
      const text = await request.text();
      if (url.pathname !== `${COMMANDS}enqueue`) return Response.json({ accepted: true });
      try {
        enqueues.enqueue(text);
      } catch (error) {
        return Response.json({ error: String(error) }, { status: 400 });
      }
      return Response.json({ queued: true }, { status: 202 });
    }
    if (!url.pathname.startsWith(`${COMMANDS}wait/`)) {
      return new Response(null, { status: 404 });
    }
    const seconds = Math.min(120, Math.max(1, Number(url.searchParams.get("timeout") ?? 30)));
    waiting++;
    const command = await new Promise<string | null>((resolve) => {
      const signal = request.signal;
      const finish = (body: string | null) => {
        signal.removeEventListener("abort", onAbort);
        cancel();
        drop();
        resolve(body);
      };
      const cancel = timeouts.add(seconds * 1000, () => finish(null));
      const drop = enqueues.hold(request.headers.get("x-agent-id") ?? "", finish);
      const onAbort = () => finish(null);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    waiting--;
    return command === null ? new Response(null, { status: 204 }) : new Response(command, {
      headers: { "content-type": "application/json" },
    });
  });
}

/**
 * Serves the floor on a bare `node:http` server: the same routes, a client that goes away is
 * noticed by the response's `close`.
 *
 * @param port The port (0: any free one).
 * @param coalesce One sweep a second instead of a timer per wait.
 * @param enqueues The enqueue route's writes and the waits it answers.
 */
export function serveNodeFloor(port: number, coalesce: boolean, enqueues: Enqueues): void {
  const timeouts = coalesce ? sweepEverySecond() : timerPerWait();
  let waiting = 0;
  const json = (response: ServerResponse, status: number, body: string) =>
    response.writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
    }).end(body);
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://floor");
    if (url.pathname === "/health") {
      json(response, 200, JSON.stringify({ status: "ok", waiting }));
      return;
    }
    if (request.method === "POST" && url.pathname.startsWith(COMMANDS)) {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        if (url.pathname !== `${COMMANDS}enqueue`) {
          json(response, 200, '{"accepted":true}');
          return;
        }
        try {
          enqueues.enqueue(Buffer.concat(chunks).toString());
        } catch (error) {
          json(response, 400, JSON.stringify({ error: String(error) }));
          return;
        }
        json(response, 202, '{"queued":true}');
      });
      return;
    }
    if (!url.pathname.startsWith(`${COMMANDS}wait/`)) {
      response.writeHead(404, { "Content-Length": 0 }).end();
      return;
    }
    const seconds = Math.min(120, Math.max(1, Number(url.searchParams.get("timeout") ?? 30)));
    waiting++;
    let open = true;
    const end = () => {
      open = false;
      waiting--;
      cancel();
      drop();
    };
    const cancel = timeouts.add(seconds * 1000, () => {
      if (!open) return;
      end();
      response.writeHead(204).end();
    });
    const drop = enqueues.hold(String(request.headers["x-agent-id"] ?? ""), (body) => {
      if (!open) return;
      end();
      json(response, 200, body);
    });
    response.once("close", () => {
      if (open) end();
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
      "sync-file": { type: "string" },
    },
  });
  const enqueues = new Enqueues(values["sync-file"]);
  if (values.node) serveNodeFloor(Number(values.port), values.coalesce, enqueues);
  else serveFloor(Number(values.port), values.coalesce, enqueues);
}
