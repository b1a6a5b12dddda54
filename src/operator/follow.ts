/**
 * Following a command as it runs: its event stream (`GET /api/v1/commands/{id}/events`) read as
 * server-sent events, resumed with `Last-Event-ID` when the connection breaks, until the final
 * result. Against a dashboard without event streams it falls back to polling
 * ({@link OperatorClient.waitForFinal}); then no output arrives before the end.
 *
 * @module
 */
import { checkOptionNames, checkSignal } from "../options.ts";
import { abortableSleep as sleep } from "../clock.ts";
import { ANY_COMMAND_ID_PATTERN, fromBase64, relevantIssues } from "../protocol/mod.ts";
import { redactUrl } from "../log/redact.ts";
import { checkMs, MAX_RETRY_AFTER_SECS, OperatorClient, OperatorError } from "./client.ts";
import { type CommandRecord, commandRecordSchema, isFinalStatus } from "./types.ts";

/** One server-sent event. */
export interface ServerSentEvent {
  /** The `id:` field (the last one seen when the event has none). */
  id: string | undefined;
  /** The `event:` field, `message` when absent. */
  event: string;
  /** The `data:` lines joined by newlines. */
  data: string;
}

/** Largest event {@link parseServerSentEvents} takes by default, in characters (16 MiB). */
export const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** Options of {@link parseServerSentEvents}. */
export interface ServerSentEventOptions {
  /**
   * Largest event (its lines, fields included), in characters: a larger one, or a line that
   * never ends, is an error rather than memory without bound.
   * @default {MAX_EVENT_CHARS}
   */
  maxEventChars?: number;
}

/**
 * Parses a stream of server-sent events (the `text/event-stream` format).
 *
 * @param body The response body.
 * @param options The largest event taken.
 * @returns The events, as they arrive.
 * @throws {OperatorError} `invalid_answer` when an event (or a line without its end) is larger
 *   than `maxEventChars`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseServerSentEvents } from "./follow.ts";
 *
 * const body = ReadableStream.from([new TextEncoder().encode("id: 1\nevent: a\ndata: x\n\n")]);
 * const events = await Array.fromAsync(parseServerSentEvents(body));
 * assert.deepEqual(events, [{ id: "1", event: "a", data: "x" }]);
 * ```
 */
