/**
 * Fan-out runs on the dashboard: one command to a group of agents, rate-controlled here (not in
 * the CLI), as ordinary commands with the usual delivery guarantee.
 *
 * - `POST /api/v1/runs` resolves the target (agent ids, deployment, labels: all must match) once,
 *   records the agents it chose (and which were offline), and starts the first commands.
 * - {@link RunScheduler} keeps each open run going: a step (`CommandStore.stepRun`, one
 *   transaction) starts commands up to `max_concurrency` and skips the rest once more than
 *   `max_errors` failed; the step runs when one of the run's commands becomes final (a change of
 *   a command reads its status alone; a chunk of its live output reads nothing), and every
 *   `sweepMs` for every open run (after a restart, and for changes made by another dashboard
 *   instance). It reads each command's status, not its output: the whole run is read only for
 *   a caller that shows it, and the run's event streams are told to read it only when something
 *   in it changed. The commands have fixed ids (`<run id>:<agent id>`), so a step
 *   repeated after a crash enqueues nothing twice.
 * - `GET /api/v1/runs`, `GET /api/v1/runs/{id}`, `GET /api/v1/runs/{id}/events` (server-sent
 *   `status` events with the whole run, then `end`), `POST /api/v1/runs/{id}/cancel`.
 *
 * @module
 */
import type { Hono, MiddlewareHandler } from "hono";
import { createHash } from "node:crypto";
import { FINAL_STATUSES, shortForm, visibleText, withoutTerminalCodes } from "../protocol/mod.ts";
import {
  formatLabels,
  resolveConcurrency,
  RUN_ID_PATTERN,
  RUN_LIST_LIMIT,
  type RunAgentView,
  type RunRequest,
  runRequestSchema,
  type RunTarget,
  type RunView,
} from "../protocol/runs.ts";
import { auditLogger, logger } from "../log/mod.ts";
import {
  type AgentSummary,
  type CommandRecord,
  type CommandStore,
  runCommandId,
  type RunCommandState,
  type RunRecord,
  type RunState,
  runStatus,
  type RunSummary,
  type RunTargetRecord,
  type RunTargetState,
  runTotals,
  targetFailed,
  targetFinal,
  targetState,
} from "../store/mod.ts";
import { planRun } from "../store/runs.ts";
import { jsonBody, remoteOf } from "./auth/mod.ts";
import type { ServerEnv } from "./env.ts";
import { type Clock, monotonicNow, type TimerId } from "./clock.ts";
import type { CommandChange, CommandEvents } from "./events.ts";
import { HttpError } from "./http_error.ts";
import { queryError, refuseMistypedQuery } from "./query.ts";
import { assertPossibleId } from "./ids.ts";
import { enqueueAndWake } from "./enqueue.ts";
import { canonicalJson, enqueueFingerprint } from "./fingerprint.ts";
import type { RouteDeps } from "./route_deps.ts";
import { agentState } from "./routes_fleet.ts";
import { eventStreamResponse, type OpenStreams, streamPlace } from "./sse.ts";
import { dashboardReason } from "./views.ts";

const log = logger("server", "runs");
const audit = auditLogger();

/** How many unknown (or offline) agent ids of a target a message names. */
const SHOWN_UNKNOWN_AGENTS = 10;
/** Least pause of a run's event stream between two reads of the run, in ms. */
export const MIN_SNAPSHOT_PAUSE_MS = 100;
/** A run's event stream pauses this many times as long as its last read of the run took. */
export const READ_PAUSE_FACTOR = 4;
/**
 * A step of a run that nobody waits for (a command of it changed, the sweep) starts this many times
 * as long after the run's last step as that step took: a run of 10,000 agents reads 10,000 targets
 * a step, and its commands ending one after another would otherwise step it back to back, the
 * dashboard busy with nothing else. The changes of the pause are one step.
 */
export const STEP_PAUSE_FACTOR = 2;
/** Longest such pause, in ms. */
export const MAX_STEP_PAUSE_MS = 2000;
/**
 * How much larger than other bodies a run's may be, in bytes: its target may name 10,000 agent ids
 * of up to 128 characters (1.3 MB), beside a name and params that fit the usual limit.
 */
export const RUN_TARGET_BYTES = 2 * 1024 * 1024;
/** How many open runs a sweep steps together (the next ones once these are stepped). */
export const SWEEP_BATCH = 1000;
/** Most open runs a sweep reads the ids of. */
export const MAX_SWEPT_RUNS = 1_000_000;
/** How many unknown agent ids of a target the `404`'s `details.unknown_agents` lists. */
const MAX_DETAILED_UNKNOWN_AGENTS = 100;

/** Options of {@link RunScheduler}. */
export interface RunSchedulerOptions {
  /** The store (the observed one: its changes reach `events`). */
  store: CommandStore;
  /** The clock. */
  clock: Clock;
  /** Says when a command changed. */
  events: CommandEvents;
  /** Enqueues a started target's command (idempotent: its id is fixed). */
  enqueue(run: RunState, target: RunTargetState): Promise<void>;
  /** Called after a running command's cancel was recorded (wakes its agent's cancel-wait). */
  cancelRequested?(commandId: string): void;
  /**
   * How often every open run is stepped, in ms; 0: never (tests step by hand).
   * @default {5000}
   */
  sweepMs?: number;
  /**
   * Told of a sweep's failure (the dashboard's store health hears of it, as of a request's).
   * @default {logs a warning}
   */
  onError?: (error: unknown) => void;
}

