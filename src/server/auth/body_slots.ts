/**
 * The cap on one agent's request bodies being read at once. A body is kept in memory while it
 * arrives (up to the route's limit, 1 MiB), for as long as 60 s, and its connection is never closed
 * to make room for another. An agent sends one request at a time per kind (a report, a chunk of
 * live output, a heartbeat), so it has a few bodies on their way at most; a stolen token sending
 * bodies slowly could otherwise hold a megabyte and a connection per request its rate limit lets
 * through (thousands a minute): gigabytes of memory, and every connection the dashboard may open.
 *
 * Beyond the cap the new request is answered `429` at once, its body unread. Only the bodies of
 * requests made with an agent's token are counted: an operator's are not, nor a token-less dev-mode
 * agent's (anyone may send as it, as the seed's `curl` enqueues do), nor a long-poll's (a `GET` has
 * none).
 *
 * @module
 */
import type { AgentCall } from "./call.ts";
import { refuse } from "./refuse.ts";

/** Request bodies one agent may have on their way at once. */
export const MAX_BODIES_PER_AGENT = 8;

/** Counts the request bodies each agent has on their way; only agents with one are kept. */
export class BodySlots {
  readonly #max: number;
  /** Agent id → bodies being read now (an agent with none has no entry). */
  readonly #reading = new Map<string, number>();

  /**
   * Makes the counts.
   *
   * @param max Bodies one agent may have on their way at once.
   * @throws {RangeError} When `max` is not a whole number of at least 1.
   */
  constructor(max: number = MAX_BODIES_PER_AGENT) {
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(`max must be a whole number of at least 1, got ${max}`);
    }
    this.#max = max;
  }

  #total = 0;

  /** How many agents have a body on its way now. */
  get agents(): number {
    return this.#reading.size;
  }

  /** How many bodies are on their way now, of every agent. */
  get total(): number {
    return this.#total;
  }

  /**
   * Takes one of the agent's slots for reading a body.
   *
   * @param call The request (its refusal is noted on it).
   * @param id Its agent's id.
   * @returns Gives the slot back (once; calling it again does nothing).
   * @throws {HttpError} `429` with `Retry-After` when the agent has `max` bodies on their way.
   */
  enter(call: AgentCall, id: string): () => void {
    const reading = this.#reading.get(id) ?? 0;
    if (reading >= this.#max) {
      throw refuse(
        call,
        429,
        `rate limit exceeded: agent ${id} is already sending ${this.#max} request bodies at ` +
          `once, the most one agent may; send them one after another (retry in 1 s)`,
        "rate limit exceeded",
        {
          headers: { "Retry-After": "1" },
          details: { retry_after_secs: 1, max_bodies: this.#max },
        },
      );
    }
    this.#reading.set(id, reading + 1);
    this.#total++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.#total--;
      const now = (this.#reading.get(id) ?? 1) - 1;
      if (now > 0) this.#reading.set(id, now);
      else this.#reading.delete(id);
    };
  }
}
