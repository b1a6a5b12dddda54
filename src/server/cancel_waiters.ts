/**
 * Agents waiting for a cancel: every open `GET …/commands/{id}/cancel-wait` is a waiter in memory,
 * answered the moment an operator's cancel of its command is recorded. Nothing polls the store: the
 * cancel route calls {@link CancelWaiters.notify} after its write.
 *
 * ## Why no wake-up is lost
 *
 * The route registers the waiter *before* it reads the command from the store:
 *
 * - if the cancel was written before the read, the read sees it and the route answers at once;
 * - if it is written after, the waiter is already registered and the cancel's notify finds it.
 *
 * ## A cap per agent
 *
 * An agent holds at most `maxWaitsPerAgent` open cancel-waits (default 8; `wait_cap.ts` says
 * why): a new one beyond it is kept and the agent's oldest is answered as at its timeout
 * (`false`, the route's `204`). Nothing is lost by it: a cancel is recorded in the store, and the
 * agent's next cancel-wait reads it there. Waits without an `agentId` are not capped.
 *
 * ## Cost
 *
 * One object, one entry in a per-second bucket of {@link Deadlines} and one abort listener per open
 * wait; one timer serves every timeout (coalesced as for waits: N s end between N and N + 1 s).
 *
 * @module
 */
import type { Clock } from "./clock.ts";
import { Deadlines } from "./deadlines.ts";
import { CapWarnings, waitCap } from "./wait_cap.ts";

/** Options of {@link CancelWaiters}. */
export interface CancelWaitersOptions {
  /**
   * Open cancel-waits one agent may hold; a new one beyond it ends the agent's oldest with
   * `false` (as its timeout would), and a warning is logged at most once a minute per agent by
   * `clock`. A whole number from 1 to 1000.
   * @default {8}
   */
  maxWaitsPerAgent?: number;
  /**
   * The clock of the timeouts and of the warnings; tests inject a fake one.
   * @default {systemClock}
   */
  clock?: Clock;
}

/** One open cancel-wait. */
export interface CancelWaitRequest {
  /** The command whose cancel is awaited. */
  commandId: string;
  /** How long to wait, in ms (rounded up to a whole second); then the wait resolves with `false`. */
  timeoutMs: number;
  /** Aborts when the client goes away: the waiter is dropped and resolves with `false`. */
  signal?: AbortSignal;
  /**
   * The agent that waits, so that {@link CancelWaiters.dismiss} can end its waits when it is
   * removed or its token rotated, and its open cancel-waits are held to the cap
   * (`maxWaitsPerAgent`).
   */
  agentId?: string;
  /**
   * The agent's token the wait was authenticated with (`null`: none, dev mode), so that
   * {@link CancelWaiters.dismissStale} can end it once the agent's token is another.
   * @default {null}
   */
  token?: string | null;
}

interface CancelWaiter {
  readonly commandId: string;
  readonly agentId: string | undefined;
  readonly token: string | null;
  open: boolean;
  readonly resolve: (requested: boolean) => void;
  /** Its bucket in {@link Deadlines}. */
  due: number;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Holds the open cancel-waits, by command id.
 *
 * @example Wake the wait of a command
 * ```ts
 * import assert from "node:assert/strict";
 * import { CancelWaiters } from "./cancel_waiters.ts";
 *
 * const waiters = new CancelWaiters();
 * const waiting = waiters.wait({ commandId: "c1", timeoutMs: 1000 });
 * waiters.notify("c1");
 * assert.equal(await waiting, true);
 * waiters.close();
 * ```
 */
export class CancelWaiters {
  readonly #commands = new Map<string, Set<CancelWaiter>>();
  /** Each agent's open cancel-waits, oldest first. */
  readonly #agents = new Map<string, Set<CancelWaiter>>();
  readonly #deadlines: Deadlines<CancelWaiter>;
  readonly #cap: number;
  readonly #capWarnings: CapWarnings;
  #size = 0;
  #closed = false;

