/**
 * Wake-up latency: from the start of an enqueue request to the moment the waiting client has the
 * whole command, on `status serve` and, as the reference, on Redis (`LPUSH` → a client blocked in
 * `BLPOP`), with N other clients waiting on the same server.
 *
 * Both systems are measured the same way, by the same client code (raw TCP in this process):
 *
 * 1. the measuring client sends its wait (`GET …/wait`, or `BLPOP wake 0`);
 * 2. the operator connection asks the server how many clients wait (`GET /health` → `waiting`,
 *    or `INFO clients` → `blocked_clients`) until the server itself counts N + 1: the new wait is
 *    registered, so the enqueue wakes a waiter rather than filling a queue;
 * 3. the clock starts just before the enqueue (`POST …/enqueue` with the admin token, or `LPUSH`)
 *    is written, and stops when the waiting connection has parsed the whole answer;
 * 4. on the dashboard the command is then acked and reported, so the queue stays clean.
 *
 * @module
 */
import {
  ackAndReport,
  type AgentCredentials,
  agentHeaders,
  expectStatus,
  Operator,
  waitPath,
} from "./_dashboard.ts";
import { HttpConnection, jsonOf } from "./_http.ts";
import { infoField, RespConnection } from "./_resp.ts";
import { summarize, type Summary } from "./_stats.ts";

/** One wake-up measurement. */
export interface WakeResult {
  /**
   * `status`, `redis` (nothing kept), `redis-durable` (`appendfsync always`) or `postgres`
   * (`INSERT` + `NOTIFY` → `LISTEN`).
   */
  system: "status" | "redis" | "redis-durable" | "postgres";
  /** For `status`: the store, and whether the enqueue went to the waiting agent's instance. */
  setup?: { store: "sqlite" | "postgres"; enqueue: "same instance" | "other instance" };
  /** Other clients waiting on the server meanwhile. */
  waiting: number;
  /** Latency in milliseconds. */
  latencyMs: Summary;
  /** Samples where the server did not count N + 1 waiters within the bound (measured anyway). */
  unconfirmed: number;
  /** The server's resident memory with the N waiting, just before the samples, in bytes. */
  rssBytes?: number;
}

/** Options of a wake-up measurement. */
export interface WakeOptions {
  /** Other clients the load generator holds waiting. */
  waiting: number;
  /** Timed samples. */
  samples: number;
  /**
   * Untimed samples first.
   * @default {50}
   */
  warmup?: number;
  /** Enqueue on this dashboard instead (another instance on the same database). */
  enqueueUrl?: string;
}

/** How long the registration check may take, in polls of the server's count. */
const MAX_CONFIRM_POLLS = 2000;

/**
 * Measures the wake-up latency of a waiting agent on `status serve`.
 *
 * @param url The dashboard.
 * @param adminToken Its admin token.
 * @param agent The measuring agent (not one of the load generator's).
 * @param options N, samples and warm-up.
 * @returns The latency summary.
 */
export async function measureStatusWake(
  url: string,
  adminToken: string,
  agent: AgentCredentials,
  options: WakeOptions,
): Promise<WakeResult> {
  const warmup = options.warmup ?? 50;
  using operator = await Operator.open(url, adminToken);
  using other = options.enqueueUrl
    ? await Operator.open(options.enqueueUrl, adminToken)
    : undefined;
  const enqueuer = other ?? operator;
  using conn = await HttpConnection.open(url);
  const samples: number[] = [];
  let unconfirmed = 0;
  const runId = crypto.randomUUID().slice(0, 8);
  for (let i = 0; i < warmup + options.samples; i++) {
    const path = waitPath(120);
    await conn.send("GET", path, agentHeaders(agent, "GET", path));
    const answer = conn.readResponse();
    answer.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
    let confirmed = false;
    for (let poll = 0; poll < MAX_CONFIRM_POLLS && !confirmed; poll++) {
      confirmed = (await operator.waiting()) >= options.waiting + 1;
    }
    const started = performance.now();
    await enqueuer.sendEnqueue(agent.id, `wake-${runId}-${options.waiting}-${i}`, "true");
    const response = await answer;
    const elapsed = performance.now() - started;
    await enqueuer.enqueueAnswer();
    expectStatus(response, 200, "wait");
    const command = jsonOf<{ id: string; attempt: number }>(response);
    await ackAndReport(conn, agent, command);
    if (i >= warmup) {
      samples.push(elapsed);
      if (!confirmed) unconfirmed++;
    }
  }
  return { system: "status", waiting: options.waiting, latencyMs: summarize(samples), unconfirmed };
}

/**
 * Measures the wake-up latency of a client blocked in `BLPOP` on Redis.
 *
 * @param port Redis's port.
 * @param options N, samples and warm-up.
 * @returns The latency summary.
 */
export async function measureRedisWake(port: number, options: WakeOptions): Promise<WakeResult> {
  const warmup = options.warmup ?? 50;
  using pusher = await RespConnection.open(port);
  using waiter = await RespConnection.open(port);
  const samples: number[] = [];
  let unconfirmed = 0;
  const key = `wake:${crypto.randomUUID().slice(0, 8)}`;
  for (let i = 0; i < warmup + options.samples; i++) {
    await waiter.send("BLPOP", key, "0");
    const answer = waiter.readReply();
    answer.catch(() => {}); // awaited below
    let confirmed = false;
    for (let poll = 0; poll < MAX_CONFIRM_POLLS && !confirmed; poll++) {
      const info = await pusher.command("INFO", "clients");
      confirmed = infoField(String(info), "blocked_clients") >= options.waiting + 1;
    }
    const value = `cmd-${i}`;
    const started = performance.now();
    await pusher.send("LPUSH", key, value);
    const reply = await answer;
    const elapsed = performance.now() - started;
    await pusher.readReply();
    if (!Array.isArray(reply) || reply[1] !== value) {
      throw new Error(`BLPOP answered ${JSON.stringify(reply)}, expected [${key}, ${value}]`);
    }
    if (i >= warmup) {
      samples.push(elapsed);
      if (!confirmed) unconfirmed++;
    }
  }
  return { system: "redis", waiting: options.waiting, latencyMs: summarize(samples), unconfirmed };
}
