/**
 * A minimal HTTP/1.1 client over one keep-alive TCP connection, for the benchmarks: lighter than
 * `fetch` when ten thousand long-polls are open at once, and with no pool between the clock and
 * the socket.
 *
 * @module
 */
import { BufferedReader, writeAll } from "./_reader.ts";

/** One HTTP response. */
export interface HttpResponse {
  /** The status code. */
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  /** The body bytes (empty for 204). */
  body: Uint8Array;
}

const decoder = new TextDecoder();

/**
 * Parses a response body as JSON.
 *
 * @param response The response.
 * @returns The parsed value.
 */
export function jsonOf<T = Record<string, unknown>>(response: HttpResponse): T {
  return JSON.parse(decoder.decode(response.body)) as T;
}

/**
 * How long a connection may sit idle before a request reconnects first: below the dashboard's
 * keep-alive timeout (`HEADER_TIMEOUT_SECS`, 10 s by default), as real HTTP clients do.
 */
const IDLE_REUSE_MS = 4000;

/** One keep-alive HTTP/1.1 connection; requests on it run one after another. */
export class HttpConnection implements Disposable {
  #conn: Deno.TcpConn;
  #reader: BufferedReader;
  readonly #host: string;
  readonly #bufferSize: number;
  #closed = false;
  #released = false;
  /** Requests sent and not yet answered. */
  #pending = 0;
  #idleSince = Date.now();

  private constructor(conn: Deno.TcpConn, host: string, bufferSize: number) {
    this.#conn = conn;
    this.#reader = new BufferedReader(conn, bufferSize);
    this.#host = host;
    this.#bufferSize = bufferSize;
  }

  static async #connect(host: string): Promise<Deno.TcpConn> {
    const parsed = new URL(`http://${host}`);
    const conn = await Deno.connect({
      hostname: parsed.hostname,
      port: Number(parsed.port),
      transport: "tcp",
    });
    conn.setNoDelay(true);
    return conn;
  }

  /**
   * Connects to a loopback HTTP server.
   *
   * @param url The server's base URL, e.g. `http://127.0.0.1:5000`.
   * @param bufferSize The first read buffer size; small for idle connections.
   * @returns The connection.
   */
  static async open(url: string, bufferSize = 4096): Promise<HttpConnection> {
    const host = new URL(url).host;
    return new HttpConnection(await HttpConnection.#connect(host), host, bufferSize);
  }

  /** Whether the connection was closed by either side. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Writes a request; read its answer with {@link HttpConnection.readResponse}.
   *
   * @param method HTTP method.
   * @param pathAndQuery Path and query.
   * @param headers Extra headers.
   * @param body A JSON body, sent with `Content-Type: application/json`.
   */
  async send(
    method: string,
    pathAndQuery: string,
    headers: Record<string, string> = {},
    body?: string,
  ): Promise<void> {
    if (this.#pending === 0 && Date.now() - this.#idleSince > IDLE_REUSE_MS && !this.#released) {
      // The server may have closed it meanwhile: start a fresh one.
      try {
        this.#conn.close();
      } catch {
        // already closed
      }
      this.#conn = await HttpConnection.#connect(this.#host);
      this.#reader = new BufferedReader(this.#conn, this.#bufferSize);
      this.#closed = false;
    }
    this.#pending++;
    const bytes = body === undefined ? undefined : new TextEncoder().encode(body);
    let head = `${method} ${pathAndQuery} HTTP/1.1\r\nHost: ${this.#host}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    if (bytes) {
      head += `Content-Type: application/json\r\nContent-Length: ${bytes.length}\r\n`;
    }
    head += "\r\n";
    const headBytes = new TextEncoder().encode(head);
    if (!bytes) {
      await writeAll(this.#conn, headBytes);
      return;
    }
    const all = new Uint8Array(headBytes.length + bytes.length);
    all.set(headBytes);
    all.set(bytes, headBytes.length);
    await writeAll(this.#conn, all);
  }

  /**
   * Reads one response.
   *
   * @param method The method of the request it answers (a `HEAD` answer has no body).
   * @returns The response.
   * @throws {Error} When the connection closes first or the answer is not HTTP/1.1.
   */
  async readResponse(method = "GET"): Promise<HttpResponse> {
    try {
      return await this.#readResponse(method);
    } finally {
      this.#pending = Math.max(0, this.#pending - 1);
      this.#idleSince = Date.now();
    }
  }

  async #readResponse(method: string): Promise<HttpResponse> {
    const statusLine = await this.#reader.readLine();
    if (statusLine === null) {
      this.#closed = true;
      throw new Error("connection closed before a response");
    }
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!match) throw new Error(`not an HTTP response: ${statusLine.slice(0, 80)}`);
    const status = Number(match[1]);
    const headers = new Map<string, string>();
    while (true) {
      const line = await this.#reader.readLine();
      if (line === null) throw new Error("connection closed inside the response headers");
      if (line === "") break;
      const colon = line.indexOf(":");
      if (colon > 0) {
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
    }
    let body: Uint8Array = new Uint8Array(0);
    const length = headers.get("content-length");
    if (method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200)) {
      // no body
    } else if (length !== undefined) {
      body = await this.#reader.readExact(Number(length));
    } else {
      // The servers under test give every answer a length.
      this.#closed = true;
      throw new Error(`a response of status ${status} without Content-Length is not supported`);
    }
    if (headers.get("connection")?.toLowerCase() === "close") this.#closed = true;
    return { status, headers, body };
  }

  /**
   * Sends a request and reads its answer.
   *
   * @param method HTTP method.
   * @param pathAndQuery Path and query.
   * @param headers Extra headers.
   * @param body A JSON body.
   * @returns The response.
   */
  async request(
    method: string,
    pathAndQuery: string,
    headers: Record<string, string> = {},
    body?: string,
  ): Promise<HttpResponse> {
    await this.send(method, pathAndQuery, headers, body);
    return await this.readResponse(method);
  }

  /** Closes the connection; idempotent. */
  close(): void {
    this.#closed = true;
    if (this.#released) return;
    this.#released = true;
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
