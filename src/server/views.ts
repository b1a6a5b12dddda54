/**
 * The JSON shapes the dashboard answers with (docs/protocol.md §2–3). Times are ISO 8601 strings.
 *
 * @module
 */
import type { CommandRecord } from "../store/mod.ts";

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** A command as `wait` delivers it. */
export interface DeliveredView {
  id: string;
  name: string;
  params: Record<string, unknown>;
  deployment_hash?: string;
  attempt: number;
  lease_expires_at: string | null;
}

/**
 * The `200` answer of `wait`.
 *
 * @param command The claimed command.
 */
export function deliveredView(command: CommandRecord): DeliveredView {
  const view: DeliveredView = {
    id: command.id,
    name: command.name,
    params: command.params,
    attempt: command.attempt,
    lease_expires_at: iso(command.leaseExpiresAt),
  };
  if (command.deploymentHash !== null) view.deployment_hash = command.deploymentHash;
  return view;
}

/**
 * A command as the operator endpoints show it.
 *
 * @param command The stored command.
 */
export function commandView(command: CommandRecord): Record<string, unknown> {
  const r = command.result;
  return {
    id: command.id,
    agent_id: command.agentId,
    name: command.name,
    params: command.params,
    deployment_hash: command.deploymentHash,
    priority: command.priority,
    status: command.status,
    attempt: command.attempt,
    cancel_requested: command.cancelRequested,
    created_at: iso(command.createdAt),
    delivered_at: iso(command.deliveredAt),
    acked_at: iso(command.ackedAt),
    lease_expires_at: iso(command.leaseExpiresAt),
    expires_at: iso(command.expiresAt),
    started_at: r?.startedAt ?? null,
    completed_at: r?.completedAt ?? iso(command.completedAt),
    reported_at: iso(r?.reportedAt ?? null),
    result: r && r.hasOutput
      ? {
        exit_code: r.exitCode,
        signal: r.signal,
        duration_secs: r.durationSecs,
        stdout: r.stdout,
        stderr: r.stderr,
        stdout_truncated_bytes: r.stdoutTruncatedBytes,
        stderr_truncated_bytes: r.stderrTruncatedBytes,
        ...(r.stdoutEncoding === "base64" ? { stdout_encoding: "base64" } : {}),
        ...(r.stderrEncoding === "base64" ? { stderr_encoding: "base64" } : {}),
      }
      : null,
    error: r?.error ?? dashboardReason(command),
  };
}

/**
 * A command as `GET /api/v1/commands?output=none` lists it: {@link commandView} with a `result`
 * of how it ended (`exit_code`, `signal`, `duration_secs`), without the output.
 *
 * @param command The stored command (read with or without its output).
 */
export function commandSummaryView(command: CommandRecord): Record<string, unknown> {
  const view = commandView(command);
  const r = command.result;
  return {
    ...view,
    result: r && r.hasOutput
      ? { exit_code: r.exitCode, signal: r.signal, duration_secs: r.durationSecs }
      : null,
  };
}

/**
 * Why the dashboard itself ended a command without a report (`lost`, `expired`, `cancelled`
 * when a cancel was requested and its lease ended with no report, and `cancelled` when its agent
 * was removed).
 *
 * @param command The command.
 * @returns The reason in words, or `null` for a command the dashboard did not end.
 */
export function dashboardReason(command: CommandRecord): string | null {
  if (command.endCause === "agent_removed" && command.result === null) {
    // A queued command's attempt is the next one (above the last delivered); a delivered or
    // running one's is the delivered one, and `ackedAt` tells running from delivered.
    const n = command.deliveredAttempt;
    const stage = command.attempt > n
      ? (n === 0
        ? "while it was queued; it never ran"
        : `while it was queued again after ${n} deliveries without a report`)
      : command.ackedAt === null
      ? `after attempt ${n} was delivered and before it was acked`
      : `while attempt ${n} was running; the agent was not told to stop it and can no longer ` +
        "report";
    return `agent ${command.agentId} was removed ${stage}`;
  }
  if (command.status === "expired") {
    const ttl = command.expiresAt === null
      ? ""
      : ` of ${Math.round((command.expiresAt - command.createdAt) / 1000)} s`;
    const target = `agent ${command.agentId}${
      command.deploymentHash === null ? "" : `, deployment ${command.deploymentHash}`
    }`;
    return command.deliveredAttempt === 0
      ? `no agent took it within its queue expiry${ttl} (${target}); it never ran`
      : `its queue expiry${ttl} passed while it was queued again after ${command.deliveredAttempt} ` +
        `deliveries without a report (${target})`;
  }
  if (command.status === "lost") {
    return `delivered ${command.deliveredAttempt} times without a report; the dashboard gave up`;
  }
  if (command.status === "cancelled" && command.cancelRequested && command.result === null) {
    return `cancel requested while attempt ${command.deliveredAttempt} was delivered; its lease ` +
      `ended without a report, so the dashboard ended it (the agent never confirmed it stopped)`;
  }
  return null;
}
