/**
 * Helpers of the agent tests: a fake executor, log capture, a recording clock.
 *
 * @module
 */
import { until } from "../_until.ts";
import { FakeClock } from "../../src/clock.ts";
import type { ExecOutcome, ExecRequest, Executor } from "../../src/agent/mod.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";

/** A successful outcome. */
export function success(stdout = "hi\n"): ExecOutcome {
  const now = new Date().toISOString();
  return {
    status: "success",
    result: {
      exit_code: 0,
      signal: null,
      duration_secs: 0.01,
      stdout,
      stderr: "",
      stdout_truncated_bytes: 0,
      stderr_truncated_bytes: 0,
    },
    error: null,
    started_at: now,
    completed_at: now,
  };
}

/** An executor whose behaviour the test decides; it records every run. */
export class FakeExecutor implements Executor {
  readonly runs: ExecRequest[] = [];
  behaviour: (request: ExecRequest) => Promise<ExecOutcome> = () => Promise.resolve(success());

  run(request: ExecRequest): Promise<ExecOutcome> {
    this.runs.push(request);
    return this.behaviour(request);
  }
}

/** Runs until `signal` aborts (then `cancelled`) or `finish` resolves (then `success`). */
export function cancellable(finish: Promise<void>) {
  return (request: ExecRequest): Promise<ExecOutcome> =>
    new Promise((resolve) => {
      const onAbort = () => {
        resolve({ ...success(""), status: "cancelled", error: "cancelled by the agent" });
      };
      if (request.signal.aborted) return onAbort();
      request.signal.addEventListener("abort", onAbort, { once: true });
      finish.then(() => {
        request.signal.removeEventListener("abort", onAbort);
        resolve(success("finished\n"));
      });
    });
}

/** Captured log records (JSON lines parsed). */
export interface CapturedLogs extends Disposable {
  records: Record<string, unknown>[];
  messages(): string[];
  has(message: string | RegExp): boolean;
}

/** Sends every log record at debug level and above to memory until disposed. */
export function captureLogs(): CapturedLogs {
  const records: Record<string, unknown>[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => records.push(JSON.parse(line)) });
  return {
    records,
    messages: () => records.map((r) => String(r.message)),
    has(message) {
      return records.some((r) =>
        typeof message === "string" ? r.message === message : message.test(String(r.message))
      );
    },
    [Symbol.dispose]: () => closeLogging(),
  };
}

/** A fake clock whose sleeps return at once (after a turn of the event loop), moving it, and are recorded. */
export class RecordingClock extends FakeClock {
  readonly sleeps: number[] = [];

  override sleep(ms: number, _signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    this.advance(ms);
    return new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/**
 * Advances a fake clock by `stepMs` at a time (letting promises and I/O run between steps) until
 * `predicate` holds; rejects after `ms` of real time.
 */
export async function advanceUntil(
  clock: FakeClock,
  predicate: () => boolean,
  stepMs: number,
  what = "condition",
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await clock.advanceAsync(stepMs);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Waits until `predicate` holds (the tests' one poll helper, {@link until}); rejects after `ms`. */
export function eventually(
  predicate: () => boolean,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  return until(predicate, what, ms, 10);
}
