/**
 * Agent-facing extensions: live output chunks (`POST …/commands/{id}/output`), the heartbeat
 * (`POST /api/v1/agent/heartbeat`) and a signed ping (`GET /api/v1/agent/ping`, for
 * `status health`). Each runs the agent pipeline of docs/protocol.md §1.
 *
 * @module
 */
import type { Hono } from "hono";
import {
  ANY_COMMAND_ID_PATTERN,
  fromBase64,
  heartbeatSchema,
  outputChunkSchema,
} from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import type { OutputBounds } from "../store/mod.ts";
import { jsonBody } from "./auth/mod.ts";
import type { ServerEnv } from "./env.ts";
import { HttpError } from "./http_error.ts";
import { InstanceRegistry } from "./instances.ts";
import { agentPipeline } from "./auth/mod.ts";
import { type RouteDeps, unknownCommand } from "./route_deps.ts";
import type { TokenBucketLimiter } from "./rate_limit.ts";

/** What the live routes need beyond the shared route parts. */
export interface LiveRouteOptions {
  /** Rate limit of output chunks (a bucket of its own, so output never starves polling). */
  outputLimiter: TokenBucketLimiter;
  /** What is kept of each stream. */
  keep: OutputBounds;
}

const log = logger("server", "output");

/** Largest heartbeat body, in bytes. */
const MAX_HEARTBEAT_BYTES = 16 * 1024;

/**
 * Registers the output, heartbeat and ping routes.
 *
 * @param app The Hono app.
 * @param deps The shared parts.
 * @param options Output limiter and bounds.
 */
export function liveRoutes(app: Hono<ServerEnv>, deps: RouteDeps, options: LiveRouteOptions): void {
  const { store, clock } = deps;

  app.post(
    "/api/v1/agent/commands/:id/output",
    agentPipeline({ ...deps, limiter: options.outputLimiter }, "commands:report"),
    jsonBody(outputChunkSchema, { maxBodyBytes: deps.maxBodyBytes }),
    async function outputRoute(c) {
      const id = c.req.param("id");
      const chunk = c.get("body");
      const agent = c.get("agent");
      // No command has an id beyond the rule (a NUL in it would be a database error on PostgreSQL).
      const command = ANY_COMMAND_ID_PATTERN.test(id) ? await store.getCommand(id) : null;
      if (!command) throw unknownCommand(c, id, "not_found");
      if (command.agentId !== agent.id) throw unknownCommand(c, id, "forbidden");
      if (chunk.attempt > command.deliveredAttempt) {
        throw new HttpError(
          409,
          `attempt ${chunk.attempt} of command ${id} was never delivered`,
          { details: { delivered_attempt: command.deliveredAttempt } },
        );
      }
      let data: Uint8Array;
      try {
        data = fromBase64(chunk.data);
      } catch {
        throw new HttpError(400, `field "data": must be base64 (standard alphabet, padded)`);
      }
      const outcome = await store.appendOutput({
        commandId: id,
        attempt: chunk.attempt,
        stream: chunk.stream,
        offset: chunk.offset,
        data,
        now: clock.now(),
        keep: options.keep,
      });
      if (outcome.outcome === "duplicate") return c.json({ stored: true, duplicate: true });
      if (outcome.gapBytes > 0) {
        log.info("output of {commandId} has a gap of {gapBytes} bytes before offset {offset}", {
          commandId: id,
          stream: chunk.stream,
          gapBytes: outcome.gapBytes,
          offset: outcome.offset,
        });
      }
      return c.json({ stored: true, gap_bytes: outcome.gapBytes });
    },
  );

  // The route's own limit for every step that reads the body (the signature's first of all).
  const heartbeatBody = { maxBodyBytes: Math.min(deps.maxBodyBytes, MAX_HEARTBEAT_BYTES) };
  app.post(
    "/api/v1/agent/heartbeat",
    agentPipeline({ ...deps, ...heartbeatBody }, "commands:wait"),
    jsonBody(heartbeatSchema, heartbeatBody),
    async function heartbeatRoute(c) {
      const body = c.get("body");
      const agent = c.get("agent");
      if (body.agent_id !== undefined && body.agent_id !== agent.id) {
        throw new HttpError(403, `field "agent_id": an agent sends only its own heartbeat`);
      }
      const { agent_id: _id, version, deployment_hash, instance_id, labels, ...sample } = body;
      const instance = InstanceRegistry.of(c.req.raw) ?? instance_id ?? null;
      await store.recordHeartbeat(agent.id, {
        version: version ?? null,
        deploymentHash: deployment_hash ?? null,
        instanceId: instance,
        sample,
        labels,
        now: clock.now(),
      });
      return c.json({ recorded: true });
    },
  );

  app.get(
    "/api/v1/agent/ping",
    agentPipeline(deps, "commands:wait"),
    function pingRoute(c) {
      return c.json({
        agent_id: c.get("agent").id,
        signed: !c.get("unsigned"),
        time: new Date(clock.now()).toISOString(),
      });
    },
  );
}
