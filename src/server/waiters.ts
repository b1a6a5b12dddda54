/**
 * Waiting agents: every open `GET …/wait` is a waiter in memory, answered the moment a command for
 * it can be claimed. Nothing polls the store: a waiter is served when it arrives and whenever
 * {@link WaiterHub.notify} says that its agent's queue changed (an enqueue, a lease that expired).
 *
 * ## Why no wake-up is lost
 *
 * A waiter is registered *before* the store is asked for a command, and all claims of one agent
 * run in one serial "pump" per agent that runs again whenever a notify arrives while it is busy.
 * Take an enqueue racing a new wait:
 *
 * - If the enqueue commits before the wait's pump claims, the claim sees the command.
 * - If it commits after, the waiter is already registered, so the enqueue's notify finds it and
 *   starts a pump, or marks the running pump dirty so it goes round once more.
 *
 * There is no third case, whatever the store's latency, so a queued command and an open matching
 * wait never sit side by side. Claims are serial per agent and each claim is atomic in the store,
 * so two open waits of one agent never receive the same command.
 *
 * ## Wake-up with one commit
 *
 * {@link WaiterHub.enqueue} runs an enqueue so that, when an open wait matches the new command, the
 * store inserts the command *and* claims for that wait in one transaction (one fsync instead of
 * two); the wait is answered, then the enqueue. It holds the agent's pump while the store works,
 * so it is one more serial claim of the agent: the guarantees above hold for it too, and a wait
 * that arrives meanwhile is served by a pump round right after.
 *
 * ## A cap per agent
 *
 * An agent holds at most `maxWaitsPerAgent` open waits (default 8; `wait_cap.ts` says why). A
 * new wait beyond it is kept, and the agent's *oldest* open wait is answered as at its timeout
 * (`null`, the route's `204`): a legitimate agent reconnecting after a half-open connection is
 * never refused. The eviction is a drop like a client going away, so the guarantees above hold:
 * a command being claimed for the evicted wait (by the pump, or in an enqueue's transaction) is
 * handed, once the store answers, to another open matching wait of the agent (the new one,
 * usually) or given back to the queue; an evicted wait never answers with a command and never
 * takes one with it. With the cap an agent's waits stay a short array, so removing one is cheap.
 *
 * ## Cost
 *
 * One object and one entry in a per-second bucket of {@link Deadlines} per open wait held with
 * {@link WaiterHub.hold} (the dashboard's long-polls: the answer goes to a callback, no promise, no
 * closure, no abort signal); {@link WaiterHub.wait} adds a promise and an abort listener. Timeouts are coalesced: a wait of N s ends between N and N + 1 s, and one timer serves
 * every wait (armed for the earliest non-empty second, stopped while no wait is open). Nothing
 * else runs while nothing changes.
 *
 * @module
 */
import type { CommandRecord } from "../store/mod.ts";
import type { Clock } from "./clock.ts";
import { Deadlines } from "./deadlines.ts";
import { CapWarnings, waitCap } from "./wait_cap.ts";

/** What {@link WaiterHub} needs from the dashboard. */
export interface WaiterHubOptions {
  /**
   * Claims the agent's next command for a wait on `deploymentHash` (atomically, under a delivery
   * lease), or returns `null`.
   */
  claim(agentId: string, deploymentHash: string): Promise<CommandRecord | null>;
  /** Gives back a claimed command whose wait went away before it could be answered. */
  release(command: CommandRecord): Promise<unknown>;
  /**
   * Called with a failure of `release` (the delivery lease recovers the command then) or of a
   * {@link WaiterHub.hold} callback.
   */
  onError?(error: unknown): void;
  /**
   * The clock of the wait timeouts and of the cap's once-a-minute warning (real time, also when
   * the dashboard's clock is a fake one); tests of the timeouts inject one and call
   * {@link WaiterHub.expireDue}.
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Open waits one agent may hold; a new one beyond it ends the agent's oldest with `null` (as
   * its timeout would), and a warning is logged at most once a minute per agent by `clock`.
   * A whole number from 1 to 1000.
   * @default {8}
   */
  maxWaitsPerAgent?: number;
}

