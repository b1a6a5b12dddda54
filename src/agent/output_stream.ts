/**
 * Live output of a running command, agent side: what the command prints is sent to the dashboard
 * (`POST …/commands/{id}/output`, signed like a report) while it runs — at least once a second
 * when something is waiting, and at once when 16 KiB are waiting — as chunks with byte offsets,
 * one request at a time. A chunk that fails is sent again with the same offset (the dashboard
 * stores it once). Memory stays bounded: when more than `maxPendingBytes` of a stream wait (the
 * dashboard is slow or away), the oldest waiting bytes are dropped and the next chunk's offset
 * shows the gap. The final report, sent after {@link OutputStreamer.finish}, stays the source of
 * truth.
 *
 * @module
 */
import type { OutputChunkRequest, OutputStreamName } from "../protocol/mod.ts";
import { toBase64 } from "../protocol/mod.ts";
import { logger } from "../log/mod.ts";
import { type Clock, systemClock } from "./clock.ts";

/** What sending one chunk brought. */
export type ChunkOutcome =
  /** Stored (or a duplicate): the bytes are delivered. */
  | "sent"
  /** Failed for now (network, 5xx, 429): the same chunk is sent again later. */
  | "retry"
  /**
   * Failed for now, and the dashboard said when to come back (`429`, `503` or `507` with
   * `Retry-After`): nothing is sent before then.
   */
  | { retryAfterMs: number }
  /** Refused for good (no such endpoint, not this agent's): live output stops for this command. */
  | "stop";

/** Options of {@link OutputStreamer}. */
export interface OutputStreamerOptions {
  /** The delivery attempt the output belongs to. */
  attempt: number;
  /** Sends one chunk. */
  send(chunk: OutputChunkRequest, signal: AbortSignal): Promise<ChunkOutcome>;
  /** Clock and sleep; for tests. */
  clock?: Clock;
  /**
   * Longest time waiting output is held before it is sent, in ms.
   * @default {1000}
   */
  intervalMs?: number;
  /**
   * Waiting bytes that are sent at once, without waiting for the interval.
   * @default {16384}
   */
  thresholdBytes?: number;
  /**
   * Largest chunk, in bytes.
   * @default {65536}
   */
  maxChunkBytes?: number;
  /**
   * Waiting bytes kept per stream; beyond them the oldest are dropped (a gap).
   * @default {1048576}
   */
  maxPendingBytes?: number;
  /**
   * Shortest time between two requests, in ms.
   * @default {100}
   */
  minSpacingMs?: number;
}

interface Pending {
  /** Offset of the first waiting byte. */
  offset: number;
  /** The waiting bytes, in order. */
  parts: Uint8Array[];
  /** Their total. */
  bytes: number;
  /** Every byte the command printed on this stream. */
  printed: number;
  /** Bytes dropped because too much was waiting. */
  dropped: number;
}

const log = logger("agent", "output");

/** The longest pause after failed sends, in ms. */
const MAX_RETRY_SPACING_MS = 10_000;

