/**
 * The dashboard's sockets: `node:http` (or `node:https`) with `@hono/node-server` turning each
 * request into a web `Request` for the app; a `direct` handler may answer a request first on the
 * server's own objects (the dashboard's held long-polls: no adapter kept around each).
 *
 * `Deno.serve` was the first choice but cannot defend itself: it has no header or idle timeout,
 * no connection limit, and its accept loop dies (an unhandled `Too many open files` that ends the
 * process) when the process runs out of descriptors. Here:
 *
 * - **Header timeout.** A connection that has not sent a complete request head within
 *   `headerTimeoutSecs` is answered `408` and closed; a keep-alive connection idle that long
 *   between requests is closed without an answer (its client may be sending its next request at
 *   that moment, and would take a `408` for that request's answer). A long-poll being held has
 *   sent its request: it is not idle.
 * - **Body timeout.** A request whose body has not arrived within `bodyTimeoutSecs` is closed.
 * - **Answer timeout.** An answer written whole that its client has not taken within
 *   `bodyTimeoutSecs` (a client that stopped reading a large one) is dropped with its connection,
 *   which would otherwise stay busy, and never make room at the limit, for as long as the client
 *   kept it. An event stream, never written whole, has its own rule (its route's).
 * - **Connection limit.** Beyond `maxConnections` open connections (and never closer than a
 *   reserve to the process's open-files limit, counted at start), a new connection takes the
 *   place of an idle one (no request in progress: a head still to come, or idle between
 *   requests), its own address's oldest or else the oldest of the address holding the most idle
 *   ones ({@link IdleConnections}); with none idle, it is closed at once. One warning when the
 *   limit is reached and one line when it is left. Connections with a request in progress, held
 *   long-polls included, are served as before; so descriptors never run out because of sockets,
 *   and sockets that send nothing cannot keep other clients out.
 * - **Malformed requests** (a broken head, an HTTP version other than 1.1 and 1.0, broken chunked
 *   encoding, a `Transfer-Encoding` other than `chunked` or in an HTTP/1.0 request, an HTTP/1.1
 *   request without `Host` or with two, a `CONNECT`, a body its client half-closed the connection
 *   before) are answered `400` with a JSON message and logged as a warning, after the answers of
 *   the requests read whole before it on the connection. An HTTP/1.0 request without `Host` is
 *   served, as if it named the address it came to.
 * - **`Upgrade`** is not served: the request is answered as HTTP/1.1, and its connection closed
 *   after the answer (node's parser drops what followed it).
 * - **`Expect: 100-continue`** is answered `100 Continue` when the body is first read: a request
 *   refused from its head alone is answered without one, and its connection closed after.
 * - **Pipelining.** A request sent behind one not yet answered, on the same connection, is served
 *   once the answers before it are sent (a long-poll is held only while its answer can be sent);
 *   beyond {@link MAX_PIPELINED} such requests the connection is closed.
 * - **Close.** `close` stops accepting and waits for the requests in flight, which are still held
 *   to the header and body timeouts; after `closeTimeoutSecs` it closes whatever is left.
 *
 * Measured against `Deno.serve` on this machine (3,000 held long-polls, `bench/RESULTS.md`): about
 * the same memory per held connection, a few hundredths of a millisecond more per request.
 *
 * @module
 */
import { DEFAULT_HEADER_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS } from "./defaults.ts";
import { RefusalLines } from "./log/refusal_lines.ts";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { isIP, Server as NetServer, type Socket } from "node:net";
import { type Clock, systemClock, type TimerId } from "./clock.ts";
import {
  type BodyInProgress,
  PARSE_FAILURE_REASONS,
  type ParseFailure,
  parseFailureReason,
} from "./http_parse_error.ts";
import { getRequestListener } from "@hono/node-server";
import { logger } from "./log/mod.ts";
import { IdleConnections } from "./idle_connections.ts";
import { addressKey } from "./server/address_key.ts";

/** Options of {@link listenHttp}. */
export interface HttpListenOptions {
  /** Port; `0` picks a free one. */
  port: number;
  /** Address to listen on. */
  hostname: string;
  /** PEM certificate and key (contents): serve HTTPS. */
  tls?: { cert: string; key: string };
  /**
   * Seconds a connection may take to send a complete request head (and may stay idle between
   * requests) before it is closed.
   * @default {10}
   */
  headerTimeoutSecs?: number;
  /**
   * Seconds a request may take to arrive completely, head and body; and an answer written whole
   * may wait for its client to take it.
   * @default {60}
   */
  bodyTimeoutSecs?: number;
  /**
   * Seconds {@link HttpListener.close} waits for the requests in flight before it closes the
   * connections left.
   * @default {20}
   */
  closeTimeoutSecs?: number;
  /**
   * The clock of the close deadline (and of the `Date` of the answers the listener writes itself).
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Open connections at most; lowered to stay {@link FD_RESERVE} below the open-files limit.
   * @default {20000}
   */
  maxConnections?: number;
  /**
   * Descriptors the process can still open; counted at start ({@link availableDescriptors}) when
   * not given.
   */
  availableDescriptors?: number | "plenty" | "unknown";
  /**
   * The largest request body any route takes, in bytes: a request with `Expect: 100-continue`
   * that declares a longer body is answered `413` before it is told to send it. Without it, every
   * such request is told to continue when its body is first read (an answer before that closes
   * the connection).
   */
  maxBodyBytes?: number;
  /**
   * The log category of its lines (under `status`).
   * @default {"server"}
   */
  logCategory?: string;
  /** Answers a request; `remote` is the client's address. */
  fetch(request: Request, remote: string | undefined): Response | Promise<Response>;
  /**
   * Answers a request straight on the server's objects, before any web `Request` is made for
   * {@link HttpListenOptions.fetch}; returns `false` (having done nothing) to leave it to `fetch`.
   */
  direct?(
    incoming: IncomingMessage,
    outgoing: ServerResponse,
    remote: string | undefined,
  ): boolean;
}

