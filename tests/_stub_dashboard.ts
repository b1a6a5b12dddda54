/**
 * The one stand-in for the dashboard in tests, on a real socket (127.0.0.1, a free port).
 *
 * Its agent side: a command queue that wakes a waiting agent, ack and report endpoints that
 * record what they got, cancel-waits answered by {@link StubDashboard.cancel}, and hooks to answer
 * with errors. Its operator side: enqueue, read, list and cancel commands that go through a
 * scripted lifecycle (one status per read), for testing the operator client and CLI.
 *
 * @module
 */

/** A request the stub received. */
export interface Seen {
  kind: "wait" | "ack" | "report" | "cancel-wait" | "metrics" | "operator" | "other";
  at: number;
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
}

/** Lets a test answer a request itself; return undefined for the normal answer. */
export type Override = (seen: Seen) => Response | undefined | Promise<Response | undefined>;

/** A command enqueued on the operator side, as the stub keeps it. */
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

/** Options of the stub's operator side. */
export interface StubOptions {
  /** Listen on this port. */
  port?: number;
  /** Require this bearer token on operator endpoints (enqueue accepts X-Agent-Id without it). */
  adminToken?: string;
  /**
   * Statuses a command goes through, one per `GET /api/v1/commands/{id}`, ending with the final
   * one; the final record gets `finalResult`.
   */
  lifecycle?: string[];
  /** `result` of the final status (default: a success printing the command's argument). */
  finalResult?: Record<string, unknown> | null;
  /** `error` of the final status. */
  finalError?: string | null;
  /** Answer this many operator requests (besides enqueue and health) with `503` first. */
  failFirst?: number;
  /** Wrap the list answer as `{"commands": [...]}` instead of a bare array. */
  wrapList?: boolean;
}

const ENQUEUE_PATH = "/api/v1/agent/commands/enqueue";

export class StubDashboard implements AsyncDisposable {
  readonly seen: Seen[] = [];
  readonly reports: Record<string, unknown>[] = [];
  readonly acks: Record<string, unknown>[] = [];
  readonly metrics: unknown[] = [];
  readonly queue: unknown[] = [];
  /** Commands an operator cancelled: their cancel-waits are answered `200`. */
  readonly cancelled = new Set<string>();
  override: Override | undefined;
  ackStatus = 200;
  /** Commands enqueued on the operator side, by id. */
  readonly commands = new Map<string, StubCommand>();
  readonly #options: StubOptions;
  readonly #progress = new Map<string, number>();
  #failuresLeft: number;
  #generated = 0;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #wakers = new Set<() => void>();
  #closing = new AbortController();
  #accepted = new Set<string>();
  #listeners: Array<() => void> = [];

