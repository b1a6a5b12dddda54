/**
 * The cap on one agent's open long-polls. An agent runs one poll loop, so it holds one wait (and,
 * while a command runs, one cancel-wait); several of one agent overlap only briefly, when a
 * connection was dropped on one side and not the other. A stolen token or an agent restarting in
 * a loop could otherwise hold thousands of the dashboard's connections and their memory.
 *
 * Beyond the cap the *oldest* open wait is answered as its timeout would answer it (`204`, and
 * the agent polls again) and the new one is kept: a legitimate agent reconnecting after a
 * half-open connection is never refused. `WaiterHub` (`waiters.ts`) and `CancelWaiters`
 * (`cancel_waiters.ts`) apply it; this module holds its check and the rate-limited warning of an
 * eviction.
 *
 * @module
 */
import { DEFAULT_MAX_WAITS_PER_AGENT } from "../defaults.ts";
import { auditLogger } from "../log/mod.ts";
import { idWord } from "../protocol/mod.ts";
import { type Clock, systemClock } from "./clock.ts";

/** The largest cap that may be set: more would defeat it. */
export const MAX_WAITS_PER_AGENT_LIMIT = 1000;

/** An agent's eviction warning is written at most once in this many ms. */
export const CAP_WARNING_INTERVAL_MS = 60_000;

/** Agents whose last warning is remembered at most (the oldest is forgotten first). */
export const CAP_WARNING_AGENTS = 10_000;

const audit = auditLogger();

/**
 * Checks a cap on open waits per agent.
 *
 * @param value The cap as given (`undefined`: the default).
 * @returns The cap.
 * @throws {RangeError} When it is not a whole number from 1 to {@link MAX_WAITS_PER_AGENT_LIMIT}.
 */
export function waitCap(value: number | undefined): number {
  const cap = value ?? DEFAULT_MAX_WAITS_PER_AGENT;
  if (!Number.isInteger(cap) || cap < 1 || cap > MAX_WAITS_PER_AGENT_LIMIT) {
    throw new RangeError(
      `maxWaitsPerAgent must be a whole number from 1 to ${MAX_WAITS_PER_AGENT_LIMIT}, got ${cap}`,
    );
  }
  return cap;
}

/**
 * The warning written when a cap ends an agent's oldest wait: at most once a minute per agent
 * (by the clock), so that an agent in a restart loop writes a line a minute, not one per wait.
 * Only the agents warned in the last minute are remembered, at most {@link CAP_WARNING_AGENTS}.
 */
export class CapWarnings {
  readonly #kind: "wait" | "cancel-wait";
  readonly #clock: Pick<Clock, "now">;
  /** Agent id → when it was last warned of, in ms; oldest warning first. */
  readonly #warnedAt = new Map<string, number>();
  #evictions = 0;

  /**
   * Makes the warnings of one kind of wait.
   *
   * @param kind What is capped.
   * @param clock The clock of the once-a-minute.
   */
  constructor(kind: "wait" | "cancel-wait", clock: Pick<Clock, "now"> = systemClock) {
    this.#kind = kind;
    this.#clock = clock;
  }

  /** Agents whose last warning is remembered (tests). */
  get size(): number {
    return this.#warnedAt.size;
  }

  /** Waits the cap ended since start (`status_waits_evicted_total`). */
  get evictions(): number {
    return this.#evictions;
  }

  /**
   * The cap ended open waits of the agent: counts them, and warns unless it did for this agent
   * less than a minute ago.
   *
   * @param agentId The agent.
   * @param cap The cap.
   * @param count How many of its waits the cap ended.
   */
  evicted(agentId: string, cap: number, count = 1): void {
    this.#evictions += count;
    const now = this.#clock.now();
    this.#forgetOld(now);
    const at = this.#warnedAt.get(agentId);
    if (at !== undefined && recent(at, now)) return;
    this.#warnedAt.delete(agentId);
    if (this.#warnedAt.size >= CAP_WARNING_AGENTS) {
      this.#warnedAt.delete(this.#warnedAt.keys().next().value!);
    }
    this.#warnedAt.set(agentId, now);
    const kind = this.#kind;
    audit.warning(
      "agent {agentId} opened more than {cap} {kind}s at once; the oldest was answered 204. " +
        "An agent keeps one {kind} open: look for an agent restarting in a loop, or rotate its " +
        "token if another client has it (status agents rotate {rotateId})",
      { agentId, cap, kind, rotateId: idWord(agentId) },
    );
  }

  /** Forgets the agents last warned of a minute ago or more (the oldest come first). */
  #forgetOld(now: number): void {
    for (const [agentId, at] of this.#warnedAt) {
      if (recent(at, now)) break;
      this.#warnedAt.delete(agentId);
    }
  }
}

/** Whether a warning at `at` was less than a minute before `now` (a clock set back: not). */
function recent(at: number, now: number): boolean {
  return now >= at && now - at < CAP_WARNING_INTERVAL_MS;
}