/** A listening HTTP server. */
export interface HttpListener {
  /** The address it listens on. */
  hostname: string;
  /** The port it listens on. */
  port: number;
  /** The connection limit in force (after the open-files limit). */
  maxConnections: number;
  /** Connections open now. */
  readonly connections: number;
  /** Connections refused because the limit was reached and none was idle, since start. */
  readonly refused: number;
  /** Idle connections closed to make room for a new one at the limit, since start. */
  readonly evicted: number;
  /** Connections with no request in progress now (a head still to come, or between requests). */
  readonly idle: number;
  /**
   * Stops accepting, closes idle connections and waits for in-flight requests to be answered:
   * those still arriving are held to the header and body timeouts meanwhile, and after
   * {@link HttpListenOptions.closeTimeoutSecs} the connections left are closed. Idempotent.
   */
  close(): Promise<void>;
  /**
   * As {@link HttpListener.close}, but closes every connection at once, those with a request in
   * flight too (a second Ctrl-C: they are not waited for).
   */
  closeNow(): Promise<void>;
}

/**
 * Seconds {@link HttpListener.close} waits for in-flight requests by default: longer than a store
 * operation may wait for its database (15 s), so that what is answered in time is.
 */
export const DEFAULT_CLOSE_TIMEOUT_SECS = 20;

/** Descriptors kept free for everything else: the database, logs, the agent of `status up`. */
export const FD_RESERVE = 128;

/**
 * Connections the kernel queues before they are accepted. Refused connections hold a descriptor
 * until their close completes, and one accept round takes at most the queue: half the reserve keeps
 * a burst of connections from running the process out of descriptors (Deno's `node:net` stops
 * accepting for good when an accept fails for lack of one).
 */
export const LISTEN_BACKLOG = FD_RESERVE / 2;

/**
 * How long the connections must stay below 90 % of the limit, with none evicted or refused, for
 * the limit to be left (and said to be, once), in ms.
 */
export const LIMIT_QUIET_MS = 10_000;

/**
 * Requests a connection may have waiting behind one not yet answered (pipelined); one more closes
 * the connection without an answer.
 */
export const MAX_PIPELINED = 64;

let probed: { upTo: number; available: number | "plenty" | "unknown" } | undefined;

/**
 * How many more descriptors this process can open: the open-files limit of `/proc/self/limits`
 * less the descriptors open in `/proc/self/fd` where this process may read them (Deno permits it
 * only with `--allow-all`), else counted by opening `/dev/null` until the limit refuses. That
 * count takes every free descriptor for a moment, when an open elsewhere in the process (another
 * thread's) fails. Counted once per process, up to `upTo`; all are closed again at once.
 *
 * @param upTo Stop counting here: more is as good as unlimited.
 * @returns The count; `"plenty"` when at least `upTo` are free; `"unknown"` when they cannot be
 *   counted (no read permission for `/dev/null`).
 */
export function availableDescriptors(upTo: number): number | "plenty" | "unknown" {
  if (probed && probed.upTo >= upTo) return probed.available;
  let available: number | "plenty" | "unknown" = "plenty";
  const free = freeDescriptorsFromProc();
  if (free !== undefined) {
    if (free < upTo) available = Math.max(0, free);
  } else {
    const files: Deno.FsFile[] = [];
    try {
      while (files.length < upTo) files.push(Deno.openSync("/dev/null"));
    } catch (error) {
      available = /os error (23|24)\b/.test(String(error)) ? files.length : "unknown";
    } finally {
      for (const file of files) file.close();
    }
  }
  probed = { upTo, available };
  return available;
}

/** The soft open-files limit less the open descriptors, from `/proc/self`; `undefined` unreadable. */
function freeDescriptorsFromProc(): number | undefined {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits)?.[1];
    if (soft === undefined) return undefined;
    if (soft === "unlimited") return Number.MAX_SAFE_INTEGER;
    let open = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) open++;
    return Number(soft) - open;
  } catch {
    return undefined;
  }
}

/**
 * The connection limit in force: the configured one, but never closer than {@link FD_RESERVE} to
 * running out of descriptors.
 *
 * @param configured The configured limit.
 * @param available Descriptors the process can still open, if known.
 */
export function effectiveMaxConnections(
  configured: number,
  available: number | "plenty" | "unknown",
): number {
  if (typeof available !== "number") return configured;
  return Math.max(1, Math.min(configured, available - FD_RESERVE));
}

