/**
 * The rate control of fan-out runs, as pure functions over a {@link RunState} (its targets'
 * commands as their status and cancel flag; a `RunRecord` is one): every store applies
 * {@link planRun} inside its own transaction (so the decisions are the same everywhere), and the
 * dashboard derives a run's status and totals with {@link runStatus} and
 * {@link runTotals}, from its targets or from their groups ({@link RunSummary}): what a target
 * counts as is decided once, for a {@link RunTargetGroup}, and a target is a group of one.
 *
 * A target is, in order: **pending** (not started), **started** (its command is enqueued, or is
 * about to be), **final** (its command reached a final status) or **skipped** (never started:
 * too many errors, or the run was cancelled). A final command other than `success` is a failure.
 *
 * @module
 */
import { FINAL_STATUSES } from "../protocol/mod.ts";
import type { RunStatus } from "../protocol/runs.ts";
import type { RunState, RunSummary, RunTargetGroup, RunTargetState } from "./types.ts";

/** What a target counts as: the fields of a {@link RunTargetGroup} the decisions read. */
type TargetKind = Pick<RunTargetGroup, "skipped" | "started" | "status">;

/** The command id of a run's target: `<run id>:<agent id>`. */
export function runCommandId(runId: string, agentId: string): string {
  return `${runId}:${agentId}`;
}

/**
 * The group of one target (a count of 1).
 *
 * @param target The target.
 */
export function targetGroup(target: RunTargetState): RunTargetGroup {
  return {
    skipped: target.skippedAt !== null,
    started: target.startedAt !== null,
    status: target.command?.status ?? null,
    count: 1,
    first: target.position,
  };
}

/**
 * Counts targets by group, in the order of their first target.
 *
 * @param targets Targets of one run, in position order.
 */
export function groupTargets(targets: readonly RunTargetState[]): RunTargetGroup[] {
  const groups = new Map<string, RunTargetGroup>();
  for (const target of targets) {
    const group = targetGroup(target);
    const key = `${group.skipped} ${group.started} ${group.status}`;
    const seen = groups.get(key);
    if (seen) seen.count++;
    else groups.set(key, group);
  }
  return [...groups.values()];
}

/** The run's targets by group, in the order of their first target. */
function groupsOf(run: RunState | RunSummary): RunTargetGroup[] {
  if ("targets" in run) return groupTargets(run.targets);
  return [...run.groups].sort((a, b) => a.first - b.first);
}

function kindFinal(kind: TargetKind): boolean {
  return kind.skipped || (kind.status !== null && FINAL_STATUSES.has(kind.status));
}

function kindFailed(kind: TargetKind): boolean {
  return kind.status !== null && FINAL_STATUSES.has(kind.status) && kind.status !== "success";
}

function kindState(kind: TargetKind): string {
  if (kind.skipped) return "skipped";
  if (kind.status !== null) return kind.status;
  return kind.started ? "starting" : "pending";
}

/** Whether the target's part is over (skipped, or its command is final). */
export function targetFinal(target: RunTargetState): boolean {
  return kindFinal(targetGroup(target));
}

/** Whether the target's command ended in a failure (any final status but `success`). */
export function targetFailed(target: RunTargetState): boolean {
  return kindFailed(targetGroup(target));
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
 * @param run The run as stored now (its targets' commands need only their status).
 */
export function planRun(run: RunState): RunPlan {
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
export function targetState(target: RunTargetState): string {
  return kindState(targetGroup(target));
}

/**
 * Counts the targets by state (in the order each state's first target comes), plus `total`,
 * `failed_total` (final but not `success`) and `active` (started, not final).
 *
 * @param run The run, with its targets or their groups.
 */
export function runTotals(run: RunState | RunSummary): Record<string, number> {
  const groups = groupsOf(run);
  const totals: Record<string, number> = { total: 0 };
  let failed = 0;
  let active = 0;
  for (const group of groups) {
    const state = kindState(group);
    totals.total += group.count;
    totals[state] = (totals[state] ?? 0) + group.count;
    if (kindFailed(group)) failed += group.count;
    if (group.started && !kindFinal(group)) active += group.count;
  }
  totals.failed_total = failed;
  totals.active = active;
  return totals;
}

/**
 * Where a run stands: `running` (or `cancelling` after a cancel) until every target is final,
 * then `cancelled`, `succeeded` (every command `success`) or `failed`.
 *
 * @param run The run, with its targets or their groups.
 */
export function runStatus(run: RunState | RunSummary): RunStatus {
  const groups = groupsOf(run);
  const over = groups.every(kindFinal);
  if (!over) return run.cancelRequested ? "cancelling" : "running";
  if (run.cancelRequested) return "cancelled";
  return groups.every((g) => g.status === "success") ? "succeeded" : "failed";
}
