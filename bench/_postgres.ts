/**
 * The PostgreSQL reference: a throwaway cluster (`initdb`, trust on loopback, `fsync` and
 * `synchronous_commit` on) and a tiny client of the frontend/backend protocol (startup, simple
 * query, notifications), enough to time `INSERT` committed + `NOTIFY` → a waiting `LISTEN`.
 * No dependency, the same socket code as the other clients of the benchmark.
 *
 * @module
 */
import { BufferedReader, writeAll } from "./_reader.ts";
import { baseEnv, type Child, type Children, sleep } from "./_proc.ts";
import { summarize } from "./_stats.ts";
import type { WakeOptions, WakeResult } from "./wake_bench.ts";

/** PostgreSQL's server programs, or why there are none. */
export type PostgresBinary = { ok: true; binDir: string; version: string } | {
  ok: false;
  reason: string;
};

/** Where Debian puts the server programs (`initdb` and `postgres` are not on `PATH`). */
const DEBIAN_ROOT = "/usr/lib/postgresql";

/**
 * Finds the newest `/usr/lib/postgresql/<major>/bin` holding `initdb` and `postgres`.
 *
 * @returns The directory and version, or why there is none.
 */
export function findPostgres(): PostgresBinary {
  let majors: number[];
  try {
    majors = [...Deno.readDirSync(DEBIAN_ROOT)].map((e) => Number(e.name))
      .filter((n) => Number.isInteger(n)).sort((a, b) => b - a);
  } catch {
    return { ok: false, reason: `PostgreSQL is not installed (no ${DEBIAN_ROOT})` };
  }
  for (const major of majors) {
    const binDir = `${DEBIAN_ROOT}/${major}/bin`;
    try {
      Deno.statSync(`${binDir}/initdb`);
      Deno.statSync(`${binDir}/postgres`);
      return { ok: true, binDir, version: String(major) };
    } catch {
      // try an older one
    }
  }
  return { ok: false, reason: `PostgreSQL is not installed (no initdb under ${DEBIAN_ROOT})` };
}

/** Runs as the `postgres` user when this is root (PostgreSQL refuses to run as root). */
function asPostgres(command: string[]): string[] {
  return Deno.uid() === 0
    ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", ...command]
    : command;
}

/**
 * Creates a cluster in `dir` and starts it on loopback, waiting until it takes connections.
 *
 * @param children Where the server is registered (so it is always stopped).
 * @param binary The server programs.
 * @param port The port.
 * @param dir An empty directory for the cluster and its socket.
 * @param logFile Where its output goes.
 * @returns The server process.
 */
export async function startPostgres(
  children: Children,
  binary: PostgresBinary & { ok: true },
  port: number,
  dir: string,
  logFile: string,
): Promise<Child> {
  if (Deno.uid() === 0) {
    const pw = await new Deno.Command("id", { args: ["-u", "postgres"] }).output();
    const uid = Number(new TextDecoder().decode(pw.stdout).trim());
    const gr = await new Deno.Command("id", { args: ["-g", "postgres"] }).output();
    Deno.chownSync(dir, uid, Number(new TextDecoder().decode(gr.stdout).trim()));
  }
  const init = await new Deno.Command(asPostgres([`${binary.binDir}/initdb`])[0], {
    args: [
      ...asPostgres([`${binary.binDir}/initdb`]).slice(1),
      "-D",
      `${dir}/data`,
      "-U",
      "bench",
      "--auth=trust",
      "--no-sync",
    ],
    env: baseEnv(),
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!init.success) {
    throw new Error(`initdb failed: ${new TextDecoder().decode(init.stderr).slice(-500)}`);
  }
  const child = children.spawn(
    "postgres",
    asPostgres([
      `${binary.binDir}/postgres`,
      "-D",
      `${dir}/data`,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=on",
      "-c",
      "synchronous_commit=on",
      "-c",
      "max_connections=50",
    ]),
    { env: baseEnv(), logFile },
  );
  const deadline = Date.now() + 20_000;
  while (true) {
    try {
      const conn = await PgConnection.open(port);
      conn.close();
      return child;
    } catch (error) {
      if (child.exited || Date.now() > deadline) {
        await child.stop();
        throw new Error(`postgres did not start (see ${logFile})`, { cause: error });
      }
    }
    await sleep(200);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One message from the server: its type letter and body. */
interface Message {
  type: string;
  body: Uint8Array;
}

/** One connection (user `bench`, database `postgres`, trust authentication). */
export class PgConnection {
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
      const params = encoder.encode("user\0bench\0database\0postgres\0\0");
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
