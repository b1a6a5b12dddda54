/**
 * The dashboard under test: a store file with agents and tokens made up front, `status serve` as
 * a separate process (not dev mode), and the operator's side of the API.
 *
 * @module
 */
import { generateToken, signedHeaders } from "../src/protocol/mod.ts";
import { AGENT_SCOPES, openStore } from "../src/store/mod.ts";
import { HttpConnection, type HttpResponse, jsonOf } from "./_http.ts";
import { baseEnv, type Child, type Children } from "./_proc.ts";

/** The repository root. */
export const ROOT: string = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** Permission flags of `status serve`, as the `serve` task gives them. */
export const SERVE_PERMS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env"];

/**
 * The V8 flags `deno task serve` gives the dashboard (`--v8-flags=…` in `deno.json`'s `serve`
 * task), so that the bench measures the dashboard as users start it.
 *
 * @param denoJson The text of `deno.json`.
 * @returns The `--v8-flags=…` argument, if the task has one.
 */
export function serveV8Flags(denoJson: string): string[] {
  const task = (JSON.parse(denoJson) as { tasks?: Record<string, string> }).tasks?.serve ?? "";
  return task.match(/--v8-flags=\S+/g) ?? [];
}

/** Permission flags of `status agent`, as the `agent` task gives them. */
export const AGENT_PERMS = [
  "--allow-net",
  "--allow-run",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];

/** An agent id with its token. */
export interface AgentCredentials {
  id: string;
  token: string;
}

/**
 * Makes `count` agents named `<prefix>-<n>` with fresh tokens.
 *
 * @param prefix The id prefix.
 * @param count How many.
 * @returns Their ids and tokens.
 */