interface RunQueue {
  /** The last queued operation; the next one runs after it. */
  tail: Promise<unknown>;
  /**
   * A step queued and not begun yet: later requests share it. `full`: one of them wants the run
   * after it (read then, with every target's command and output).
   */
  pending: { step: Promise<RunRecord | null>; full: boolean; hurry?: () => void } | null;
  /** When the next step nobody waits for may start (the clock's monotonic ms): see {@link STEP_PAUSE_FACTOR}. */
  notBefore: number;
  /**
   * The run as its listeners were last told of it (the scheduler's own copy: a command's change
   * is written into it), or `null`: they are told of the next step whatever it finds.
   */
  told: RunState | null;
  /**
   * A cancel of the run is queued: a step under way enqueues no more of its parts (the cancel's
   * own step enqueues them without handing them to their agents, and cancels them).
   */
  cancelling: boolean;
}

/** A read under way of a changed command's status: `again` when it changed since it began. */
interface CommandCheck {
  again: boolean;
}

/**
 * Keeps open runs going: steps them when their commands change and on a timer, one operation at
 * a time per run.
 */
export class RunScheduler {
  readonly #options: RunSchedulerOptions;
  readonly #states = new Map<string, RunQueue>();
  /** Command id → unsubscribe, for started commands that are not final. */
  readonly #watched = new Map<string, () => void>();
  /** Command id → its status read under way (changes meanwhile make one more read, not one each). */
  readonly #checks = new Map<string, CommandCheck>();
  readonly #listeners = new Map<string, Set<() => void>>();
  #timer: TimerId | undefined;
  #closed = false;

  /**
   * Creates the scheduler; {@link RunScheduler.start} begins the sweeps.
   *
   * @param options Store, clock, events and the enqueue.
   */
  constructor(options: RunSchedulerOptions) {
    this.#options = options;
  }

  /**
   * Steps every open run once (a restarted dashboard picks its runs up), then every `sweepMs`,
   * also when this first sweep failed (it rejects with its failure).
   */
  async start(): Promise<void> {
    const every = this.#options.sweepMs ?? 5000;
    const { clock } = this.#options;
    const onError = this.#options.onError ??
      ((error: unknown) => log.warning("run sweep failed: {error}", { error }));
    const arm = () => {
      this.#timer = clock.setTimeout(() => {
        if (this.#closed) return;
        arm();
        this.sweep().catch(onError);
      }, every);
    };
    try {
      await this.sweep();
    } finally {
      // A store that failed at the first sweep left the open runs unswept for good.
      if (every > 0 && !this.#closed) arm();
    }
  }