export async function* parseServerSentEvents(
  body: ReadableStream<Uint8Array>,
  options: ServerSentEventOptions = {},
): AsyncGenerator<ServerSentEvent> {
  const maxChars = options.maxEventChars ?? MAX_EVENT_CHARS;
  const decoder = new TextDecoder();
  // The line not yet ended, in the pieces it came in: each piece is searched for a line's end
  // once, so a long line arriving in small pieces costs no more than it would in one.
  let pending: string[] = [];
  let pendingChars = 0;
  // The last piece ended in `\r`: a `\n` beginning the next is the second half of its `\r\n`.
  let afterCr = false;
  let lastId: string | undefined;
  let event = "";
  let data: string[] = [];
  // Characters of the event so far (its lines read), to bound it with the line not yet ended.
  let eventChars = 0;
  const lineEnd = /\r\n|\r|\n/g;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      const text: string = done ? decoder.decode() : decoder.decode(value, { stream: true });
      let from: number = afterCr && text.startsWith("\n") ? 1 : 0;
      if (text.length > 0) afterCr = false;
      for (;;) {
        lineEnd.lastIndex = from;
        const found = lineEnd.exec(text);
        if (found === null) {
          if (from < text.length) {
            pending.push(text.slice(from));
            pendingChars += text.length - from;
          }
          break;
        }
        const line = pending.join("") + text.slice(from, found.index);
        pending = [];
        pendingChars = 0;
        from = found.index + found[0].length;
        afterCr = found[0] === "\r" && from === text.length;
        eventChars += line.length + 1;
        if (eventChars > maxChars) break;
        if (line === "") {
          if (data.length > 0) {
            yield { id: lastId, event: event || "message", data: data.join("\n") };
          }
          event = "";
          data = [];
          eventChars = 0;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) lastId = value;
      }
      if (eventChars + pendingChars > maxChars) {
        throw new OperatorError(
          "invalid_answer",
          `the event stream sent an event of more than ${maxChars} characters`,
        );
      }
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Callbacks of {@link followCommand}. */
export interface FollowHandlers {
  /** A status change (also the first state seen). */
  onStatus?(record: CommandRecord): void;
  /** A chunk of output, with its byte offset in the stream of its attempt. */
  onOutput?(
    chunk: { stream: "stdout" | "stderr"; offset: number; data: Uint8Array; attempt: number },
  ): void;
  /** The connection broke and is being opened again. */
  onReconnect?(error: unknown): void;
}

/** Options of {@link followCommand}. */
export interface FollowOptions extends FollowHandlers {
  /** Stops following (the command goes on). */
  signal?: AbortSignal;
  /**
   * How long the dashboard may be unreachable before following fails, in ms: counted from when
   * it was last heard (its last byte, or the start of the first request it left unanswered), so
   * a dashboard that takes the connection and never answers is given up after this long.
   * @default {60000}
   */
  maxOutageMs?: number;
  /**
   * A connection on which nothing arrives for this long (the dashboard sends a keep-alive
   * comment every 15 s) is taken for dead and opened again, in ms.
   * @default {45000}
   */
  idleTimeoutMs?: number;
}

/** An error thrown by a handler: it ends following, and is not a broken connection. */
class HandlerFailure {
  constructor(readonly error: unknown) {}
}

/** Calls a handler; what it throws ends following (see {@link HandlerFailure}). */
function hand(call: () => void): void {
  try {
    call();
  } catch (error) {
    throw new HandlerFailure(error);
  }
}

/** What {@link followCommand} ends with. */
export interface FollowResult {
  /** The command in its final status. */
  record: CommandRecord;
  /** Whether output came live (`false`: the dashboard has no event streams; polled). */
  live: boolean;
}

/**
 * Follows a command to its final status, handing status changes and output to `options`.
 *
 * @example Collect a command's output as it is written
 * ```ts
 * import assert from "node:assert/strict";
 * import { followCommand, OperatorClient, runAgent, startServer } from "../../mod.ts";
 *
 * await using server = await startServer({ db: ":memory:", port: 0 });
 * const client = new OperatorClient({ dashboardUrl: server.url });
 * const { id } = await client.enqueue({ agentId: "web-1", name: "echo hi" });
 * const stop = new AbortController();
 * const agent = runAgent({ dashboardUrl: server.url, agentId: "web-1", heartbeat: false }, stop.signal);
 * let output = "";
 * const { record } = await followCommand(client, id, {
 *   onOutput: (chunk) => output += new TextDecoder().decode(chunk.data),
 * });
 * stop.abort();
 * await agent;
 * assert.equal(record.status, "success");
 * assert.equal(output, "hi\n");
 * ```
 *
 * @param client The operator client.
 * @param id The command.
 * @param options Handlers, signal and outage limit.
 * @returns The final command, and whether output came live.
 * @throws {OperatorError} When the command does not exist, the request is refused (a `429` is
 *   not: the stream is opened again after its `Retry-After`), or the dashboard stays unreachable
 *   for `maxOutageMs`.
 * @throws {TypeError} When `client` is not an {@link OperatorClient}, `id` not a command id or
 *   `options` not an object (nothing is sent).
 * @throws {RangeError} When `idleTimeoutMs` is not a number of milliseconds from 1 to
 *   2147483647, or `maxOutageMs` not one from 0 (nothing is sent).
 * @throws {OperatorError} `invalid_answer` when the stream sends an output or end event it cannot
 *   read (not JSON, not a chunk of output, data that is not base64).
 * @throws What `onOutput` or `onStatus` throws: following ends (the command goes on).
 */
export async function followCommand(
  client: OperatorClient,
  id: string,
  options: FollowOptions = {},
): Promise<FollowResult> {
  if (!(client instanceof OperatorClient)) {
    throw new TypeError(`followCommand's client must be an OperatorClient, got ${String(client)}`);
  }
  if (typeof id !== "string" || !ANY_COMMAND_ID_PATTERN.test(id)) {
    throw new TypeError(`followCommand's id must be a command id, got ${JSON.stringify(id)}`);
  }
  if (options === null || typeof options !== "object") {
    throw new TypeError(`followCommand's options must be an object, got ${String(options)}`);
  }
  checkOptionNames("followCommand", options, {
    signal: true,
    maxOutageMs: true,
    idleTimeoutMs: true,
    onStatus: true,
    onOutput: true,
    onReconnect: true,
  });
  checkSignal("signal", options.signal);
  const signal = options.signal;
  const maxOutageMs = checkMs("maxOutageMs", options.maxOutageMs ?? 60_000, 0);
  const idleMs = checkMs("idleTimeoutMs", options.idleTimeoutMs ?? 45_000, 1);
  let lastEventId: string | undefined;
  // Since when the dashboard has given no sign of life (its last byte, or the start of the first
  // request it left unanswered), while it gives none.
  let failingSince: number | undefined;
  /** What is left of the outage allowed, in ms. */
  const outageLeft = () => maxOutageMs - (performance.now() - failingSince!);
  let delay = 250;
  for (;;) {
    signal?.throwIfAborted();
    let response: Response | null;
    // Each connection can be dropped on its own when it goes quiet.
    const connection = new AbortController();
    const connectionSignal = signal
      ? AbortSignal.any([signal, connection.signal])
      : connection.signal;
    // A dashboard (or a proxy) that takes the connection but never answers is an outage too,
    // not a wait without end: the answer's head must come within the idle timeout and within
    // what is left of the outage, which counts from when the dashboard was last heard (or from
    // this request), so that giving up takes `maxOutageMs`, not an idle timeout more.
    const attemptAt = performance.now();
    const headMs = Math.max(
      1,
      Math.min(idleMs, Math.ceil(failingSince === undefined ? maxOutageMs : outageLeft())),
    );
    const head = setTimeout(() =>
      connection.abort(
        new OperatorError(
          "timeout",
          `the dashboard at ${
            redactUrl(client.dashboardUrl)
          } did not answer the event stream request within ${headMs / 1000} s`,
        ),
      ), headMs);
    try {
      response = await client.openEvents(id, { lastEventId, signal: connectionSignal });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof OperatorError && error.status === 429) {
        // Rate-limited: the dashboard answers, so this is no outage; ask again when it says.
        options.onReconnect?.(error);
        const after = error.retryAfterSecs;
        await sleep(
          after === undefined ? delay : Math.min(after, MAX_RETRY_AFTER_SECS) * 1000,
          signal,
        );
        delay = Math.min(delay * 2, 2000);
        continue;
      }
      const transient = error instanceof OperatorError &&
        (error.kind === "connection" || error.kind === "server" || error.kind === "timeout");
      if (!transient) throw error;
      failingSince ??= attemptAt;
      if (outageLeft() <= 0) throw error;
      options.onReconnect?.(error);
      await sleep(Math.min(delay, outageLeft()), signal);
      if (outageLeft() <= 0) throw error;
      delay = Math.min(delay * 2, 2000);
      continue;
    } finally {
      clearTimeout(head);
    }
    if (response === null) {
      const record = await client.waitForFinal(id, {
        signal,
        onProgress: (r) => options.onStatus?.(r),
      });
      return { record, live: false };
    }
    let idle: ReturnType<typeof setTimeout> | undefined;
    let watching: TransformStreamDefaultController<Uint8Array> | undefined;
    let heardAt = performance.now();
    const arm = () => {
      heardAt = performance.now();
      clearTimeout(idle);
      idle = setTimeout(() => {
        watching?.error(new Error(`nothing arrived for ${idleMs} ms`));
        connection.abort();
      }, idleMs);
    };
    const watched = response.body!.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        start(controller) {
          watching = controller;
          arm();
        },
        transform(chunk, controller) {
          arm();
          controller.enqueue(chunk);
        },
      }),
    );
    try {
      for await (const event of parseServerSentEvents(watched)) {
        // The connection works: outages are counted afresh.
        failingSince = undefined;
        delay = 250;
        if (event.id !== undefined) lastEventId = event.id;
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch {
          // An output or end skipped would be bytes or a result missing without a word (the
          // stream resumes after its id); a status that cannot be read is followed by another.
          if (event.event !== "output" && event.event !== "end") continue;
          throw new OperatorError(
            "invalid_answer",
            `the event stream of ${id} sent an ${event.event} event that is not JSON: ${
              JSON.stringify(event.data.slice(0, 100))
            }`,
          );
        }
        if (event.event === "output") {
          const chunk = (data ?? {}) as {
            stream?: unknown;
            offset?: unknown;
            data?: unknown;
            attempt?: unknown;
          };
          if (
            !(chunk.stream === "stdout" || chunk.stream === "stderr") ||
            !Number.isSafeInteger(chunk.offset) || (chunk.offset as number) < 0 ||
            typeof chunk.data !== "string"
          ) {
            throw new OperatorError(
              "invalid_answer",
              `the event stream of ${id} sent an output event that is not a chunk of output ` +
                `({"stream", "offset", "data"}): ${JSON.stringify(event.data.slice(0, 100))}`,
            );
          }
          let bytes: Uint8Array;
          try {
            bytes = fromBase64(chunk.data);
          } catch {
            // Skipped, the bytes would be missing without a word (the stream resumes after it).
            throw new OperatorError(
              "invalid_answer",
              `the event stream of ${id} sent output at offset ${chunk.offset} of ` +
                `${chunk.stream} whose data is not base64`,
            );
          }
          const output: Parameters<NonNullable<FollowHandlers["onOutput"]>>[0] = {
            stream: chunk.stream,
            offset: chunk.offset as number,
            data: bytes,
            attempt: typeof chunk.attempt === "number" ? chunk.attempt : 1,
          };
          hand(() => options.onOutput?.(output));
        } else if (event.event === "status" || event.event === "end") {
          const parsed = commandRecordSchema.safeParse(data);
          if (!parsed.success) {
            if (event.event === "status") continue;
            throw new OperatorError(
              "invalid_answer",
              `the event stream of ${id} ended with a result that is not a command: ${
                relevantIssues(parsed.error)[0]?.message ?? "invalid"
              }`,
            );
          }
          // Another command's record (a proxy's mix-up) says nothing of this one: its end would
          // be taken for this command's result.
          if (parsed.data.id !== id) {
            throw new OperatorError(
              "invalid_answer",
              `the event stream of ${id} sent an event of command ${parsed.data.id}`,
            );
          }
          if (event.event === "end") {
            // The dashboard ends a stream with the final command: an end of one still running
            // would be printed as its result, exit 1 without a word.
            if (!isFinalStatus(parsed.data.status)) {
              throw new OperatorError(
                "invalid_answer",
                `the event stream of ${id} ended with the command ${
                  JSON.stringify(parsed.data.status)
                }, which is not a final status`,
              );
            }
            return { record: parsed.data, live: true };
          }
          hand(() => options.onStatus?.(parsed.data));
        }
      }
    } catch (error) {
      // A handler's error is the caller's, whatever else happened.
      if (error instanceof HandlerFailure) throw error.error;
      if (signal?.aborted) throw signal.reason;
      if (error instanceof OperatorError) throw error;
      failingSince ??= heardAt;
      options.onReconnect?.(error);
    } finally {
      clearTimeout(idle);
      connection.abort();
    }
    // The stream broke, or ended without an `end` event (a proxy or the dashboard closed it):
    // resume, after a delay and within the outage limit (one that breaks before its first event
    // again and again is an outage, not a reason to ask without pause).
    failingSince ??= heardAt;
    if (outageLeft() <= 0) {
      throw new OperatorError(
        "connection",
        `the event stream of ${id} kept closing for ${Math.round(maxOutageMs / 1000)} s`,
      );
    }
    await sleep(Math.min(delay, outageLeft()), signal);
    delay = Math.min(delay * 2, 2000);
  }
}
