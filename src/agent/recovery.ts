/**
 * Recovery after a restart: what the previous run left in the journal and the outbox is
 * finished before the first wait. A command that was running is stopped first (its cgroup or
 * process group), then reported: with how it ended when its exit was recorded, else
 * `interrupted` with what was found. Nothing is run twice.
 *
 * @module
 */
import type { ReportRequest } from "../protocol/mod.ts";
import type { LeftoverOutcome } from "../exec/mod.ts";
import { logger } from "../log/mod.ts";
import type { Executor } from "./executor.ts";
import type { JournalEntry } from "./journal.ts";
import type { AgentState } from "./state.ts";

const log = logger("agent");

const INTERRUPTED_ERROR =
  "the agent stopped while the command was running; it was not run again (at most once)";

/** The error of an `interrupted` report after a restart, by what was left of the command. */
const LEFTOVER_ERRORS: Readonly<Record<LeftoverOutcome | "unrecorded", string>> = {
  stopped: "the agent stopped while the command was running; it killed what was left of the " +
    "command (its watchdog at once, or the agent after its restart), which so did not finish, " +
    "and did not run it again (at most once)",
  ended: "the agent stopped while the command was running; the command ended on its own before " +
    "the agent restarted, and how it ended is unknown (its exit status and output were lost); " +
    "it was not run again (at most once)",
  unknown: "the agent stopped while the command was running; after its restart it could not " +
    "tell whether the command was still running (no permission to look) and did not run it " +
    "again (at most once)",
  rebooted: "the machine restarted while the command was running, which so did not finish; " +
    "the agent did not run it again (at most once)",
  unrecorded: "the agent stopped as the command was being started, before it recorded the " +
    "command's process; the command was not run again (at most once)",
};

/**
 * The report of a journaled command whose result is unknown: `interrupted`, not run again.
 *
 * @param entry The command's journal entry.
 * @param now The current time in ms.
 * @returns The report.
 */
export function interruptedReport(entry: JournalEntry, now: number): ReportRequest {
  return {
    command_id: entry.id,
    status: "interrupted",
    attempt: entry.attempt,
    result: null,
    error: INTERRUPTED_ERROR,
    started_at: entry.started_at,
    completed_at: new Date(now).toISOString(),
  };
}

/**
 * Finishes what the previous run left: every result it had is put in the outbox, every command
 * it left running is stopped and reported, and leftover processes are swept.
 *
 * @param state The journal and the outbox.
 * @param executor Stops and sweeps what commands left.
 * @param now The clock's current time.
 */
export async function recover(
  state: AgentState,
  executor: Executor,
  now: () => number,
): Promise<void> {
  const { journal, outbox } = state;
  for (const report of outbox.pending()) {
    const entry = journal.get(report.command_id);
    if (!entry || entry.state === "running") journal.complete(report.command_id, report);
  }
  for (const entry of journal.entries()) {
    if (entry.state === "running") {
      const report = await leftoverReport(entry, executor, now);
      outbox.put(report);
      journal.complete(entry.id, report);
    } else if (entry.state === "done" && !outbox.get(entry.id) && entry.summary) {
      outbox.put(entry.summary);
    }
  }
  const swept = await executor.sweep?.() ?? 0;
  if (swept > 0) {
    log.warning("processes left by the previous run were stopped", { cgroups: swept });
  }
  if (outbox.size > 0) {
    log.info("results pending from before the restart are sent first", {
      pending: outbox.size,
    });
  }
}

/** The report of a command the previous run left running, after stopping what is left. */
async function leftoverReport(
  entry: JournalEntry,
  executor: Executor,
  now: () => number,
): Promise<ReportRequest> {
  const props = { commandId: entry.id, commandName: entry.name };
  // Also after a recorded exit: the first process had ended, but what it started may still run
  // (the agent died before it stopped the rest).
  let found: LeftoverOutcome | "unrecorded" = "unrecorded";
  // What its limits did, read before the stop removes its cgroup: said as its report would have.
  let notes: string[] = [];
  if (entry.process && !entry.exit && executor.leftoverNotes) {
    try {
      notes = executor.leftoverNotes(entry.process);
    } catch (error) {
      log.warning("could not read what the command's limits did", { ...props, error });
    }
  }
  if (entry.process && executor.stopLeftover) {
    try {
      found = await executor.stopLeftover(entry.process);
    } catch (error) {
      log.error("could not stop what the command left running", { ...props, error });
      found = "unknown";
    }
  }
  if (entry.exit) {
    const exit = entry.exit;
    if (found === "stopped") {
      log.warning("processes the command left running after it ended were stopped", props);
    }
    log.warning("command had ended when the agent stopped; its recorded exit is reported", {
      ...props,
      status: exit.status,
    });
    const lost = "its output was lost: the agent stopped before recording it";
    return {
      command_id: entry.id,
      status: exit.status,
      attempt: entry.attempt,
      result: {
        exit_code: exit.exit_code,
        signal: exit.signal,
        duration_secs: exit.duration_secs,
        stdout: "",
        stderr: "",
        stdout_truncated_bytes: 0,
        stderr_truncated_bytes: 0,
      },
      error: exit.error ? `${exit.error}; ${lost}` : lost,
      started_at: exit.started_at,
      completed_at: exit.completed_at,
    };
  }
  log.warning("command was running when the agent stopped; it is reported interrupted", {
    ...props,
    found,
  });
  // A cgroup of the boot before is gone: nothing read names that command.
  if (found === "rebooted") notes = [];
  return {
    ...interruptedReport(entry, now()),
    error: [LEFTOVER_ERRORS[found], ...notes].join("; "),
  };
}