  /**
   * Steps every open run once, {@link SWEEP_BATCH} runs at a time. Every one: the sweep read the
   * newest 10,000, and after a restart an older open run was never stepped again (nothing
   * watched its commands), its agents' parts never started.
   */
  async sweep(): Promise<void> {
    if (this.#closed) return;
    // The ids alone: each step reads its run (listing the runs read every target of each, with
    // its command and output, only to be read again by the step).
    const open = await this.#options.store.listOpenRunIds(MAX_SWEPT_RUNS);
    if (open.length === MAX_SWEPT_RUNS) {
      log.warning("{count} runs are open; the sweep steps the newest {count} of them", {
        count: MAX_SWEPT_RUNS,
      });
    }
    for (let at = 0; at < open.length && !this.#closed; at += SWEEP_BATCH) {
      // Nobody shows these runs: the steps read no command output.
      await Promise.all(open.slice(at, at + SWEEP_BATCH).map((id) => this.#advance(id, false)));
    }
  }

  /**
   * Steps the run (starts and skips what the rate control says, enqueues started commands).
   * Requests made while a step is queued share it.
   *
   * @param runId The run.
   * @returns The run after the step, or `null` when it does not exist.
   */
  advance(runId: string): Promise<RunRecord | null> {
    return this.#advance(runId, true);
  }

  /**
   * Queues a step of the run, or shares the one queued.
   *
   * @param full Whether the caller wants the run after the step (else the answer is `null`).
   */
  #advance(runId: string, full: boolean): Promise<RunRecord | null> {
    const state = this.#state(runId);
    if (state.pending) {
      state.pending.full ||= full;
      // A caller waits for the run: the step does not pause any longer.
      if (full) state.pending.hurry?.();
      return state.pending.step;
    }
    const pending: NonNullable<RunQueue["pending"]> = {
      full,
      step: state.tail.then(async () => {
        if (!pending.full) await this.#pause(state, pending);
        state.pending = null;
        // A cancel is queued after this step: a step that would start parts (only for the cancel
        // to stop them: cancelled, failures, instead of skipped) is left to the cancel's own. One
        // that starts nothing goes on: it may end the run, which the cancel then finds ended.
        if (state.cancelling && await this.#wouldStart(runId)) {
          return pending.full ? await this.#options.store.getRun(runId) : null;
        }
        const { clock } = this.#options;
        // On the monotonic clock: a wall clock set back an hour must not hold the next step
        // for that hour.
        const began = monotonicNow(clock);
        try {
          return await this.#step(runId, pending.full);
        } finally {
          const ended = monotonicNow(clock);
          state.notBefore = ended +
            Math.min(MAX_STEP_PAUSE_MS, (ended - began) * STEP_PAUSE_FACTOR);
        }
      }),
    };
    state.pending = pending;
    state.tail = pending.step.catch(() => undefined);
    return pending.step;
  }

  /**
   * Cancels the run: nothing more starts, queued commands are cancelled, running ones are asked
   * to stop.
   *
   * @param runId The run.
   * @returns `not_found`, `final` (it had ended) or `cancelled` with the run after the cancel.
   */
  cancel(runId: string): Promise<
    { outcome: "cancelled" | "final"; run: RunRecord } | { outcome: "not_found" }
  > {
    const state = this.#state(runId);
    state.cancelling = true;
    // The step queued before the cancel does not pause: the operator waits.
    state.pending?.hurry?.();
    const job = state.tail.then(async () => {
      let outcome;
      try {
        outcome = await this.#options.store.cancelRun(runId, this.#options.clock.now());
      } finally {
        // Recorded (or nothing to cancel, or failed): the steps from now on read the run's own.
        state.cancelling = false;
      }
      if (outcome.outcome === "not_found") {
        // Nothing to keep for it (unless more is queued).
        if (state.tail === tail) this.#forget(runId, state);
        return outcome;
      }
      if (outcome.outcome === "final") {
        // The run had ended, or ended now (every part had, before a step said so): its listeners
        // hear of it and its commands are no longer followed, as after the step that ends it.
        await this.#step(runId, false);
        return outcome;
      }
      const run = await this.#step(runId, true);
      return { outcome: "cancelled" as const, run: run ?? outcome.run };
    });
    const tail = job.catch(() => undefined);
    state.tail = tail;
    return job;
  }

  /**
   * @internal How many runs the scheduler keeps a queue of operations for (the open ones and
   * those with an operation under way), for tests.
   */
  get trackedRuns(): number {
    return this.#states.size;
  }

  /**
   * @internal Listeners of runs open now (each a follower's event stream), over all runs, for
   * tests.
   */
  get subscribers(): number {
    let n = 0;
    for (const set of this.#listeners.values()) n += set.size;
    return n;
  }

  /**
   * Calls `listener` whenever the run or one of its commands changes: something started, was
   * skipped or ended, a command's status or cancel flag changed, the run was cancelled or ended
   * (not when a command's live output grew, nor at a step that changed nothing).
   *
   * @param runId The run.
   * @param listener Reads the store itself.
   * @returns Unsubscribes.
   */
  subscribe(runId: string, listener: () => void): () => void {
    let set = this.#listeners.get(runId);
    if (!set) this.#listeners.set(runId, set = new Set());
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(runId) === set) this.#listeners.delete(runId);
    };
  }

  /** Stops the sweeps and the command subscriptions; run streams end. */
  close(): void {
    this.#closed = true;
    this.#options.clock.clearTimeout(this.#timer);
    for (const state of this.#states.values()) state.pending?.hurry?.();
    for (const unsubscribe of this.#watched.values()) unsubscribe();
    this.#watched.clear();
    for (const set of [...this.#listeners.values()]) for (const listener of [...set]) listener();
  }

  /** Whether {@link RunScheduler.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #state(runId: string): RunQueue {
    let state = this.#states.get(runId);
    if (!state) {
      this.#states.set(
        runId,
        state = {
          tail: Promise.resolve(),
          pending: null,
          told: null,
          notBefore: 0,
          cancelling: false,
        },
      );
    }
    return state;
  }

  /** Whether a step of the run now would start one of its parts. */
  async #wouldStart(runId: string): Promise<boolean> {
    const run = await this.#options.store.getRunState(runId);
    return run !== null && run.completedAt === null && planRun(run).start.length > 0;
  }

  /** Waits until the run's next step may start, or until a caller wants the run at once. */
  #pause(state: RunQueue, pending: NonNullable<RunQueue["pending"]>): Promise<void> {
    const { clock } = this.#options;
    const wait = state.notBefore - monotonicNow(clock);
    if (wait <= 0 || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = clock.setTimeout(() => {
        pending.hurry = undefined;
        resolve();
      }, wait);
      pending.hurry = () => {
        pending.hurry = undefined;
        clock.clearTimeout(timer);
        resolve();
      };
    });
  }

  #notify(runId: string): void {
    for (const listener of [...this.#listeners.get(runId) ?? []]) {
      try {
        listener();
      } catch (error) {
        log.warning("a run listener failed: {error}", { error });
      }
    }
  }

  /**
   * Steps the run: its decisions read each command's status, not its output.
   *
   * @param full Whether to answer the run after the step, read with every target's command and
   *   the start of its output (only a caller that shows it needs it; a sweep does not).
   * @returns The run after the step when `full`, `null` when not or when it does not exist.
   */
  async #step(runId: string, full: boolean): Promise<RunRecord | null> {
    const { store, clock } = this.#options;
    const outcome = await store.stepRun(runId, clock.now());
    if (!outcome) {
      const state = this.#states.get(runId);
      if (state) this.#forget(runId, state);
      return null;
    }
    let run = outcome.run;
    for (const target of outcome.toEnqueue) {
      // A cancel came meanwhile (a run of 10,000 agents takes a while to enqueue): the rest are
      // its step's, which does not hand them to their agents.
      if (!run.cancelRequested && this.#states.get(runId)?.cancelling) break;
      // A failed enqueue is tried again by the next step (the sweep at the latest).
      await this.#options.enqueue(run, target);
    }
    if (outcome.toEnqueue.length > 0) run = (await store.getRunState(runId)) ?? run;
    if (run.cancelRequested) {
      // After the enqueue: a target started before the cancel and enqueued only now (its enqueue
      // failed, or the dashboard died before it) is cancelled too.
      const cancelled = await this.#cancelCommands(run);
      if (cancelled || (run.completedAt === null && run.targets.every(targetFinal))) {
        // Queued commands are final once cancelled, and parts enqueued after the cancel were
        // stored cancelled: the run may have ended with them, and says so now (its
        // `completed_at`), not at a later step.
        run = (await store.stepRun(runId, clock.now()))?.run ?? run;
      }
    }
    // Read before the listeners hear of the step, as the step's own run was.
    const shown = full ? await store.getRun(runId) : null;
    this.#watch(run);
    // Listeners read the whole run again: only when the step found it changed (most steps, the
    // sweep's of every open run, change nothing).
    const state = this.#states.get(runId);
    if (!state || !sameRunState(state.told, run)) {
      if (state) state.told = run;
      this.#notify(runId);
    }
    if (run.completedAt !== null && state) this.#forget(runId, state);
    return shown;
  }

  /** Drops the run's operation queue unless a step is queued on it. */
  #forget(runId: string, state: RunQueue): void {
    if (this.#states.get(runId) === state && state.pending === null) this.#states.delete(runId);
  }

  /** Cancels the run's commands not final; returns whether one of them became final. */
  async #cancelCommands(run: RunState): Promise<boolean> {
    let ended = false;
    for (const target of run.targets) {
      const command = target.command;
      if (!command || FINAL_STATUSES.has(command.status)) continue;
      // Asked to stop already, unless queued again since (a delivery undone): no wait takes a
      // cancelled run's part, which the cancel ends now.
      if (command.cancelRequested && command.status !== "queued") continue;
      // The command's id is the target's (`<run id>:<agent id>`).
      const id = target.commandId;
      const outcome = await this.#options.store.cancel(id, this.#options.clock.now());
      if (outcome.outcome === "requested") this.#options.cancelRequested?.(id);
      if (outcome.outcome === "cancelled") ended = true;
    }
    return ended;
  }

  /** Follows the run's started, unfinished commands; forgets the others. */
  #watch(run: RunState): void {
    for (const target of run.targets) {
      const follow = !this.#closed && target.startedAt !== null && !targetFinal(target);
      const current = this.#watched.get(target.commandId);
      if (follow && !current) {
        const { position, commandId } = target;
        const unsubscribe = this.#options.events.subscribe(
          commandId,
          (change) => this.#commandChanged(run.id, position, commandId, change),
        );
        this.#watched.set(target.commandId, unsubscribe);
      } else if (!follow && current) {
        current();
        this.#watched.delete(target.commandId);
      }
    }
  }

  #commandChanged(
    runId: string,
    position: number,
    commandId: string,
    change: CommandChange,
  ): void {
    // A chunk of live output: the command's status and result, all a run shows of it, are as
    // they were.
    if (change === "output") return;
    const under = this.#checks.get(commandId);
    if (under) {
      // Read again once the read under way is done: a burst of changes is one or two reads.
      under.again = true;
      return;
    }
    const check: CommandCheck = { again: true };
    this.#checks.set(commandId, check);
    this.#check(runId, position, commandId, check)
      .catch((error) =>
        log.warning("run {runId}: a change of {commandId} was not followed: {error}", {
          runId,
          commandId,
          error,
        })
      )
      .finally(() => this.#checks.delete(commandId));
  }

  /**
   * Reads a changed command's status (not its result and output) until it stops changing: a
   * final one steps its run, another one tells the run's listeners when it is not what they
   * were told.
   */
  async #check(
    runId: string,
    position: number,
    commandId: string,
    check: CommandCheck,
  ): Promise<void> {
    // Changes of the same tick (another process's commit: every command) share the read.
    await Promise.resolve();
    while (check.again && !this.#closed) {
      check.again = false;
      const command = await this.#options.store.getCommandState(commandId);
      if (!command || this.#closed) return;
      if (FINAL_STATUSES.has(command.status)) {
        // The step tells the listeners (the command's status is not what they were told).
        this.#advance(runId, false).catch((error) =>
          log.warning("run {runId} step failed: {error}", { runId, error })
        );
        continue;
      }
      const told = this.#states.get(runId)?.told?.targets[position];
      if (told?.commandId === commandId && sameCommandState(told.command, command)) continue;
      if (told?.commandId === commandId) told.command = command;
      this.#notify(runId);
    }
  }
}