export function makeAgents(prefix: string, count: number): AgentCredentials[] {
  const width = String(Math.max(1, count - 1)).length;
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${String(i).padStart(width, "0")}`,
    token: generateToken(),
  }));
}

/**
 * Creates the dashboard's store file with these agents and their tokens, as
 * `status agents add` would.
 *
 * @param path The SQLite file, or a `postgres://` URL.
 * @param agents The agents.
 */
export async function createStore(path: string, agents: readonly AgentCredentials[]) {
  // Setting up is not measured: no fsync per insert (SQLite).
  await using store = await openStore(path, { sqlite: { synchronous: "normal" } });
  const now = Date.now();
  for (const agent of agents) {
    const added = await store.addAgent({
      id: agent.id,
      token: agent.token,
      scopes: AGENT_SCOPES,
      now,
    });
    if (!added) throw new Error(`agent ${agent.id} exists twice`);
  }
}

/** A running `status serve`. */
export interface Dashboard {
  /** Its base URL. */
  url: string;
  /** Its process. */
  child: Child;
}

/**
 * Starts `status serve` on a free port and waits until it listens.
 *
 * @param children Where the process is registered (so it is always stopped).
 * @param options Store file, admin token, working directory, log file, inspector port.
 * @returns The URL and the process.
 */
export async function startDashboard(
  children: Children,
  options: {
    db: string;
    adminToken: string;
    cwd: string;
    logFile: string;
    /** Open the V8 inspector on this loopback port (for profiling). */
    inspectPort?: number;
    /** More arguments of `status serve`, e.g. `["--log-level", "warning"]`. */
    extraArgs?: readonly string[];
    /** More flags of `deno run`, e.g. `["--v8-flags=--max-semi-space-size=1"]`. */
    denoArgs?: readonly string[];
  },
): Promise<Dashboard> {
  const child = children.spawn("status serve", [
    Deno.execPath(),
    "run",
    "--quiet",
    ...(options.inspectPort ? [`--inspect=127.0.0.1:${options.inspectPort}`] : []),
    ...serveV8Flags(Deno.readTextFileSync(`${ROOT}/deno.json`)),
    ...(options.denoArgs ?? []),
    "--config",
    `${ROOT}/deno.json`,
    ...SERVE_PERMS,
    `${ROOT}/main.ts`,
    "serve",
    "--port",
    "0",
    "--db",
    options.db,
    "--rate-limit-per-minute",
    "1000000",
    // The load generator enqueues as one operator, thousands a minute.
    "--operator-rate-limit-per-minute",
    "1000000",
    "--log-format",
    "json",
    ...(options.extraArgs ?? []),
  ], {
    cwd: options.cwd,
    env: { ...baseEnv(), STATUS_ADMIN_TOKEN: options.adminToken },
    logFile: options.logFile,
    readStdout: true,
  });
  const line = await child.lines!.take(/listening on/, 60_000).catch((error) => {
    throw new Error(`status serve did not start (see ${options.logFile}): ${error.message}`);
  });
  const match = /https?:\/\/[\w.\[\]:-]+:\d+/.exec(line);
  if (!match) throw new Error(`no URL in the line "${line}"`);
  return { url: match[0], child };
}

/** The operator's side of the API over one keep-alive connection (admin token). */
export class Operator implements Disposable {
  readonly #conn: HttpConnection;
  readonly #auth: Record<string, string>;

  private constructor(conn: HttpConnection, adminToken: string) {
    this.#conn = conn;
    this.#auth = { Authorization: `Bearer ${adminToken}` };
  }

  /**
   * Connects.
   *
   * @param url The dashboard.
   * @param adminToken `STATUS_ADMIN_TOKEN`.
   * @returns The operator client.
   */
  static async open(url: string, adminToken: string): Promise<Operator> {
    return new Operator(await HttpConnection.open(url), adminToken);
  }

  /** How many waits are open on the dashboard (`GET /health`). */
  async waiting(): Promise<number> {
    const response = await this.#conn.request("GET", "/health");
    expectStatus(response, 200, "GET /health");
    return Number(jsonOf(response).waiting);
  }

  /**
   * Writes an enqueue request; read its answer with {@link Operator.enqueueAnswer}.
   *
   * @param agentId The target agent.
   * @param id The command id.
   * @param name The command line.
   */
  sendEnqueue(agentId: string, id: string, name: string): Promise<void> {
    const body = JSON.stringify({ id, agent_id: agentId, name, params: {} });
    return this.#conn.send("POST", "/api/v1/agent/commands/enqueue", this.#auth, body);
  }

  /** Reads the answer of {@link Operator.sendEnqueue} and checks it is `202`. */
  async enqueueAnswer(): Promise<void> {
    expectStatus(await this.#conn.readResponse("POST"), 202, "enqueue");
  }

  /**
   * Enqueues a command.
   *
   * @param agentId The target agent.
   * @param id The command id.
   * @param name The command line.
   */
  async enqueue(agentId: string, id: string, name: string): Promise<void> {
    await this.sendEnqueue(agentId, id, name);
    await this.enqueueAnswer();
  }

  /**
   * Lists commands of an agent (`GET /api/v1/commands`), newest first.
   *
   * @param agentId The agent.
   * @param limit At most this many (≤ 1000).
   * @returns The command views.
   */
  async commands(agentId: string, limit = 1000): Promise<Array<Record<string, unknown>>> {
    const response = await this.#conn.request(
      "GET",
      `/api/v1/commands?agent_id=${encodeURIComponent(agentId)}&limit=${limit}`,
      this.#auth,
    );
    expectStatus(response, 200, "GET /api/v1/commands");
    return jsonOf<{ commands: Array<Record<string, unknown>> }>(response).commands;
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.#conn.close();
  }
}

/**
 * Throws unless a response has the expected status.
 *
 * @param response The response.
 * @param status The expected status.
 * @param what The request, for the message.
 */
export function expectStatus(response: HttpResponse, status: number, what: string): void {
  if (response.status !== status) {
    throw new Error(
      `${what} answered ${response.status}, expected ${status}: ${
        new TextDecoder().decode(response.body).slice(0, 300)
      }`,
    );
  }
}

/**
 * Signed headers of an agent request (signature version 2), as the agent sends them.
 *
 * @param agent The agent.
 * @param method HTTP method.
 * @param pathAndQuery Path and query.
 * @param body The body, if any.
 * @returns The headers.
 */
export function agentHeaders(
  agent: AgentCredentials,
  method: string,
  pathAndQuery: string,
  body?: string,
): Record<string, string> {
  return signedHeaders({ agentId: agent.id, token: agent.token, method, pathAndQuery, body });
}

/** The wait path every benchmark agent uses: deployment `default`, the longest timeout. */
export function waitPath(timeoutSecs = 120): string {
  return `/api/v1/agent/commands/wait/default?timeout=${timeoutSecs}`;
}

/**
 * Acks and reports a delivered command as a successful `true`, over an agent's connection.
 *
 * @param conn The agent's connection.
 * @param agent The agent.
 * @param command The delivered command (`id`, `attempt`).
 */
export async function ackAndReport(
  conn: HttpConnection,
  agent: AgentCredentials,
  command: { id: string; attempt: number },
): Promise<void> {
  const ack = JSON.stringify({ command_id: command.id, attempt: command.attempt });
  const ackPath = "/api/v1/agent/commands/ack";
  expectStatus(
    await conn.request("POST", ackPath, agentHeaders(agent, "POST", ackPath, ack), ack),
    200,
    "ack",
  );
  const now = new Date().toISOString();
  const report = JSON.stringify({
    command_id: command.id,
    status: "success",
    attempt: command.attempt,
    result: {
      exit_code: 0,
      signal: null,
      duration_secs: 0,
      stdout: "",
      stderr: "",
      stdout_truncated_bytes: 0,
      stderr_truncated_bytes: 0,
    },
    error: null,
    started_at: now,
    completed_at: now,
  });
  const reportPath = "/api/v1/agent/commands/report";
  expectStatus(
    await conn.request("POST", reportPath, agentHeaders(agent, "POST", reportPath, report), report),
    200,
    "report",
  );
}

/**
 * Starts a real `status agent` process against the dashboard, allowed to run `true`.
 *
 * @param children Where the process is registered (so it is always stopped).
 * @param options Dashboard URL, the agent, its state directory and log file.
 * @returns The process.
 */
export function startAgent(
  children: Children,
  options: { url: string; agent: AgentCredentials; stateDir: string; logFile: string },
): Child {
  return children.spawn(`status agent ${options.agent.id}`, [
    Deno.execPath(),
    "run",
    "--quiet",
    "--config",
    `${ROOT}/deno.json`,
    ...AGENT_PERMS,
    `${ROOT}/main.ts`,
    "agent",
    "--dashboard-url",
    options.url,
    "--agent-id",
    options.agent.id,
    "--state-dir",
    options.stateDir,
    "--allowed-programs",
    "true",
    "--log-format",
    "json",
  ], {
    cwd: options.stateDir,
    env: { ...baseEnv(), AGENT_TOKEN: options.agent.token },
    logFile: options.logFile,
  });
}

/**
 * Waits until the dashboard counts at least `count` open waits.
 *
 * @param operator The operator client.
 * @param count How many.
 * @param timeoutMs How long to wait.
 * @throws {Error} When they do not appear in time.
 */
export async function waitForWaiting(
  operator: Operator,
  count: number,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = await operator.waiting();
  while (seen < count) {
    if (Date.now() > deadline) {
      throw new Error(
        `the dashboard counts ${seen} open waits after ${timeoutMs} ms, not ${count}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    seen = await operator.waiting();
  }
}
