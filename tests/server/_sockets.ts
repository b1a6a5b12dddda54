/**
 * Raw sockets for the dashboard's socket tests: connect, send a request head, read what comes
 * back until the server closes.
 *
 * @module
 */
import { P } from "./_helpers.ts";

/**
 * Reads from a raw connection until it closes (or `ms` pass, or what was read so far is `done`,
 * when given): what the server sent.
 */
export function readAll(
  conn: Deno.Conn,
  ms: number,
  done?: (text: string) => boolean,
): Promise<{ text: string; closed: boolean }> {
  return readUntil(conn, ms, done);
}

/**
 * Reads one whole answer from a kept-alive connection: its head and its `Content-Length` bytes of
 * body (or until the server closes, or `ms` pass). A loaded machine may take long to answer; an
 * answer complete early returns at once.
 */
export function readAnswer(
  conn: Deno.Conn,
  ms = 10_000,
): Promise<{ text: string; closed: boolean }> {
  return readUntil(conn, ms, (text) => {
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
    return new TextEncoder().encode(text.slice(end + 4)).byteLength >= length;
  });
}

/** Reads until the server closes, `ms` pass, or what was read so far is `done` (when given). */
async function readUntil(
  conn: Deno.Conn,
  ms: number,
  done?: (text: string) => boolean,
): Promise<{ text: string; closed: boolean }> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    let n: number | null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      n = await Promise.race([
        conn.read(buffer),
        new Promise<number>((resolve) => {
          timer = setTimeout(() => resolve(-1), Math.max(1, deadline - Date.now()));
        }),
      ]);
    } catch {
      n = null; // reset by the server
    } finally {
      clearTimeout(timer);
    }
    if (n === -1) break;
    if (n === null) return { text: decode(chunks), closed: true };
    chunks.push(buffer.slice(0, n));
    if (done?.(decode(chunks))) break;
  }
  return { text: decode(chunks), closed: false };
}

function decode(chunks: Uint8Array[]): string {
  return chunks.map((chunk) => new TextDecoder().decode(chunk)).join("");
}

/** Connects to the server on loopback. */
export async function rawConnect(server: { port: number }): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port: server.port });
}

/** Writes text to a connection. */
export function send(conn: Deno.Conn, text: string): Promise<number> {
  return conn.write(new TextEncoder().encode(text));
}

/** The head of an unsigned (dev-mode) wait request. */
export function waitHead(agentId: string, timeout: number): string {
  return `GET ${P.wait("default", timeout)} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `X-Agent-Id: ${agentId}\r\n\r\n`;
}

/** Closes a connection that may be closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