/** Streams one command run's output to the dashboard. */
export class OutputStreamer {
  readonly #options: Required<Omit<OutputStreamerOptions, "send" | "clock" | "attempt">>;
  readonly #attempt: number;
  readonly #send: OutputStreamerOptions["send"];
  readonly #clock: Clock;
  readonly #streams: Record<OutputStreamName, Pending> = {
    stdout: { offset: 0, parts: [], bytes: 0, printed: 0, dropped: 0 },
    stderr: { offset: 0, parts: [], bytes: 0, printed: 0, dropped: 0 },
  };
  readonly #stop = new AbortController();
  #wake: (() => void) | undefined;
  #finishing = false;
  #stopped = false;
  #lastSendAt = -Infinity;
  #last: OutputStreamName = "stderr";
  #sent = 0;
  #running: Promise<void>;

  /**
   * Starts streaming (a loop that sends while output waits).
   *
   * @param options Attempt, sender and limits.
   */
  constructor(options: OutputStreamerOptions) {
    this.#attempt = options.attempt;
    this.#send = options.send;
    this.#clock = options.clock ?? systemClock;
    this.#options = {
      intervalMs: options.intervalMs ?? 1000,
      thresholdBytes: options.thresholdBytes ?? 16 * 1024,
      maxChunkBytes: options.maxChunkBytes ?? 64 * 1024,
      maxPendingBytes: options.maxPendingBytes ?? 1024 * 1024,
      minSpacingMs: options.minSpacingMs ?? 100,
    };
    this.#running = this.#loop().catch((error) => {
      log.warning("live output stopped: {error}", { error });
    });
  }

  /** Requests that delivered bytes so far. */
  get chunksSent(): number {
    return this.#sent;
  }

  /** Bytes dropped on the agent because too much output was waiting, per stream. */
  get droppedBytes(): Record<OutputStreamName, number> {
    return { stdout: this.#streams.stdout.dropped, stderr: this.#streams.stderr.dropped };
  }

  /**
   * Takes output the command printed (the executor's `onOutput`).
   *
   * @param stream Which stream.
   * @param chunk The bytes; kept as they are (the executor hands over copies).
   */
  push(stream: OutputStreamName, chunk: Uint8Array): void {
    const pending = this.#streams[stream];
    pending.printed += chunk.length;
    if (this.#stopped || chunk.length === 0) return;
    pending.parts.push(chunk);
    pending.bytes += chunk.length;
    const excess = pending.bytes - this.#options.maxPendingBytes;
    if (excess > 0) {
      this.#consume(pending, excess);
      pending.dropped += excess;
    }
    // The loop works out when to send; it only needs to know that something changed.
    this.#wake?.();
  }

  /**
   * Sends what still waits (within `timeoutMs`), then stops. Call before reporting the result.
   *
   * @param timeoutMs How long the remaining output may take.
   * @param signal Stops at once.
   */
  async finish(timeoutMs = 5000, signal?: AbortSignal): Promise<void> {
    this.#finishing = true;
    const timer = this.#clock.setTimeout(() => this.#stop.abort(), timeoutMs);
    const onAbort = () => this.#stop.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#wake?.();
    try {
      await this.#running;
    } finally {
      this.#clock.clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      this.#stop.abort();
    }
  }

  #waiting(): number {
    return this.#streams.stdout.bytes + this.#streams.stderr.bytes;
  }

  /** Drops the first `n` waiting bytes of a stream. */
  #consume(pending: Pending, n: number): void {
    let left = Math.min(n, pending.bytes);
    pending.offset += left;
    pending.bytes -= left;
    while (left > 0) {
      const first = pending.parts[0];
      if (first.length <= left) {
        pending.parts.shift();
        left -= first.length;
      } else {
        pending.parts[0] = first.subarray(left);
        left = 0;
      }
    }
  }

  /** The first waiting bytes of a stream, at most one chunk. */
  #peek(pending: Pending): Uint8Array {
    const size = Math.min(pending.bytes, this.#options.maxChunkBytes);
    const out = new Uint8Array(size);
    let at = 0;
    for (const part of pending.parts) {
      if (at >= size) break;
      const n = Math.min(part.length, size - at);
      out.set(part.subarray(0, n), at);
      at += n;
    }
    return out;
  }

  async #sleep(ms: number): Promise<void> {
    if (ms <= 0) return;
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    await this.#clock.sleep(ms, AbortSignal.any([woken.signal, this.#stop.signal]));
    this.#wake = undefined;
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    let failures = 0;
    // After a failure, nothing is sent before this time, however much output arrives.
    let retryAt = -Infinity;
    // The longest a failure holds the output back (longer when the dashboard said so).
    let holdMs = MAX_RETRY_SPACING_MS;
    while (!signal.aborted) {
      const waiting = this.#waiting();
      if (waiting === 0) {
        if (this.#finishing) return;
        await this.#sleep(60_000);
        continue;
      }
      const now = this.#clock.now();
      // A wall clock set back since the last send (or failure) would hold the output for as long
      // as the step: those times move back with it.
      if (this.#lastSendAt > now) this.#lastSendAt = now;
      retryAt = Math.min(retryAt, now + holdMs);
      const sinceLast = now - this.#lastSendAt;
      const due = Math.max(
        retryAt - now,
        this.#finishing || waiting >= this.#options.thresholdBytes
          ? this.#options.minSpacingMs - sinceLast
          : this.#options.intervalMs - sinceLast,
      );
      if (due > 0) {
        await this.#sleep(due);
        continue;
      }
      // Take turns between the streams, so that neither waits behind the other.
      const order: OutputStreamName[] = this.#last === "stdout"
        ? ["stderr", "stdout"]
        : ["stdout", "stderr"];
      const which = order.find((n) => this.#streams[n].bytes > 0) ?? "stdout";
      const stream = this.#streams[which];
      this.#last = which;
      const data = this.#peek(stream);
      const offset = stream.offset;
      this.#lastSendAt = this.#clock.now();
      const outcome = await this.#send(
        { attempt: this.#attempt, stream: which, offset, data: toBase64(data) },
        signal,
      );
      if (outcome === "sent") {
        failures = 0;
        retryAt = -Infinity;
        holdMs = MAX_RETRY_SPACING_MS;
        this.#sent++;
        // Bytes dropped meanwhile moved the offset already; take away what is left of the chunk.
        this.#consume(stream, Math.max(0, offset + data.length - stream.offset));
      } else if (outcome === "stop") {
        this.#stopped = true;
        for (const pending of Object.values(this.#streams)) this.#consume(pending, pending.bytes);
        return;
      } else if (typeof outcome === "object") {
        failures++;
        holdMs = Math.max(MAX_RETRY_SPACING_MS, outcome.retryAfterMs);
        retryAt = this.#clock.now() + outcome.retryAfterMs;
      } else {
        failures++;
        holdMs = MAX_RETRY_SPACING_MS;
        retryAt = this.#clock.now() +
          Math.min(this.#options.intervalMs * 2 ** Math.min(failures, 4), MAX_RETRY_SPACING_MS);
      }
    }
  }
}
