import assert from "node:assert/strict";
import type { CommandStatus } from "../../src/protocol/mod.ts";
import {
  type CommandRecord,
  type RunRecord,
  runStatus,
  type RunSummary,
  type RunTargetRecord,
  runTotals,
  targetState,
} from "../../src/store/mod.ts";
import { groupTargets, targetGroup } from "../../src/store/runs.ts";

/** A run of `targets` (skipped, started, command status), the rest of it left plain. */
function runOf(
  kinds: Array<[skipped: boolean, started: boolean, status: CommandStatus | null]>,
  cancelRequested = false,
): RunRecord {
  const targets: RunTargetRecord[] = kinds.map(([skipped, started, status], position) => ({
    position,
    agentId: `a${position}`,
    commandId: `r:a${position}`,
    offlineAtCreation: false,
    startedAt: started ? 1 : null,
    skippedAt: skipped ? 2 : null,
    command: status === null ? null : { id: `r:a${position}`, status } as CommandRecord,
  }));
  return {
    id: "r",
    name: "echo hi",
    params: {},
    target: { agents: targets.map((t) => t.agentId) },
    fingerprint: "fp",
    maxConcurrency: 1,
    maxConcurrencySpec: null,
    maxErrors: null,
    cancelRequested,
    seq: 1,
    createdAt: 0,
    completedAt: null,
    updatedAt: 0,
    targets,
  };
}

function summaryOf(run: RunRecord, shuffle: (n: number) => number): RunSummary {
  const { targets, ...fields } = run;
  const groups = groupTargets(targets);
  // Any order: a store need not sort them.
  for (let i = groups.length - 1; i > 0; i--) {
    const j = shuffle(i + 1);
    [groups[i], groups[j]] = [groups[j], groups[i]];
  }
  return { ...fields, groups };
}

Deno.test("a run's totals and status from its target groups are those from its targets", () => {
  const kinds: Array<[boolean, boolean, CommandStatus | null]> = [
    [false, false, null],
    [false, true, null],
    [true, false, null],
    [false, true, "queued"],
    [false, true, "delivered"],
    [false, true, "running"],
    [false, true, "success"],
    [false, true, "failed"],
    [false, true, "cancelled"],
    [false, true, "expired"],
  ];
  // A fixed pseudo-random sequence (no flakes): runs of 0 to 30 targets of any kinds.
  let seed = 7;
  const next = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const picked = Array.from({ length: next(31) }, () => kinds[next(round % 3 === 0 ? 4 : 10)]);
    const run = runOf(picked, round % 5 === 0);
    const summary = summaryOf(run, next);
    assert.equal(
      JSON.stringify(runTotals(summary)),
      JSON.stringify(runTotals(run)),
      JSON.stringify(picked),
    );
    assert.equal(runStatus(summary), runStatus(run), JSON.stringify(picked));
  }
});

Deno.test("totals name states in the order their first target comes", () => {
  const run = runOf([
    [false, true, "running"],
    [false, true, "failed"],
    [false, true, null],
    [false, true, "failed"],
    [true, false, null],
    [false, false, null],
  ]);
  const expected = JSON.stringify({
    total: 6,
    running: 1,
    failed: 2,
    starting: 1,
    skipped: 1,
    pending: 1,
    failed_total: 2,
    active: 2,
  });
  assert.equal(JSON.stringify(runTotals(run)), expected);
  assert.equal(JSON.stringify(runTotals(summaryOf(run, () => 0))), expected);
  assert.deepEqual(run.targets.map(targetState), [
    "running",
    "failed",
    "starting",
    "failed",
    "skipped",
    "pending",
  ]);
  assert.deepEqual(targetGroup(run.targets[3]), {
    skipped: false,
    started: true,
    status: "failed",
    count: 1,
    first: 3,
  });
  assert.equal(runStatus(run), "running");
});
