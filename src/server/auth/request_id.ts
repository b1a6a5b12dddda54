/**
 * Step 6 of the agent pipeline: an `X-Request-Id` not seen before (replay protection).
 *
 * @module
 */
import { HEADER, REPLAY_REFUSAL } from "../../protocol/mod.ts";
import type { RequestIdGuard } from "../replay.ts";
import { type AgentCall, agentOf } from "./call.ts";
import { refuse } from "./refuse.ts";

/**
 * Step 6: `X-Request-Id` is present and not seen in the replay window.
 *
 * @param replay The cache of recent request ids.
 * @param call The request, after step 1.
 * @throws {HttpError} `400` when missing or too long, `409` on a replay.
 */
export async function checkRequestId(replay: RequestIdGuard, call: AgentCall): Promise<void> {
  if (call.unsigned) return;
  // Not trimmed: the id is signed as it is (step 5), so it is kept as it is. Trimmed, two ids
  // differing only by a no-break space around them were one, the second refused as a replay.
  const requestId = call.headers.get(HEADER.requestId);
  if (!requestId) {
    throw refuse(call, 400, "X-Request-Id header is missing", "authentication failed");
  }
  if (requestId.length > 128) {
    throw refuse(call, 400, "X-Request-Id must be at most 128 characters", "authentication failed");
  }
  // Step 4 passed: X-Timestamp is an integer number of seconds (a version 2 signature binds it).
  const sentAtMs = Number(call.headers.get(HEADER.timestamp)) * 1000;
  const scoped = `${agentOf(call).id}\n${requestId}`;
  if (!(await replay.remember(scoped, Number.isFinite(sentAtMs) ? sentAtMs : undefined))) {
    throw refuse(call, 409, REPLAY_REFUSAL, "replay detected");
  }
}
