/**
 * Step 7 of the agent pipeline: the agent was granted the route's scope.
 *
 * @module
 */
import type { AgentScope } from "../../store/mod.ts";
import { type AgentCall, agentOf } from "./call.ts";
import { refuse } from "./refuse.ts";

/**
 * Step 7: the agent was granted `scope`.
 *
 * @param scope The scope the route needs.
 * @param call The request, after step 1.
 * @throws {HttpError} `403`.
 */
export function checkScope(scope: AgentScope, call: AgentCall): void {
  const agent = agentOf(call);
  if (!agent.scopes.includes(scope)) {
    throw refuse(
      call,
      403,
      `agent ${agent.id} is not granted the scope ${scope}`,
      "authorization failed",
    );
  }
}
