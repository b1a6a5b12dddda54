/**
 * The rate control of fan-out runs, as pure functions over a {@link RunRecord}: every store
 * applies {@link planRun} inside its own transaction (so the decisions are the same everywhere),
 * and the dashboard derives a run's status and totals with {@link runStatus} and
 * {@link runTotals}.
 *
 * A target is, in order: **pending** (not started), **started** (its command is enqueued, or is
 * about to be), **final** (its command reached a final status) or **skipped** (never started:
 * too many errors, or the run was cancelled). A final command other than `success` is a failure.
 *
 * @module
 */
import { FINAL_STATUSES } from "../protocol/mod.ts";
import type { RunStatus } from "../protocol/runs.ts";
import type { RunRecord, RunTargetRecord } from "./types.ts";

/** The command id of a run's target: `<run id>:<agent id>`. */
export function runCommandId(runId: string, agentId: string): string {
  return `${runId}:${agentId}`;
}

/** Whether the target's part is over (skipped, or its command is final). */
export function targetFinal(target: RunTargetRecord): boolean {
  return target.skippedAt !== null ||
    (target.command !== null && FINAL_STATUSES.has(target.command.status));
}

/** Whether the target's command ended in a failure (any final status but `success`). */
export function targetFailed(target: RunTargetRecord): boolean {
  return target.command !== null && FINAL_STATUSES.has(target.command.status) &&
    target.command.status !== "success";
}

/** What one step of a run's rate control does. */
export interface RunPlan {
  /** Positions of targets to start now. */
  start: number[];
  /** Positions of targets never to start. */
  skip: number[];
  /** Whether every target is final after the step. */
  complete: boolean;
}

/**
 * Decides one step: while fewer than `maxConcurrency` targets are started and not final, start
 * the next pending ones (in position order); once failures exceed `maxErrors`, or the run is
 * cancelled, skip every pending one.
 *
 * @param run The run as stored now.
 */
export function planRun(run: RunRecord): RunPlan {
  const pending = run.targets.filter((t) => t.startedAt === null && t.skippedAt === null);
  const active = run.targets.filter((t) => t.startedAt !== null && !targetFinal(t)).length;
  const failures = run.targets.filter(targetFailed).length;
  const stop = run.cancelRequested || (run.maxErrors !== null && failures > run.maxErrors);
  const plan: RunPlan = { start: [], skip: [], complete: false };
  if (stop) {
    plan.skip = pending.map((t) => t.position);
  } else {
    const room = Math.max(0, run.maxConcurrency - active);
    plan.start = pending.slice(0, room).map((t) => t.position);
  }
  const done = new Set(plan.skip);
  plan.complete = plan.start.length === 0 &&
    run.targets.every((t) => done.has(t.position) || targetFinal(t));
  return plan;
}

/** The state of one target: `pending`, `skipped`, `starting` or its command's status. */
export function targetState(target: RunTargetRecord): string {
  if (target.skippedAt !== null) return "skipped";
  if (target.command !== null) return target.command.status;
  return target.startedAt === null ? "pending" : "starting";
}

/**
 * Counts the targets by state, plus `total`, `failed_total` (final but not `success`) and
 * `active` (started, not final).
 *
 * @param run The run.
 */
export function runTotals(run: RunRecord): Record<string, number> {
  const totals: Record<string, number> = { total: run.targets.length };
  let failed = 0;
  let active = 0;
  for (const target of run.targets) {
    const state = targetState(target);
    totals[state] = (totals[state] ?? 0) + 1;
    if (targetFailed(target)) failed++;
    if (target.startedAt !== null && !targetFinal(target)) active++;
  }
  totals.failed_total = failed;
  totals.active = active;
  return totals;
}

/**
 * Where a run stands: `running` (or `cancelling` after a cancel) until every target is final,
 * then `cancelled`, `succeeded` (every command `success`) or `failed`.
 *
 * @param run The run.
 */
export function runStatus(run: RunRecord): RunStatus {
  const over = run.targets.every(targetFinal);
  if (!over) return run.cancelRequested ? "cancelling" : "running";
  if (run.cancelRequested) return "cancelled";
  return run.targets.every((t) => t.command?.status === "success") ? "succeeded" : "failed";
}