/** An answer the server writes itself on the bare socket, with a `Date` as every answer has. */
function jsonHead(status: number, reason: string, message: string, now: number): string {
  const body = JSON.stringify({ error: message });
  return `HTTP/1.1 ${status} ${reason}\r\nDate: ${new Date(now).toUTCString()}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${
      new TextEncoder().encode(body).byteLength
    }` +
    `\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close` +
    `\r\n\r\n${body}`;
}

/** The last request whose head was read on each connection. */
const lastRequestOn = new WeakMap<Socket, IncomingMessage>();

/**
 * The request on a socket whose body was still being read, if any (for a parse error's reason):
 * the last one read, which may be pipelined behind the one being answered.
 */
function bodyInProgress(socket: Socket): BodyInProgress | undefined {
  const request = lastRequestOn.get(socket) ??
    (socket as { _httpMessage?: ServerResponse | null })._httpMessage?.req;
  if (!request || request.complete) return undefined;
  const transferEncoding = request.headers["transfer-encoding"];
  return { transferEncoding };
}

/**
 * Gives an HTTP/1.0 request without `Host` (which HTTP/1.0 does not require, unlike HTTP/1.1) the
 * address its connection came to, as `Host`: the adapter needs one to make the request's URL, and
 * would refuse the request without it.
 */
function hostOfHttp10(incoming: IncomingMessage): void {
  if (incoming.httpVersion !== "1.0" || incoming.headers.host !== undefined) return;
  const socket = incoming.socket;
  if (!socket?.localAddress || socket.localPort === undefined) return;
  // An IPv4 client of a dual-stack listener has a mapped address: the IPv4 one is its host.
  const address = socket.localAddress.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
  const host = address.includes(":")
    ? `[${address}]:${socket.localPort}`
    : `${address}:${socket.localPort}`;
  incoming.rawHeaders.push("Host", host);
  incoming.headers.host = host;
}

/**
 * Closes the connection after the answer to a request that asks for an `Upgrade` (a WebSocket,
 * `h2c`): it is served as HTTP/1.1, but node's parser stops at its end as if the connection were
 * upgraded, and drops what came with it (a request pipelined behind it would never be answered,
 * its client waiting until the connection times out). A client sees the close and sends again.
 */
function lastOnItsConnection(incoming: IncomingMessage, outgoing: ServerResponse): void {
  if (incoming.headers.upgrade !== undefined) outgoing.shouldKeepAlive = false;
}

/**
 * What node's parser lets through but the dashboard refuses, as a reason for a `400`: an HTTP
 * version other than 1.1 and 1.0, a `Transfer-Encoding` other than plain `chunked` (its body
 * would be read as chunked and the other codings ignored) or in an HTTP/1.0 request (RFC 9112
 * §6.1: its framing is faulty), and a second `Host` (node keeps the first; which one a proxy in
 * front used is anyone's guess).
 */
function framingFault(incoming: IncomingMessage): string | undefined {
  // Node's parser takes a request line without a version (HTTP/0.9's `GET /path`), `HTTP/0.9` and
  // `HTTP/2.0` too, and would serve them as HTTP/1.1 (the first as one without `Host`).
  const version = incoming.httpVersion;
  if (version !== "1.1" && version !== "1.0") {
    return version === "2.0" ? PARSE_FAILURE_REASONS.http2 : PARSE_FAILURE_REASONS.version;
  }
  const transferEncoding = incoming.headers["transfer-encoding"];
  // HTTP/1.0 has no transfer codings: a proxy in front may frame such a body otherwise (up to the
  // connection's end), and read what node takes for the next request as this one's body.
  if (transferEncoding !== undefined && version === "1.0") {
    return PARSE_FAILURE_REASONS.http10TransferEncoding;
  }
  // Anything but one plain `chunked`: other codings before it, or an empty value (alone, whose body
  // node frames by Content-Length or as none, or beside a `chunked`), which a proxy may read
  // otherwise (RFC 9112 §6.3: a Transfer-Encoding not ending in chunked is a 400).
  if (transferEncoding !== undefined && transferEncoding.trim().toLowerCase() !== "chunked") {
    return PARSE_FAILURE_REASONS.transferEncoding;
  }
  const raw = incoming.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === "host" && ++hosts > 1) {
      return "more than one Host header";
    }
  }
  return undefined;
}

/** The connection each request handed to a listener's `fetch` came on, for {@link dropConnection}. */
const connectionOf = new WeakMap<Request, Socket>();

/**
 * Closes the connection a request came on, at once and without a word (what was not sent of its
 * answer is lost): for a client that stopped reading an answer that has no end, whose connection
 * would otherwise stay open for as long as the client keeps it.
 *
 * @param request A request a listener of {@link listenHttp} handed to its `fetch`.
 * @returns Whether the request's connection was known (a request made in process has none).
 */
export function dropConnection(request: Request): boolean {
  const socket = connectionOf.get(request);
  if (socket === undefined) return false;
  socket.destroy();
  return true;
}

/**
 * The adapter's words for a request it cannot make into a URL, where they do not say what is at
 * fault: "Invalid URL" is a request target that is no path (`OPTIONS *`, `GET x`) or a `Host` no
 * URL takes (`[zz`).
 */