/** Whether a target's command reads the same in both (status, cancel flag, last change). */
function sameCommandState(a: RunCommandState | null, b: RunCommandState | null): boolean {
  if (a === null || b === null) return a === b;
  return a.status === b.status && a.cancelRequested === b.cancelRequested &&
    a.updatedAt === b.updatedAt;
}

/**
 * Whether a run reads the same in both: its cancel and completion, and each target's start, skip
 * and command. `a` `null`: no.
 */
function sameRunState(a: RunState | null, b: RunState): boolean {
  if (a === null || a.targets.length !== b.targets.length) return false;
  if (
    a.cancelRequested !== b.cancelRequested || a.completedAt !== b.completedAt ||
    a.updatedAt !== b.updatedAt
  ) return false;
  return a.targets.every((t, i) => {
    const u = b.targets[i];
    return t.commandId === u.commandId && t.startedAt === u.startedAt &&
      t.skippedAt === u.skippedAt && sameCommandState(t.command, u.command);
  });
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The first non-empty line of a command's output (standard output, else standard error),
 * at most 200 characters, without terminal sequences (colours: `ESC [ 31 m`), other control
 * characters as spaces; `(binary output)` for output that is not UTF-8. A run's target holds only
 * the start of its output (`RunTargetRecord.command`).
 *
 * @param command The command, or `null`.
 */
export function firstLine(command: CommandRecord | null): string | null {
  const result = command?.result;
  if (!result) return null;
  const streams = [
    [result.stdout, result.stdoutEncoding],
    [result.stderr, result.stderrEncoding],
  ] as const;
  for (const [text, encoding] of streams) {
    if (encoding === "base64" && text) return "(binary output)";
    const line = text?.split("\n")
      .map((l) => withoutTerminalCodes(l).replace(/\p{Cc}/gu, " ").trim())
      .find((l) => l !== "");
    if (line) return line.length > 200 ? `${line.slice(0, 199)}…` : line;
  }
  return null;
}

/**
 * A run as the operator API shows it.
 *
 * @param run The stored run.
 * @param withAgents Include the per-agent entries (the list leaves them out).
 */
export function runView(run: RunRecord, withAgents = true): RunView {
  const view: RunView = { ...runSummaryView(run), agents: [] };
  if (withAgents) {
    const reasons = skipReasons(run);
    view.agents = run.targets.map((target) => targetView(target, reasons));
  }
  return view;
}

/**
 * A run as the list of runs shows it: {@link runView} without the per-agent entries, from the
 * run's targets or from their groups.
 *
 * @param run The stored run, or its summary.
 */
export function runSummaryView(run: RunRecord | RunSummary): Omit<RunView, "agents"> {
  return {
    id: run.id,
    name: run.name,
    params: run.params,
    target: run.target,
    max_concurrency_spec: run.maxConcurrencySpec,
    max_concurrency: run.maxConcurrency,
    max_errors: run.maxErrors,
    status: runStatus(run),
    cancel_requested: run.cancelRequested,
    created_at: iso(run.createdAt) as string,
    completed_at: iso(run.completedAt),
    totals: runTotals(run),
  };
}

/**
 * Why a run's targets were skipped: a step skips every target not started at once, because more
 * than `max_errors` commands had failed, or because the run was cancelled (its cancel skips them,
 * then cancels its commands: those failures come at or after the skip).
 *
 * @param run The run.
 * @returns The sentence of a skipped target (worked out once per step, not once per target).
 */
function skipReasons(run: RunRecord): (target: RunTargetRecord) => string {
  const failures = run.targets.filter(targetFailed).map((t) => ({
    at: t.command?.completedAt ?? t.command?.updatedAt ?? Infinity,
    cancelled: t.command?.status === "cancelled",
  }));
  const reasons = new Map<number, string>();
  return (target) => {
    const at = target.skippedAt ?? Infinity;
    let reason = reasons.get(at);
    if (reason === undefined) {
      const before = failures.filter((f) =>
        f.at < at || (f.at === at && !(run.cancelRequested && f.cancelled))
      ).length;
      if (run.cancelRequested && (run.maxErrors === null || before <= run.maxErrors)) {
        reason = "not started: the run was cancelled";
      } else {
        // Not cancelled: the failures stopped it (all of them counted when another instance's
        // clock put them after the skip).
        const failed = before > (run.maxErrors ?? 0) ? before : failures.length;
        reason = `not started: ${failed} of the run's commands failed, max_errors is ` +
          `${run.maxErrors}`;
      }
      reasons.set(at, reason);
    }
    return reason;
  };
}

function targetView(
  target: RunTargetRecord,
  skipReason: (target: RunTargetRecord) => string,
): RunAgentView {
  const command = target.command;
  const result = command?.result ?? null;
  const skipped = target.skippedAt !== null ? skipReason(target) : null;
  return {
    agent_id: target.agentId,
    command_id: target.commandId,
    state: targetState(target),
    offline_at_creation: target.offlineAtCreation,
    exit_code: result?.exitCode ?? null,
    duration_secs: result?.durationSecs ?? null,
    started_at: iso(target.startedAt),
    run_started_at: result?.startedAt ?? null,
    run_completed_at: result?.completedAt ?? null,
    first_line: firstLine(command),
    error: result?.error ?? (command ? dashboardReason(command) : skipped),
  };
}

/**
 * What offline agents do to a run that starts its parts a few at a time: each holds one of its
 * places until its command's queue expiry, and an operator reading only "their commands wait"
 * did not see a run of 100 offline agents, one at a time, take 100 hours.
 *
 * @param offline How many chosen agents are offline.
 * @param maxConcurrency The run's resolved `max_concurrency`.
 * @param targets How many agents the run has.
 * @param ttlSecs The commands' queue expiry, in seconds.
 * @returns The end of the offline warning's sentence ("" when all start at once).
 */
function holdUp(offline: number, maxConcurrency: number, targets: number, ttlSecs: number): string {
  if (maxConcurrency >= targets) return "";
  const rounds = Math.ceil(offline / maxConcurrency);
  return `; meanwhile each holds one of the run's ${maxConcurrency} place(s) (max_concurrency), ` +
    `so they alone may keep the run going ${rounds} × the ${ttlSecs} s queue expiry (` +
    `${formatHours(rounds * ttlSecs)}); a shorter --ttl (params.ttl_secs) or max_errors ends ` +
    `it sooner`;
}

function formatHours(secs: number): string {
  if (secs < 3600) return `${Math.ceil(secs / 60)} min`;
  const hours = secs / 3600;
  return `${Number.isInteger(hours) ? hours : hours.toFixed(1)} h`;
}

/**
 * Which of the agents a target names, in id order: every given part must match.
 *
 * @param agents The fleet.
 * @param target The target.
 * @returns The matching agents, and the named agent ids that are not registered.
 */
export function matchTarget(
  agents: readonly AgentSummary[],
  target: RunTarget,
): { matched: AgentSummary[]; unknown: string[] } {
  const named = target.agents ? new Set(target.agents) : null;
  // A set: 10,000 ids looked up one by one in a fleet of 10,000 blocked the dashboard for a second.
  const registered = new Set(agents.map((agent) => agent.id));
  const unknown = named ? [...named].filter((id) => !registered.has(id)) : [];
  const matched = agents.filter((agent) =>
    (named === null || named.has(agent.id)) &&
    (target.deployment === undefined || agent.deploymentHash === target.deployment) &&
    Object.entries(target.labels ?? {}).every(([key, value]) => agent.labels[key] === value)
  );
  return { matched, unknown };
}

/** Describes a target in words, for errors and logs. */
export function describeTarget(target: RunTarget): string {
  const parts: string[] = [];
  if (target.agents) parts.push(`agents ${target.agents.join(", ")}`);
  if (target.deployment !== undefined) parts.push(`deployment ${target.deployment}`);
  if (target.labels && Object.keys(target.labels).length > 0) {
    parts.push(`labels ${formatLabels(target.labels)}`);
  }
  return parts.join(" and ");
}

/**
 * Digest of a run request (name, params, target, limits): re-posting an id with the same digest
 * is a duplicate. The target's agent ids count as a set (the run chooses its agents in id order,
 * one given twice once): `["b", "a", "a"]` is the same target as `["a", "b"]`.
 *
 * @param request The request.
 */
export function runFingerprint(request: RunRequest): string {
  const agents = request.target.agents;
  const target = agents === undefined
    ? request.target
    : { ...request.target, agents: [...new Set(agents)].sort() };
  return digestOf({ ...request, target });
}

/**
 * The digest {@link runFingerprint} was before it took the agent ids as a set (as given, in
 * order): a run stored then still answers its own body as a duplicate.
 *
 * @param request The request.
 */
function legacyRunFingerprint(request: RunRequest): string {
  return digestOf(request);
}

function digestOf(request: RunRequest): string {
  const canonical = canonicalJson({
    name: request.name,
    params: request.params ?? {},
    target: request.target,
    max_concurrency: request.max_concurrency ?? null,
    max_errors: request.max_errors ?? null,
  });
  return createHash("sha256").update(canonical).digest("hex");
}

/**
 * Enqueues a run target's command as the operator enqueue does: a matching open wait of the
 * agent is answered in the same transaction.
 *
 * @param deps The shared parts.
 * @param run The run.
 * @param target The started target.
 */
export async function enqueueRunCommand(
  deps: Pick<
    RouteDeps,
    "store" | "clock" | "hub" | "leases" | "deliveryLeaseMs" | "queueTtlSecs"
  >,
  run: RunState,
  target: RunTargetState,
): Promise<void> {
  const now = deps.clock.now();
  const command = {
    id: target.commandId,
    agentId: target.agentId,
    name: run.name,
    params: run.params,
    fingerprint: enqueueFingerprint(target.agentId, { name: run.name, params: run.params }),
    now,
    expiresAt: now + (run.params.ttl_secs ?? deps.queueTtlSecs) * 1000,
  };
  // A part started before the run's cancel and enqueued only after it is stored cancelled by the
  // store, which reads the run's cancel in the enqueue's transaction (also when the cancel came
  // through another instance after this step read the run): no wait of its agent is woken for it.
  const outcome = run.cancelRequested
    ? await deps.store.enqueue(command)
    : await enqueueAndWake(deps, command);
  if (outcome.outcome === "conflict") {
    log.error(
      "run {runId}: command id {commandId} is taken by another command; the run follows that one",
      { runId: run.id, commandId: target.commandId },
    );
  } else if (outcome.outcome === "created") {
    audit.info("command enqueued {commandId} for {agentId}", {
      commandId: target.commandId,
      agentId: target.agentId,
      via: "run",
      runId: run.id,
    });
    // The agent was removed after the run was created: nobody can take its part, which ends as
    // the removal would have ended it. (A removal from now on ends it itself.)
    if ((await deps.store.getAgent(target.agentId)) === null) {
      await deps.store.endCommandsOfRemovedAgent(target.agentId, deps.clock.now());
    }
  }
}

/** Options of {@link runRoutes}. */
export interface RunRouteOptions {
  /** Operator authentication. */
  auth: MiddlewareHandler<ServerEnv>;
  /** The scheduler. */
  scheduler: RunScheduler;
  /** An agent not waiting and not seen for this long is offline, in ms. */
  offlineAfterMs: number;
  /**
   * Interval of keep-alive comments on run event streams, in ms.
   * @default {15000}
   */
  keepAliveMs?: number;
  /** The dashboard's open event streams (a stream beyond their limit is `429`). */
  streams?: OpenStreams;
}

/**
 * Registers the runs API.
 *
 * @param app The Hono app.
 * @param deps The shared parts.
 * @param options Auth, scheduler and the offline window.
 */
export function runRoutes(app: Hono<ServerEnv>, deps: RouteDeps, options: RunRouteOptions): void {
  const { store, clock, hub } = deps;
  const { auth, scheduler } = options;
  const keepAliveMs = options.keepAliveMs ?? 15_000;

  app.post(
    "/api/v1/runs",
    auth,
    jsonBody(runRequestSchema, { maxBodyBytes: deps.maxBodyBytes + RUN_TARGET_BYTES }),
    async function createRunRoute(c) {
      const request = c.get("body") as RunRequest;
      const id = request.id ?? crypto.randomUUID();
      const fingerprint = runFingerprint(request);
      const existing = await store.getRun(id);
      if (existing) return answerExisting(existing, fingerprint);
      const agents = await store.listAgents();
      const { matched, unknown } = matchTarget(agents, request.target);
      if (unknown.length > 0) {
        // Named in full up to a point: a target may list 10,000 ids.
        const named = unknown.slice(0, SHOWN_UNKNOWN_AGENTS).join(", ");
        const more = unknown.length > SHOWN_UNKNOWN_AGENTS
          ? ` and ${unknown.length - SHOWN_UNKNOWN_AGENTS} more`
          : "";
        throw new HttpError(404, `agents not registered: ${named}${more}`, {
          details: {
            unknown_agents: unknown.slice(0, MAX_DETAILED_UNKNOWN_AGENTS),
            unknown_count: unknown.length,
          },
        });
      }
      if (matched.length === 0) {
        throw new HttpError(
          404,
          `no agent matches the target (${shortForm(describeTarget(request.target))}); ` +
            `${agents.length} agent(s) registered; see "status agents" for their deployments ` +
            `and labels`,
          {
            details: {
              // The target as given, its deployment (the one free text in it) as the message
              // shows it: a bidirectional override or a control character as an escape.
              target: request.target.deployment === undefined
                ? request.target
                : { ...request.target, deployment: visibleText(request.target.deployment) },
              registered_agents: agents.length,
            },
          },
        );
      }
      // Each part's command is `<run id>:<agent id>`, enqueued with that fixed id: a command of
      // that id made outside a run (an operator's enqueue, for any agent; an agent's own) would
      // stand in for the part, which would then follow it and never get the run's command.
      const taken = await store.existingCommandIds(
        matched.map((agent) => runCommandId(id, agent.id)),
      );
      if (taken.length > 0) {
        // The same run posted twice at once (a double click): the other one made them.
        const made = await store.getRun(id);
        if (made) return answerExisting(made, fingerprint);
        const more = taken.length > 1 ? ` and ${taken.length - 1} more` : "";
        throw new HttpError(
          409,
          `run id ${id} cannot be used: command ${taken[0]}${more} already exists, enqueued ` +
            `outside a run, and a run's command for agent ${taken[0].slice(id.length + 1)} ` +
            `takes that id; use another run id`,
          { details: { existing_command_ids: taken.slice(0, MAX_DETAILED_UNKNOWN_AGENTS) } },
        );
      }
      const now = clock.now();
      const params = { ...request.params };
      if (request.target.deployment !== undefined && params.deployment_hash === undefined) {
        params.deployment_hash = request.target.deployment;
      }
      const offline = matched.filter((agent) => {
        const seen = deps.lastSeen(agent.id, agent.lastSeenAt);
        return agentState(hub.isWaiting(agent.id), seen, now, options.offlineAfterMs) ===
          "offline";
      }).map((agent) => agent.id);
      const offlineSet = new Set(offline);
      const maxConcurrency = request.max_concurrency === undefined
        ? matched.length
        : resolveConcurrency(request.max_concurrency, matched.length);
      // Chosen agents online but waiting for another deployment than the one the commands name
      // (`params.deployment_hash` with no target deployment): as an enqueue warns of one.
      const hash = params.deployment_hash;
      const elsewhere = hash === undefined ? [] : matched.filter((agent) => {
        if (offlineSet.has(agent.id)) return false;
        const waiting = deps.waitingHashes(agent.id);
        if (waiting.length > 0) return !waiting.includes(hash);
        // Waiting on another dashboard instance (a shared store): its last heartbeat says.
        const latest = deps.lastWaitHash?.(agent.id) ?? agent.deploymentHash ?? undefined;
        return latest !== undefined && latest !== hash;
      }).map((agent) => agent.id);
      const outcome = await store.createRun({
        id,
        name: request.name,
        params,
        target: request.target,
        fingerprint,
        maxConcurrency,
        maxConcurrencySpec: request.max_concurrency ?? null,
        maxErrors: request.max_errors ?? null,
        targets: matched.map((agent) => ({
          agentId: agent.id,
          commandId: runCommandId(id, agent.id),
          offlineAtCreation: offlineSet.has(agent.id),
        })),
        now,
      });
      if (outcome.outcome !== "created") return answerExisting(outcome.run, fingerprint);
      audit.info("run {runId} created for {count} agents ({target})", {
        runId: id,
        count: matched.length,
        target: describeTarget(request.target),
        offline,
        remote: remoteOf(c),
      });
      // The run is stored: a failed first step is tried again by the sweep.
      const run = (await scheduler.advance(id).catch((error) => {
        log.warning("run {runId}: first step failed, the sweep tries again: {error}", {
          runId: id,
          error,
        });
        return null;
      })) ?? outcome.run;
      // Named in full up to a point, as unknown agents are: `offline` lists them all.
      const more = offline.length > SHOWN_UNKNOWN_AGENTS
        ? ` and ${offline.length - SHOWN_UNKNOWN_AGENTS} more (all in "offline")`
        : "";
      const warnings = offline.length === 0 ? [] : [
        `${offline.length} agent(s) offline: ` +
        `${offline.slice(0, SHOWN_UNKNOWN_AGENTS).join(", ")}${more}; their commands wait in the ` +
        `queue until the agent comes back or the command's queue expiry${
          holdUp(
            offline.length,
            maxConcurrency,
            matched.length,
            params.ttl_secs ?? deps.queueTtlSecs,
          )
        }`,
      ];
      if (elsewhere.length > 0) {
        const others = elsewhere.length > SHOWN_UNKNOWN_AGENTS
          ? ` and ${elsewhere.length - SHOWN_UNKNOWN_AGENTS} more`
          : "";
        warnings.push(
          `${elsewhere.length} agent(s) wait for another deployment than ${hash}: ` +
            `${elsewhere.slice(0, SHOWN_UNKNOWN_AGENTS).join(", ")}${others}; their commands ` +
            `wait in the queue for a wait on ${hash} until the command's queue expiry`,
        );
      }
      return c.json({ ...runView(run), offline, warnings }, 201);

      function answerExisting(run: RunRecord, digest: string) {
        if (run.fingerprint !== digest && run.fingerprint !== legacyRunFingerprint(request)) {
          throw new HttpError(409, `run ${id} already exists with a different body; use a new id`);
        }
        return c.json({ ...runView(run), duplicate: true }, 200);
      }
    },
  );

  app.get("/api/v1/runs", auth, async function listRunsRoute(c) {
    refuseMistypedQuery(c.req.url, ["open", "limit"]);
    const raw = c.req.query("limit");
    let limit: number = RUN_LIST_LIMIT.default;
    if (raw !== undefined && raw !== "") {
      limit = Number(raw);
      if (!/^\d+$/.test(raw) || limit < 1 || limit > RUN_LIST_LIMIT.max) {
        throw queryError("limit", `must be a whole number from 1 to ${RUN_LIST_LIMIT.max}`);
      }
    }
    const open = c.req.query("open");
    if (open !== undefined && open !== "" && open !== "1" && open !== "true") {
      throw queryError("open", "must be 1 or true");
    }
    // Counts of each run's targets, not the targets: no per-agent entries are shown here.
    const runs = await store.listRunSummaries({
      open: open !== undefined && open !== "",
      limit,
    });
    return c.json({ runs: runs.map(runSummaryView) });
  });

  app.get("/api/v1/runs/:id", auth, async function getRunRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("run", id, RUN_ID_PATTERN);
    const run = await store.getRun(id);
    if (!run) throw new HttpError(404, `run ${shortForm(id)} does not exist`);
    return c.json(runView(run));
  });

  app.post("/api/v1/runs/:id/cancel", auth, async function cancelRunRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("run", id, RUN_ID_PATTERN);
    const outcome = await scheduler.cancel(id);
    if (outcome.outcome === "not_found") {
      throw new HttpError(404, `run ${shortForm(id)} does not exist`);
    }
    if (outcome.outcome === "final") {
      throw new HttpError(
        409,
        `run ${id} has already ended (${runStatus(outcome.run)}); nothing to cancel`,
      );
    }
    audit.info("run {runId} cancelled", { runId: id, remote: remoteOf(c) });
    return c.json({ cancelled: true, run: runView(outcome.run) });
  });

  app.get("/api/v1/runs/:id/events", auth, async function runEventsRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("run", id, RUN_ID_PATTERN);
    // Whether it exists, from the run as a step reads it: the stream's first step reads it whole.
    if (!(await store.getRunState(id))) {
      throw new HttpError(404, `run ${shortForm(id)} does not exist`);
    }
    let sent = 0;
    let last = "";
    const release = streamPlace(c.req.raw, c.get("consoleSessionStream"), options.streams);
    return eventStreamResponse({
      request: c.req.raw,
      release,
      subscribe: (wake) => scheduler.subscribe(id, wake),
      closed: () => scheduler.closed,
      authorized: c.get("consoleSessionValid"),
      keepAliveMs,
      clock,
      onError: (error) =>
        log.warning("event stream of run {runId} failed: {error}", { runId: id, error }),
      async step(send) {
        // On the monotonic clock: a wall clock stepped during the read is no long read.
        const began = monotonicNow(clock);
        const run = await store.getRun(id);
        const readMs = monotonicNow(clock) - began;
        if (!run) {
          send("error", { error: `run ${id} no longer exists` }, String(++sent));
          return "end";
        }
        const view = runView(run);
        if (run.completedAt !== null) {
          send("end", view, String(++sent));
          return "end";
        }
        const text = JSON.stringify(view);
        if (text !== last) {
          last = text;
          send("status", view, String(++sent));
        }
        // At most a few snapshots a second, however busy the run's commands are; and a pause
        // four times as long as the read: a run of 10,000 agents took 0.1–0.2 s to read, and a
        // follower that read it again 0.1 s later kept the dashboard busy two thirds of the time.
        // A follower that leaves ends the pause (its timer kept the stream until then).
        await clock.sleep(
          Math.max(MIN_SNAPSHOT_PAUSE_MS, READ_PAUSE_FACTOR * readMs),
          c.req.raw.signal,
        );
        return "wait";
      },
    });
  });
}
