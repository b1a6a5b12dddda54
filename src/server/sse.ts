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
import { HttpError } from "./http_error.ts";
import { MAX_STREAMS_PER_SESSION } from "./web/session.ts";

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
 * The place an event stream of a console session takes while it is open, for a `GET` with a
 * session (a `HEAD` gets no stream, a request with the admin token has no session).
 *
 * @param request The request.
 * @param take The session's `consoleSessionStream`, if the request has a session.
 * @returns The place's release, or `undefined` when the request takes none.
 * @throws {HttpError} `429` when the session holds as many streams as it may.
 */
export function streamPlace(
  request: Request,
  take: (() => (() => void) | undefined) | undefined,
): (() => void) | undefined {
  if (take === undefined || request.method === "HEAD") return undefined;
  const release = take();
  if (release) return release;
  throw new HttpError(
    429,
    `this console session has ${MAX_STREAMS_PER_SESSION} event streams open, the most one ` +
      `session may hold; close a page that follows a command or a run, or follow it with the ` +
      `admin token`,
    {
      headers: { "Retry-After": String(STREAM_RETRY_AFTER_SECS) },
      details: { retry_after_secs: STREAM_RETRY_AFTER_SECS, max_streams: MAX_STREAMS_PER_SESSION },
    },
  );
}

/** The `Retry-After` of a session's stream beyond its limit (a page polls meanwhile). */
const STREAM_RETRY_AFTER_SECS = 15;

const encoder = new TextEncoder();

const HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  "X-Accel-Buffering": "no",
} as const;

/**
 * Makes a `text/event-stream` response driven by `options.step`. A `HEAD` request gets the
 * headers alone: its body would never be read, and its connection's end does not abort the
 * request, so a stream made for it would stay subscribed until the dashboard stops.
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
          if ((controller.desiredSize ?? 1) <= 0) {
            await new Promise<void>((resolve) => pulled = resolve);
            if (over()) break;
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
