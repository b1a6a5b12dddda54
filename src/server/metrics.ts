/**
 * The dashboard's Prometheus metrics (`prom-client`), one registry per app, and `GET /metrics`.
 *
 * | metric | type | labels |
 * | --- | --- | --- |
 * | `status_agents_waiting` | gauge | — |
 * | `status_agents_online` | gauge | — (`NaN` while the store does not answer) |
 * | `status_commands` | gauge | `status` (queue depth by status; `NaN` likewise) |
 * | `status_store_up` | gauge | — (1 when the store answered this scrape's reads within 5 s, else 0) |
 * | `status_commands_finished_total` | counter | `status` (final status; each at 0 from the start) |
 * | `status_command_delivery_latency_seconds` | histogram | — (enqueue to first delivery) |
 * | `status_command_duration_seconds` | histogram | — (as the agent reported it, counted as at most 7 days) |
 * | `status_http_requests_total` | counter | `route`, `status` |
 * | `status_auth_refusals_total` | counter | `reason` (each at 0 from the start) |
 * | `status_rate_limit_refusals_total` | counter | — |
 * | `status_leases_expired_total` | counter | `outcome` (`requeued`, `lost`, `cancelled`) |
 * | `status_redeliveries_total` | counter | — |
 * | `status_store_operation_duration_seconds` | histogram | `operation` |
 * | `status_output_bytes_total` | counter | — (live output bytes stored) |
 * | `process_resident_memory_bytes` | gauge | — (the dashboard process's resident memory) |
 * | `status_heap_used_bytes` | gauge | — (JavaScript heap in use) |
 * | `status_connections_open` | gauge | — (open HTTP connections) |
 * | `status_connections_limit` | gauge | — (the connection limit in force) |
 * | `status_connections_evicted_total` | counter | — (idle ones closed at the limit for a new one) |
 * | `status_connections_refused_total` | counter | — (new ones closed at the limit, none idle) |
 * | `status_waits_evicted_total` | counter | `kind` (`wait`, `cancel-wait`: ended at an agent's cap) |
 * | `status_event_streams_open` | gauge | — (event streams of commands and runs open now) |
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CommandStatus } from "../protocol/mod.ts";
import { COMMAND_STATUSES, FINAL_STATUSES } from "../protocol/mod.ts";
import { REFUSAL_REASONS } from "./refusals.ts";
import { type Clock, systemClock } from "./clock.ts";

/**
 * How long a scrape waits for the store's figures, in ms: then they are not known (`NaN`,
 * `status_store_up` 0). A database that does not answer (a network partition, a frozen server)
 * takes its query timeout (15 s) to fail, longer than a scraper waits (Prometheus: 10 s), which
 * would see no scrape at all instead of one saying the store does not answer.
 */
export const METRICS_STORE_WAIT_MS = 5000;

/** Outcomes of a lease that ended without a report (`status_leases_expired_total`). */
const LEASE_OUTCOMES = ["requeued", "lost", "cancelled"] as const;

/** What the gauges read when scraped. */
export interface DashboardMetricsSources {
  /** Agents with an open wait now. */
  waiting(): number;
  /** Agents online (waiting, or seen recently). */
  online(): Promise<number> | number;
  /** Commands per status. */
  countByStatus(): Promise<Partial<Record<CommandStatus, number>>>;
  /**
   * Waits and cancel-waits ended since start because their agent opened more than its cap
   * (`WaiterHub.evictions`, `CancelWaiters.evictions`).
   */
  evictedWaits?(): { wait: number; cancelWait: number };
  /** Event streams open now. */
  eventStreams?(): number;
}

/** The dashboard's HTTP connections, as its listener counts them (`HttpListener`). */
export interface ConnectionCounts {
  /** Connections open now. */
  readonly connections: number;
  /** The connection limit in force. */
  readonly maxConnections: number;
  /** Idle connections closed to make room for a new one at the limit, since start. */
  readonly evicted: number;
  /** New connections closed at the limit because none was idle, since start. */
  readonly refused: number;
}

/** Renders metrics in the Prometheus text format. */
export interface MetricsRenderer {
  /** The `GET /metrics` answer. */
  render(): Promise<Response>;
  /** Connects the connection metrics to the listener that serves the app (0 until then). */
  bindConnections(counts: ConnectionCounts): void;
}

/** The dashboard's metrics. */
export class DashboardMetrics implements MetricsRenderer {
  /** The registry `GET /metrics` renders. */
  readonly registry: Registry = new Registry();
  /** Commands that reached a final status, by status. */
  readonly commandsFinished: Counter<"status">;
  /** Enqueue to first delivery. */
  readonly deliveryLatency: Histogram;
  /** Run time as reported. */
  readonly commandDuration: Histogram;
  /** HTTP requests by route and status. */
  readonly requests: Counter<"route" | "status">;
  /** Refused authentications by reason. */
  readonly authRefusals: Counter<"reason">;
  /** Requests refused by the rate limit. */
  readonly rateLimited: Counter;
  /** Leases that ended without a report, by what happened to the command. */
  readonly leasesExpired: Counter<"outcome">;
  /** Deliveries of an attempt after the first. */
  readonly redeliveries: Counter;
  /** Store calls. */
  readonly storeLatency: Histogram<"operation">;
  /** Live output bytes stored. */
  readonly outputBytes: Counter;
  #sources: DashboardMetricsSources | undefined;
  #connections: ConnectionCounts | undefined;
  readonly #clock: Clock;
  readonly #online: Gauge;
  readonly #commands: Gauge<"status">;
  readonly #storeUp: Gauge;

