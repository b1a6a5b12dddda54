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
 * ## Cost
 *
 * One object, one timer (its timeout) and one abort listener per open wait; nothing runs while
 * nothing changes.
 *
 * @module
 */
import type { CommandRecord } from "../store/mod.ts";

/** What {@link WaiterHub} needs from the dashboard. */
export interface WaiterHubOptions {
  /**
   * Claims the agent's next command for a wait on `deploymentHash` (atomically, under a delivery
   * lease), or returns `null`.
   */
  claim(agentId: string, deploymentHash: string): Promise<CommandRecord | null>;
  /** Gives back a claimed command whose wait went away before it could be answered. */
  release(command: CommandRecord): Promise<unknown>;
  /** Called with a failure of `release`; the delivery lease recovers the command then. */
  onError?(error: unknown): void;
}

/** One open wait. */
export interface WaitRequest {
  /** The waiting agent. */
  agentId: string;
  /** The deployment hash of the wait path. */
  deploymentHash: string;
  /** How long to wait, in ms; then the wait resolves with `null`. */
  timeoutMs: number;
  /** Aborts when the client goes away: the waiter is dropped and resolves with `null`. */
  signal?: AbortSignal;
}

interface Waiter {
  readonly agentId: string;
  readonly hash: string;
  open: boolean;
  readonly resolve: (command: CommandRecord | null) => void;
  readonly reject: (error: unknown) => void;
  timer?: ReturnType<typeof setTimeout>;
  signal?: AbortSignal;
  onAbort?: () => void;
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
  #size = 0;
  #closed = false;

  /**
   * Makes an empty hub.
   *
   * @param options How to claim and release commands.
   */
  constructor(options: WaiterHubOptions) {
    this.#options = options;
  }

  /** How many waits are open. */
  get size(): number {
    return this.#size;
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
   * Waits for the agent's next matching command.
   *
   * @param request Who waits, on which hash, how long.
   * @returns The claimed command, or `null` at the timeout, when the client went away or when the
   *   hub closed.
   * @throws The store's error when a claim fails.
   */
  wait(request: WaitRequest): Promise<CommandRecord | null> {
    if (this.#closed || request.signal?.aborted) return Promise.resolve(null);
    const { promise, resolve, reject } = Promise.withResolvers<CommandRecord | null>();
    const waiter: Waiter = {
      agentId: request.agentId,
      hash: request.deploymentHash,
      open: true,
      resolve,
      reject,
    };
    let entry = this.#agents.get(request.agentId);
    if (!entry) {
      entry = { waiters: [], pumping: false, dirty: false };
      this.#agents.set(request.agentId, entry);
    }
    entry.waiters.push(waiter);
    this.#size++;
    waiter.timer = setTimeout(() => this.#settle(waiter, null), Math.max(0, request.timeoutMs));
    if (request.signal) {
      waiter.signal = request.signal;
      waiter.onAbort = () => this.#settle(waiter, null);
      request.signal.addEventListener("abort", waiter.onAbort, { once: true });
    }
    void this.#pump(request.agentId);
    return promise;
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

  /** Answers every open wait with `null`; later waits resolve with `null` at once. */
  close(): void {
    this.#closed = true;
    for (const entry of [...this.#agents.values()]) {
      for (const waiter of [...entry.waiters]) this.#settle(waiter, null);
    }
  }

  #settle(waiter: Waiter, command: CommandRecord | null, error?: unknown): void {
    if (!waiter.open) return;
    waiter.open = false;
    clearTimeout(waiter.timer);
    if (waiter.onAbort) waiter.signal?.removeEventListener("abort", waiter.onAbort);
    const entry = this.#agents.get(waiter.agentId);
    if (entry) {
      const index = entry.waiters.indexOf(waiter);
      if (index >= 0) entry.waiters.splice(index, 1);
      if (entry.waiters.length === 0 && !entry.pumping) this.#agents.delete(waiter.agentId);
    }
    this.#size--;
    if (error !== undefined) waiter.reject(error);
    else waiter.resolve(command);
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
          // The claim was made for an open waiter; if it closed while the store worked, the
          // command goes to another matching waiter, or back to the queue.
          const taker = waiter.open
            ? waiter
            : entry.waiters.find((w) => w.open && matches(w, command));
          if (taker) {
            this.#settle(taker, command);
          } else {
            try {
              await this.#options.release(command);
            } catch (error) {
              this.#options.onError?.(error);
            }
          }
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
