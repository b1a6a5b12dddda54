/**
 * A spy on the SQLite store's statements, for the tests that count how a run is read.
 *
 * @module
 */
import { type SQLInputValue, StatementSync } from "node:sqlite";

/** How many statements read a run's targets, and how many of them read command output. */
export interface TargetReads extends Disposable {
  reads: number;
  output: number;
}

/**
 * Counts, until disposed, the statements that read a run's targets (they join `run_targets` to
 * `commands`) and those of them that read output (`stdout`).
 */
export function countTargetReads(): TargetReads {
  const all = StatementSync.prototype.all;
  const counts: TargetReads = {
    reads: 0,
    output: 0,
    [Symbol.dispose]: () => {
      StatementSync.prototype.all = all;
    },
  };
  StatementSync.prototype.all = function (this: StatementSync, ...args: SQLInputValue[]) {
    if (/FROM run_targets t LEFT JOIN commands/.test(this.sourceSQL)) {
      counts.reads++;
      if (/stdout/.test(this.sourceSQL)) counts.output++;
    }
    return all.apply(this, args as Parameters<typeof all>);
  } as typeof all;
  return counts;
}