  /**
   * Creates the metrics of one dashboard.
   *
   * @param options The clock that times a scrape's wait for the store (`systemClock`).
   */
  constructor(options: { clock?: Clock } = {}) {
    this.#clock = options.clock ?? systemClock;
    const registers = [this.registry];
    // deno-lint-ignore no-this-alias
    const self = this;
    new Gauge({
      name: "status_agents_waiting",
      help: "Agents with an open long-poll now",
      registers,
      collect() {
        this.set(self.#sources?.waiting() ?? 0);
      },
    });
    // Read from the store once a scrape, in render(): while it does not answer (an outage), the
    // scrape still answers, these two NaN and status_store_up 0.
    this.#online = new Gauge({
      name: "status_agents_online",
      help: "Agents waiting or seen recently (not offline)",
      registers,
    });
    this.#commands = new Gauge({
      name: "status_commands",
      help: "Commands by current status (queue depth by status)",
      labelNames: ["status"],
      registers,
    });
    this.#storeUp = new Gauge({
      name: "status_store_up",
      help: "Whether the command store answered this scrape's reads (1) or not (0)",
      registers,
    });
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory of the dashboard process",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    new Gauge({
      name: "status_heap_used_bytes",
      help: "JavaScript heap in use by the dashboard process",
      registers,
      collect() {
        this.set(Deno.memoryUsage().heapUsed);
      },
    });
    new Gauge({
      name: "status_connections_open",
      help: "Open HTTP connections of the dashboard",
      registers,
      collect() {
        this.set(self.#connections?.connections ?? 0);
      },
    });
    new Gauge({
      name: "status_connections_limit",
      help: "The connection limit in force (MAX_CONNECTIONS, kept under the open-files limit)",
      registers,
      collect() {
        this.set(self.#connections?.maxConnections ?? 0);
      },
    });
    new Gauge({
      name: "status_event_streams_open",
      help:
        "Event streams of commands and runs open now (at most a quarter of the connection limit)",
      registers,
      collect() {
        this.set(self.#sources?.eventStreams?.() ?? 0);
      },
    });
    // The listener keeps these counts; a scrape copies them (a counter only goes up, and so do
    // they).
    new Counter({
      name: "status_connections_evicted_total",
      help: "Idle connections closed at the connection limit to make room for a new one",
      registers,
      collect() {
        this.reset();
        this.inc(self.#connections?.evicted ?? 0);
      },
    });
    new Counter({
      name: "status_connections_refused_total",
      help: "New connections closed at the connection limit because none open was idle",
      registers,
      collect() {
        this.reset();
        this.inc(self.#connections?.refused ?? 0);
      },
    });
    new Counter({
      name: "status_waits_evicted_total",
      help: "Open long-polls ended because their agent opened more than its cap at once, by kind " +
        "(an agent restarting in a loop, or another client holding its token)",
      labelNames: ["kind"],
      registers,
      collect() {
        const evicted = self.#sources?.evictedWaits?.() ?? { wait: 0, cancelWait: 0 };
        this.reset();
        this.inc({ kind: "wait" }, evicted.wait);
        this.inc({ kind: "cancel-wait" }, evicted.cancelWait);
      },
    });
    this.commandsFinished = new Counter({
      name: "status_commands_finished_total",
      help: "Commands that reached a final status, by that status",
      labelNames: ["status"],
      registers,
    });
    this.deliveryLatency = new Histogram({
      name: "status_command_delivery_latency_seconds",
      help: "Time from enqueue to first delivery to the agent",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 1800],
      registers,
    });
    this.commandDuration = new Histogram({
      name: "status_command_duration_seconds",
      help: "Run time of commands as their agents reported it",
      buckets: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    this.requests = new Counter({
      name: "status_http_requests_total",
      help: "HTTP requests answered, by route and status code",
      labelNames: ["route", "status"],
      registers,
    });
    this.authRefusals = new Counter({
      name: "status_auth_refusals_total",
      help: "Requests refused by authentication or authorization, by reason",
      labelNames: ["reason"],
      registers,
    });
    this.rateLimited = new Counter({
      name: "status_rate_limit_refusals_total",
      help: "Requests refused by a rate limit (429): agents', operators' and console logins'",
      registers,
    });
    this.leasesExpired = new Counter({
      name: "status_leases_expired_total",
      help: "Delivery or execution leases that ended without a report, by outcome",
      labelNames: ["outcome"],
      registers,
    });
    this.redeliveries = new Counter({
      name: "status_redeliveries_total",
      help: "Deliveries of a command after its first attempt",
      registers,
    });
    this.storeLatency = new Histogram({
      name: "status_store_operation_duration_seconds",
      help: "Duration of store operations (one transaction each), by operation",
      labelNames: ["operation"],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    });
    this.outputBytes = new Counter({
      name: "status_output_bytes_total",
      help: "Bytes of live command output stored",
      registers,
    });
    // Every label value of the bounded sets is there from the start, at 0: a series that first
    // appears at 1 is no increase to Prometheus, so the first failed command or refusal would be
    // missed by increase() and rate().
    for (const status of FINAL_STATUSES) this.commandsFinished.inc({ status }, 0);
    for (const reason of REFUSAL_REASONS) this.authRefusals.inc({ reason }, 0);
    for (const outcome of LEASE_OUTCOMES) this.leasesExpired.inc({ outcome }, 0);
  }

  /**
   * Sets the gauges read from the store, or `NaN` when it does not answer (within
   * {@link METRICS_STORE_WAIT_MS}).
   */
  async #readStore(): Promise<void> {
    const sources = this.#sources;
    const late = Promise.withResolvers<never>();
    const timer = this.#clock.setTimeout(
      () => late.reject(new Error("the store did not answer in time")),
      METRICS_STORE_WAIT_MS,
    );
    try {
      const [online, counts] = sources
        ? await Promise.race([
          Promise.all([sources.online(), sources.countByStatus()]),
          late.promise,
        ])
        : [0, {} as Partial<Record<CommandStatus, number>>];
      this.#online.set(online);
      for (const status of COMMAND_STATUSES) this.#commands.set({ status }, counts[status] ?? 0);
      this.#storeUp.set(1);
    } catch {
      // The store's own errors are logged where they happen (and answered 503 on the routes).
      // Not known: NaN (as Prometheus writes it), not a count of 0.
      this.#online.set(NaN);
      for (const status of COMMAND_STATUSES) this.#commands.set({ status }, NaN);
      this.#storeUp.set(0);
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }

  /**
   * Connects the gauges to what they read.
   *
   * @param sources The readers.
   */
  bind(sources: DashboardMetricsSources): void {
    this.#sources = sources;
  }

  /** {@inheritDoc MetricsRenderer.bindConnections} */
  bindConnections(counts: ConnectionCounts): void {
    this.#connections = counts;
  }

  /** The metrics in the Prometheus text format. */
  async render(): Promise<Response> {
    await this.#readStore();
    // prom-client writes a NaN value as "Nan"; the text format spells it "NaN" (a strict reader
    // refuses the other).
    const text = (await this.registry.metrics()).replace(/^([^#].*) Nan$/gm, "$1 NaN");
    return new Response(text, { headers: { "Content-Type": this.registry.contentType } });
  }
}

/** Route labels of the dashboard's paths (bounded: ids never become labels). */
const ROUTES: Array<[RegExp, string]> = [
  [/^\/api\/v1\/agent\/commands\/wait\/[^/]+$/, "/api/v1/agent/commands/wait/:hash"],
  [/^\/api\/v1\/agent\/commands\/(ack|report|enqueue)$/, "/api/v1/agent/commands/$1"],
  [/^\/api\/v1\/agent\/commands\/[^/]+\/(cancel-wait|output)$/, "/api/v1/agent/commands/:id/$1"],
  [/^\/api\/v1\/agent\/(heartbeat|ping)$/, "/api/v1/agent/$1"],
  [/^\/api\/v1\/commands$/, "/api/v1/commands"],
  [/^\/api\/v1\/commands\/[^/]+$/, "/api/v1/commands/:id"],
  [/^\/api\/v1\/commands\/[^/]+\/(cancel|events)$/, "/api/v1/commands/:id/$1"],
  [/^\/api\/v1\/agents$/, "/api/v1/agents"],
  [/^\/api\/v1\/agents\/[^/]+(\/rotate)?$/, "/api/v1/agents/:id$1"],
  [/^\/api\/v1\/runs$/, "/api/v1/runs"],
  [/^\/api\/v1\/runs\/[^/]+$/, "/api/v1/runs/:id"],
  [/^\/api\/v1\/runs\/[^/]+\/(cancel|events)$/, "/api/v1/runs/:id/$1"],
  [/^\/(health|metrics)$/, "/$1"],
  // The console's pages.
  [/^\/(|commands|enqueue|runs|runs\/new|login|logout|favicon\.ico)$/, "/$1"],
  [/^\/(commands|runs)\/[^/]+$/, "/$1/:id"],
  [/^\/commands\/[^/]+\/cancel$/, "/commands/:id/cancel"],
  [/^\/runs\/[^/]+\/cancel$/, "/runs/:id/cancel"],
  [/^\/static\/(console\.js|console\.css)$/, "/static/$1"],
];

/**
 * The route label of a path: its pattern, or `other`.
 *
 * @param path The request path.
 */
export function routeLabel(path: string): string {
  for (const [pattern, label] of ROUTES) {
    const match = pattern.exec(path);
    if (match) return label.replace("$1", match[1] ?? "");
  }
  return "other";
}
