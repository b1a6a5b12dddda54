/**
 * Time under our control: one clock for the agent and the dashboard (now, timers and an abortable
 * sleep), the real one, and a fake one that tests advance on command.
 *
 * @module
 */

/** An opaque handle of a timer set with {@link Clock.setTimeout}. */
export type TimerId = number | ReturnType<typeof setTimeout> | LongTimer;

/**
 * The longest delay a runtime timer keeps, in ms (2^31 - 1, about 24.8 days): `setTimeout` and
 * `AbortSignal.timeout` fire a longer one after 1 ms.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer of {@link longTimers} longer than {@link MAX_TIMER_MS}: set again in steps. */
export class LongTimer {
  /** The runtime timer of the current step. */
  step: number | ReturnType<typeof setTimeout> | undefined;
}

/** The runtime's timer functions, as {@link longTimers} uses them. */
export interface RuntimeTimers {
  setTimeout(fn: () => void, ms: number): number | ReturnType<typeof setTimeout>;
  clearTimeout(id: number | ReturnType<typeof setTimeout> | undefined): void;
}

/**
 * Timers on the runtime's that also keep delays beyond {@link MAX_TIMER_MS} (a 30-day command
 * deadline), in steps of at most that; the runtime fires a longer delay at once.
 *
 * @internal Exported for tests; {@link systemClock} uses it on the global timers.
 * @param runtime The runtime's timer functions.
 * @returns `setTimeout` and `clearTimeout` of a {@link Clock}.
 */
export function longTimers(runtime: RuntimeTimers): Pick<Clock, "setTimeout" | "clearTimeout"> {
  return {
    setTimeout(fn, ms) {
      if (!(ms > MAX_TIMER_MS)) return runtime.setTimeout(fn, ms);
      const timer = new LongTimer();
      const arm = (left: number) => {
        timer.step = left > MAX_TIMER_MS
          ? runtime.setTimeout(() => arm(left - MAX_TIMER_MS), MAX_TIMER_MS)
          : runtime.setTimeout(fn, left);
      };
      arm(ms);
      return timer;
    },
    clearTimeout(id) {
      runtime.clearTimeout(id instanceof LongTimer ? id.step : id);
    },
  };
}

/**
 * `AbortSignal.timeout` that also keeps delays beyond {@link MAX_TIMER_MS} (a `--wait-timeout` of
 * 30 days), in steps; the runtime's fires a longer one at once. Like it, it keeps no process alive.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timeoutSignal } from "./clock.ts";
 * const signal = timeoutSignal(30 * 86_400_000);
 * await new Promise((resolve) => setTimeout(resolve, 10));
 * assert.equal(signal.aborted, false);
 * ```
 *
 * @param ms The delay.
 * @param stepMs The longest step (tests).
 * @returns A signal aborted with a `TimeoutError` once `ms` have passed.
 */
export function timeoutSignal(ms: number, stepMs: number = MAX_TIMER_MS): AbortSignal {
  if (!(ms > stepMs)) return AbortSignal.timeout(ms);
  const controller = new AbortController();
  const step = (left: number) => {
    const part = AbortSignal.timeout(Math.min(left, stepMs));
    part.addEventListener("abort", () => {
      if (left > stepMs) step(left - stepMs);
      else controller.abort(part.reason);
    }, { once: true });
  };
  step(ms);
  return controller.signal;
}

/** A source of time in milliseconds since the epoch, with timers. */
export interface Clock {
  /** The current time in milliseconds since the epoch. */
  now(): number;
  /**
   * Milliseconds on a clock that no step of the wall clock moves (an NTP step, a resumed VM), for
   * measuring how long something took; only differences mean anything.
   *
   * @default {now()}
   */
  monotonic?(): number;
  /**
   * Waits `ms` milliseconds, or less when `signal` aborts; never rejects.
   *
   * @param ms How long to wait.
   * @param signal Ends the wait early.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * Calls `fn` once after `ms` milliseconds.
   *
   * @param fn What to call.
   * @param ms The delay.
   * @returns A handle for {@link Clock.clearTimeout}.
   */
  setTimeout(fn: () => void, ms: number): TimerId;
  /**
   * Cancels a timer; unknown or fired handles are ignored.
   *
   * @param id The handle from {@link Clock.setTimeout}.
   */
  clearTimeout(id: TimerId | undefined): void;
}

/**
 * The clock's monotonic time (its wall time when it has none): what durations are measured on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock, monotonicNow } from "./clock.ts";
 * assert.equal(monotonicNow(new FakeClock(5)), 5);
 * ```
 *
 * @param clock The clock.
 * @returns Milliseconds; only differences mean anything.
 */
export function monotonicNow(clock: Pick<Clock, "now" | "monotonic">): number {
  return clock.monotonic?.() ?? clock.now();
}

/**
 * Waits `ms` milliseconds on a real timer, or until `signal` aborts. Resolves in both cases and
 * leaves no timer or listener behind.
 *
 * @example Wait a second unless stopped
 * ```ts
 * import { abortableSleep } from "./clock.ts";
 * await abortableSleep(1, AbortSignal.timeout(10));
 * ```
 *
 * @param ms How long to wait; values at or below 0 resolve on the next turn.
 * @param signal Ends the wait early.
 * @returns A promise that resolves when the time has passed or the signal aborted.
 */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return sleepOn(systemClock, ms, signal);
}

