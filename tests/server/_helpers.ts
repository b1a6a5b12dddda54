/**
 * Shared helpers of the dashboard tests: a fake clock, an in-process dashboard on an in-memory
 * store, and signed agent requests.
 *
 * @module
 */
import { FakeClock as SharedFakeClock, systemClock, type TimerId } from "../../src/clock.ts";
import { type AppOptions, createApp, type DashboardApp } from "../../src/server/mod.ts";
import {
  AGENT_SCOPES,
  type AgentScope,
  openSqliteStore,
  type SqliteStore,
} from "../../src/store/mod.ts";
import { signedHeaders, signV1 } from "../../src/protocol/mod.ts";

/** The admin token of test dashboards. */
export const ADMIN_TOKEN = "admin-token-0123456789abcdef";
/** The token of agent `a1` (and `a2` has {@link TOKEN2}). */
export const TOKEN = "agent-token-a1-0123456789abcdefghijklmnopq";
/** The token of agent `a2`. */
export const TOKEN2 = "agent-token-a2-0123456789abcdefghijklmnopq";
/** 2026-01-12T10:00:00Z. */
export const T0 = Date.UTC(2026, 0, 12, 10, 0, 0);

/**
 * A clock the test moves by hand, timers included (or, with `real`, the system clock and real
 * timers).
 */
export class FakeClock extends SharedFakeClock {
  readonly #real: boolean;
  /** How far the wall time is stepped from the fake time (an NTP step), in ms; timers ignore it. */
  wallStepMs = 0;
  constructor(start = T0, real = false) {
    super(start);
    this.#real = real;
  }
  override now(): number {
    return (this.#real ? Date.now() : super.now()) + this.wallStepMs;
  }
  override monotonic(): number {
    return this.#real ? systemClock.monotonic!() : super.monotonic();
  }
  override setTimeout(fn: () => void, ms: number): TimerId {
    return this.#real ? systemClock.setTimeout(fn, ms) : super.setTimeout(fn, ms);
  }
  override clearTimeout(id: TimerId | undefined): void {
    if (this.#real) systemClock.clearTimeout(id);
    else super.clearTimeout(id);
  }
}

/** An in-process dashboard for a test; dispose it to close the app and the store. */
export interface TestDashboard extends AsyncDisposable {
  dashboard: DashboardApp;
  store: SqliteStore;
  clock: FakeClock;
  /** Sends a request signed by an agent (version 2 unless `v1`). */
  agent(request: AgentRequest): Promise<Response>;
  /** Sends an operator request with the admin token. */
  admin(method: string, path: string, body?: unknown): Promise<Response>;
}

/** One agent request of a test. */
export interface AgentRequest {
  method?: string;
  path: string;
  body?: unknown;
  agentId?: string;
  token?: string | null;
  /** Overrides or removes (`undefined` value) headers after signing. */
  headers?: Record<string, string | undefined>;
  requestId?: string;
  /** Sign with version 1 (body only) instead. */
  v1?: boolean;
  /** Sign at this time instead of the clock's. */
  signedAt?: number;
}

/**
 * Makes the headers of a signed agent request.
 *
 * @returns The headers to send.
 */
export function agentHeaders(
  request: AgentRequest & { bodyText: string | Uint8Array; now: number },
): Record<string, string> {
  const method = request.method ?? (request.body === undefined ? "GET" : "POST");
  const agentId = request.agentId ?? "a1";
  const token = request.token === undefined ? TOKEN : request.token;
  let headers: Record<string, string> = signedHeaders({
    agentId,
    token: token ?? undefined,
    method,
    pathAndQuery: request.path,
    body: request.bodyText,
    now: request.signedAt ?? request.now,
    requestId: request.requestId,
  });
  if (request.v1 && token) {
    delete headers["X-Signature-Version"];
    headers["X-Agent-Signature"] = signV1(token, request.bodyText);
  }
  if (request.bodyText.length > 0) headers["Content-Type"] = "application/json";
  for (const [name, value] of Object.entries(request.headers ?? {})) {
    if (value === undefined) {
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name));
    } else headers[name] = value;
  }
  return headers;
}

function bodyTextOf(body: unknown): string | Uint8Array {
  if (body === undefined) return "";
  if (typeof body === "string" || body instanceof Uint8Array) return body;
  return JSON.stringify(body);
}