  /**
   * Makes an empty registry.
   *
   * @param options The cap per agent and the clock.
   * @throws {RangeError} When `maxWaitsPerAgent` is not a whole number from 1 to 1000.
   */
  constructor(options: CancelWaitersOptions = {}) {
    this.#cap = waitCap(options.maxWaitsPerAgent);
    this.#deadlines = new Deadlines<CancelWaiter>({
      clock: options.clock,
      onExpire: (waiter) => this.#settle(waiter, false),
    });
    this.#capWarnings = new CapWarnings("cancel-wait", options.clock);
  }

  /** Cancel-waits ended since start because their agent opened more than `maxWaitsPerAgent`. */
  get evictions(): number {
    return this.#capWarnings.evictions;
  }

  /** How many cancel-waits are open. */
  get size(): number {
    return this.#size;
  }

  /**
   * Waits until a cancel of the command is notified.
   *
   * @param request Which command, how long.
   * @returns `true` when notified; `false` at the timeout, when the client went away, when the
   *   registry closed, or when its agent opened more than `maxWaitsPerAgent` newer cancel-waits.
   */
  wait(request: CancelWaitRequest): Promise<boolean> {
    if (this.#closed || request.signal?.aborted) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const waiter: CancelWaiter = {
      commandId: request.commandId,
      agentId: request.agentId,
      token: request.token ?? null,
      open: true,
      resolve,
      due: 0,
    };
    add(this.#commands, request.commandId, waiter);
    if (request.agentId !== undefined) add(this.#agents, request.agentId, waiter);
    this.#size++;
    waiter.due = this.#deadlines.add(waiter, request.timeoutMs);
    if (request.signal) {
      waiter.signal = request.signal;
      waiter.onAbort = () => this.#settle(waiter, false);
      request.signal.addEventListener("abort", waiter.onAbort, { once: true });
    }
    if (request.agentId !== undefined) this.#evictOldest(request.agentId);
    return promise;
  }

  /**
   * Ends the agent's oldest open cancel-waits, as their timeout would, until it holds no more than
   * the cap (the newest, just added, stays).
   */
  #evictOldest(agentId: string): void {
    const waiters = this.#agents.get(agentId);
    if (!waiters || waiters.size <= this.#cap) return;
    let count = 0;
    for (const oldest of waiters) {
      if (waiters.size <= this.#cap) break;
      this.#settle(oldest, false);
      count++;
    }
    this.#capWarnings.evicted(agentId, this.#cap, count);
  }

  /**
   * Says that a cancel of the command was recorded: its open waits resolve with `true`.
   *
   * @param commandId The command.
   */
  notify(commandId: string): void {
    for (const waiter of [...this.#commands.get(commandId) ?? []]) this.#settle(waiter, true);
  }

  /**
   * Answers every open cancel-wait of the agent with `false` (no cancel), now: its token was
   * rotated or it was removed, so a wait it opened with the old token must not be told of a
   * cancel.
   *
   * @param agentId The agent.
   * @returns How many waits were answered.
   */
  dismiss(agentId: string): number {
    return this.dismissStale(agentId, undefined);
  }

  /**
   * Answers with `false`, now, the agent's open cancel-waits that were authenticated with another
   * token than `token`, or all of them when `token` is `undefined` (the agent is gone or may no
   * longer wait).
   *
   * @param agentId The agent.
   * @param token Its token now (`null`: none), or `undefined` when none of its waits may stay.
   * @returns How many waits were answered.
   */
  dismissStale(agentId: string, token: string | null | undefined): number {
    const stale = [...this.#agents.get(agentId) ?? []].filter((waiter) =>
      token === undefined || waiter.token !== token
    );
    for (const waiter of stale) this.#settle(waiter, false);
    return stale.length;
  }

  /** The agents that have open cancel-waits (to re-check their tokens after missed events). */
  waitingAgents(): string[] {
    return [...this.#agents.keys()];
  }

  /** The commands that have open cancel-waits (to re-check them after missed events). */
  commandIds(): string[] {
    return [...this.#commands.keys()];
  }

  /** Answers every open wait with `false`; later waits resolve with `false` at once. */
  close(): void {
    this.#closed = true;
    for (const waiters of [...this.#commands.values()]) {
      for (const waiter of [...waiters]) this.#settle(waiter, false);
    }
    this.#deadlines.clear();
  }

  #settle(waiter: CancelWaiter, requested: boolean): void {
    if (!waiter.open) return;
    waiter.open = false;
    this.#deadlines.delete(waiter, waiter.due);
    if (waiter.onAbort) waiter.signal?.removeEventListener("abort", waiter.onAbort);
    remove(this.#commands, waiter.commandId, waiter);
    if (waiter.agentId !== undefined) remove(this.#agents, waiter.agentId, waiter);
    this.#size--;
    waiter.resolve(requested);
  }
}

function add(index: Map<string, Set<CancelWaiter>>, key: string, waiter: CancelWaiter): void {
  let waiters = index.get(key);
  if (!waiters) index.set(key, waiters = new Set());
  waiters.add(waiter);
}

function remove(index: Map<string, Set<CancelWaiter>>, key: string, waiter: CancelWaiter): void {
  const waiters = index.get(key);
  if (!waiters) return;
  waiters.delete(waiter);
  if (waiters.size === 0) index.delete(key);
}
