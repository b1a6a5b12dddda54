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
 * ## Cost
 *
 * One object, one entry in a per-second bucket of {@link Deadlines} and one abort listener per open
 * wait; one timer serves every timeout (coalesced as for waits: N s end between N and N + 1 s).
 *
 * @module
 */
import { Deadlines } from "./deadlines.ts";

/** One open cancel-wait. */
export interface CancelWaitRequest {
  /** The command whose cancel is awaited. */
  commandId: string;
  /** How long to wait, in ms (rounded up to a whole second); then the wait resolves with `false`. */
  timeoutMs: number;
  /** Aborts when the client goes away: the waiter is dropped and resolves with `false`. */
  signal?: AbortSignal;
}

interface CancelWaiter {
  readonly commandId: string;
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
  readonly #deadlines = new Deadlines<CancelWaiter>({
    onExpire: (waiter) => this.#settle(waiter, false),
  });
  #size = 0;
  #closed = false;

  /** How many cancel-waits are open. */
  get size(): number {
    return this.#size;
  }

  /**
   * Waits until a cancel of the command is notified.
   *
   * @param request Which command, how long.
   * @returns `true` when notified; `false` at the timeout, when the client went away or when the
   *   registry closed.
   */
  wait(request: CancelWaitRequest): Promise<boolean> {
    if (this.#closed || request.signal?.aborted) return Promise.resolve(false);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const waiter: CancelWaiter = { commandId: request.commandId, open: true, resolve, due: 0 };
    let waiters = this.#commands.get(request.commandId);
    if (!waiters) {
      waiters = new Set();
      this.#commands.set(request.commandId, waiters);
    }
    waiters.add(waiter);
    this.#size++;
    waiter.due = this.#deadlines.add(waiter, request.timeoutMs);
    if (request.signal) {
      waiter.signal = request.signal;
      waiter.onAbort = () => this.#settle(waiter, false);
      request.signal.addEventListener("abort", waiter.onAbort, { once: true });
    }
    return promise;
  }

  /**
   * Says that a cancel of the command was recorded: its open waits resolve with `true`.
   *
   * @param commandId The command.
   */
  notify(commandId: string): void {
    for (const waiter of [...this.#commands.get(commandId) ?? []]) this.#settle(waiter, true);
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
    const waiters = this.#commands.get(waiter.commandId);
    if (waiters) {
      waiters.delete(waiter);
      if (waiters.size === 0) this.#commands.delete(waiter.commandId);
    }
    this.#size--;
    waiter.resolve(requested);
  }
}
