/**
 * Fingerprints of what an enqueue asks for: two enqueues of one id are "the same body" when their
 * fingerprints are equal (key order and absent params do not matter).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { EnqueueRequest } from "../protocol/mod.ts";

/** JSON with object keys sorted and `undefined` members left out (for digests). */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * Digest of what an enqueue asks for: the target agent, the name and the params (absent params
 * equal `{}`; key order does not matter). Two enqueues of one id are "the same body" when their
 * fingerprints are equal.
 *
 * @param agentId The target agent.
 * @param body The enqueue request.
 * @returns Hex SHA-256.
 */
export function enqueueFingerprint(agentId: string, body: EnqueueRequest): string {
  const canonical = canonicalJson({
    agent_id: agentId,
    name: body.name,
    params: body.params ?? {},
  });
  return createHash("sha256").update(canonical).digest("hex");
}
