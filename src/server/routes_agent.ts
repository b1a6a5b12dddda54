/**
 * Agent-facing endpoints (docs/protocol.md §2) with a body: ack, report and the seed-compatible
 * enqueue, as plain functions over an {@link AgentCall} (auth steps, JSON body, store) that return
 * their answer or throw `HttpError`. They are answered before the Hono app, with the long-polls
 * (`wait_route.ts`): on `node:http` straight on the server's objects (`http_app.ts`, the body read
 * from the `IncomingMessage`), and through {@link LeanRoutes.fetch} for a web `Request` (tests,
 * the console). Each runs the same steps in the same order as the Hono routes did.
 *
 * @module
 */
import {
  ackRequestSchema,
  AGENT_ID_PATTERN,
  AGENT_ID_RULE,
  enqueueRequestSchema,
  FINAL_STATUSES,
  HEADER,
  idWord,
  reportRequestSchema,
  shortForm,
} from "../protocol/mod.ts";
import { auditLogger, logger } from "../log/mod.ts";
import {
  agentAuthSteps,
  type AgentCall,
  agentOf,
  bearerOf,
  checkGuesses,
  checkOperatorRateLimit,
  hasBearer,
  jsonBodyOf,
  malformedBearer,
  refuse,
  runAuthSteps,
} from "./auth/mod.ts";
import { deliveryWarning, enqueueAndWake } from "./enqueue.ts";
import type { ServerEnv } from "./env.ts";
import { enqueueFingerprint } from "./fingerprint.ts";
import { HttpError } from "./http_error.ts";
import type { RefusalReason } from "./refusals.ts";
import { boundError, boundSignal, boundStream } from "./result_bounds.ts";
import { type RouteDeps, unknownCommand } from "./route_deps.ts";
import type { AgentRecord, CommandRecord, EnqueueOutcome } from "../store/mod.ts";
import type { LeanAnswer } from "./wait_route.ts";
import { setImmediate } from "node:timers";

/** The agent routes with a body. */
export type AgentPostRoute = "ack" | "report" | "enqueue";

const COMMANDS = "/api/v1/agent/commands/";

/** The path of each agent route with a body (all `POST`). */
export const AGENT_POST_PATHS: ReadonlyMap<string, AgentPostRoute> = new Map([
  [`${COMMANDS}ack`, "ack"],
  [`${COMMANDS}report`, "report"],
  [`${COMMANDS}enqueue`, "enqueue"],
]);

/** A JSON answer with the `Date` header (`wait_route.ts` makes it). */
export type JsonAnswer = (body: unknown, status: number) => LeanAnswer;

/** Answers one agent route with a body; throws `HttpError` (or a store's error) for a failure. */
export type AgentPost = (call: AgentCall) => Promise<LeanAnswer>;

const log = logger("server");
const audit = auditLogger();

/** The `Retry-After` of an agent's own enqueue refused for its full queue, in seconds. */
const FULL_QUEUE_RETRY_SECS = 30;

/**
 * Refusals of an enqueue beside an `X-Agent-Id` that say its bearer token was not that agent's:
 * the admin token, compared first, was not it either.
 */
const GUESS_REASONS = new Set<RefusalReason | undefined>([
  "missing_agent_id",
  "bad_agent_id",
  "unknown_agent",
  "wrong_token",
  "no_agent_token",
]);

/**
 * Why an ack of `attempt` cannot be taken (the store answered `stale`): the attempt was never
 * delivered, the command is final, a later attempt replaced it, or it is queued again.
 *
 * @param attempt The attempt the ack names.
 * @param command The command as stored.
 * @returns The sentence of the `409`.
 */
export function staleAckMessage(
  attempt: number,
  command: Pick<CommandRecord, "id" | "status" | "attempt" | "deliveredAttempt">,
): string {
  const { id, status } = command;
  if (command.deliveredAttempt === 0) {
    return `command ${id} was never delivered (it is ${status}); only a delivered attempt is acked`;
  }
  if (attempt > command.deliveredAttempt) {
    return `attempt ${attempt} of command ${id} was never delivered ` +
      `(last delivered: ${command.deliveredAttempt})`;
  }
  if (FINAL_STATUSES.has(status)) {
    return `command ${id} is already ${status}; attempt ${attempt} is no longer current`;
  }
  if (attempt < command.attempt) {
    return `attempt ${attempt} of command ${id} is no longer current ` +
      `(the current attempt is ${command.attempt}, ${status})`;
  }
  return `attempt ${attempt} of command ${id} is no longer current (the command is ${status} ` +
    `again)`;
}