const ADAPTER_FAULTS: Record<string, string> = {
  "Invalid URL": "Invalid URL: the request target must be a path starting with / (or an " +
    "absolute http URL), and Host a host name or address with an optional port",
};

/**
 * Connections closing after an answer to a request whose body was not read: what follows on them is
 * that body, whose parse error is no other request's fault, and gets no answer of its own.
 */
const closingUnread = new WeakSet<Socket>();

/** Answers a request whose body was not read with a JSON error, and closes its connection. */
function refuseUnread(response: ServerResponse, status: number, body: unknown): void {
  const socket = response.req?.socket;
  if (socket) closingUnread.add(socket as Socket);
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "content-type": "application/json",
    "content-length": new TextEncoder().encode(text).byteLength,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    connection: "close",
  });
  response.end(text);
}

/**
 * Tells a client that sent `Expect: 100-continue` to send its body once the body is first read,
 * not before: a request refused from its head alone (an unknown agent, a wrong token, a timestamp
 * too far off) is answered without asking for a body it would not read. Such an answer closes the
 * connection (the client may send the body all the same, or not).
 *
 * @param incoming The request.
 * @param outgoing Its answer.
 */
function continueOnRead(incoming: IncomingMessage, outgoing: ServerResponse): void {
  const keepAlive = outgoing.shouldKeepAlive;
  outgoing.shouldKeepAlive = false;
  const stream = incoming as IncomingMessage & { _read(size: number): void };
  const read = stream._read;
  stream._read = function (this: IncomingMessage, size: number) {
    // The stream's own method again: this one runs once.
    delete (stream as { _read?: unknown })._read;
    if (stream._read !== read) stream._read = read;
    if (!outgoing.headersSent && !outgoing.writableEnded && !outgoing.destroyed) {
      outgoing.writeContinue();
      outgoing.shouldKeepAlive = keepAlive;
    }
    return read.call(this, size);
  };
}

/** Writes an answer the server makes up itself on the bare socket, then closes the connection. */
function answerAndClose(socket: Socket, answer: string): void {
  socket.end(answer);
  socket.destroySoon?.();
}

/** Connections whose own answer ({@link answerAfterPending}) waits for the answers before it. */
const answerPending = new WeakSet<Socket>();

/**
 * Writes an answer the server makes up itself (a malformed request's `400`, a `408`) once the
 * requests read whole before it on the connection are answered, then closes the connection:
 * written at once, it would take the place of their answers, and a client would take an enqueue
 * that was done for one refused. When the fault is in the body of the last request (it never
 * completes), or nothing is being answered, it is written at once. A connection already waiting
 * so is left to that first answer.
 */
function answerAfterPending(socket: Socket, answer: string): void {
  if (answerPending.has(socket)) return;
  const answering = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  const last = lastRequestOn.get(socket);
  if (!answering || answering.writableFinished || (last !== undefined && !last.complete)) {
    answerAndClose(socket, answer);
    return;
  }
  answerPending.add(socket);
  // Nothing more is read from it meanwhile: the parser has failed, and what follows is the
  // client's to send in vain.
  socket.pause();
  // Node assigns the connection to the next pipelined answer before this one's `close`.
  answering.once("close", () => {
    answerPending.delete(socket);
    if (!socket.destroyed && socket.writable) answerAfterPending(socket, answer);
  });
}

/**
 * Asks for the permission to listen on an address before `node:net` does: it asks on a later
 * tick, where a refusal is an uncaught `NotCapable` that ends the process instead of an error of
 * the listen. A host name is left to `node:net` (its lookup's refusal is an error of the listen).
 *
 * @param hostname The address to listen on.
 * @param port The port.
 * @throws {Deno.errors.NotCapable} When listening there is not permitted.
 */
function checkListenPermission(hostname: string, port: number): void {
  const version = isIP(hostname);
  if (version === 0) return;
  const host = version === 6 ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  const descriptor = { name: "net", host } as const;
  let { state } = Deno.permissions.querySync(descriptor);
  if (state === "prompt") state = Deno.permissions.requestSync(descriptor).state;
  if (state !== "granted") {
    throw new Deno.errors.NotCapable(
      `Requires net access to "${host}", run again with the --allow-net flag`,
    );
  }
}

/**
 * Why listening on an address fails whatever the port, found by listening on its port 0 for a
 * moment: a host name that does not resolve, an address that is not this machine's. A start
 * checks its addresses so before it makes any file. Only where listening is permitted.
 *
 * @param hostname The address to listen on.
 * @returns The listen's error, or `undefined` when it listened (or was not permitted to try).
 */
