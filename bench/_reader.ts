/**
 * A small buffered reader over a TCP connection, for the benchmark's raw HTTP/1.1 and RESP
 * clients. Its buffer starts small so that thousands of idle connections stay cheap.
 *
 * @module
 */

/** Reads lines and exact byte counts from a connection. */
export class BufferedReader {
  readonly #conn: Deno.Conn;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;

  /**
   * @param conn The connection to read from.
   * @param initialSize The first buffer size in bytes; it doubles when a line does not fit.
   */
  constructor(conn: Deno.Conn, initialSize = 1024) {
    this.#conn = conn;
    this.#buf = new Uint8Array(initialSize);
  }

  /** Reads more bytes into the buffer; `false` at the end of the stream. */
  async #fill(): Promise<boolean> {
    if (this.#start > 0 && this.#start === this.#end) {
      this.#start = 0;
      this.#end = 0;
    }
    if (this.#end === this.#buf.length) {
      const used = this.#end - this.#start;
      const next = new Uint8Array(used * 2 > this.#buf.length ? used * 2 : this.#buf.length);
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#start = 0;
      this.#end = used;
    }
    const read = await this.#conn.read(this.#buf.subarray(this.#end));
    if (read === null) return false;
    this.#end += read;
    return true;
  }

  /**
   * Reads one line ending in CRLF.
   *
   * @returns The line without CRLF (bytes as Latin-1), or `null` at the end of the stream.
   * @throws {Error} When the stream ends in the middle of a line.
   */
  async readLine(): Promise<string | null> {
    let scanFrom = this.#start;
    while (true) {
      for (let i = scanFrom; i + 1 < this.#end; i++) {
        if (this.#buf[i] === 13 && this.#buf[i + 1] === 10) {
          const line = latin1(this.#buf.subarray(this.#start, i));
          this.#start = i + 2;
          return line;
        }
      }
      scanFrom = Math.max(this.#start, this.#end - 1);
      const before = this.#start;
      if (!(await this.#fill())) {
        if (this.#start === this.#end) return null;
        throw new Error("connection closed in the middle of a line");
      }
      scanFrom -= before - this.#start;
    }
  }

  /**
   * Reads exactly `n` bytes.
   *
   * @param n How many bytes.
   * @returns A copy of the bytes.
   * @throws {Error} When the stream ends first.
   */
  async readExact(n: number): Promise<Uint8Array> {
    while (this.#end - this.#start < n) {
      if (this.#end === this.#buf.length && this.#buf.length < n) {
        const next = new Uint8Array(n);
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#end -= this.#start;
        this.#start = 0;
        this.#buf = next;
      }
      if (!(await this.#fill())) throw new Error(`connection closed before ${n} bytes arrived`);
    }
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }
}

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return text;
}

const encoder = new TextEncoder();

/**
 * Writes every byte of `data` to `conn`.
 *
 * @param conn The connection.
 * @param data Bytes or text (UTF-8).
 */
export async function writeAll(conn: Deno.Conn, data: Uint8Array | string): Promise<void> {
  let bytes = typeof data === "string" ? encoder.encode(data) : data;
  while (bytes.length > 0) {
    const written = await conn.write(bytes);
    bytes = bytes.subarray(written);
  }
}
