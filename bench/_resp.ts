/**
 * A tiny Redis (RESP2) client over `Deno.connect`, enough for the reference measurement: `PING`,
 * `LPUSH`, `BLPOP` and `INFO`. No dependency, and the same socket code path as the benchmark's
 * HTTP client, so that both systems are measured through equal client machinery.
 *
 * @module
 */
import { BufferedReader, writeAll } from "./_reader.ts";

/** A RESP2 reply. */
export type RespValue = string | number | null | RespValue[] | RespError;

/** An error reply (`-ERR ...`). */
export class RespError extends Error {
  /** @param message The error text Redis sent. */
  constructor(message: string) {
    super(message);
    this.name = "RespError";
  }
}

const encoder = new TextEncoder();

/**
 * Encodes a command as a RESP array of bulk strings.
 *
 * @param args The command and its arguments.
 * @returns The bytes to send.
 */
export function encodeCommand(args: readonly string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const arg of args) text += `$${encoder.encode(arg).length}\r\n${arg}\r\n`;
  return encoder.encode(text);
}

/** One connection to Redis; commands on it run one after another. */
export class RespConnection implements Disposable {
  readonly #conn: Deno.TcpConn;
  readonly #reader: BufferedReader;
  #closed = false;

  private constructor(conn: Deno.TcpConn, bufferSize: number) {
    this.#conn = conn;
    this.#reader = new BufferedReader(conn, bufferSize);
  }

  /**
   * Connects to Redis on loopback.
   *
   * @param port The port.
   * @param bufferSize The first read buffer size; small for idle connections.
   * @returns The connection.
   */
  static async open(port: number, bufferSize = 4096): Promise<RespConnection> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port, transport: "tcp" });
    conn.setNoDelay(true);
    return new RespConnection(conn, bufferSize);
  }

  /**
   * Writes a command; read its reply with {@link RespConnection.readReply}.
   *
   * @param args The command and its arguments.
   */
  async send(...args: string[]): Promise<void> {
    await writeAll(this.#conn, encodeCommand(args));
  }

  /**
   * Reads one reply.
   *
   * @returns The reply; an error reply is returned as a {@link RespError}, not thrown.
   * @throws {Error} When the connection closes first.
   */
  async readReply(): Promise<RespValue> {
    const line = await this.#reader.readLine();
    if (line === null) throw new Error("redis closed the connection");
    const kind = line[0];
    const rest = line.slice(1);
    switch (kind) {
      case "+":
        return rest;
      case "-":
        return new RespError(rest);
      case ":":
        return Number(rest);
      case "$": {
        const length = Number(rest);
        if (length < 0) return null;
        const bytes = await this.#reader.readExact(length + 2);
        return new TextDecoder().decode(bytes.subarray(0, length));
      }
      case "*": {
        const count = Number(rest);
        if (count < 0) return null;
        const items: RespValue[] = [];
        for (let i = 0; i < count; i++) items.push(await this.readReply());
        return items;
      }
      default:
        throw new Error(`not a RESP reply: ${line.slice(0, 40)}`);
    }
  }

  /**
   * Sends a command and reads its reply.
   *
   * @param args The command and its arguments.
   * @returns The reply.
   * @throws {RespError} When Redis answers with an error.
   */
  async command(...args: string[]): Promise<RespValue> {
    await this.send(...args);
    const reply = await this.readReply();
    if (reply instanceof RespError) throw reply;
    return reply;
  }

  /** Closes the connection; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Reads one field of an `INFO` reply, e.g. `blocked_clients`.
 *
 * @param info The text of the reply.
 * @param field The field name.
 * @returns Its numeric value, or `NaN` when absent.
 */
export function infoField(info: string, field: string): number {
  const match = new RegExp(`^${field}:(\\d+)`, "m").exec(info);
  return match ? Number(match[1]) : NaN;
}
