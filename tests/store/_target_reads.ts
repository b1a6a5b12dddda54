/**
 * A spy on the SQLite store's statements, for the tests that count how a run is read.
 *
 * @module
 */
import { type SQLInputValue, StatementSync } from "node:sqlite";

/**
 * How many statements read a run's targets, how many of them read command output, and how many
 * targets they read in all.
 */
export interface TargetReads extends Disposable {
  reads: number;
  output: number;
  targets: number;
}

/**
 * Counts, until disposed, the statements that read a run's targets (they join `run_targets` to
 * `commands`), those of them that read output (`stdout`), and the targets (rows) they read.
 */
export function countTargetReads(): TargetReads {
  const { all, get } = StatementSync.prototype;
  const counts: TargetReads = {
    reads: 0,
    output: 0,
    targets: 0,
    [Symbol.dispose]: () => {
      StatementSync.prototype.all = all;
      StatementSync.prototype.get = get;
    },
  };
  const counted = (statement: StatementSync, rows: number) => {
    if (/FROM run_targets t LEFT JOIN commands/.test(statement.sourceSQL)) {
      counts.reads++;
      counts.targets += rows;
      if (/stdout/.test(statement.sourceSQL)) counts.output++;
    }
  };
  StatementSync.prototype.all = function (this: StatementSync, ...args: SQLInputValue[]) {
    const rows = all.apply(this, args as Parameters<typeof all>);
    counted(this, rows.length);
    return rows;
  } as typeof all;
  StatementSync.prototype.get = function (this: StatementSync, ...args: SQLInputValue[]) {
    const row = get.apply(this, args as Parameters<typeof get>);
    counted(this, row === undefined ? 0 : 1);
    return row;
  } as typeof get;
  return counts;
}
