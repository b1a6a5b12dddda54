/**
 * The machinery of a server-sent event stream that follows something in the store: it is woken
 * when the thing changes, reads the store and sends what is new, sends a keep-alive comment (and
 * looks again) when nothing happened for a while, and ends when the client goes away, when the
 * reader says so, or when the dashboard shuts down. Used by the event streams of commands
 * (`events.ts`) and of runs (`runs.ts`).
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { DEFAULT_MAX_CONNECTIONS } from "../defaults.ts";
import { dropConnection } from "../http_listener.ts";
import { logger } from "../log/mod.ts";
import { HttpError } from "./http_error.ts";
import { MAX_STREAMS_PER_SESSION } from "./web/session.ts";

const log = logger("server", "events");

/** Sends one event: `id:` (when given), `event:` and the JSON `data:`. */
export type SendEvent = (event: string, data: unknown, id?: string) => void;

/** What a {@link EventStreamOptions.step} asks for next. */
export type StepResult =
  /** Sleep until woken (or until the keep-alive). */
  | "wait"
  /** Read again at once (there is more to send). */
  | "more"
  /** Close the stream. */
  | "end";

/** Options of {@link eventStreamResponse}. */
export interface EventStreamOptions {
  /** The request (its abort ends the stream). */
  request: Request;
  /** Subscribes to changes; returns the unsubscribe. */
  subscribe(wake: () => void): () => void;
  /** Whether the dashboard is shutting down (streams end). */
  closed(): boolean;
  /** Interval of keep-alive comments (and of a look at the store), in ms. */
  keepAliveMs: number;
  /** The clock of the keep-alives. */
  clock: Clock;
  /** Reads the store and sends what is new. */
  step(send: SendEvent): Promise<StepResult>;
  /** Called when a step fails while the client is still there. */
  onError(error: unknown): void;
  /**
   * Whether the request's credentials still hold (a console session that was not logged out and
   * has not expired), asked before each read of the store: the stream ends when they do not.
   * @default {() => true}
   */
  authorized?: () => boolean;
  /**
   * Gives back the place the stream held while open (a console session's, see
   * {@link streamPlace}); called when the stream ends, perhaps more than once.
   */
  release?: () => void;
}

/**
 * The share of the connection limit that event streams may hold together: a stream holds its
 * connection for as long as its client follows, and a connection with a request in progress is
 * never closed to make room, so without a limit of their own streams opened with the admin token
 * could take every connection and keep agents from connecting at all.
 */
export const STREAMS_SHARE_OF_CONNECTIONS = 4;

/**
 * The most event streams the dashboard holds open at once for a connection limit: a quarter of it
 * (at least one), so that agents always have three quarters of the connections.
 *
 * @param maxConnections The connection limit in force.
 * @returns The limit of open event streams.
 */
export function streamLimitFor(maxConnections: number): number {
  return Math.max(1, Math.floor(maxConnections / STREAMS_SHARE_OF_CONNECTIONS));
}

/**
 * The event streams open on the dashboard (of commands and of runs, every client's together), and
 * the most it holds: {@link streamLimitFor} of the connection limit in force.
 */
export class OpenStreams {
  #open = 0;
  #max: number;
  #full = false;
  #refusedSinceFull = 0;

  /**
   * Makes the count.
   *
   * @param maxConnections The connection limit the streams' limit derives from.
   */
  constructor(maxConnections: number = DEFAULT_MAX_CONNECTIONS) {
    this.#max = streamLimitFor(maxConnections);
  }

  /** Streams open now. */
  get open(): number {
    return this.#open;
  }

  /** The most streams held open at once. */
  get max(): number {
    return this.#max;
  }

  /**
   * Derives the limit from the connection limit in force (known once the dashboard listens).
   *
   * @param maxConnections The connection limit in force.
   */
  limitTo(maxConnections: number): void {
    this.#max = streamLimitFor(maxConnections);
  }

