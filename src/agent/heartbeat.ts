/**
 * The metrics heartbeat that runs beside the poll loop (docs/protocol.md §6): every
 * `METRICS_INTERVAL_SECS` it samples the host, logs the sample at debug level and, when
 * `METRICS_WEBHOOK` is set, POSTs it as JSON with a bounded `cockatiel` retry.
 *
 * @module
 */
import { signedHeaders } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import { retryWhile } from "./backoff.ts";
import { describeFetchFailure } from "../fetch_failure.ts";
import { type Clock, systemClock } from "./clock.ts";
import { type DashboardClient, isTransient } from "./client.ts";
import {
  defaultMetricsSources,
  type MetricsAvailability,
  MetricsCollector,
  type MetricsSample,
} from "./metrics.ts";

/** Options of {@link runHeartbeat}. */
export interface HeartbeatOptions {
  /** The agent id (`X-Agent-Id` and `agent_id` of every sample). */
  agentId: string;
  /** Seconds between samples (`METRICS_INTERVAL_SECS`). */
  intervalSecs: number;
  /** Where samples are also POSTed (`METRICS_WEBHOOK`), besides `report`; unset: nowhere else. */
  webhook?: string;
  /**
   * The dashboard's URL: a webhook on the same origin gets fully signed requests (with the
   * bearer token); any other origin gets only `X-Agent-Id`, `X-Timestamp` and `X-Request-Id`, so
   * the token never leaves for a third party.
   */
  dashboardUrl?: string;
  /** The agent token, for signing requests to the dashboard's origin. */
  agentToken?: string;
  /**
   * Attempts per sample beyond the first.
   * @default {2}
   */
  retries?: number;
  /**
   * First retry delay's upper bound, in milliseconds (full jitter, doubling).
   * @default {500}
   */
  retryDelayMs?: number;
  /**
   * Deadline of one POST, in milliseconds.
   * @default {10000}
   */
  requestTimeoutMs?: number;
  /** Metric sources; defaults to what the permissions allow. */
  sources?: MetricsAvailability;
  /** `fetch` to use; for tests. */
  fetch?: typeof fetch;
  /** Clock; for tests. */
  clock?: Clock;
  /**
   * Also hands every sample to this (the agent sends it to the dashboard's fleet view); with it,
   * the first sample is taken at start, not after the first interval. Must not throw.
   */
  report?: (sample: MetricsSample, signal: AbortSignal) => Promise<void>;
}

const log = logger("agent", "metrics");
const agentLog = logger("agent");

class WebhookError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = "WebhookError";
  }
}

