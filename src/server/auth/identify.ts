/**
 * Step 1 of the agent pipeline: who is asking (`X-Agent-Id`).
 *
 * @module
 */
import { AGENT_ID_PATTERN, AGENT_ID_RULE, HEADER } from "../../protocol/mod.ts";
import type { AgentCall, AuthContext } from "./call.ts";
import { AGENT_CREDENTIALS_WRONG, requireBearer } from "./bearer.ts";
import { refuse } from "./refuse.ts";

/**
 * Step 1: `X-Agent-Id` names a known agent (in dev mode, any valid id, registered on first sight);
 * outside dev mode a bearer token is there before the agent is looked up, and an unknown agent is
 * answered as a wrong token is ({@link AGENT_CREDENTIALS_WRONG}). Sets `call.agent` and
 * `call.unsigned`.
 *
 * The agent is not marked seen here: only a request that passes every step is the agent's
 * (`pipeline.ts`).
 *
 * @param ctx Store, clock, dev mode.
 * @param call The request.
 * @throws {HttpError} `401`.
 */
export async function identify(ctx: AuthContext, call: AgentCall): Promise<void> {
  call.mark = ctx.dismissals?.mark;
  const id = call.headers.get(HEADER.agentId);
  if (!id) throw refuse(call, 401, "X-Agent-Id header is missing", "authentication failed");
  if (!AGENT_ID_PATTERN.test(id)) {
    throw refuse(
      call,
      401,
      // Given twice (a proxy adding its own), the values come joined with ", ", which no id holds.
      `X-Agent-Id must be ${AGENT_ID_RULE}` +
        (id.includes(", ") ? "; it was given more than once" : ""),
      "authentication failed",
      { agentId: id.slice(0, 128) },
    );
  }
  // Outside dev mode every agent needs a token: its absence is told before the agent is looked up,
  // and an unknown agent gets the answer of a wrong token, so neither tells which ids exist.
  if (!ctx.devMode) requireBearer(call);
  let agent = await ctx.store.getAgent(id);
  if (!agent) {
    if (!ctx.devMode) {
      throw refuse(call, 401, AGENT_CREDENTIALS_WRONG, "authentication failed", {
        logged: `agent ${id} is not registered`,
        reason: "unknown_agent",
      });
    }
    agent = await ctx.store.ensureAgent(id, ctx.clock.now());
  }
  call.agent = agent;
  call.unsigned = ctx.devMode && agent.token === null;
  // Its bodies are counted from now on. A token-less agent of dev mode is anyone's (the seed's
  // curl enqueues as it, an operator's request): its bodies are not counted.
  if (!call.unsigned) call.bodySlots = ctx.bodySlots;
}
