/**
 * One event stream per command: status changes and live output chunks, for
 * `GET /api/v1/commands/{id}/events` (server-sent events), the CLI's `--follow` and the console.
 *
 * Writers do not build events: whatever changes a command (a claim, an ack, a report, a cancel,
 * an expired lease, an output chunk) calls {@link CommandEvents.publish} with its id (the store
 * wrapper in `observed_store.ts` does this for every store call), and each open stream reads the
 * command and its new chunks from the store. So a stream never misses a change that is in the
 * store, whichever route made it, and a resumed stream (`Last-Event-ID`) starts from the store.
 *
 * Event ids are `<seq>:<status key>`: the last output chunk sent and the status last sent. On
 * resume, chunks after `seq` are sent, and the status only when it changed.
 *
 * @module
 */
import type { Hono } from "hono";
import { ANY_COMMAND_ID_PATTERN, FINAL_STATUSES, shortForm, toBase64 } from "../protocol/mod.ts";
import { assertPossibleId } from "./ids.ts";
import { logger } from "../log/mod.ts";
import type { CommandRecord, CommandStore, OutputChunk } from "../store/mod.ts";
import type { ServerEnv } from "./env.ts";
import { HttpError } from "./http_error.ts";
import { queryError, refuseMistypedQuery } from "./query.ts";
import { commandWithLiveOutput } from "./live_output.ts";
import { eventStreamResponse, type OpenStreams, streamPlace } from "./sse.ts";
import { type Clock, systemClock } from "./clock.ts";

const log = logger("server", "events");

/**
 * What changed of a command: `output` when only its live output grew (a chunk was stored: its
 * status, cancel flag and result are as they were), `any` otherwise (or when it is not known).
 */
export type CommandChange = "output" | "any";

/** Wakes the open event streams of a command when it changes. */
export class CommandEvents {
  readonly #listeners = new Map<string, Set<(change: CommandChange) => void>>();
  #closed = false;