/** One open wait. */
export interface WaitRequest {
  /** The waiting agent. */
  agentId: string;
  /** The deployment hash of the wait path. */
  deploymentHash: string;
  /**
   * How long to wait, in ms; then the wait resolves with `null`. Rounded up to the next whole
   * second of the clock (coalesced timeouts).
   */
  timeoutMs: number;
  /** Aborts when the client goes away: the waiter is dropped and resolves with `null`. */
  signal?: AbortSignal;
  /**
   * The agent's token the wait was authenticated with (`null`: none, dev mode), so that
   * {@link WaiterHub.dismissStale} can end it once the agent's token is another.
   * @default {null}
   */
  token?: string | null;
}

/**
 * Where a wait held with {@link WaiterHub.hold} ends: called once with the caller's context and
 * the claimed command (`null` at the timeout, when dropped or when the hub closed), or with the
 * store's error when a claim failed.
 */
export type WaitDone<C> = (context: C, command: CommandRecord | null, error?: unknown) => void;

/** What {@link WaiterHub.hold} needs of a wait. */
export type HoldRequest = Omit<WaitRequest, "signal">;

/** An open wait of {@link WaiterHub.hold}, to {@link WaiterHub.drop} when its client goes away. */
export interface HeldWait {
  /** Whether it is still open. */
  readonly open: boolean;
}

interface Waiter extends HeldWait {
  readonly agentId: string;
  readonly hash: string;
  readonly token: string | null;
  open: boolean;
  // deno-lint-ignore no-explicit-any
  readonly done: WaitDone<any>;
  readonly context: unknown;
  /** Its bucket in the hub's {@link Deadlines}. */
  due: number;
}

function settlePromise(
  context: { resolve(command: CommandRecord | null): void; reject(error: unknown): void },
  command: CommandRecord | null,
  error?: unknown,
): void {
  if (error !== undefined) context.reject(error);
  else context.resolve(command);
}

interface AgentWaiters {
  /** Open waiters, oldest first. */
  readonly waiters: Waiter[];
  pumping: boolean;
  dirty: boolean;
}

function matches(waiter: Waiter, command: CommandRecord): boolean {
  return command.deploymentHash === null || command.deploymentHash === waiter.hash;
}

/**
 * Agents whose latest dismissal {@link WaiterHub} keeps (for {@link WaiterHub.dismissedSince}); one
 * more forgets them all, and every wait whose steps began before that counts as dismissed.
 */
const MAX_DISMISSALS_KEPT = 10_000;

/**
 * Holds the open waits of every agent and hands them commands.
 *
 * @example Wake a waiting agent
 * ```ts
 * import assert from "node:assert/strict";
 * import { WaiterHub } from "./waiters.ts";
 * import type { CommandRecord } from "../store/mod.ts";
 *
 * const queue: CommandRecord[] = [];
 * const hub = new WaiterHub({
 *   claim: () => Promise.resolve(queue.shift() ?? null),
 *   release: (command) => Promise.resolve(queue.unshift(command)),
 * });
 * const waiting = hub.wait({ agentId: "a1", deploymentHash: "default", timeoutMs: 1000 });
 * queue.push({ id: "c1", deploymentHash: null } as CommandRecord);
 * hub.notify("a1");
 * assert.equal((await waiting)?.id, "c1");
 * hub.close();
 * ```
 */
export class WaiterHub {
  readonly #options: WaiterHubOptions;
  readonly #agents = new Map<string, AgentWaiters>();
  readonly #deadlines: Deadlines<Waiter>;
  readonly #cap: number;
  readonly #capWarnings: CapWarnings;
  #size = 0;
  #closed = false;
  /** How many times {@link WaiterHub.dismiss} was called: the marks of {@link WaiterHub.mark}. */
  #dismissals = 0;
  /** Agent → the mark of its latest {@link WaiterHub.dismiss}, for at most a bounded count. */
  readonly #dismissedAt = new Map<string, number>();
  /** The mark when {@link WaiterHub.#dismissedAt} was last emptied (for its bound). */
  #forgottenAt = 0;

