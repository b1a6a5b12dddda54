/**
 * A small dashboard for agent tests over real sockets: a command queue that wakes a waiting
 * agent, ack and report endpoints that record what they got, cancel-waits answered by
 * {@link StubDashboard.cancel}, and hooks to answer with errors.
 *
 * @module
 */

/** A request the stub received. */
export interface Seen {
  kind: "wait" | "ack" | "report" | "cancel-wait" | "metrics" | "other";
  at: number;
  method: string;
  path: string;
  headers: Headers;
  body: unknown;
}

/** Lets a test answer a request itself; return undefined for the normal answer. */
export type Override = (seen: Seen) => Response | undefined | Promise<Response | undefined>;

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
  #server: Deno.HttpServer<Deno.NetAddr>;
  #wakers = new Set<() => void>();
  #closing = new AbortController();
  #accepted = new Set<string>();
  #listeners: Array<() => void> = [];

  constructor(port = 0) {
    this.#server = Deno.serve(
      { port, hostname: "127.0.0.1", onListen: () => {}, signal: this.#closing.signal },
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
        default:
          return Response.json({ error: "not found" }, { status: 404 });
      }
    } finally {
      queueMicrotask(() => this.#notify());
    }
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

/** A delivered command in the bare form of PROTOCOL.md §2. */
export function command(id: string, name: string, params: Record<string, unknown> = {}) {
  return { id, name, params, attempt: 1, lease_expires_at: null };
}