/**
 * Makes `ack`, `report` and `enqueue` (the long-polls are in `wait_route.ts`).
 *
 * @param deps The shared parts.
 * @param json Makes a JSON answer.
 * @returns The three routes.
 */
export function agentPosts(deps: RouteDeps, json: JsonAnswer): Record<AgentPostRoute, AgentPost> {
  const { store, clock } = deps;
  const body = { maxBodyBytes: deps.maxBodyBytes };
  const ackSteps = agentAuthSteps(deps, "commands:wait");
  const reportSteps = agentAuthSteps(deps, "commands:report");
  // An enqueue with X-Agent-Id: the agent's signed request (or a token-less agent in dev mode).
  const enqueueSteps = agentAuthSteps(deps, "commands:enqueue", true, true);

  /**
   * Refuses the id of a run's part not started yet (`<run id>:<agent id>`): the run enqueues a
   * command of that id when it starts the part, and would then follow this one instead (its agent
   * never getting the run's command). A part already started has its command: an enqueue of that
   * id is a duplicate or a conflict, as for any command.
   */
  async function refuseRunPartId(id: string): Promise<void> {
    if (id.indexOf(":") <= 0) return;
    // The one target of that command id, its command as a status: not the run's other targets,
    // which an agent's enqueue naming a run of 10,000 agents would read every time.
    const part = await store.getRunTarget(id);
    if (!part || part.command !== null) return;
    const why = part.skippedAt === null
      ? "not started yet: the run enqueues it when it starts that part"
      : "which the run skipped";
    throw new HttpError(
      409,
      `command id ${id} is run ${part.runId}'s part for agent ${part.agentId}, ${why}; ` +
        "use another id",
    );
  }

  /**
   * Refuses an agent's own enqueue while the agent has as many commands not final as it may (its
   * token alone could otherwise fill the store with commands for itself). A retry of an enqueue
   * already taken goes on, to be answered as the duplicate it is.
   */
  async function refuseFullQueue(
    call: AgentCall,
    agentId: string,
    id: string | undefined,
  ): Promise<void> {
    const max = deps.maxOpenCommandsForAgentEnqueue;
    if (await store.countOpenCommands(agentId, max) < max) return;
    if (id !== undefined && (await store.existingCommandIds([id])).length > 0) return;
    throw refuse(
      call,
      429,
      `agent ${agentId} has ${max} commands queued, delivered or running, the most its own ` +
        "enqueue may add to; retry once some of them have ended (an operator's enqueue is not " +
        "limited)",
      "enqueue refused",
      {
        headers: { "Retry-After": String(FULL_QUEUE_RETRY_SECS) },
        details: { retry_after_secs: FULL_QUEUE_RETRY_SECS, max_open_commands: max },
      },
    );
  }

  return {
    async ack(call) {
      await runAuthSteps(call, ackSteps);
      const request = await jsonBodyOf(call, ackRequestSchema, body);
      const agent = agentOf(call);
      const outcome = await store.ack({
        commandId: request.command_id,
        agentId: agent.id,
        attempt: request.attempt,
        now: clock.now(),
        defaultTimeoutSecs: deps.defaultTimeoutSecs,
      });
      switch (outcome.outcome) {
        case "not_found":
        case "forbidden":
          throw unknownCommand(call, request.command_id, outcome.outcome);
        case "stale":
          throw new HttpError(409, staleAckMessage(request.attempt, outcome.command), {
            details: { status: outcome.command.status, attempt: outcome.command.attempt },
          });
      }
      const { command } = outcome;
      if (command.leaseExpiresAt !== null) deps.leases.schedule(command.leaseExpiresAt);
      log.debug("command acked {commandId}", () => ({
        commandId: command.id,
        attempt: command.attempt,
      }));
      return json({
        acked: true,
        lease_expires_at: command.leaseExpiresAt === null
          ? null
          : new Date(command.leaseExpiresAt).toISOString(),
      }, 200);
    },

    async report(call) {
      await runAuthSteps(call, reportSteps);
      const report = await jsonBodyOf(call, reportRequestSchema, body);
      const agent = agentOf(call);
      const r = report.result ?? null;
      // Kept within the agent's own bounds, whatever a client sent.
      const stdout = r && boundStream(r.stdout, r.stdout_encoding, r.stdout_truncated_bytes);
      const stderr = r && boundStream(r.stderr, r.stderr_encoding, r.stderr_truncated_bytes);
      const outcome = await store.report({
        commandId: report.command_id,
        agentId: agent.id,
        attempt: report.attempt ?? null,
        status: report.status,
        result: r && {
          exitCode: r.exit_code,
          signal: boundSignal(r.signal),
          durationSecs: r.duration_secs,
          stdout: stdout!.text,
          stderr: stderr!.text,
          stdoutTruncatedBytes: stdout!.truncatedBytes,
          stderrTruncatedBytes: stderr!.truncatedBytes,
          stdoutEncoding: r.stdout_encoding ?? null,
          stderrEncoding: r.stderr_encoding ?? null,
        },
        error: boundError(report.error ?? null),
        startedAt: report.started_at ?? null,
        completedAt: report.completed_at ?? null,
        now: clock.now(),
      });
      switch (outcome.outcome) {
        case "not_found":
        case "forbidden":
          throw unknownCommand(call, report.command_id, outcome.outcome);
        case "conflict":
          throw new HttpError(409, outcome.reason);
      }
      const duplicate = outcome.outcome === "duplicate";
      audit.info("command reported {commandId} {status}", {
        commandId: report.command_id,
        agentId: agent.id,
        status: report.status,
        attempt: report.attempt,
        duplicate,
        remote: call.remote,
      });
      return json(duplicate ? { accepted: true, duplicate: true } : { accepted: true }, 200);
    },

    // Enqueue: an operator with the admin token, an operator of a dev-mode dashboard (no
    // X-Agent-Id: the body names the agent), or the target agent's own signed request; the
    // operators' rate limit first, however it is authenticated. A bearer token that is neither
    // the admin token nor accepted as the agent's counts as a guess of the admin token, and no
    // admin token is compared for an address out of guesses.
    async enqueue(call) {
      checkOperatorRateLimit(deps.operatorLimiter, call);
      let via: ServerEnv["Variables"]["via"];
      const guesses = deps.adminGuesses;
      const compared = deps.adminToken !== undefined && bearerOf(call) &&
        guesses.check(call.remote).ok;
      if (compared && hasBearer(call, deps.adminToken!)) {
        via = "admin";
      } else if (!call.headers.get(HEADER.agentId)) {
        if (!deps.devMode) {
          const given = bearerOf(call);
          if (given) {
            checkGuesses(call, guesses, call.remote);
            guesses.wrong(call.remote);
          }
          throw refuse(
            call,
            401,
            given === undefined
              ? "X-Agent-Id header is missing; operators send the admin token as a bearer token"
              : given === ""
              ? malformedBearer(call.headers.get(HEADER.authorization) ?? "")
              : "admin token is wrong",
            "authentication failed",
          );
        }
        via = "dev-operator";
      } else {
        try {
          await runAuthSteps(call, enqueueSteps);
        } catch (error) {
          if (deps.adminToken && bearerOf(call) && GUESS_REASONS.has(call.refusal)) {
            // Not the agent's token either: an admin token guessed beside an agent id.
            checkGuesses(call, guesses, call.remote);
            guesses.wrong(call.remote);
          }
          if (
            call.refusal === "missing_token" && bearerOf(call) === undefined &&
            error instanceof HttpError
          ) {
            // The seed's curl (X-Agent-Id alone) sent by an operator outside dev mode.
            throw new HttpError(
              401,
              `${error.message}; operators send the admin token (STATUS_ADMIN_TOKEN) as a ` +
                "bearer token, agents their own token and a signature",
              { details: error.details, headers: error.headers },
            );
          }
          throw error;
        }
        via = call.unsigned ? "dev-agent" : "agent";
        // A signed request is the agent itself; an unsigned one (the seed's curl) is not.
        if (!call.unsigned) deps.auth.seen?.(agentOf(call).id);
      }
      const request = await jsonBodyOf(call, enqueueRequestSchema, body);
      const now = clock.now();
      let target: string;
      // The target's record as read for this request (its stored last-seen time for the warning).
      let targetAgent: AgentRecord | null;
      if (via === "admin" || via === "dev-operator") {
        const named = request.agent_id ?? call.headers.get(HEADER.agentId);
        if (!named) {
          const message = "is required without an X-Agent-Id header: it names the agent that " +
            "runs the command";
          throw new HttpError(400, `field "agent_id": ${message}`, {
            details: [{ field: "agent_id", message }],
          });
        }
        // The body's `agent_id` passed the schema: only the header can be malformed.
        if (!AGENT_ID_PATTERN.test(named)) {
          throw new HttpError(400, `X-Agent-Id must be ${AGENT_ID_RULE}`);
        }
        target = named;
        targetAgent = deps.devMode
          ? await store.ensureAgent(target, now)
          : await store.getAgent(target);
        if (!targetAgent) {
          throw new HttpError(
            404,
            `agent ${target} is not registered; add it with "status agents add ${idWord(target)}"`,
          );
        }
      } else {
        const agent = agentOf(call);
        target = agent.id;
        targetAgent = agent;
        if (request.agent_id !== undefined && request.agent_id !== agent.id) {
          if (via !== "dev-agent") {
            throw new HttpError(
              403,
              `field "agent_id": an agent may enqueue only for itself; operators use the admin token`,
            );
          }
          target = request.agent_id;
          targetAgent = await store.ensureAgent(target, now);
        }
        // A fan-out run's command is `<run id>:<agent id>`, and a run takes a command of that id
        // for that agent's part: another agent's would stand in for it (and stop the run's own).
        // Dev mode's unsigned requests are anyone's anyway (the seed's curl keeps its ids).
        const colon = request.id?.indexOf(":") ?? -1;
        if (via === "agent" && colon >= 0 && request.id!.slice(colon + 1) !== target) {
          throw new HttpError(
            403,
            `field "id": an id with ":" is a fan-out run's <run id>:<agent id>; an agent may ` +
              `name only its own (…:${target}), not ${shortForm(request.id!)}`,
          );
        }
      }
      const id = request.id ?? crypto.randomUUID();
      await refuseRunPartId(id);
      if (via === "agent") await refuseFullQueue(call, target, request.id);
      const params = request.params ?? {};
      const command = {
        id,
        agentId: target,
        name: request.name,
        params,
        fingerprint: enqueueFingerprint(target, request),
        now,
        expiresAt: now + (params.ttl_secs ?? deps.queueTtlSecs) * 1000,
      };
      const enqueued = (outcome: EnqueueOutcome) =>
        audit.info("command enqueued {commandId} for {agentId}", {
          commandId: id,
          agentId: target,
          via,
          priority: outcome.command.priority,
          deploymentHash: outcome.command.deploymentHash ?? undefined,
          duplicate: outcome.outcome === "duplicate",
          remote: call.remote,
        });
      let logged = false;
      const outcome = await enqueueAndWake(deps, command, (outcome) => {
        if (outcome.outcome === "created" && outcome.claimed) {
          // It wakes a wait: logged a turn later, once that wait's answer is written (the line
          // costs a wake-up ~35 µs), and still before the wait's "command delivered" line.
          logged = true;
          setImmediate(() => enqueued(outcome));
        }
      });
      if (outcome.outcome === "conflict") {
        audit.warning("enqueue conflict {commandId}", {
          commandId: id,
          agentId: target,
          via,
          remote: call.remote,
        });
        throw new HttpError(
          409,
          `command ${id} already exists with a different body; use a new id`,
        );
      }
      const duplicate = outcome.outcome === "duplicate";
      const stored = outcome.command;
      if (!logged) enqueued(outcome);
      const answer: Record<string, unknown> = { queued: true, id };
      if (duplicate) answer.duplicate = true;
      answer.expires_at = stored.expiresAt === null
        ? null
        : new Date(stored.expiresAt).toISOString();
      // Claimed in the enqueue's transaction: a wait that can take it was open (one on another
      // hash may still be, which would read as "waiting for deployment X, not Y").
      const claimed = outcome.outcome === "created" && outcome.claimed != null;
      const warning = stored.status === "queued" && !claimed
        ? await deliveryWarning(deps, stored.agentId, stored.deploymentHash, stored.expiresAt, {
          lastSeenAt: targetAgent.lastSeenAt,
        })
        : undefined;
      if (warning) {
        answer.warning = warning;
        log.info("command {commandId} cannot be delivered now: {warning}", {
          commandId: id,
          warning,
        });
      }
      return json(answer, 202);
    },
  };
}