  /**
   * Makes an empty hub.
   *
   * @param options How to claim and release commands, and the cap per agent.
   * @throws {RangeError} When `maxWaitsPerAgent` is not a whole number from 1 to 1000.
   */
  constructor(options: WaiterHubOptions) {
    this.#cap = waitCap(options.maxWaitsPerAgent);
    this.#options = options;
    this.#capWarnings = new CapWarnings("wait", options.clock);
    this.#deadlines = new Deadlines<Waiter>({
      clock: options.clock,
      onExpire: (waiter) => this.#settle(waiter, null),
    });
  }

  /** How many waits are open. */
  get size(): number {
    return this.#size;
  }

  /** Waits ended since start because their agent opened more than `maxWaitsPerAgent`. */
  get evictions(): number {
    return this.#capWarnings.evictions;
  }

  /** How many agents have at least one wait open (an agent may hold several). */
  get agentsWaiting(): number {
    let count = 0;
    for (const entry of this.#agents.values()) if (entry.waiters.length > 0) count++;
    return count;
  }

  /** When the one timeout timer fires next (the hub's clock's monotonic ms); `null` when none is armed. */
  get timeoutArmedAt(): number | null {
    return this.#deadlines.armedAt;
  }

  /** Ends every wait whose (rounded) timeout passed by the hub's clock; the timer calls it. */
  expireDue(): void {
    this.#deadlines.expireDue();
  }

  /** Whether {@link WaiterHub.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Whether the agent has an open wait now.
   *
   * @param agentId The agent.
   */
  isWaiting(agentId: string): boolean {
    return (this.#agents.get(agentId)?.waiters.length ?? 0) > 0;
  }

  /**
   * The deployment hashes of the agent's open waits (none when it is not waiting).
   *
   * @param agentId The agent.
   */
  waitingHashes(agentId: string): string[] {
    return [...new Set(this.#agents.get(agentId)?.waiters.map((w) => w.hash) ?? [])];
  }

  /**
   * Waits for the agent's next matching command.
   *
   * @param request Who waits, on which hash, how long.
   * @returns The claimed command, or `null` at the timeout, when the client went away, when the
   *   hub closed, or when the agent opened more than `maxWaitsPerAgent` newer waits.
   * @throws The store's error when a claim fails.
   */
  wait(request: WaitRequest): Promise<CommandRecord | null> {
    const signal = request.signal;
    if (this.#closed || signal?.aborted) return Promise.resolve(null);
    const resolvers = Promise.withResolvers<CommandRecord | null>();
    if (!signal) {
      this.hold(request, settlePromise, resolvers);
      return resolvers.promise;
    }
    const onAbort = () => this.drop(held);
    const context = {
      resolve(command: CommandRecord | null) {
        signal.removeEventListener("abort", onAbort);
        resolvers.resolve(command);
      },
      reject(error: unknown) {
        signal.removeEventListener("abort", onAbort);
        resolvers.reject(error);
      },
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const held = this.hold(request, settlePromise, context);
    return resolvers.promise;
  }

  /**
   * Holds a wait for the agent's next matching command, answered through a callback: the lean
   * form of {@link WaiterHub.wait} for the dashboard's long-polls (no promise, no closure of its
   * own; `done` is usually one function for every wait and `context` the wait's own data).
   *
   * @param request Who waits, on which hash, how long.
   * @param done Called once with `context` and the command (`null` at the timeout, when dropped,
   *   when the hub is closed, or when the agent opened more than `maxWaitsPerAgent` newer waits),
   *   or with the store's error when a claim fails. Called at once (before `hold` returns) when
   *   the hub is closed.
   * @param context Passed to `done`.
   * @returns The open wait, for {@link WaiterHub.drop}.
   */
  hold<C>(request: HoldRequest, done: WaitDone<C>, context: C): HeldWait {
    const waiter: Waiter = {
      agentId: request.agentId,
      hash: request.deploymentHash,
      token: request.token ?? null,
      open: true,
      done,
      context,
      due: 0,
    };
    if (this.#closed) {
      waiter.open = false;
      done(context, null);
      return waiter;
    }
    const entry = this.#agents.get(request.agentId);
    // A literal of one: an array that grows from empty reserves room for 17.
    if (entry) entry.waiters.push(waiter);
    else this.#agents.set(request.agentId, { waiters: [waiter], pumping: false, dirty: false });
    this.#size++;
    waiter.due = this.#deadlines.add(waiter, request.timeoutMs);
    if (entry && entry.waiters.length > this.#cap) this.#evictOldest(entry);
    void this.#pump(request.agentId);
    return waiter;
  }

  /**
   * Ends the agent's oldest open waits, as their timeout would, until it holds no more than the
   * cap (the newest, just added, stays). A claim in flight for one of them is handed elsewhere
   * by `#hand` once the store answers.
   */
  #evictOldest(entry: AgentWaiters): void {
    const agentId = entry.waiters[0].agentId;
    let count = 0;
    for (; entry.waiters.length > this.#cap; count++) this.#settle(entry.waiters[0], null);
    this.#capWarnings.evicted(agentId, this.#cap, count);
  }

  /**
   * Ends an open wait of {@link WaiterHub.hold} with `null` (its client went away); nothing when
   * it has ended already.
   *
   * @param held The wait.
   */
  drop(held: HeldWait): void {
    this.#settle(held as Waiter, null);
  }

  /**
   * Says that the agent's queue changed: its open waits are served at once.
   *
   * @param agentId The agent.
   */
  notify(agentId: string): void {
    if (this.#closed || !this.#agents.has(agentId)) return;
    void this.#pump(agentId);
  }

  /**
   * Answers every open wait of the agent with `null` (no command), now: its token was rotated or
   * it was removed, so a wait it opened with the old token must not be handed a command. A
   * command claimed for one of them meanwhile goes back to the queue.
   *
   * @param agentId The agent.
   * @returns How many waits were answered.
   */
  dismiss(agentId: string): number {
    // Bounded: a wait whose steps began before this counts as dismissed, whatever its agent.
    if (this.#dismissedAt.size >= MAX_DISMISSALS_KEPT) this.forgetDismissals();
    this.#dismissedAt.set(agentId, ++this.#dismissals);
    return this.dismissStale(agentId, undefined);
  }

  /**
   * Counts every agent as dismissed for the marks taken until now (a token may have changed
   * unseen: another process wrote to the store), and forgets which agents were.
   */
  forgetDismissals(): void {
    this.#dismissedAt.clear();
    this.#forgottenAt = ++this.#dismissals;
  }

  /**
   * A mark to take before a wait's agent (and its token) is read, for
   * {@link WaiterHub.dismissedSince}.
   */
  get mark(): number {
    return this.#dismissals;
  }

  /**
   * Whether the agent's waits were dismissed ({@link WaiterHub.dismiss}: its token rotated, or it
   * was removed) after `mark` was taken: a wait whose agent was read before that, and that is
   * held only now, was opened with a token that may be the old one, and must not be held.
   *
   * @param agentId The agent.
   * @param mark {@link WaiterHub.mark}, taken before the agent was read.
   */
  dismissedSince(agentId: string, mark: number): boolean {
    return mark < this.#forgottenAt || (this.#dismissedAt.get(agentId) ?? 0) > mark;
  }

  /**
   * Answers with `null` (no command), now, the agent's open waits that were authenticated with
   * another token than `token`, or all of them when `token` is `undefined` (the agent is gone or
   * may no longer wait): the check after events may have been missed (a `revoked` one, or a
   * rotation by another process on the same file).
   *
   * @param agentId The agent.
   * @param token Its token now (`null`: none), or `undefined` when none of its waits may stay.
   * @returns How many waits were answered.
   */
  dismissStale(agentId: string, token: string | null | undefined): number {
    const entry = this.#agents.get(agentId);
    if (!entry) return 0;
    const stale = entry.waiters.filter((waiter) =>
      waiter.open && (token === undefined || waiter.token !== token)
    );
    for (const waiter of stale) this.#settle(waiter, null);
    return stale.length;
  }

  /** The agents with an open wait now. */
  waitingAgents(): string[] {
    return [...this.#agents.keys()];
  }

  /**
   * Serves every agent's open waits (after events may have been missed: a store shared by several
   * instances reconnected its notifications).
   */
  notifyAll(): void {
    if (this.#closed) return;
    for (const agentId of [...this.#agents.keys()]) void this.#pump(agentId);
  }

  /**
   * Runs an enqueue for the agent so that the store can claim for an open matching wait in the
   * same transaction. The step is called with the deployment hash of the oldest open wait that
   * the new command matches, or with `null` when there is none (or the agent's pump is busy): then
   * it must only enqueue, and the hub is notified as after any enqueue. A command claimed in the
   * step goes to that wait, or to another matching one when it went away meanwhile, or back to
   * the queue.
   *
   * @param agentId The agent the command is for.
   * @param deploymentHash The new command's deployment hash (`null`: any wait).
   * @param step Enqueues, claiming for a wait on the given hash when it is not `null`; returns
   *   its own answer as `result` and the command it claimed (or `null`) as `claimed`.
   * @returns The step's result.
   * @throws The step's error (nothing was claimed then).
   */
  async enqueue<T>(
    agentId: string,
    deploymentHash: string | null,
    step: (claimFor: string | null) => Promise<{ result: T; claimed: CommandRecord | null }>,
  ): Promise<T> {
    const entry = this.#agents.get(agentId);
    const waiter = !this.#closed && entry && !entry.pumping
      ? entry.waiters.find((w) => w.open && (deploymentHash === null || w.hash === deploymentHash))
      : undefined;
    if (!entry || !waiter) {
      const { result } = await step(null);
      this.notify(agentId);
      return result;
    }
    entry.pumping = true;
    try {
      const { result, claimed } = await step(waiter.hash);
      if (claimed) await this.#hand(entry, waiter, claimed);
      return result;
    } finally {
      entry.pumping = false;
      // A wait that arrived meanwhile, or another queued command: one pump round serves them.
      if (entry.waiters.length > 0) void this.#pump(agentId);
      else if (this.#agents.get(agentId) === entry) this.#agents.delete(agentId);
    }
  }

  /** Answers every open wait with `null`; later waits resolve with `null` at once. */
  close(): void {
    this.#closed = true;
    for (const entry of [...this.#agents.values()]) {
      for (const waiter of [...entry.waiters]) this.#settle(waiter, null);
    }
    this.#deadlines.clear();
  }

  #settle(waiter: Waiter, command: CommandRecord | null, error?: unknown): void {
    if (!waiter.open) return;
    waiter.open = false;
    this.#deadlines.delete(waiter, waiter.due);
    const entry = this.#agents.get(waiter.agentId);
    if (entry) {
      const index = entry.waiters.indexOf(waiter);
      if (index >= 0) entry.waiters.splice(index, 1);
      if (entry.waiters.length === 0 && !entry.pumping) this.#agents.delete(waiter.agentId);
    }
    this.#size--;
    try {
      waiter.done(waiter.context, command, error);
    } catch (thrown) {
      // The callback's own failure: the hub goes on serving the other waits.
      this.#options.onError?.(thrown);
    }
  }

  /**
   * Gives a command claimed for `waiter` to it, or, if it closed while the store worked, to
   * another open matching waiter of the agent, or back to the queue.
   */
  async #hand(entry: AgentWaiters, waiter: Waiter, command: CommandRecord): Promise<void> {
    const taker = waiter.open ? waiter : entry.waiters.find((w) => w.open && matches(w, command));
    if (taker) {
      this.#settle(taker, command);
      return;
    }
    try {
      await this.#options.release(command);
    } catch (error) {
      this.#options.onError?.(error);
    }
  }

  async #pump(agentId: string): Promise<void> {
    const entry = this.#agents.get(agentId);
    if (!entry) return;
    if (entry.pumping) {
      entry.dirty = true;
      return;
    }
    entry.pumping = true;
    try {
      do {
        entry.dirty = false;
        // Hashes for which the store had nothing in this round: later waiters on them skip.
        const empty = new Set<string>();
        for (const waiter of [...entry.waiters]) {
          if (this.#closed) return;
          if (!waiter.open || empty.has(waiter.hash)) continue;
          let command: CommandRecord | null;
          try {
            command = await this.#options.claim(agentId, waiter.hash);
          } catch (error) {
            this.#settle(waiter, null, error);
            continue;
          }
          if (!command) {
            empty.add(waiter.hash);
            continue;
          }
          await this.#hand(entry, waiter, command);
        }
      } while (entry.dirty);
    } finally {
      entry.pumping = false;
      if (entry.waiters.length === 0 && this.#agents.get(agentId) === entry) {
        this.#agents.delete(agentId);
      }
    }
  }
}