  /** Whether {@link CommandEvents.close} was called: open streams end, new ones end at once. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ends every open stream (the dashboard shuts down; clients reconnect elsewhere or later). */
  close(): void {
    this.#closed = true;
    for (const set of [...this.#listeners.values()]) {
      for (const listener of [...set]) listener("any");
    }
  }

  /**
   * Calls `listener` whenever the command changes, until the returned function is called.
   *
   * @param commandId The command.
   * @param listener Called with what changed; it should read the store.
   * @returns Unsubscribes.
   */
  subscribe(commandId: string, listener: (change: CommandChange) => void): () => void {
    let set = this.#listeners.get(commandId);
    if (!set) {
      set = new Set();
      this.#listeners.set(commandId, set);
    }
    set.add(listener);
    return () => {
      const current = this.#listeners.get(commandId);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.#listeners.delete(commandId);
    };
  }

  /**
   * Says that a command changed.
   *
   * @param commandId The command.
   * @param change What changed: `output` only when nothing but its live output did.
   */
  publish(commandId: string, change: CommandChange = "any"): void {
    const set = this.#listeners.get(commandId);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(change);
      } catch (error) {
        log.warning("an event listener failed: {error}", { error });
      }
    }
  }

  /**
   * Says that any command may have changed (another process wrote to the store, and no event
   * says which): every subscriber reads its command again.
   */
  publishAll(): void {
    for (const commandId of [...this.#listeners.keys()]) this.publish(commandId);
  }

  /** Open subscriptions, over all commands. */
  get size(): number {
    let n = 0;
    for (const set of this.#listeners.values()) n += set.size;
    return n;
  }
}

/** A parsed `Last-Event-ID`. */
export interface EventCursor {
  /** The last output chunk seen (0: none). */
  seq: number;
  /** The status last seen, or `""`. */
  statusKey: string;
}

/**
 * The status part of an event id: what a client has seen of the command's state.
 *
 * @param command The command.
 */
export function statusKeyOf(command: CommandRecord): string {
  return `${command.status}.${command.attempt}.${command.cancelRequested ? 1 : 0}`;
}

/**
 * An event id the stream sends: `<seq>:<status key>`, or `<seq>:`. Not trimmed: an id the stream
 * sent has no white space (a header's surrounding spaces are no part of its value, and are gone
 * already).
 */
const EVENT_ID = /^(\d{1,15}):([a-z]+\.\d{1,9}\.[01])?$/;

/**
 * Parses a `Last-Event-ID` (`<seq>:<status key>`, or `<seq>:` when no status was sent: the
 * chunks of a command already final); anything else, an id with white space around it included,
 * starts from the beginning. The header is a browser's `EventSource`'s to send, not the page's,
 * and a `400` ends an `EventSource` for good: an id of another form (sent by another version of
 * the dashboard, or changed on the way) replays the stream, which loses nothing.
 *
 * @param raw The header's value.
 */
export function parseEventId(raw: string | null | undefined): EventCursor {
  const match = EVENT_ID.exec(raw ?? "");
  if (!match) return { seq: 0, statusKey: "" };
  return { seq: Number(match[1]), statusKey: match[2] ?? "" };
}

/**
 * The `last_event_id` query parameter of a stream, if given.
 *
 * @throws {HttpError} `400` when it is given more than once (resumed from the first, the stream
 *   would read as resumed from both), or is not empty and no id the stream sends, or a parameter
 *   near its name is given instead (`?lastEventId=`, as `EventSource` names it): either way the
 *   whole stream replayed would read as what came after the id.
 */
function lastEventIdOf(url: string): string | undefined {
  const values = new URL(url).searchParams.getAll("last_event_id");
  if (values.length > 1) {
    throw queryError("last_event_id", `is given ${values.length} times; a stream resumes from one`);
  }
  refuseMistypedQuery(url, ["last_event_id"], "stream");
  const value = values[0];
  if (value && !EVENT_ID.test(value)) {
    throw queryError(
      "last_event_id",
      "must be the id of an event of this stream (<seq>:<status>.<attempt>.<cancel>, or <seq>:)",
    );
  }
  return value;
}

/** Options of {@link eventRoutes}. */
export interface EventRouteOptions {
  /** The store. */
  store: CommandStore;
  /** The hub that says when a command changed. */
  events: CommandEvents;
  /** Operator authentication. */
  // deno-lint-ignore no-explicit-any
  auth: any;
  /**
   * Interval of keep-alive comments (and of a re-read of the store), in ms.
   * @default {15000}
   */
  keepAliveMs?: number;
  /**
   * The clock of the keep-alives.
   * @default {systemClock}
   */
  clock?: Clock;
  /** The dashboard's open event streams (a stream beyond their limit is `429`). */
  streams?: OpenStreams;
}

const CHUNKS_PER_READ = 100;

function outputData(chunk: OutputChunk) {
  return {
    stream: chunk.stream,
    offset: chunk.offset,
    data: toBase64(chunk.data),
    attempt: chunk.attempt,
  };
}

/**
 * Registers `GET /api/v1/commands/{id}/events`.
 *
 * @param app The Hono app.
 * @param options Store, hub, auth and keep-alive.
 */
export function eventRoutes(app: Hono<ServerEnv>, options: EventRouteOptions): void {
  const { store, events } = options;
  const keepAliveMs = options.keepAliveMs ?? 15_000;

  app.get("/api/v1/commands/:id/events", options.auth, async function eventsRoute(c) {
    const id = c.req.param("id");
    assertPossibleId("command", id, ANY_COMMAND_ID_PATTERN);
    if (!(await store.getCommand(id))) {
      throw new HttpError(404, `command ${shortForm(id)} does not exist`);
    }
    const cursor = parseEventId(c.req.header("Last-Event-ID") ?? lastEventIdOf(c.req.url));
    const release = streamPlace(c.req.raw, c.get("consoleSessionStream"), options.streams);
    return eventStreamResponse({
      request: c.req.raw,
      release,
      subscribe: (wake) => events.subscribe(id, wake),
      closed: () => events.closed,
      authorized: c.get("consoleSessionValid"),
      keepAliveMs,
      clock: options.clock ?? systemClock,
      onError: (error) =>
        log.warning("event stream of {commandId} failed: {error}", { commandId: id, error }),
      async step(send) {
        const eventId = () => `${cursor.seq}:${cursor.statusKey}`;
        // The command first, then its chunks: a final command's output is all stored by the
        // time it is read (the agent sends it before the report).
        const command = await store.getCommand(id);
        if (!command) {
          send("error", { error: `command ${id} no longer exists` }, eventId());
          return "end";
        }
        const chunks = await store.listOutput(id, {
          afterSeq: cursor.seq,
          limit: CHUNKS_PER_READ,
        });
        const key = statusKeyOf(command);
        const final = FINAL_STATUSES.has(command.status);
        if (!final && key !== cursor.statusKey) {
          cursor.statusKey = key;
          send("status", await commandWithLiveOutput(store, command), eventId());
        }
        for (const chunk of chunks) {
          cursor.seq = chunk.seq;
          send("output", outputData(chunk), eventId());
        }
        if (chunks.length === CHUNKS_PER_READ) return "more";
        if (!final) return "wait";
        cursor.statusKey = key;
        send("end", await commandWithLiveOutput(store, command), eventId());
        return "end";
      },
    });
  });
}
