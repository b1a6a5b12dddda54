/**
 * A stand-in for the dashboard's operator endpoints on a real socket (`Deno.serve` on port 0),
 * for testing the operator client and CLI without the real server.
 *
 * @module
 */

/** A command as the stub keeps it. */
export interface StubCommand {
  id: string;
  agent_id: string;
  name: string;
  params: Record<string, unknown>;
  status: string;
  attempt: number;
  created_at: string;
  delivered_at: string | null;
  completed_at: string | null;
  result: Record<string, unknown> | null;
  error: string | null;
}

/** A request the stub received. */
export interface StubRequest {
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
}

/** Options of {@link startStubDashboard}. */
export interface StubOptions {
  /** Require this bearer token on operator endpoints (enqueue accepts X-Agent-Id without it). */
  adminToken?: string;
  /**
   * Statuses a command goes through, one per `GET /api/v1/commands/{id}`, ending with the final
   * one; the final record gets `finalResult`.
   */
  lifecycle?: string[];
  /** `result` and `error` of the final status. */
  finalResult?: Record<string, unknown> | null;
  finalError?: string | null;
  /** Answer this many requests (after the enqueue) with `503` first. */
  failFirst?: number;
  /** Wrap the list answer as `{"commands": [...]}` instead of a bare array. */
  wrapList?: boolean;
}

/** A running stub dashboard. */
export interface StubDashboard extends AsyncDisposable {
  url: string;
  commands: Map<string, StubCommand>;
  requests: StubRequest[];
  close(): Promise<void>;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/**
 * Starts a stub dashboard on 127.0.0.1 and a free port.
 *
 * @param options Behaviour of the stub.
 * @returns The stub; dispose of it to stop it.
 */
export function startStubDashboard(options: StubOptions = {}): StubDashboard {
  const commands = new Map<string, StubCommand>();
  const progress = new Map<string, number>();
  const requests: StubRequest[] = [];
  let failuresLeft = options.failFirst ?? 0;
  const lifecycle = options.lifecycle ?? ["queued", "delivered", "running", "success"];
  let counter = 0;

  const handler = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    const text = await request.text();
    const body = text ? JSON.parse(text) : undefined;
    requests.push({
      method: request.method,
      path: url.pathname + url.search,
      headers: request.headers,
      body,
    });
    const operatorAuthorized = !options.adminToken ||
      request.headers.get("authorization") === `Bearer ${options.adminToken}`;

    if (request.method === "POST" && url.pathname === "/api/v1/agent/commands/enqueue") {
      const agentId = operatorAuthorized && options.adminToken
        ? body.agent_id
        : request.headers.get("x-agent-id");
      if (!agentId || (options.adminToken && !operatorAuthorized)) {
        return json({ error: "missing or unknown agent" }, 401);
      }
      const id = body.id ?? `gen-${++counter}`;
      const existing = commands.get(id);
      if (existing) {
        return existing.name === body.name
          ? json({ queued: true, id, duplicate: true }, 202)
          : json({ error: "command id exists with another body" }, 409);
      }
      commands.set(id, {
        id,
        agent_id: agentId,
        name: body.name,
        params: body.params ?? {},
        status: "queued",
        attempt: 1,
        created_at: new Date(Date.now() + commands.size).toISOString(),
        delivered_at: null,
        completed_at: null,
        result: null,
        error: null,
      });
      progress.set(id, 0);
      return json({ queued: true, id }, 202);
    }
    if (url.pathname === "/health") return json({ status: "ok" });
    if (!operatorAuthorized) return json({ error: "admin token required" }, 401);
    if (failuresLeft > 0) {
      failuresLeft--;
      return json({ error: "restarting" }, 503);
    }
    const one = /^\/api\/v1\/commands\/([^/]+)$/.exec(url.pathname);
    if (request.method === "GET" && one) {
      const command = commands.get(decodeURIComponent(one[1]));
      if (!command) return json({ error: "no such command" }, 404);
      const step = Math.min(progress.get(command.id) ?? 0, lifecycle.length - 1);
      if (command.status !== "cancelled") {
        command.status = lifecycle[step];
        if (step > 0) command.delivered_at ??= new Date().toISOString();
        if (step === lifecycle.length - 1) {
          command.completed_at ??= new Date().toISOString();
          command.result = options.finalResult === undefined
            ? {
              exit_code: 0,
              signal: null,
              duration_secs: 0.004,
              stdout: `${command.name.replace(/^echo /, "")}\n`,
              stderr: "",
              stdout_truncated_bytes: 0,
              stderr_truncated_bytes: 0,
            }
            : options.finalResult;
          command.error = options.finalError ?? null;
        }
        progress.set(command.id, step + 1);
      }
      return json(command);
    }
    const cancel = /^\/api\/v1\/commands\/([^/]+)\/cancel$/.exec(url.pathname);
    if (request.method === "POST" && cancel) {
      const command = commands.get(decodeURIComponent(cancel[1]));
      if (!command) return json({ error: "no such command" }, 404);
      if (command.status === "queued") {
        command.status = "cancelled";
        return json({ id: command.id, status: "cancelled" });
      }
      if (command.status === "delivered" || command.status === "running") {
        return json({ id: command.id, cancel_requested: true }, 202);
      }
      return json({ error: `command is already ${command.status}` }, 409);
    }
    if (request.method === "GET" && url.pathname === "/api/v1/commands") {
      let list = [...commands.values()].reverse();
      const agent = url.searchParams.get("agent_id");
      const status = url.searchParams.get("status");
      const limit = url.searchParams.get("limit");
      if (agent) list = list.filter((c) => c.agent_id === agent);
      if (status) list = list.filter((c) => c.status === status);
      if (limit) list = list.slice(0, Number(limit));
      return json(options.wrapList ? { commands: list } : list);
    }
    return json({ error: "not found" }, 404);
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const url = `http://127.0.0.1:${server.addr.port}`;
  const close = async () => {
    await server.shutdown();
  };
  return { url, commands, requests, close, [Symbol.asyncDispose]: close };
}

/**
 * A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
 *
 * @returns The port.
 */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
