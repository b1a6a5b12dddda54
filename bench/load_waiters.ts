/**
 * The benchmark's load generator, a process of its own so that its work is not charged to the
 * dashboard or to the measuring client. Three modes:
 *
 * - `http`: holds one idle long-poll per agent on a dashboard, with real signed requests over raw
 *   HTTP/1.1 (one TCP connection per agent, as real agents have), waiting again at each `204`.
 *   With `--stagger` the first wait of each agent gets a random timeout from 1 s to `--timeout`,
 *   so that the waits then end evenly spread over time, as in a fleet in steady state, not all in
 *   the same second.
 * - `redis`: holds one connection per waiter blocked in `BLPOP` on a key of its own.
 * - `sim`: simulated agents doing wait → ack → report in a loop with no process spawned, plus
 *   operators (`--enqueuers`, 16 connections by default) enqueueing round-robin for them, and
 *   counts the reports stored per second.
 *
 * It prints JSON lines on standard output (`{"event": "ready", ...}`, `{"event": "result", ...}`)
 * and stops when its standard input closes.
 *
 * ```sh
 * deno run --allow-net --allow-read --allow-env bench/load_waiters.ts \
 *   --mode http --url http://127.0.0.1:5000 --agents agents.json --count 1000 --stagger
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  ackAndReport,
  type AgentCredentials,
  agentHeaders,
  expectStatus,
  Operator,
  waitPath,
} from "./_dashboard.ts";
import { HttpConnection, jsonOf } from "./_http.ts";
import { RespConnection } from "./_resp.ts";
import { sleep } from "./_proc.ts";

/** Counters a load generator reports. */
interface Counters {
  /** Waits (or BLPOPs) sent. */
  requests: number;
  /** Waits that ended with `204`. */
  timeouts: number;
  /** Commands delivered to a load-generator agent. */
  delivered: number;
  /** Failed requests or lost connections (each retried after a second). */
  errors: number;
  /** The last error, for the log. */
  lastError?: string;
}

/** Connections opened at once while ramping up. */
const CONNECT_BATCH = 200;

let stopping = false;
const open = new Set<{ close(): void }>();
const counters: Counters = { requests: 0, timeouts: 0, delivered: 0, errors: 0 };

function emit(event: Record<string, unknown>): void {
  console.log(JSON.stringify(event));
}

function failed(error: unknown): void {
  counters.errors++;
  counters.lastError = error instanceof Error ? error.message : String(error);
}

/** One agent holding a long-poll, waiting again at every answer, until stopped. */
async function holdWait(
  url: string,
  agent: AgentCredentials,
  timeoutSecs: number,
  firstTimeoutSecs: number,
  firstSent: () => void,
): Promise<void> {
  let conn: HttpConnection | undefined;
  let first = true;
  while (!stopping) {
    try {
      if (!conn || conn.closed) {
        conn?.close();
        conn = await HttpConnection.open(url, 512);
        open.add(conn);
      }
      const path = waitPath(first ? firstTimeoutSecs : timeoutSecs);
      await conn.send("GET", path, agentHeaders(agent, "GET", path));
      counters.requests++;
      if (first) {
        first = false;
        firstSent();
      }
      const response = await conn.readResponse();
      if (response.status === 204) {
        counters.timeouts++;
      } else if (response.status === 200) {
        // Nothing is enqueued for these agents; finish a stray command cleanly anyway.
        counters.delivered++;
        const command = jsonOf<{ id: string; attempt: number }>(response);
        await ackAndReport(conn, agent, command);
      } else {
        expectStatus(response, 204, `wait of ${agent.id}`);
      }
    } catch (error) {
      if (stopping) break;
      failed(error);
      conn?.close();
      if (conn) open.delete(conn);
      conn = undefined;
      await sleep(1000);
    }
  }
  conn?.close();
}

async function runHttp(
  url: string,
  agents: AgentCredentials[],
  timeoutSecs: number,
  stagger: boolean,
): Promise<void> {
  const loops: Promise<void>[] = [];
  for (let start = 0; start < agents.length && !stopping; start += CONNECT_BATCH) {
    const batch = agents.slice(start, start + CONNECT_BATCH);
    const sent = batch.map((agent) => {
      const { promise, resolve } = Promise.withResolvers<void>();
      const first = stagger ? 1 + Math.floor(Math.random() * timeoutSecs) : timeoutSecs;
      loops.push(holdWait(url, agent, timeoutSecs, first, resolve));
      return promise;
    });
    // Bounded: a batch whose connections fail is retried inside holdWait every second.
    await Promise.race([Promise.all(sent), sleep(30_000)]);
  }
  emit({ event: "ready", waiting: agents.length, ...counters });
  await Promise.all(loops);
}

async function runRedis(port: number, count: number): Promise<void> {
  const blocked: Promise<unknown>[] = [];
  for (let start = 0; start < count && !stopping; start += CONNECT_BATCH) {
    const batch: Promise<void>[] = [];
    for (let i = start; i < Math.min(count, start + CONNECT_BATCH); i++) {
      batch.push((async () => {
        const conn = await RespConnection.open(port, 256);
        open.add(conn);
        await conn.send("BLPOP", `idle:${i}`, "0");
        counters.requests++;
        blocked.push(conn.readReply().catch((error) => stopping || failed(error)));
      })());
    }
    await Promise.all(batch);
  }
  emit({ event: "ready", waiting: count, ...counters });
  await Promise.allSettled(blocked);
}

