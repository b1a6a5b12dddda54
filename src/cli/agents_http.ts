/**
 * `status agents` over the network: without `--db`, the subcommands talk to the dashboard's
 * operator API (`GET /api/v1/agents`, `POST /api/v1/agents`, `POST /api/v1/agents/{id}/rotate`,
 * `DELETE /api/v1/agents/{id}`) at `DASHBOARD_URL` with `STATUS_ADMIN_TOKEN`; `--db` stays for
 * the dashboard's own machine.
 *
 * @module
 */
import { type AgentScope, formatLabels } from "../protocol/mod.ts";
import {
  type AgentRecord,
  alignColumns,
  idWord,
  type OperatorClient,
  operatorClientFromSettings,
  OperatorError,
  type WireTime,
} from "../operator/mod.ts";
import { redactUrl } from "../log/redact.ts";
import { loadCommandSettings, noAdminTokenReason } from "./common.ts";
import type { Io } from "./io.ts";
import { errorLine } from "./error_line.ts";

function clientOf(io: Io, options: object): OperatorClient {
  const loaded = loadCommandSettings(io, options as Record<string, unknown>, ["operator"]);
  const { settings } = loaded;
  return operatorClientFromSettings(settings, noAdminTokenReason(loaded));
}

function short(time: WireTime): string {
  if (typeof time === "number") {
    const date = new Date(time);
    time = Number.isNaN(date.getTime()) ? String(time) : date.toISOString();
  }
  return time ? time.replace(/\.\d{3}Z$/, "Z") : "never";
}

function figures(heartbeat: Record<string, unknown> | null | undefined): string {
  if (!heartbeat) return "-";
  const parts: string[] = [];
  if (typeof heartbeat.cpu_percent === "number") parts.push(`cpu ${heartbeat.cpu_percent}%`);
  const memory = heartbeat.memory as { used_percent?: number } | undefined;
  if (typeof memory?.used_percent === "number") parts.push(`mem ${memory.used_percent}%`);
  const disk = heartbeat.disk as { used_percent?: number } | undefined;
  if (typeof disk?.used_percent === "number") parts.push(`disk ${disk.used_percent}%`);
  const load = heartbeat.load_avg;
  if (Array.isArray(load) && typeof load[0] === "number") parts.push(`load ${load[0]}`);
  return parts.length ? parts.join(" ") : "-";
}

/** A `2xx` answer that is not what the protocol says, as an error naming the dashboard. */
function strange(client: OperatorClient, what: string, lacking: string, body: unknown) {
  const shown = redactUrl(client.dashboardUrl);
  return new OperatorError(
    "invalid_answer",
    `the dashboard at ${shown} answered the ${what} without ${lacking}; is ${shown} a status ` +
      "dashboard?",
    { body },
  );
}

/**
 * The agents of a `GET /api/v1/agents` answer.
 *
 * @throws {OperatorError} `invalid_answer` when it is not `{"agents": [{"id": ...}, ...]}`.
 */
function agentsIn(client: OperatorClient, body: unknown): AgentRecord[] {
  const agents = (body as { agents?: unknown } | null)?.agents;
  if (
    !Array.isArray(agents) ||
    !agents.every((a) => a !== null && typeof a === "object" && typeof a.id === "string")
  ) throw strange(client, "agent list", '{"agents": [{"id": ...}, ...]}', body);
  return agents;
}

function table(io: Io, [header, ...rows]: string[][]): void {
  for (const line of alignColumns(header, rows)) io.out(line);
}

/**
 * `status agents list` over HTTP.
 *
 * @param io Where it prints.
 * @param options The command's options (`--json` and the operator settings).
 */
export async function listAgentsRemote(
  io: Io,
  options: { json?: boolean } & Record<string, unknown>,
): Promise<void> {
  const client = clientOf(io, options);
  const { body } = await client.call("GET", "/api/v1/agents", { what: "agent list" });
  const agents = agentsIn(client, body);
  if (options.json) {
    io.out(JSON.stringify(agents, null, 2));
    return;
  }
  if (agents.length === 0) {
    io.err('no agents; add one with "status agents add <id>"');
    return;
  }
  table(io, [
    [
      "ID",
      "STATE",
      "LAST SEEN",
      "VERSION",
      "DEPLOYMENT",
      "LABELS",
      "RUNNING",
      "QUEUED",
      "HEARTBEAT",
    ],
    ...agents.map((a) => [
      a.has_token === false ? `${a.id} (no token)` : a.id,
      a.state ?? (a.waiting ? "waiting" : "-"),
      short(a.last_seen_at),
      a.version ?? "-",
      a.deployment_hash ?? "-",
      formatLabels(a.labels) || "-",
      a.running ? `${a.running.id} (${a.running.status})` : "-",
      String(a.queued ?? 0),
      figures(a.heartbeat),
    ]),
  ]);
}

