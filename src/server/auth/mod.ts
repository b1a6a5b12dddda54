/**
 * Authentication and limits of the dashboard's requests: the agent pipeline of docs/protocol.md §1
 * in its order (`pipeline.ts`, one file per step), the JSON body of a route, the operators' admin
 * token and rate limit.
 *
 * @module
 */
export { agentAuthSteps, agentPipeline, type AuthStep, runAuthSteps } from "./pipeline.ts";
export { type AgentCall, agentCall, agentOf, type AuthContext, callOf, remoteOf } from "./call.ts";
export { bearerOf, hasBearer, malformedBearer } from "./bearer.ts";
export { BodySlots, MAX_BODIES_PER_AGENT } from "./body_slots.ts";
export { jsonBody, jsonBodyOf } from "./json_body.ts";
export { adminAuth, checkGuesses } from "./operator.ts";
export { ADMIN_TOKEN_GUESSES_PER_MINUTE, AdminTokenGuesses } from "./guesses.ts";
export { auditRefusal, refuse } from "./refuse.ts";
export { checkOperatorRateLimit, operatorRateLimit } from "./throttle.ts";