  /**
   * Takes a place for a stream.
   *
   * @returns The place's release (once is enough; again does nothing), or `undefined` when
   *   {@link OpenStreams.max} streams are open.
   */
  take(): (() => void) | undefined {
    if (this.#open >= this.#max) {
      this.#refusedSinceFull++;
      if (!this.#full) {
        this.#full = true;
        log.warning(
          "event stream limit reached: {max} streams are open (a quarter of the connection " +
            "limit); new ones are refused with 429 until some close (raise MAX_CONNECTIONS and " +
            "the open-files limit, ulimit -n, if this is a real load)",
          { max: this.#max },
        );
      }
      return undefined;
    }
    this.#open++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open--;
      if (this.#full && this.#open < this.#max * 0.9) {
        this.#full = false;
        log.info("below the event stream limit again; {refused} streams were refused", {
          refused: this.#refusedSinceFull,
          max: this.#max,
        });
        this.#refusedSinceFull = 0;
      }
    };
  }
}

/**
 * The places an event stream takes while it is open, for a `GET` (a `HEAD` gets no stream): one
 * of the console session's, when the request has a session (one with the admin token has none),
 * and one of the dashboard's.
 *
 * @param request The request.
 * @param take The session's `consoleSessionStream`, if the request has a session.
 * @param streams The dashboard's open streams, if it counts them.
 * @returns The places' release, or `undefined` when the request takes none.
 * @throws {HttpError} `429` when the session holds as many streams as it may, or the dashboard
 *   does.
 */
export function streamPlace(
  request: Request,
  take: (() => (() => void) | undefined) | undefined,
  streams?: OpenStreams,
): (() => void) | undefined {
  if (request.method === "HEAD") return undefined;
  const session = take?.();
  if (take !== undefined && session === undefined) {
    throw new HttpError(
      429,
      `this console session has ${MAX_STREAMS_PER_SESSION} event streams open, the most one ` +
        `session may hold; close a page that follows a command or a run, or follow it with the ` +
        `admin token`,
      {
        headers: { "Retry-After": String(STREAM_RETRY_AFTER_SECS) },
        details: {
          retry_after_secs: STREAM_RETRY_AFTER_SECS,
          max_streams: MAX_STREAMS_PER_SESSION,
        },
      },
    );
  }
  if (streams === undefined) return session;
  const overall = streams.take();
  if (overall === undefined) {
    session?.();
    throw new HttpError(
      429,
      `the dashboard has ${streams.max} event streams open, the most it holds at once (a ` +
        `quarter of its connection limit, MAX_CONNECTIONS, so that agents can always connect); ` +
        `close streams you no longer read, or try again in ${STREAM_RETRY_AFTER_SECS} s`,
      {
        headers: { "Retry-After": String(STREAM_RETRY_AFTER_SECS) },
        details: { retry_after_secs: STREAM_RETRY_AFTER_SECS, max_streams: streams.max },
      },
    );
  }
  return session === undefined ? overall : () => {
    session();
    overall();
  };
}

/** The `Retry-After` of a stream beyond a limit (a console page polls meanwhile). */
const STREAM_RETRY_AFTER_SECS = 15;

/**
 * Keep-alive intervals (60 s by default) a client may take nothing of what waits for it before
 * its connection is closed: it stopped reading (or its peer is gone without a word), and would
 * otherwise hold its stream's place and connection for as long as it keeps the connection open.
 */
export const STALLED_KEEP_ALIVES = 4;

const encoder = new TextEncoder();

/**
 * The headers of a stream. `no-store`, as every other answer of the API: a stream carries a
 * command's output (or a run's), which `no-cache` would let a browser or a proxy keep.
 */
const HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-store",
  "X-Accel-Buffering": "no",
} as const;

/**
 * Makes a `text/event-stream` response driven by `options.step`. A `HEAD` request gets the
 * headers alone: its body would never be read, and its connection's end does not abort the
 * request, so a stream made for it would stay subscribed until the dashboard stops.
 *
 * The store is read again only once the client has taken what it was sent (so nothing piles up
 * for a slow one); a client that takes nothing for {@link STALLED_KEEP_ALIVES} keep-alive
 * intervals while more waits has its connection closed, with a warning.
 *
 * @param options The request, subscriptions and the reader.
 * @returns The streaming response.
 */
