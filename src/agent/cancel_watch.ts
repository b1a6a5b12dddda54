/**
 * The cancel-wait of a running command (our extension of docs/protocol.md §2, see
 * `src/server/mod.ts`): while a command runs, one long request stays open beside the poll loop,
 * and an operator's cancel stops the command, which is then reported `cancelled`.
 *
 * @module
 */
import type { DeliveredCommand } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import { MIN_RETRY_AFTER_MS, PollBackoff, type PollBackoffOptions } from "./backoff.ts";
import type { Clock } from "./clock.ts";
import { type DashboardClient, hasCommandPaths } from "./client.ts";
import type { AgentMetrics } from "./prom.ts";

/** What a {@link CancelWatcher} works with. */
export interface CancelWatcherOptions {
  /** Makes the cancel-wait requests. */
  client: DashboardClient;
  /** Clock of the delays. */
  clock: Clock;
  /** The back-off after failed cancel-waits (the poll loop's settings). */
  backoff: PollBackoffOptions;
  /** How long one cancel-wait may wait on the dashboard, in seconds. */
  pollingTimeoutSecs: number;
  /** Counts an answered cancel-wait as a successful long-poll (the agent polls no other then). */
  metrics?: AgentMetrics;
}

/**
 * How long a command runs before its cancel-wait opens, in ms: short commands cost no extra
 * request (the rate limit counts them), and a cancel recorded meanwhile is answered at once.
 */
export const CANCEL_WAIT_DELAY_MS = 1000;

const log = logger("agent");
const pollLog = logger("agent", "poll");

/** Watches running commands for an operator's cancel; says once if the dashboard cannot. */
export class CancelWatcher {
  readonly #options: CancelWatcherOptions;
  #toldUnsupported = false;

  /**
   * Makes a watcher.
   *
   * @param options Client, clock, back-off and timeout.
   */
  constructor(options: CancelWatcherOptions) {
    this.#options = options;
  }

  /**
   * Keeps one cancel-wait open for a running command (after {@link CANCEL_WAIT_DELAY_MS}) until
   * `done` aborts: a `204` opens the next, a failure backs off quietly (a `404` that is not the
   * dashboard's word on the command, a proxy's page, included), an operator's cancel aborts
   * `cancel`, a `404` of the dashboard or a `409` ends it. Never throws.
   *
   * @param command The running command.
   * @param cancel Aborted when an operator cancels the command.
   * @param done Aborts when the command ended.
   */
  async watch(
    command: DeliveredCommand,
    cancel: AbortController,
    done: AbortSignal,
  ): Promise<void> {
    // `…/commands/wait/cancel-wait` is a wait on that deployment hash, not this command's.
    if (!hasCommandPaths(command.id)) return;
    const { client, clock } = this.#options;
    const backoff = new PollBackoff(this.#options.backoff);
    try {
      await clock.sleep(CANCEL_WAIT_DELAY_MS, done);
      while (!done.aborted) {
        const started = clock.now();
        const outcome = await client.cancelWait(
          command.id,
          this.#options.pollingTimeoutSecs,
          done,
        );
        if (done.aborted) return;
        if (outcome.kind === "cancel" || outcome.kind === "none") {
          this.#options.metrics?.pollSucceeded(clock.now());
        }
        switch (outcome.kind) {
          case "cancel":
            log.info("command cancelled by the dashboard", { commandId: command.id });
            cancel.abort();
            return;
          case "none": {
            backoff.reset();
            // An empty answer long before the timeout: do not spin against it. At most a second:
            // a wall clock set back during the wait makes `elapsed` negative.
            const elapsed = clock.now() - started;
            if (elapsed < 1000) await clock.sleep(Math.min(1000, 1000 - elapsed), done);
            break;
          }
          case "unsupported":
            if (!this.#toldUnsupported) {
              this.#toldUnsupported = true;
              log.info(
                "the dashboard has no cancel-wait endpoint (404): an operator's cancel does not " +
                  "stop a running command here",
                { commandId: command.id, error: outcome.message },
              );
            }
            return;
          case "aborted":
            return;
          default: {
            if (
              outcome.kind === "final" || outcome.kind === "refused" ||
              (outcome.kind === "auth" && outcome.status === 403)
            ) {
              pollLog.debug("no cancel-wait for this command", {
                commandId: command.id,
                error: outcome.message,
              });
              return;
            }
            // A 429 without a Retry-After the agent can read still said to wait: never at once.
            const delayMs = outcome.kind === "throttled"
              ? outcome.retryAfterMs
              : outcome.kind === "server" && outcome.status === 429
              ? Math.max(backoff.next(), MIN_RETRY_AFTER_MS)
              : backoff.next();
            pollLog.debug("cancel-wait failed; asking again after back-off", {
              commandId: command.id,
              error: outcome.message,
              delaySecs: Math.round(delayMs) / 1000,
            });
            await clock.sleep(delayMs, done);
          }
        }
      }
    } catch (error) {
      log.warning("cancel-wait stopped", { commandId: command.id, error });
    }
  }
}