  constructor(options: StubOptions = {}) {
    this.#options = options;
    this.#failuresLeft = options.failFirst ?? 0;
    this.#server = Deno.serve(
      {
        port: options.port ?? 0,
        hostname: "127.0.0.1",
        onListen: () => {},
        signal: this.#closing.signal,
      },
      (request) => this.#handle(request),
    );
  }

  get port(): number {
    return this.#server.addr.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Puts a command (or any wait body, e.g. a Stacker envelope) in the queue. */
  enqueue(body: unknown): void {
    this.queue.push(body);
    for (const wake of this.#wakers) wake();
  }

  /** Records an operator's cancel of a command: its open cancel-waits are answered at once. */
  cancel(id: string): void {
    this.cancelled.add(id);
    for (const wake of this.#wakers) wake();
  }

  /** Resolves when `predicate` holds, checking after every request; rejects after `ms`. */
  until(predicate: () => boolean, ms = 20_000, what = "condition"): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listeners = this.#listeners.filter((l) => l !== check);
        reject(new Error(`timed out waiting for ${what}`));
      }, ms);
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.#listeners = this.#listeners.filter((l) => l !== check);
        resolve();
      };
      this.#listeners.push(check);
    });
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const text = await request.text();
    let body: unknown = undefined;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = text;
    }
    const cancelWait = /^\/api\/v1\/agent\/commands\/([^/]+)\/cancel-wait$/.exec(url.pathname);
    const kind: Seen["kind"] = url.pathname.startsWith("/api/v1/agent/commands/wait/")
      ? "wait"
      : cancelWait
      ? "cancel-wait"
      : url.pathname === "/api/v1/agent/commands/ack"
      ? "ack"
      : url.pathname === "/api/v1/agent/commands/report"
      ? "report"
      : url.pathname === "/metrics"
      ? "metrics"
      : url.pathname === ENQUEUE_PATH || url.pathname === "/health" ||
          url.pathname.startsWith("/api/v1/commands")
      ? "operator"
      : "other";
    const seen: Seen = {
      kind,
      at: Date.now(),
      method: request.method,
      path: url.pathname + url.search,
      headers: request.headers,
      body,
    };
    this.seen.push(seen);
    try {
      const custom = await this.override?.(seen);
      if (custom) return custom;
      const timeoutSecs = Number(url.searchParams.get("timeout") ?? "30");
      switch (kind) {
        case "wait":
          return await this.#hold(timeoutSecs, () => this.queue.length > 0)
            ? Response.json(this.queue.shift())
            : new Response(null, { status: 204 });
        case "cancel-wait": {
          const id = decodeURIComponent(cancelWait![1]);
          return await this.#hold(timeoutSecs, () => this.cancelled.has(id))
            ? Response.json({ cancel_requested: true })
            : new Response(null, { status: 204 });
        }
        case "ack":
          this.acks.push(body as Record<string, unknown>);
          return Response.json({ acked: this.ackStatus === 200 }, { status: this.ackStatus });
        case "report": {
          const report = body as Record<string, unknown>;
          this.reports.push(report);
          const id = String(report.command_id);
          const duplicate = this.#accepted.has(id);
          this.#accepted.add(id);
          return Response.json({ accepted: true, ...(duplicate ? { duplicate } : {}) });
        }
        case "metrics":
          this.metrics.push(body);
          return Response.json({ ok: true });
        case "operator":
          return this.#operator(request, url, body as Record<string, string> | undefined);
        default:
          return Response.json({ error: "not found" }, { status: 404 });
      }
    } finally {
      queueMicrotask(() => this.#notify());
    }
  }

  /** The operator side: enqueue, health, read, cancel and list. */
  #operator(request: Request, url: URL, body: Record<string, string> | undefined): Response {
    const options = this.#options;
    const authorized = !options.adminToken ||
      request.headers.get("authorization") === `Bearer ${options.adminToken}`;
    if (request.method === "POST" && url.pathname === ENQUEUE_PATH) {
      return this.#enqueueCommand(request, authorized, body ?? {});
    }
    if (url.pathname === "/health") return Response.json({ status: "ok" });
    if (!authorized) return Response.json({ error: "admin token required" }, { status: 401 });
    if (this.#failuresLeft > 0) {
      this.#failuresLeft--;
      return Response.json({ error: "restarting" }, { status: 503 });
    }
    const one = /^\/api\/v1\/commands\/([^/]+)$/.exec(url.pathname);
    if (request.method === "GET" && one) {
      const command = this.commands.get(decodeURIComponent(one[1]));
      if (!command) return Response.json({ error: "no such command" }, { status: 404 });
      this.#advance(command);
      return Response.json(command);
    }
    const cancel = /^\/api\/v1\/commands\/([^/]+)\/cancel$/.exec(url.pathname);
    if (request.method === "POST" && cancel) {
      const command = this.commands.get(decodeURIComponent(cancel[1]));
      if (!command) return Response.json({ error: "no such command" }, { status: 404 });
      if (command.status === "queued") {
        command.status = "cancelled";
        // As the dashboard answers (docs/protocol.md §3).
        return Response.json({ cancelled: true, command });
      }
      if (command.status === "delivered" || command.status === "running") {
        return Response.json({ cancelled: false, cancel_requested: true, command }, {
          status: 202,
        });
      }
      return Response.json({ error: `command is already ${command.status}` }, { status: 409 });
    }
    if (request.method === "GET" && url.pathname === "/api/v1/commands") {
      let list = [...this.commands.values()].reverse();
      const agent = url.searchParams.get("agent_id");
      const status = url.searchParams.get("status");
      const limit = url.searchParams.get("limit");
      if (agent) list = list.filter((c) => c.agent_id === agent);
      if (status) list = list.filter((c) => c.status === status);
      if (limit) list = list.slice(0, Number(limit));
      return Response.json(options.wrapList ? { commands: list } : list);
    }
    return Response.json({ error: "not found" }, { status: 404 });
  }

  #enqueueCommand(request: Request, authorized: boolean, body: Record<string, string>): Response {
    const admin = this.#options.adminToken;
    const agentId = authorized && admin ? body.agent_id : request.headers.get("x-agent-id");
    if (!agentId || (admin && !authorized)) {
      return Response.json({ error: "missing or unknown agent" }, { status: 401 });
    }
    const id = body.id ?? `gen-${++this.#generated}`;
    const existing = this.commands.get(id);
    if (existing) {
      return existing.name === body.name
        ? Response.json({ queued: true, id, duplicate: true }, { status: 202 })
        : Response.json({ error: "command id exists with another body" }, { status: 409 });
    }
    this.commands.set(id, {
      id,
      agent_id: agentId,
      name: body.name,
      params: (body.params as unknown as Record<string, unknown>) ?? {},
      status: "queued",
      attempt: 1,
      created_at: new Date(Date.now() + this.commands.size).toISOString(),
      delivered_at: null,
      completed_at: null,
      result: null,
      error: null,
    });
    this.#progress.set(id, 0);
    return Response.json({ queued: true, id }, { status: 202 });
  }

  /** One step of a command's scripted lifecycle, taken at each read. */
  #advance(command: StubCommand): void {
    if (command.status === "cancelled") return;
    const lifecycle = this.#options.lifecycle ?? ["queued", "delivered", "running", "success"];
    const step = Math.min(this.#progress.get(command.id) ?? 0, lifecycle.length - 1);
    command.status = lifecycle[step];
    if (step > 0) command.delivered_at ??= new Date().toISOString();
    if (step === lifecycle.length - 1) {
      command.completed_at ??= new Date().toISOString();
      command.result = this.#options.finalResult === undefined
        ? {
          exit_code: 0,
          signal: null,
          duration_secs: 0.004,
          stdout: `${command.name.replace(/^echo /, "")}\n`,
          stderr: "",
          stdout_truncated_bytes: 0,
          stderr_truncated_bytes: 0,
        }
        : this.#options.finalResult;
      command.error = this.#options.finalError ?? null;
    }
    this.#progress.set(command.id, step + 1);
  }

  /** Whether `ready` holds within the timeout (checked again at every enqueue and cancel). */
  async #hold(timeoutSecs: number, ready: () => boolean): Promise<boolean> {
    const deadline = Date.now() + timeoutSecs * 1000;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0 || this.#closing.signal.aborted) return false;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.#wakers.delete(done);
          this.#closing.signal.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.#wakers.add(done);
        this.#closing.signal.addEventListener("abort", done);
      });
    }
    return true;
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    for (const wake of this.#wakers) wake();
    await this.#server.finished;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A delivered command in the bare form of docs/protocol.md §2. */
export function command(id: string, name: string, params: Record<string, unknown> = {}) {
  return { id, name, params, attempt: 1, lease_expires_at: null };
}

/**
 * Ports below the range the system hands out for port 0 (one freed from that range could be taken
 * by another test's listener before it is used: a connection then reset, not refused), and not
 * among the ports `fetch` refuses to ask (9, 79, ...: the Fetch standard's "bad ports").
 */
const CLOSED_PORT_CANDIDATES = [2, 3, 4, 5, 6, 8];

/**
 * A port on 127.0.0.1 that nothing listens on: a low one no test listens on, found free, or (none
 * free) one that was free a moment ago.
 *
 * @returns The port.
 */
export function closedPort(): number {
  for (const port of CLOSED_PORT_CANDIDATES) {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      // Not ours to bind (not root): nothing else can bind it either, so nothing listens there
      // unless a system service does.
      if (error instanceof Deno.errors.PermissionDenied) return port;
    }
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