/** Options of {@link makeDashboard}. */
export interface MakeDashboardOptions extends Partial<AppOptions> {
  /** Use the system clock instead of a fake one starting at {@link T0}. */
  realClock?: boolean;
  /** Agents to add before the app starts: id → token (null: none) and scopes. */
  agents?: Record<string, { token: string | null; scopes?: readonly AgentScope[] }>;
}

/**
 * Builds an in-process dashboard on an in-memory store, with a fake clock and the lease timer off.
 * By default: admin token set, agents `a1` and `a2` with all scopes.
 */
export async function makeDashboard(options: MakeDashboardOptions = {}): Promise<TestDashboard> {
  const clock = new FakeClock(T0, options.realClock ?? false);
  const store = openSqliteStore(":memory:");
  const devMode = options.devMode ?? false;
  const agents = options.agents ??
    (devMode ? {} : { a1: { token: TOKEN }, a2: { token: TOKEN2 } });
  for (const [id, agent] of Object.entries(agents)) {
    await store.addAgent({
      id,
      token: agent.token,
      scopes: agent.scopes ?? AGENT_SCOPES,
      now: clock.now(),
    });
  }
  const dashboard = createApp({
    autoExpireLeases: false,
    adminToken: devMode ? undefined : ADMIN_TOKEN,
    ...options,
    clock,
    store,
    devMode,
  });
  const app = dashboard.app;
  return {
    dashboard,
    store,
    clock,
    agent(request) {
      const bodyText = bodyTextOf(request.body);
      const headers = agentHeaders({ ...request, bodyText, now: clock.now() });
      const method = request.method ?? (request.body === undefined ? "GET" : "POST");
      return Promise.resolve(
        app.request(request.path, {
          method,
          headers,
          body: bodyText.length === 0 ? undefined : bodyText as BodyInit,
        }),
      );
    },
    admin(method, path, body) {
      const headers: Record<string, string> = { Authorization: `Bearer ${ADMIN_TOKEN}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return Promise.resolve(app.request(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      }));
    },
    async [Symbol.asyncDispose]() {
      await dashboard.close();
      await store.close();
    },
  };
}

/** Reads a JSON body (and asserts nothing about it). */
export async function json(response: Response): Promise<Record<string, unknown>> {
  return await response.json() as Record<string, unknown>;
}

/**
 * Sends a `POST` whose body arrives only once `meanwhile` has run: the server is then reading it,
 * the steps before the body (an agent's 1–4) passed.
 *
 * @param app The app (`app.request`).
 * @param path Path and query.
 * @param headers The request's headers.
 * @param bodyText The body.
 * @param meanwhile What happens while the body is held back.
 * @returns The answer.
 */
export async function postWithBodyHeldBack(
  app: { request(path: string, init: RequestInit): Response | Promise<Response> },
  path: string,
  headers: HeadersInit,
  bodyText: string,
  meanwhile: () => Promise<void>,
): Promise<Response> {
  const reading = Promise.withResolvers<void>();
  const sent = Promise.withResolvers<void>();
  let done = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (done) return controller.close();
      reading.resolve();
      await sent.promise;
      controller.enqueue(new TextEncoder().encode(bodyText));
      done = true;
    },
  });
  const answer = Promise.resolve(app.request(path, {
    method: "POST",
    headers,
    body: stream,
    duplex: "half",
  } as RequestInit));
  await reading.promise;
  await meanwhile();
  sent.resolve();
  return await answer;
}

/** A report body for a command. */
export function reportBody(commandId: string, overrides: Record<string, unknown> = {}) {
  return {
    command_id: commandId,
    status: "success",
    attempt: 1,
    result: {
      exit_code: 0,
      signal: null,
      duration_secs: 0.004,
      stdout: "Hello from dashboard\n",
      stderr: "",
      stdout_truncated_bytes: 0,
      stderr_truncated_bytes: 0,
    },
    error: null,
    started_at: "2026-01-12T10:00:05.120Z",
    completed_at: "2026-01-12T10:00:05.124Z",
    ...overrides,
  };
}

/** Paths of the protocol, for tests. */
export const P = {
  wait: (hash = "default", timeout = 1) => `/api/v1/agent/commands/wait/${hash}?timeout=${timeout}`,
  ack: "/api/v1/agent/commands/ack",
  report: "/api/v1/agent/commands/report",
  enqueue: "/api/v1/agent/commands/enqueue",
} as const;
