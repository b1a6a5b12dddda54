/**
 * The PostgreSQL reference: a tiny client of the frontend/backend protocol (startup, simple query,
 * notifications), enough to time `INSERT` committed + `NOTIFY` → a waiting `LISTEN` on the
 * tests' throw-away cluster (`tests/_pg.ts`, started durable: `fsync` and `synchronous_commit`
 * on). No driver in the measured path: the same socket code as the other clients of the benchmark.
 *
 * @module
 */
import { BufferedReader, writeAll } from "./_reader.ts";
import { summarize } from "./_stats.ts";
import type { WakeOptions, WakeResult } from "./wake_bench.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One message from the server: its type letter and body. */
interface Message {
  type: string;
  body: Uint8Array;
}

/** One connection (user `status`, database `postgres`, trust authentication). */
class PgConnection {
  readonly #conn: Deno.TcpConn;
  readonly #reader: BufferedReader;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#reader = new BufferedReader(conn);
  }

  /**
   * Connects and waits until the server is ready for queries.
   *
   * @param port The server's loopback port.
   * @returns The connection.
   */
  static async open(port: number): Promise<PgConnection> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const pg = new PgConnection(conn);
    try {
      const params = encoder.encode("user\0status\0database\0postgres\0\0");
      const startup = new Uint8Array(8 + params.length);
      const view = new DataView(startup.buffer);
      view.setInt32(0, startup.length);
      view.setInt32(4, 196608); // protocol 3.0
      startup.set(params, 8);
      await writeAll(conn, startup);
      await pg.#untilReady();
      return pg;
    } catch (error) {
      pg.close();
      throw error;
    }
  }

  async #message(): Promise<Message> {
    const head = await this.#reader.readExact(5);
    const length = new DataView(head.buffer, head.byteOffset).getInt32(1);
    const body = await this.#reader.readExact(length - 4);
    return { type: String.fromCharCode(head[0]), body };
  }

  /** Reads up to `ReadyForQuery`, failing on an error message or a request for a password. */
  async #untilReady(): Promise<void> {
    let failure: string | undefined;
    for (;;) {
      const message = await this.#message();
      if (message.type === "Z") break;
      if (message.type === "E") failure = decoder.decode(message.body).replaceAll("\0", " ");
      if (message.type === "R") {
        const code = new DataView(message.body.buffer, message.body.byteOffset).getInt32(0);
        if (code !== 0) throw new Error(`postgres asks for authentication method ${code}`);
      }
    }
    if (failure !== undefined) throw new Error(`postgres: ${failure.trim()}`);
  }

  /**
   * Sends a simple query (several statements run as one transaction) without waiting.
   *
   * @param sql The statements.
   */
  async send(sql: string): Promise<void> {
    const text = encoder.encode(`${sql}\0`);
    const message = new Uint8Array(5 + text.length);
    message[0] = "Q".charCodeAt(0);
    new DataView(message.buffer).setInt32(1, 4 + text.length);
    message.set(text, 5);
    await writeAll(this.#conn, message);
  }

  /** Waits for the answer to a query sent. */
  finish(): Promise<void> {
    return this.#untilReady();
  }

  /**
   * Runs a simple query to its end.
   *
   * @param sql The statements.
   */
  async query(sql: string): Promise<void> {
    await this.send(sql);
    await this.finish();
  }

  /**
   * Waits for the next notification on a listening connection.
   *
   * @returns Its payload.
   */
  async notification(): Promise<string> {
    for (;;) {
      const message = await this.#message();
      if (message.type !== "A") continue;
      // process id (4 bytes), channel\0, payload\0
      const [, payload] = decoder.decode(message.body.subarray(4)).split("\0");
      return payload;
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * Measures `INSERT` committed + `NOTIFY` → a connection waiting in `LISTEN`: the time from sending
 * the statements to the notification's arrival (PostgreSQL delivers it only after the commit,
 * fsynced with `synchronous_commit=on`).
 *
 * @param port The server's port.
 * @param options Samples and warm-up (`waiting` is recorded as given).
 * @returns The latency summary.
 */
export async function measurePostgresWake(
  port: number,
  options: WakeOptions,
): Promise<WakeResult> {
  const warmup = options.warmup ?? 50;
  const writer = await PgConnection.open(port);
  const listener = await PgConnection.open(port);
  try {
    await writer.query("CREATE TABLE IF NOT EXISTS wake_queue (id bigserial PRIMARY KEY, v text)");
    await listener.query("LISTEN wake");
    const samples: number[] = [];
    for (let i = 0; i < warmup + options.samples; i++) {
      const value = `cmd-${i}`;
      const arrived = listener.notification();
      arrived.catch(() => {}); // awaited below
      const started = performance.now();
      await writer.send(
        `INSERT INTO wake_queue (v) VALUES ('${value}'); NOTIFY wake, '${value}'`,
      );
      const payload = await arrived;
      const elapsed = performance.now() - started;
      await writer.finish();
      if (payload !== value) throw new Error(`NOTIFY delivered ${payload}, expected ${value}`);
      if (i >= warmup) samples.push(elapsed);
    }
    return {
      system: "postgres",
      waiting: options.waiting,
      latencyMs: summarize(samples),
      unconfirmed: 0,
    };
  } finally {
    writer.close();
    listener.close();
  }
}