/** Settles when a report was stored, or after a short while. */
class Signal {
  #waiters: Array<() => void> = [];
  wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }
  wait(maxMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, maxMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

async function runSim(
  url: string,
  agents: AgentCredentials[],
  adminToken: string,
  options: { warmupSecs: number; durationSecs: number; backlog: number; enqueuers: number },
): Promise<void> {
  let enqueued = 0;
  let reported = 0;
  const reportTimes: number[] = [];
  const reportedSignal = new Signal();

  const simAgent = async (agent: AgentCredentials) => {
    let conn: HttpConnection | undefined;
    while (!stopping) {
      try {
        if (!conn || conn.closed) {
          conn = await HttpConnection.open(url);
          open.add(conn);
        }
        const path = waitPath(120);
        const response = await conn.request("GET", path, agentHeaders(agent, "GET", path));
        if (response.status === 204) continue;
        expectStatus(response, 200, `wait of ${agent.id}`);
        const command = jsonOf<{ id: string; attempt: number }>(response);
        await ackAndReport(conn, agent, command);
        reported++;
        reportTimes.push(performance.now());
        reportedSignal.wake();
      } catch (error) {
        if (stopping) break;
        failed(error);
        conn?.close();
        conn = undefined;
        await sleep(1000);
      }
    }
  };

  let next = 0;
  // Ids of their own: several runs (one per agent count) share the dashboard's store.
  const runTag = crypto.randomUUID().slice(0, 8);
  const enqueuer = async () => {
    using operator = await Operator.open(url, adminToken);
    while (!stopping) {
      if (enqueued - reported >= options.backlog) {
        await reportedSignal.wait(100);
        continue;
      }
      const n = next++;
      enqueued++;
      try {
        await operator.enqueue(agents[n % agents.length].id, `sim-${runTag}-${n}`, "true");
      } catch (error) {
        if (stopping) break;
        failed(error);
        await sleep(1000);
      }
    }
  };

  const loops = [...agents.map(simAgent)];
  // Let every simulated agent open its wait before commands arrive.
  await sleep(1000);
  const started = performance.now();
  for (let i = 0; i < options.enqueuers; i++) loops.push(enqueuer());
  emit({ event: "ready", waiting: agents.length });
  await sleep((options.warmupSecs + options.durationSecs) * 1000);
  const windowStart = started + options.warmupSecs * 1000;
  const windowEnd = windowStart + options.durationSecs * 1000;
  const inWindow = reportTimes.filter((t) => t >= windowStart && t < windowEnd).length;
  emit({
    event: "result",
    reports: inWindow,
    seconds: options.durationSecs,
    perSecond: inWindow / options.durationSecs,
    totalEnqueued: enqueued,
    totalReported: reported,
    ...counters,
  });
  stop();
  await Promise.allSettled(loops);
}

function stop(): void {
  stopping = true;
  for (const conn of open) conn.close();
  open.clear();
}

async function stopOnStdinClose(): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) {
      // nothing is sent; only the end matters
    }
  } catch {
    // closed
  }
  stop();
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      mode: { type: "string" },
      url: { type: "string" },
      agents: { type: "string" },
      count: { type: "string" },
      port: { type: "string" },
      timeout: { type: "string", default: "120" },
      stagger: { type: "boolean", default: false },
      "warmup-secs": { type: "string", default: "2" },
      "duration-secs": { type: "string", default: "10" },
      backlog: { type: "string", default: "200" },
      // Each enqueuer waits for its 202 (a group commit) before the next: four of them capped the
      // figure at ~1,150-1,400 commands/s while the dashboard still had CPU to spare; sixteen
      // measured the same as thirty-two.
      enqueuers: { type: "string", default: "16" },
    },
  });
  const count = Number(values.count ?? 0);
  const readAgents = () => {
    if (!values.agents) throw new Error("--agents <file> is required");
    const all = JSON.parse(Deno.readTextFileSync(values.agents)) as AgentCredentials[];
    if (all.length < count) throw new Error(`--count ${count} but only ${all.length} agents`);
    return all.slice(0, count);
  };
  void stopOnStdinClose();
  switch (values.mode) {
    case "http":
      await runHttp(values.url!, readAgents(), Number(values.timeout), values.stagger);
      break;
    case "redis":
      await runRedis(Number(values.port), count);
      break;
    case "sim": {
      const adminToken = Deno.env.get("STATUS_ADMIN_TOKEN");
      if (!adminToken) throw new Error("STATUS_ADMIN_TOKEN is required in sim mode");
      await runSim(values.url!, readAgents(), adminToken, {
        warmupSecs: Number(values["warmup-secs"]),
        durationSecs: Number(values["duration-secs"]),
        backlog: Number(values.backlog),
        enqueuers: Number(values.enqueuers),
      });
      break;
    }
    default:
      throw new Error(`--mode must be http, redis or sim, got ${values.mode}`);
  }
  emit({ event: "done", ...counters });
  Deno.exit(0);
}