export function listenProbeError(hostname: string): unknown {
  const host = hostname.includes(":") ? `[${hostname}]:0` : `${hostname}:0`;
  if (Deno.permissions.querySync({ name: "net", host }).state !== "granted") return undefined;
  try {
    Deno.listen({ hostname, port: 0 }).close();
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * Throws when something already listens on an address, found by listening there for a moment: a
 * start checks its ports so before it makes any file (a database, its folder), and a port in use
 * fails it with nothing left behind. Only an IP address is checked (a host name is resolved by
 * the listen itself), not port 0, and only where listening is permitted; any failure but an
 * address in use is left to the listen, which says it in its own words.
 *
 * @param hostname The address to listen on.
 * @param port The port.
 * @throws {Deno.errors.AddrInUse} When something listens there.
 */
export function checkAddressFree(hostname: string, port: number): void {
  const version = isIP(hostname);
  if (port === 0 || version === 0) return;
  const host = version === 6 ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  if (Deno.permissions.querySync({ name: "net", host }).state !== "granted") return;
  let probe: Deno.Listener;
  try {
    probe = Deno.listen({ hostname, port });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) throw error;
    return;
  }
  probe.close();
}

/**
 * Starts an HTTP(S) server with the dashboard's socket defences (see the module doc).
 *
 * @param options Address, TLS, timeouts, limit and the request handler.
 * @returns The listener once it listens.
 * @throws {Error} With `code` `EADDRINUSE` (or another listen error) when it cannot listen.
 * @throws {Deno.errors.NotCapable} When listening on the address is not permitted.
 */
export async function listenHttp(options: HttpListenOptions): Promise<HttpListener> {
  checkListenPermission(options.hostname, options.port);
  const log = logger(options.logCategory ?? "server");
  const headerTimeoutMs = (options.headerTimeoutSecs ?? DEFAULT_HEADER_TIMEOUT_SECS) * 1000;
  const bodyTimeoutMs = Math.max(headerTimeoutMs, (options.bodyTimeoutSecs ?? 60) * 1000);
  const closeTimeoutMs = (options.closeTimeoutSecs ?? DEFAULT_CLOSE_TIMEOUT_SECS) * 1000;
  const clock = options.clock ?? systemClock;
  // A flood of malformed requests is logged a burst at once, then a few a second.
  const refusedLines = new RefusalLines({ clock });
  const malformed = (reason: string, fields: Record<string, unknown>): void => {
    const left = refusedLines.take();
    if (left === null) return;
    if (left > 0) {
      log.warning("{count} more malformed requests were refused without a log line", {
        count: left,
      });
    }
    log.warning(`malformed request refused: ${reason}`, fields);
  };
  const configured = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const descriptors = options.availableDescriptors === undefined
    ? availableDescriptors(configured + FD_RESERVE)
    : options.availableDescriptors;
  const maxConnections = effectiveMaxConnections(configured, descriptors);
  if (descriptors === "unknown") {
    log.warning(
      "cannot count the descriptors this process may open (it needs read access to /dev/null); " +
        "the connection limit is MAX_CONNECTIONS ({limit}) alone: keep it 128 below ulimit -n",
      { limit: maxConnections },
    );
  }

  const serverOptions = {
    noDelay: true,
    headersTimeout: headerTimeoutMs,
    requestTimeout: bodyTimeoutMs,
    keepAliveTimeout: headerTimeoutMs,
    // An HTTP/1.1 request without `Host` is refused by the adapter, with a JSON message (node's own
    // refusal is a bare `400` with an empty body).
    requireHostHeader: false,
    // Each check walks every open connection: with 10,000 held waits a check a second costs about
    // a percent of a core. Half the header timeout (at most 5 s) bounds how late one fires.
    connectionsCheckingInterval: Math.min(5000, Math.max(1000, headerTimeoutMs / 2)),
  };
  const adapted = getRequestListener(
    (request, env) => {
      // The adapter takes a `Host` of plain characters without making a URL of it, where no URL
      // takes some (`999.1.1.1`, `1.2.3.4.5`, `xn--`): refused here as it refuses others (the
      // routes would fail on it, and the error would quote the request).
      if (!URL.canParse(request.url)) throw new TypeError("Invalid URL");
      const incoming = (env as { incoming: IncomingMessage }).incoming;
      if (incoming.socket) connectionOf.set(request, incoming.socket as Socket);
      return options.fetch(request, incoming.socket?.remoteAddress);
    },
    {
      // Leave the global Request and Response alone: others in this process (Deno.serve, fetch)
      // must get the platform's own.
      overrideGlobalObjects: false,
      // Only a request that cannot be made into a `Request` (e.g. a malformed or missing Host)
      // gets here: the app answers everything else itself. Its connection is closed after.
      errorHandler: (error) => {
        malformed("{error}", { error: String(error) });
        const message = (error as Error).message;
        return Response.json(
          { error: `malformed request: ${ADAPTER_FAULTS[message] ?? message}` },
          {
            status: 400,
            headers: { Connection: "close" },
          },
        );
      },
    },
  );
  const direct = options.direct;
  /** Refuses what node's parser let through; returns whether the request was refused. */
  const refusedFraming = (incoming: IncomingMessage, outgoing: ServerResponse): boolean => {
    const reason = framingFault(incoming);
    if (reason === undefined) return false;
    malformed("{reason}", { reason });
    refuseUnread(outgoing, 400, { error: `malformed HTTP request: ${reason}` });
    return true;
  };
  const serve = direct
    ? (incoming: IncomingMessage, outgoing: ServerResponse) => {
      if (refusedFraming(incoming, outgoing)) return;
      hostOfHttp10(incoming);
      lastOnItsConnection(incoming, outgoing);
      if (!direct(incoming, outgoing, incoming.socket?.remoteAddress)) adapted(incoming, outgoing);
    }
    : (incoming: IncomingMessage, outgoing: ServerResponse) => {
      if (refusedFraming(incoming, outgoing)) return;
      hostOfHttp10(incoming);
      lastOnItsConnection(incoming, outgoing);
      adapted(incoming, outgoing);
    };
  // A request pipelined behind one not yet answered gets its answer's socket (and, from then, a
  // `close` when the connection ends) only once the answers before it are sent: it is served
  // then. Served at once, a long-poll would be held, and handed a command, with no way to send it
  // (the command's delivery lease running out meanwhile), and would stay held with its client
  // gone, since node tells a queued answer nothing when the connection closes.
  // Node goes on reading a connection whose client reads no answer: beyond MAX_PIPELINED requests
  // waiting so, the connection is closed (50,000 pipelined behind one held grew the process by
  // hundreds of megabytes).
  const pipelined = new WeakMap<Socket, number>();
  // An answer written whole waits in its connection's buffer until the client takes it: one that
  // reads nothing (of an answer larger than the kernel's buffers) would keep the connection busy,
  // and the answer in memory, for as long as it keeps the connection open.
  const untaken = new WeakMap<ServerResponse, TimerId>();
  function onAnswerWritten(this: ServerResponse): void {
    // Most answers are taken by the kernel at once: nothing waits, and no timer is needed.
    if (!this.socket?.writableLength) return;
    untaken.set(this, clock.setTimeout(dropUntaken.bind(this), bodyTimeoutMs));
    this.on("finish", onAnswerTaken);
    this.on("close", onAnswerTaken);
  }
  function dropUntaken(this: ServerResponse): void {
    untaken.delete(this);
    const socket = this.socket;
    if (this.writableFinished || !socket || socket.destroyed) return;
    log.debug("closed a connection whose client did not take its answer within {secs} s", {
      secs: bodyTimeoutMs / 1000,
    });
    socket.destroy();
  }
  function onAnswerTaken(this: ServerResponse): void {
    const timer = untaken.get(this);
    if (timer === undefined) return;
    untaken.delete(this);
    clock.clearTimeout(timer);
  }
  const listener = (incoming: IncomingMessage, outgoing: ServerResponse) => {
    lastRequestOn.set(incoming.socket as Socket, incoming);
    outgoing.on("prefinish", onAnswerWritten);
    if (tracking) {
      const tcp = tcpOf(incoming.socket as Socket);
      if (tcp === undefined) {
        tracking = false;
        idle.clear();
      } else {
        idle.busy(tcp);
        outgoing.on("finish", onAnswered);
      }
    }
    if (outgoing.socket) return serve(incoming, outgoing);
    const socket = incoming.socket as Socket;
    if (socket.destroyed) return;
    const waiting = (pipelined.get(socket) ?? 0) + 1;
    if (waiting > MAX_PIPELINED) {
      malformed("{reason}", {
        reason: `more than ${MAX_PIPELINED} requests pipelined behind one not yet answered`,
      });
      socket.destroy();
      return;
    }
    pipelined.set(socket, waiting);
    outgoing.once("socket", () => {
      pipelined.set(socket, pipelined.get(socket)! - 1);
      serve(incoming, outgoing);
    });
  };
  const server: Server = options.tls
    ? createHttpsServer(
      { ...serverOptions, ...options.tls },
      listener,
    )
    : createHttpServer(serverOptions, listener);
  // node keeps the first 2,000 header lines (1,000 in Deno's) and drops the rest without a word, so
  // a `Host` or `Authorization` sent after them went unseen. The head's size limit (16 KiB) bounds
  // how many there can be; each is kept.
  server.maxHeadersCount = 0;

  const sockets = new Set<Socket>();
  let refused = 0;
  let refusedSinceFull = 0;
  let evicted = 0;
  let evictedSinceFull = 0;
  let full = false;
  let closing = false;
  // The connections with no request in progress, which a new one may take the place of at the
  // limit. Over TLS a request's socket is the TLS one, which names its TCP socket as `_parent`;
  // where it does not, no connection is taken to be idle (and the limit only refuses).
  const idle = new IdleConnections<Socket>();
  let tracking = true;
  const tcpOf = (socket: Socket): Socket | undefined =>
    options.tls ? (socket as { _parent?: Socket })._parent : socket;
  /** An answer was sent: its connection is idle unless a request pipelined behind it is served. */
  function onAnswered(this: ServerResponse): void {
    const socket = this.req?.socket as Socket | undefined;
    if (!tracking || closing || socket === undefined || socket.destroyed) return;
    if ((socket as { _httpMessage?: ServerResponse | null })._httpMessage) return;
    const tcp = tcpOf(socket);
    if (tcp !== undefined && sockets.has(tcp)) idle.idle(tcp);
  }
  // The limit is left once the connections have stayed below 90 % of it, with none evicted or
  // refused, for LIMIT_QUIET_MS: connections opened and closed as fast as a client can, at the
  // limit, would otherwise reach and leave it a few times a second, each time with a log line.
  let leaving: TimerId | undefined;
  const noteFull = (): void => {
    if (leaving !== undefined) {
      clock.clearTimeout(leaving);
      leaving = undefined;
    }
    if (full) return;
    full = true;
    log.warning(
      "connection limit reached: {limit} connections are open; a new connection now takes the " +
        "place of an idle one, or is refused when none is idle (raise MAX_CONNECTIONS and the " +
        "open-files limit, ulimit -n, if this is a real load)",
      { limit: maxConnections, availableDescriptors: descriptors },
    );
  };
  /** Closes an idle connection for a new one from `address`; returns whether one was closed. */
  const madeRoom = (address: string): boolean => {
    const victim = tracking ? idle.victimFor(address) : undefined;
    if (victim === undefined) return false;
    idle.busy(victim);
    sockets.delete(victim);
    victim.destroy();
    evicted++;
    evictedSinceFull++;
    noteFull();
    return true;
  };

  // One listener function for every connection (`this` is the socket): a closure each, or
  // `once`'s wrapper, would be kept for every held long-poll.
  function onSocketClose(this: Socket): void {
    sockets.delete(this);
    idle.busy(this);
    if (full && leaving === undefined && !closing && sockets.size < maxConnections * 0.9) {
      leaving = clock.setTimeout(leaveFull, LIMIT_QUIET_MS);
    }
  }
  function leaveFull(): void {
    leaving = undefined;
    // Back up near the limit meanwhile: the next close below 90 % waits again.
    if (closing || sockets.size >= maxConnections * 0.9) return;
    full = false;
    log.info(
      "below the connection limit again; {refused} connections were refused and {evicted} " +
        "idle ones closed to make room",
      { refused: refusedSinceFull, evicted: evictedSinceFull, limit: maxConnections },
    );
    refusedSinceFull = 0;
    evictedSinceFull = 0;
  }
  /**
   * The client half-closed its connection, which node keeps open for its answer
   * (`httpAllowHalfOpen`; an idle one node ends itself). A request whose body was still arriving
   * can never be whole: it is answered `400` here, as `node:http` would (Deno's parser does not
   * report the cut, and without half-open connections node drops the request without a word).
   * A request read whole that may change something (not a `GET` or `HEAD`), with none pipelined
   * behind it, is answered and the connection closed after (what it did, an enqueue, a report,
   * is told to its client). Any other request in progress is given up, as node does without
   * half-open connections: its client may be gone, and a held wait must not claim a command for
   * nobody.
   */
  function onHttpSocketEnd(this: Socket): void {
    const answering = (this as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (!answering) return;
    const request = answering.req;
    if (request && !request.complete && !answering.headersSent && this.writable) {
      malformed("{reason}", {
        reason: "body cut short by a half-close",
      });
      answerAndClose(
        this,
        jsonHead(
          400,
          "Bad Request",
          "request body could not be read to its end: the client closed its side of the " +
            "connection first",
          clock.now(),
        ),
      );
      return;
    }
    const method = request?.method;
    if (
      request?.complete && method !== "GET" && method !== "HEAD" && !pipelined.get(this) &&
      this.writable
    ) {
      answering.once("finish", endAfterAnswer);
      return;
    }
    this.destroy();
  }
  /** After `close`: a connection ends once its answer is sent. */
  function endAfterAnswer(this: ServerResponse): void {
    (this.req?.socket ?? this.socket)?.end();
  }

  server.on("connection", (socket: Socket) => {
    const address = addressKey(socket.remoteAddress) ?? "";
    if (closing || (sockets.size >= maxConnections && !madeRoom(address))) {
      refused++;
      refusedSinceFull++;
      if (!closing) noteFull();
      socket.destroy();
      return;
    }
    sockets.add(socket);
    if (tracking) idle.idle(socket, address);
    socket.setNoDelay(true);
    socket.on("close", onSocketClose);
    if (!options.tls) socket.on("end", onHttpSocketEnd);
  });
  // Over TLS the HTTP socket is the TLS one.
  if (options.tls) {
    server.on("secureConnection", (socket: Socket) => socket.on("end", onHttpSocketEnd));
  }
  (server as { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true;
  if (options.tls) {
    // A TLS handshake never finished is an idle connection too (Deno's `node:https` does not
    // apply `handshakeTimeout`). The TLS socket names its TCP socket as `_parent`; where it does
    // not, no handshake is timed out rather than good ones.
    const handshakes = new Map<Socket, ReturnType<typeof setTimeout>>();
    let linked = true;
    server.on("connection", (socket: Socket) => {
      if (!linked || socket.destroyed) return;
      const timer = setTimeout(() => {
        handshakes.delete(socket);
        log.debug("closed a connection that did not finish its TLS handshake in time");
        socket.destroy();
      }, headerTimeoutMs);
      handshakes.set(socket, timer);
      socket.once("close", () => {
        clearTimeout(handshakes.get(socket));
        handshakes.delete(socket);
      });
    });
    server.on("secureConnection", (tlsSocket: { _parent?: Socket }) => {
      const raw = tlsSocket._parent;
      if (raw === undefined || !handshakes.has(raw)) {
        linked = false;
        for (const timer of handshakes.values()) clearTimeout(timer);
        handshakes.clear();
        return;
      }
      clearTimeout(handshakes.get(raw));
      handshakes.delete(raw);
    });
  }
  // A request that starts after `close` (on a kept-alive connection) ends its connection when
  // answered; nothing is noted per request before (`close` finds the busy connections by the
  // answer node assigns to a socket until it is sent).
  server.on("request", (_request: IncomingMessage, response: ServerResponse) => {
    if (closing) response.once("close", endAfterAnswer);
  });
  server.on("clientError", (error: Error & { code?: string }, socket: Socket) => {
    const code = error.code ?? "";
    // The unread body of a request refused with `Connection: close`: that answer is the last.
    if (closingUnread.has(socket)) return;
    if (!socket.writable || code === "ECONNRESET" || code === "EPIPE") {
      socket.destroy();
      return;
    }
    let answer: string;
    const now = clock.now();
    if (code === "ERR_HTTP_REQUEST_TIMEOUT") {
      log.debug("closed a connection that sent no complete request in time", { code });
      answer = jsonHead(
        408,
        "Request Timeout",
        `the request did not arrive completely within ${headerTimeoutMs / 1000} s (head) or ` +
          `${bodyTimeoutMs / 1000} s (whole request)`,
        now,
      );
    } else if (code === "HPE_HEADER_OVERFLOW") {
      malformed("{reason}", { reason: "headers too large", code });
      answer = jsonHead(
        431,
        "Request Header Fields Too Large",
        "request headers are too large",
        now,
      );
    } else {
      // Our words, never the parser's (which may quote the request).
      const reason = parseFailureReason(error as ParseFailure, bodyInProgress(socket));
      malformed("{reason}", { reason, code });
      answer = jsonHead(400, "Bad Request", `malformed HTTP request: ${reason}`, now);
    }
    answerAfterPending(socket, answer);
  });
  // An expectation node does not know gets node's bare 417 without a body, on a connection kept
  // open although the body was not read: here a JSON error, and the connection is closed.
  server.on("checkExpectation", (_request: IncomingMessage, response: ServerResponse) => {
    malformed("{reason}", { reason: "an unknown Expect" });
    refuseUnread(response, 417, { error: "Expect: only 100-continue is understood" });
  });
  // A client that asks before it sends its body is refused at once when the body it declares is
  // longer than any route takes (rather than told to send it all, only to be refused); else it is
  // told to continue when its body is first read (see continueOnRead).
  server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) => {
    const declared = Number(request.headers["content-length"]);
    const limit = options.maxBodyBytes;
    if (limit !== undefined && declared > limit) {
      refuseUnread(response, 413, {
        error: `request body is larger than ${limit} bytes`,
        details: { limit_bytes: limit },
      });
      return;
    }
    continueOnRead(request, response);
    server.emit("request", request, response);
  });
  // A CONNECT asks for a tunnel: without a listener node closes the connection without a word.
  server.on("connect", (_request: IncomingMessage, socket: Socket) => {
    malformed("{reason}", { reason: "CONNECT" });
    answerAndClose(
      socket,
      jsonHead(
        400,
        "Bad Request",
        "CONNECT is not served: the dashboard is not a proxy",
        clock.now(),
      ),
    );
  });
  const listening = Promise.withResolvers<void>();
  const onListenError = (error: Error) => listening.reject(error);
  server.once("error", onListenError);
  server.listen(
    { port: options.port, host: options.hostname, backlog: LISTEN_BACKLOG },
    () => listening.resolve(),
  );
  await listening.promise;
  server.off("error", onListenError);
  // Failing to listen is the caller's error to report; after that, errors are logged.
  server.on("error", (error: Error) => {
    log.error("the HTTP server failed: {error}", { error });
  });
  const address = server.address();
  if (address === null || typeof address === "string") {
    server.close();
    throw new Error(`the HTTP server listens on an unexpected address: ${address}`);
  }

  let closed: Promise<void> | undefined;
  const opened: HttpListener = {
    hostname: address.address,
    port: address.port,
    maxConnections,
    get connections() {
      return sockets.size;
    },
    get refused() {
      return refused;
    },
    get evicted() {
      return evicted;
    },
    get idle() {
      return idle.size;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        closing = true;
        clock.clearTimeout(leaving);
        leaving = undefined;
        idle.clear();
        // What is left at the deadline is closed: a shutdown always ends.
        const deadline = clock.setTimeout(() => {
          if (sockets.size > 0) {
            log.warning(
              "closed the connections still open {secs} s after the server began to close " +
                "({count})",
              { count: sockets.size, secs: closeTimeoutMs / 1000 },
            );
          }
          for (const socket of sockets) socket.destroy();
          server.closeAllConnections();
        }, closeTimeoutMs);
        // `net.Server`'s close, not `http.Server`'s: that one also stops node's check of the
        // header and body timeouts, and a client still sending its request would hold the close
        // for as long as it went on sending. The check goes on until every connection is gone.
        NetServer.prototype.close.call(server, () => {
          clock.clearTimeout(deadline);
          // The server is closed already: this only stops node's check.
          server.close();
          resolve();
        });
        // Idle keep-alive connections end now; busy ones when their answer is sent.
        for (const socket of sockets) {
          // Node assigns an answer to its socket until the answer is sent (then its `close`
          // follows); the same test as node's `closeIdleConnections`.
          const answering = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
          if (answering && !answering.writableFinished) answering.once("close", endAfterAnswer);
          else socket.destroy();
        }
      });
      return closed;
    },
    closeNow() {
      const closing = opened.close();
      // What the close would wait for, and what it closes at its deadline.
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      return closing;
    },
  };
  return opened;
}
