/**
 * Step 4 of the agent pipeline: the request's `X-Timestamp` is close to the dashboard's clock.
 *
 * @module
 */
import { HEADER } from "../../protocol/mod.ts";
import type { Clock } from "../clock.ts";
import type { AgentCall } from "./call.ts";
import { refuse } from "./refuse.ts";

/** Options of step 4. */
export interface TimestampOptions {
  /** The dashboard's clock. */
  clock: Clock;
  /** The largest accepted skew, in seconds. */
  maxSkewSecs: number;
}

/**
 * Step 4: `X-Timestamp` is an integer within `maxSkewSecs` of the dashboard's clock (to the
 * millisecond).
 *
 * @param options Clock and the largest skew in seconds.
 * @param call The request, after step 1.
 * @throws {HttpError} `401`, saying how far off the clock is.
 */
export function checkTimestampOf(options: TimestampOptions, call: AgentCall): void {
  if (call.unsigned) return;
  // Not trimmed: the value is signed as it is (step 5), so it is read as it is. The spaces and
  // tabs around a header are no part of its value (gone already); a no-break space is.
  const raw = call.headers.get(HEADER.timestamp);
  if (!raw || !/^-?\d{1,15}$/.test(raw)) {
    throw refuse(
      call,
      401,
      "X-Timestamp header is missing or not an integer",
      "authentication failed",
    );
  }
  // Compared to the millisecond, not rounded: a timestamp 300.4 s ahead is refused, so the
  // timestamps accepted at any moment span at most 2 × maxSkewSecs (the replay window's bound).
  const skew = Number(raw) - options.clock.now() / 1000;
  if (Math.abs(skew) > options.maxSkewSecs) {
    // Whole seconds, rounded away from zero: never a figure within the limit.
    const shown = Math.sign(skew) * Math.ceil(Math.abs(skew));
    throw refuse(
      call,
      401,
      `X-Timestamp is ${Math.abs(shown)} s ${skew > 0 ? "ahead of" : "behind"} the ` +
        `dashboard's clock (at most ${options.maxSkewSecs} s allowed); one of the two clocks ` +
        "is wrong: set the agent machine's or the dashboard's right (NTP)",
      "authentication failed",
      {
        details: {
          skew_secs: shown,
          dashboard_time: new Date(options.clock.now()).toISOString(),
        },
      },
    );
  }
}