/**
 * Waits `ms` milliseconds on a real timer, or rejects with the signal's reason when it aborts
 * (before or during the wait): {@link abortableSleep} for loops that end on abort.
 *
 * @example Stop polling on abort
 * ```ts
 * import assert from "node:assert/strict";
 * import { sleepOrThrow } from "./clock.ts";
 * await assert.rejects(sleepOrThrow(60_000, AbortSignal.abort(new Error("stop"))), /stop/);
 * ```
 *
 * @param ms How long to wait.
 * @param signal Ends the wait with its reason.
 * @returns A promise that resolves when the time has passed.
 * @throws The signal's reason when it aborted.
 */
export async function sleepOrThrow(ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  await abortableSleep(ms, signal);
  signal?.throwIfAborted();
}

/**
 * Blocks the thread for `ms` milliseconds: for the few synchronous steps that must wait a moment
 * for a lock another process holds (opening the agent's state, moving between cgroups).
 *
 * @param ms How long to wait.
 */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.max(0, ms));
}

/**
 * Takes an exclusive `flock` on `file`, trying again for up to `waitMs` milliseconds.
 *
 * @param file The open file (or directory).
 * @param waitMs How long another holder is waited for.
 * @returns Whether the lock is held.
 */
export function lockWithin(file: Deno.FsFile, waitMs: number): boolean {
  const waitUntil = Date.now() + waitMs;
  let locked: boolean;
  while (!(locked = file.tryLockSync(true)) && Date.now() < waitUntil) sleepSync(1);
  return locked;
}

function sleepOn(
  timers: Pick<Clock, "setTimeout" | "clearTimeout">,
  ms: number,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      timers.clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = timers.setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

const runtimeTimers = longTimers({
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number | undefined),
});

/**
 * The real clock: `Date.now()`, `performance.now()` as its monotonic time, and real timers
 * (delays beyond {@link MAX_TIMER_MS} too).
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  sleep: abortableSleep,
  setTimeout: runtimeTimers.setTimeout,
  clearTimeout: runtimeTimers.clearTimeout,
};

interface FakeTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that stands still until {@link FakeClock.advance} moves it; timers and sleeps fire in
 * order of their due time as it passes them (in the spirit of std's `FakeTime`, without replacing
 * the globals).
 *
 * @example Advance past a timer
 * ```ts
 * import { FakeClock } from "./clock.ts";
 * const clock = new FakeClock(0);
 * let fired = false;
 * clock.setTimeout(() => fired = true, 1_000);
 * clock.advance(999);
 * clock.advance(1);
 * if (!fired) throw new Error("the timer did not fire");
 * ```
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Map<TimerId, FakeTimer>();

  /**
   * Makes a clock standing at `start`.
   *
   * @param start The starting time in ms since the epoch.
   */
  constructor(start: number = Date.UTC(2026, 0, 12, 10, 0, 0)) {
    this.#now = start;
  }

  /** The current fake time. */
  now(): number {
    return this.#now;
  }

  /** The fake time too: what {@link FakeClock.advance} moves, and timers are due on. */
  monotonic(): number {
    return this.#now;
  }

  /** Timers (and sleeps) waiting to fire. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next timer is due, or `null` without one. */
  get nextAt(): number | null {
    let next: number | null = null;
    for (const timer of this.#timers.values()) {
      if (next === null || timer.at < next) next = timer.at;
    }
    return next;
  }

  /** Sets a timer on the fake time. */
  setTimeout(fn: () => void, ms: number): TimerId {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), seq: id, fn });
    return id;
  }

  /** Cancels a timer. */
  clearTimeout(id: TimerId | undefined): void {
    if (id !== undefined) this.#timers.delete(id);
  }

  /** Sleeps on the fake time; the promise settles when {@link FakeClock.advance} passes it. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /**
   * Moves the time forward by `ms`, firing each timer due on the way at its own time, in order
   * (at once, like std's `FakeTime.tick`).
   *
   * @param ms How far to move.
   */
  advance(ms: number): void {
    const end = this.#now + Math.max(0, ms);
    for (let due = this.#due(end); due !== undefined; due = this.#due(end)) {
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].fn();
    }
    this.#now = end;
  }

  /**
   * Like {@link FakeClock.advance}, but lets pending promise callbacks run before and after each
   * timer, so that code woken by one timer can set the next (like std's `FakeTime.tickAsync`).
   *
   * @param ms How far to move.
   */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.#now + Math.max(0, ms);
    await settle();
    for (let due = this.#due(end); due !== undefined; due = this.#due(end)) {
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }

  #due(end: number): [TimerId, FakeTimer] | undefined {
    let due: [TimerId, FakeTimer] | undefined;
    for (const entry of this.#timers) {
      const timer = entry[1];
      if (timer.at > end) continue;
      if (
        due === undefined || timer.at < due[1].at ||
        (timer.at === due[1].at && timer.seq < due[1].seq)
      ) {
        due = entry;
      }
    }
    return due;
  }
}

/** Lets pending promise callbacks (and one macrotask) run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
