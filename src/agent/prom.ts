/**
 * The agent's own Prometheus metrics (`prom-client`), served on `GET /metrics` of a small HTTP
 * listener when `--metrics-port` is given.
 *
 * | metric | type | labels |
 * | --- | --- | --- |
 * | `status_agent_info` | gauge (1) | `agent_id`, `version`, `instance_id` |
 * | `status_agent_commands_total` | counter | `status` (final status of each command run; each at 0 from the start) |
 * | `status_agent_poll_errors_total` | counter | `kind` (`network`, `server`, `throttled`, `auth`, `redirect`, `refused`, `invalid`; each at 0 from the start) |
 * | `status_agent_backoff_seconds` | gauge | — (current back-off delay; 0 when polling normally) |
 * | `status_agent_backoff_attempts` | gauge | — (failures in a row) |
 * | `status_agent_last_poll_success_timestamp_seconds` | gauge | — (a wait or, while a command runs, a cancel-wait; the agent's start until the first) |
 * | `status_agent_output_chunks_total` | counter | — (live output chunks delivered) |
 *
 * @module
 */
import { Counter, Gauge, Registry } from "prom-client";
import { REPORT_STATUSES } from "../protocol/mod.ts";

/** Kinds of failed long-polls (`status_agent_poll_errors_total`). */
const POLL_ERROR_KINDS = [
  "network",
  "server",
  "throttled",
  "auth",
  "redirect",
  "refused",
  "invalid",
] as const;

/** The agent's metrics. */
export class AgentMetrics {
  readonly #registry: Registry = new Registry();
  readonly #commands: Counter<"status">;
  readonly #pollErrors: Counter<"kind">;
  readonly #backoff: Gauge;
  readonly #backoffAttempts: Gauge;
  readonly #lastPoll: Gauge;
  readonly #chunks: Counter;
  #polled = false;

  /**
   * Creates the metrics of one agent.
   *
   * @param info Who the agent is.
   */
  constructor(info: { agentId: string; version: string; instanceId: string }) {
    const registers = [this.#registry];
    new Gauge({
      name: "status_agent_info",
      help: "Who this agent is (always 1)",
      labelNames: ["agent_id", "version", "instance_id"],
      registers,
    }).set({ agent_id: info.agentId, version: info.version, instance_id: info.instanceId }, 1);
    this.#commands = new Counter({
      name: "status_agent_commands_total",
      help: "Commands run, by final status",
      labelNames: ["status"],
      registers,
    });
    this.#pollErrors = new Counter({
      name: "status_agent_poll_errors_total",
      help: "Failed long-polls, by kind of failure",
      labelNames: ["kind"],
      registers,
    });
    this.#backoff = new Gauge({
      name: "status_agent_backoff_seconds",
      help: "Current back-off delay before the next poll (0: polling normally)",
      registers,
    });
    this.#backoffAttempts = new Gauge({
      name: "status_agent_backoff_attempts",
      help: "Failed requests in a row (0: polling normally)",
      registers,
    });
    this.#lastPoll = new Gauge({
      name: "status_agent_last_poll_success_timestamp_seconds",
      help: "When a long-poll (a wait, or a running command's cancel-wait) last succeeded, or " +
        "when the agent started if none has yet (unix time)",
      registers,
    });
    this.#chunks = new Counter({
      name: "status_agent_output_chunks_total",
      help: "Live output chunks delivered to the dashboard",
      registers,
    });
    // Every label value is there from the start, at 0: a series that first appears at 1 is no
    // increase to Prometheus, so the first failed command or poll would be missed by increase().
    for (const status of REPORT_STATUSES) this.#commands.inc({ status }, 0);
    for (const kind of POLL_ERROR_KINDS) this.#pollErrors.inc({ kind }, 0);
  }

  /**
   * The agent started: until a long-poll succeeds, the last success reads as this time, not 0,
   * so `time() - status_agent_last_poll_success_timestamp_seconds` is how long the agent has not
   * reached the dashboard (not 56 years for every agent in its first long-poll).
   *
   * @param nowMs Now, in ms.
   */
  started(nowMs: number): void {
    if (!this.#polled) this.#lastPoll.set(nowMs / 1000);
  }

  /**
   * A long-poll succeeded (a command, an empty answer, or a running command's cancel-wait).
   *
   * @param nowMs Now, in ms.
   */
  pollSucceeded(nowMs: number): void {
    this.#polled = true;
    this.#lastPoll.set(nowMs / 1000);
    this.#backoff.set(0);
    this.#backoffAttempts.set(0);
  }

  /**
   * A long-poll failed.
   *
   * @param kind The kind of failure.
   */
  pollFailed(kind: string): void {
    this.#pollErrors.inc({ kind });
  }

  /**
   * The agent backs off.
   *
   * @param delaySecs The delay.
   * @param attempts Failures in a row.
   */
  backingOff(delaySecs: number, attempts: number): void {
    this.#backoff.set(delaySecs);
    this.#backoffAttempts.set(attempts);
  }

  /**
   * A command was run.
   *
   * @param status Its final status.
   */
  commandRun(status: string): void {
    this.#commands.inc({ status });
  }

  /** A live output chunk was delivered. */
  chunkSent(): void {
    this.#chunks.inc();
  }

  /** The `GET /metrics` answer: the metrics in the Prometheus text format. */
  async render(): Promise<Response> {
    return new Response(await this.#registry.metrics(), {
      headers: { "Content-Type": this.#registry.contentType },
    });
  }
}