export function eventStreamResponse(options: EventStreamOptions): Response {
  const { request } = options;
  if (request.method === "HEAD") return new Response(null, { headers: HEADERS });
  let closed = false;
  let dirty = true;
  let wake: (() => void) | undefined;
  // The stream reads the store only when its reader has taken what it was given: a follower
  // slower than the output (or one that stopped reading) then gets what the store still holds
  // when it asks again, instead of every chunk queued in the dashboard's memory.
  let pulled: (() => void) | undefined;
  const taken = () => {
    pulled?.();
    pulled = undefined;
  };
  const poke = () => {
    dirty = true;
    wake?.();
    if (options.closed()) taken(); // shutting down: a reader that stopped reading holds nothing
  };
  const unsubscribe = options.subscribe(poke);
  const onAbort = () => {
    closed = true;
    poke();
    taken();
  };
  request.signal.addEventListener("abort", onAbort, { once: true });
  const finish = () => {
    options.release?.();
    closed = true;
    unsubscribe();
    request.signal.removeEventListener("abort", onAbort);
  };
  const over = () => closed || options.closed() || options.authorized?.() === false;
  const stallMs = STALLED_KEEP_ALIVES * options.keepAliveMs;
  let stalled = false;

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const send: SendEvent = (event, data, id) => {
        const head = id === undefined ? "" : `id: ${id}\n`;
        controller.enqueue(
          encoder.encode(`${head}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
        );
      };
      const pump = async () => {
        // The client's reconnection delay when the stream breaks.
        controller.enqueue(encoder.encode("retry: 1000\n\n"));
        while (!over()) {
          // What was sent is still waiting for the client: wait until it has taken it, as long
          // as it takes some of it now and then.
          if ((controller.desiredSize ?? 1) <= 0) {
            const took = await new Promise<boolean>((resolve) => {
              let left = controller.desiredSize ?? 0;
              const look = () => {
                const now = controller.desiredSize ?? 0;
                if (now <= left) return resolve(false);
                left = now;
                timer = options.clock.setTimeout(look, stallMs);
              };
              let timer = options.clock.setTimeout(look, stallMs);
              pulled = () => {
                options.clock.clearTimeout(timer);
                resolve(true);
              };
            });
            pulled = undefined;
            if (!took) {
              stalled = true;
              break;
            }
            continue;
          }
          if (!dirty) {
            const woken = await new Promise<boolean>((resolve) => {
              const timer = options.clock.setTimeout(() => resolve(false), options.keepAliveMs);
              wake = () => {
                options.clock.clearTimeout(timer);
                resolve(true);
              };
            });
            wake = undefined;
            if (over()) break;
            if (!woken) {
              controller.enqueue(encoder.encode(": keep-alive\n\n"));
              dirty = true; // and look at the store again, in case a change was not published
              continue;
            }
          }
          dirty = false;
          const next = await options.step(send);
          if (next === "end") break;
          if (next === "more") dirty = true;
        }
      };
      pump().catch((error) => {
        if (!closed) options.onError(error);
      }).finally(() => {
        finish();
        if (stalled) {
          const secs = stallMs / 1000;
          log.warning(
            "closed the connection of an event stream whose client took nothing for {secs} s " +
              "while more waited for it ({path}); it may reconnect and resume with Last-Event-ID",
            { secs, path: new URL(request.url).pathname },
          );
          // What waits for it is dropped with the connection; a stream made in process (no
          // connection) ends with an error its reader sees.
          if (!dropConnection(request)) {
            controller.error(new Error(`the client took nothing for ${secs} s`));
          }
          return;
        }
        try {
          controller.close();
        } catch {
          // already closed by the client
        }
      });
    },
    pull() {
      taken();
    },
    cancel() {
      closed = true;
      poke();
      taken();
      finish();
    },
  });
  return new Response(body, { headers: HEADERS });
}