/** A failure the user can fix (unknown or duplicate agent); exits with code 1. */
export class AgentsError extends Error {
  /** Exit code the CLI uses for this error. */
  readonly exitCode = 1;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentsError";
  }
}

/**
 * Prints the lines of a token that is shown once. When standard output cannot take them (a full
 * disk, an I/O error), the agent has the token all the same: the error says so, and how to get a
 * new one, rather than only the write's own error.
 *
 * @param io Where to print.
 * @param id The agent.
 * @param lines `AGENT_ID=...`, `AGENT_TOKEN=...`.
 * @param done What happened on the dashboard: "agent web-1 was added".
 * @throws {AgentsError} When a line could not be written (exit code 1).
 */
export function printToken(io: Io, id: string, lines: readonly string[], done: string): void {
  try {
    for (const line of lines) io.out(line);
  } catch (error) {
    throw new AgentsError(
      `${done}, but the token could not be printed (${(error as Error).message}); print a new ` +
        `one with "status agents rotate ${idWord(id)}"`,
      { cause: error },
    );
  }
}

/**
 * `status agents add` over HTTP.
 *
 * @param io Where it prints.
 * @param id The agent id.
 * @param options Scopes and the operator settings.
 */
export async function addAgentRemote(
  io: Io,
  id: string,
  options: { scopes?: AgentScope[] } & Record<string, unknown>,
): Promise<void> {
  const client = clientOf(io, options);
  const { token, scopes } = await client.addAgent(id, { scopes: options.scopes });
  printToken(io, id, [`AGENT_ID=${id}`, `AGENT_TOKEN=${token}`], `agent ${id} was added`);
  io.err(
    `agent ${id} added on ${
      redactUrl(client.dashboardUrl)
    }. Give the agent these two settings (e.g. in its ` +
      ".env); the token is not shown again." + (client.hasAdminToken ? "" : DEV_MODE_NOTE),
  );
  // --scopes narrows what a stolen token can do: a dashboard that granted more says so in its
  // answer, and the operator who relied on it must hear it.
  const extra = options.scopes === undefined
    ? []
    : (scopes ?? []).filter((scope) => !options.scopes!.includes(scope as AgentScope));
  if (extra.length > 0) {
    io.err(
      `warning: the dashboard granted agent ${id} more scopes than --scopes asked for: ` +
        `${errorLine(extra.join(", "))} (asked: ${options.scopes!.join(", ")}); remove it ` +
        `("status agents remove ${idWord(id)}") if its token must not have them`,
    );
  }
}

/**
 * Said when an agent was added without an admin token, so to a dashboard in dev mode: it stays
 * in dev mode while it runs, and will not start again without one (an agent now has a token).
 */
const DEV_MODE_NOTE = " The dashboard stays in dev mode until it stops; as its database now " +
  'holds an agent with a token, it starts again on it only as "status serve" with ' +
  'STATUS_ADMIN_TOKEN set (e.g. STATUS_ADMIN_TOKEN=$(openssl rand -base64 32)): "status up" ' +
  "refuses it.";

/**
 * `status agents rotate` over HTTP.
 *
 * @param io Where it prints.
 * @param id The agent id.
 * @param options The operator settings.
 */
export async function rotateAgentRemote(
  io: Io,
  id: string,
  options: Record<string, unknown>,
): Promise<void> {
  const { token } = await clientOf(io, options).rotateAgentToken(id);
  printToken(io, id, [`AGENT_TOKEN=${token}`], `agent ${id} has a new token`);
  io.err(`agent ${id} has a new token; the old one no longer works. It is not shown again.`);
}

/**
 * `status agents remove` over HTTP.
 *
 * @param io Where it prints.
 * @param id The agent id.
 * @param options The operator settings.
 */
export async function removeAgentRemote(
  io: Io,
  id: string,
  options: Record<string, unknown>,
): Promise<void> {
  const { commandsEnded } = await clientOf(io, options).removeAgent(id);
  io.err(removalLine(id, commandsEnded));
}

/**
 * What `status agents remove` says once the agent is removed.
 *
 * @param id The agent id.
 * @param ended How many of its commands the removal ended; `null` when the dashboard did not say
 *   (one older than `commands_ended`).
 * @returns The line.
 */
export function removalLine(id: string, ended: number | null): string {
  if (ended === null) return `agent ${id} removed`;
  if (ended === 0) return `agent ${id} removed; it had no queued or running command`;
  return `agent ${id} removed; ${ended} of its queued or running commands ${
    ended === 1 ? "was" : "were"
  } cancelled`;
}