function sameOrigin(a: string, b: string | undefined): boolean {
  if (b === undefined) return false;
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/**
 * Runs the heartbeat until `signal` aborts. Never throws: a failed POST is logged and the next
 * sample comes at the next interval.
 *
 * @param options Interval, webhook and injectables.
 * @param signal Stops the heartbeat.
 * @returns A promise that resolves once the heartbeat stopped.
 */
export async function runHeartbeat(options: HeartbeatOptions, signal: AbortSignal): Promise<void> {
  const clock = options.clock ?? systemClock;
  const doFetch = options.fetch ?? fetch;
  const { sources, missing } = options.sources ?? defaultMetricsSources();
  const collector = new MetricsCollector(options.agentId, sources, () => clock.now());
  const intervalMs = options.intervalSecs * 1000;
  log.info("metrics heartbeat started", {
    intervalSecs: options.intervalSecs,
    webhook: options.webhook === undefined ? null : shownWebhook(options.webhook),
  });
  if (missing.length > 0) log.info(`metrics heartbeat: ${missing.join("; ")}`);
  const retryable = (error: Error | undefined) =>
    error !== undefined &&
    (!(error instanceof WebhookError) || error.status === undefined || error.status >= 500 ||
      error.status === 429);
  const signWithToken = sameOrigin(options.webhook ?? "", options.dashboardUrl);

  const post = async (body: string) => {
    const url = new URL(options.webhook!);
    const headers = new Headers(signedHeaders({
      agentId: options.agentId,
      token: signWithToken ? options.agentToken : undefined,
      method: "POST",
      pathAndQuery: url.pathname + url.search,
      body,
      now: clock.now(),
    }));
    headers.set("Content-Type", "application/json");
    const timeoutMs = options.requestTimeoutMs ?? 10_000;
    let response: Response;
    try {
      response = await doFetch(url, {
        method: "POST",
        headers,
        body,
        // A signed request is not followed elsewhere: its signature would go to another origin.
        redirect: signWithToken ? "manual" : "follow",
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
    } catch (error) {
      if (signal.aborted) throw error;
      // Why, in words ("connection refused"), not fetch's own "fetch failed".
      throw new Error(
        (error as Error | null)?.name === "TimeoutError"
          ? `no answer within ${timeoutMs / 1000} s`
          : describeFetchFailure(error),
      );
    }
    await response.body?.cancel();
    if (signWithToken && response.status >= 300 && response.status < 400) {
      throw new WebhookError(
        `webhook redirects (${response.status}); not followed, since the heartbeat is signed ` +
          "with the agent's token (the webhook has the dashboard's origin): set METRICS_WEBHOOK " +
          "to the address it leads to",
        response.status,
      );
    }
    if (!response.ok) {
      throw new WebhookError(`webhook answered ${response.status}`, response.status);
    }
  };

  let first = options.report !== undefined;
  while (!signal.aborted) {
    if (!first) await clock.sleep(intervalMs, signal);
    first = false;
    if (signal.aborted) break;
    const sample = await collector.collect();
    log.debug("metrics heartbeat", { ...sample });
    await options.report?.(sample, signal);
    if (!options.webhook) continue;
    const body = JSON.stringify(sample);
    const error = await retryWhile(
      () => post(body).then(() => undefined, (error: Error) => error),
      retryable,
      { retries: options.retries ?? 2, initialDelayMs: options.retryDelayMs ?? 500, clock, signal },
    );
    if (signal.aborted) break;
    if (error !== undefined) {
      log.warning("metrics heartbeat not delivered to the webhook", {
        webhook: shownWebhook(options.webhook),
        error: hideWebhook(error.message, options.webhook),
      });
    }
  }
  log.debug("metrics heartbeat stopped");
}

/**
 * The webhook as the log shows it: its origin only. A webhook's path and query are often its
 * secret (`https://hooks.example/services/T0/B0/XXXX`, `?token=`), and a log is read by more people.
 */
function shownWebhook(webhook: string): string {
  try {
    return `${new URL(webhook).origin}/…`;
  } catch {
    return "(the webhook)";
  }
}

/** A text with the webhook's URL in it (an error's message) shown as {@link shownWebhook}. */
function hideWebhook(text: string, webhook: string): string {
  let href = webhook;
  try {
    href = new URL(webhook).href;
  } catch {
    // Shown as given.
  }
  return text.replaceAll(webhook, shownWebhook(webhook)).replaceAll(href, shownWebhook(webhook));
}

/** What the agent adds to each sample it sends to the dashboard's fleet view. */
export interface FleetHeartbeatOptions {
  /** Sends the heartbeats. */
  client: DashboardClient;
  /** The agent's version. */
  version: string;
  /** The deployment the agent serves. */
  deploymentHash: string;
  /** This process's instance id. */
  instanceId: () => string;
  /** The agent's labels. */
  labels: Record<string, string>;
}

/**
 * How often a dashboard that keeps answering heartbeats `404` still gets one, once the back-off
 * has grown: one sample in this many.
 */
export const HEARTBEAT_404_EVERY = 16;

/**
 * The {@link HeartbeatOptions.report} that sends each sample to the dashboard's fleet view.
 * After a `404` (a dashboard without fleet view, or one being redeployed behind a proxy) it says
 * so once and backs off: after each `404` in a row it skips 1, 2, 4, 8 samples, then sends one
 * sample in {@link HEARTBEAT_404_EVERY}; a heartbeat it takes again ends the back-off, said once
 * too. Another
 * refusal (a 4xx, a redirect) is a warning the first time for each status, as it does not go
 * away by itself; failures that do (no answer, a 5xx) are the poll loop's to tell. Never throws.
 *
 * @param options Client and what each sample carries.
 * @returns The report callback.
 */
export function fleetHeartbeat(
  options: FleetHeartbeatOptions,
): (sample: MetricsSample, signal: AbortSignal) => Promise<void> {
  /** `404`s in a row, and samples still to skip before the next try. */
  let notFound = 0;
  let skip = 0;
  /** The statuses of refusals said at warning level. */
  const told = new Set<number>();
  return async (sample, signal) => {
    if (skip > 0) {
      skip--;
      return;
    }
    const outcome = await options.client.heartbeat({
      ...sample,
      version: options.version,
      deployment_hash: options.deploymentHash,
      instance_id: options.instanceId(),
      labels: options.labels,
    }, signal);
    if (outcome.kind === "aborted") return;
    if (outcome.kind === "refused" && outcome.status === 404) {
      skip = Math.min(2 ** notFound, HEARTBEAT_404_EVERY - 1);
      if (notFound++ === 0) {
        agentLog.info(
          "the dashboard has no heartbeat endpoint (404): heartbeats to it are sent again less " +
            "and less often (down to one sample in {max}) until it takes one; samples still go to " +
            "the webhook, if any",
          { max: HEARTBEAT_404_EVERY, error: outcome.message },
        );
      } else {
        agentLog.debug("heartbeat answered 404 again", { times: notFound, skip });
      }
      return;
    }
    if (outcome.kind === "accepted") {
      if (notFound > 0) {
        agentLog.info("the dashboard takes heartbeats again, after {times} answered 404", {
          times: notFound,
        });
      }
      notFound = 0;
      return;
    }
    // Another refusal tells that the endpoint is there; no answer or a 5xx tells nothing.
    if (!isTransient(outcome)) notFound = 0;
    const status = "status" in outcome ? outcome.status : undefined;
    if (status !== undefined && !isTransient(outcome) && !told.has(status)) {
      told.add(status);
      agentLog.warning(
        "the dashboard refused the heartbeat ({status}): its fleet view lacks this agent's " +
          "figures and labels (a fan-out run by label misses it); said once, later ones at " +
          "debug level",
        { status, error: outcome.message },
      );
      return;
    }
    agentLog.debug("heartbeat not delivered to the dashboard", {
      status: status ?? null,
      error: outcome.message ?? outcome.kind,
    });
  };
}
