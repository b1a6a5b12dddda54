/**
 * Loopback names and addresses, shared with the agent (src/protocol/loopback.ts).
 *
 * @module
 */
export { isLoopback } from "../protocol/loopback.ts";
