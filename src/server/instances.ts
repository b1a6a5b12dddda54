/**
 * One agent process per agent id. Each agent sends `X-Agent-Instance` (an id kept in its state
 * directory, so a restart is the same instance) with every request. The dashboard remembers, per
 * agent id, the instance that polls and when it was last active; a wait from another instance
 * while that one is connected (a wait or cancel-wait open, or its last one ended less than its
 * wait timeout ago) is refused with `409` naming the problem: two machines configured with one
 * id. When the first stops polling, the second takes over once the first's wait timeout has
 * passed. An id that stopped polling is forgotten after an hour ({@link INSTANCE_MEMORY_MS}).
 *
 * Requests without the header (older agents, `curl`) are not checked.
 *
 * @module
 */
import { auditLogger } from "../log/mod.ts";
import { AGENT_INSTANCE_HEADER, INSTANCE_ID_PATTERN } from "../protocol/mod.ts";
import { type Clock, monotonicNow } from "./clock.ts";
import { HttpError } from "./http_error.ts";
import type { AgentCall, HeaderReader } from "./auth/call.ts";
import { noteCallRefusal } from "./auth/refuse.ts";

interface Holder {
  instance: string;
  /** Open waits and cancel-waits. */
  open: number;
  /** When it was last active (a request started or ended), in ms of the monotonic clock. */
  activeAt: number;
  /** The timeout of its last wait, in ms. */
  timeoutMs: number;
}

const audit = auditLogger();

/** A long-poll's hold on its agent id ({@link InstanceRegistry.enter}). */
export interface InstanceHold {
  /** The long-poll ended (idempotent). */
  leave(): void;
}

const NO_HOLD: InstanceHold = { leave() {} };

/** One object, no closure: a held wait keeps it. */
class Hold implements InstanceHold {
  #holder: Holder | undefined;
  readonly #clock: Clock;

  constructor(holder: Holder, clock: Clock) {
    this.#holder = holder;
    this.#clock = clock;
  }

  leave(): void {
    const holder = this.#holder;
    if (holder === undefined) return;
    this.#holder = undefined;
    holder.open--;
    holder.activeAt = monotonicNow(this.#clock);
  }
}

/**
 * How long the registry remembers an agent id's instance after it stopped polling (and its wait
 * timeout passed), in ms: long enough to log a restart on another machine as a take-over, short
 * enough that agent ids that come and go (autoscaled machines, each with an id of its own) are
 * forgotten. Forgetting changes no answer: an instance that is not connected is taken over anyway.
 */
export const INSTANCE_MEMORY_MS = 60 * 60_000;

/** Which process holds each agent id. */
export class InstanceRegistry {
  readonly #clock: Clock;
  readonly #holders = new Map<string, Holder>();
  /** When the ids no longer connected were last forgotten. */
  #sweptAt: number;

  /**
   * Makes an empty registry.
   *
   * @param clock The dashboard's clock.
   */
  constructor(clock: Clock) {
    this.#clock = clock;
    this.#sweptAt = monotonicNow(clock);
  }

  /** Agent ids whose instance is remembered (tests). */
  get size(): number {
    return this.#holders.size;
  }

  /** Forgets, at most once per {@link INSTANCE_MEMORY_MS}, the ids disconnected that long. */
  #sweep(now: number): void {
    if (now - this.#sweptAt < INSTANCE_MEMORY_MS && now >= this.#sweptAt) return;
    this.#sweptAt = now;
    for (const [agentId, holder] of this.#holders) {
      if (holder.open === 0 && now - holder.activeAt >= holder.timeoutMs + INSTANCE_MEMORY_MS) {
        this.#holders.delete(agentId);
      }
    }
  }

  /**
   * The instance id of a request, if it sent a valid one.
   *
   * @param request The request (its headers).
   * @throws {HttpError} `400` for a malformed header.
   */
  static of(request: { readonly headers: HeaderReader }): string | undefined {
    const raw = request.headers.get(AGENT_INSTANCE_HEADER);
    if (raw === null) return undefined;
    const value = raw.trim();
    if (!INSTANCE_ID_PATTERN.test(value)) {
      throw new HttpError(
        400,
        `${AGENT_INSTANCE_HEADER} must be 1–128 characters of A-Z a-z 0-9 . _ : -`,
      );
    }
    return value;
  }

  /**
   * A long-poll of the agent starts: the instance holds the id, or is refused.
   *
   * @param agentId The authenticated agent.
   * @param call The request (its instance header; a refusal is noted on it).
   * @param timeoutMs How long the long-poll may be held.
   * @param check Whether another connected instance is refused (waits: yes; cancel-waits of a
   *   running command: no, they only keep their instance active).
   * @returns Its {@link InstanceHold}: `leave` it when the long-poll ends.
   * @throws {HttpError} `409` when another instance is connected with this id.
   */
  enter(agentId: string, call: AgentCall, timeoutMs: number, check = true): InstanceHold {
    const instance = InstanceRegistry.of(call);
    if (instance === undefined) return NO_HOLD;
    // On the monotonic clock: a wall clock set back an hour kept a process that had stopped
    // polling "connected" for that hour, and its agent's next process was refused.
    const now = monotonicNow(this.#clock);
    this.#sweep(now);
    let holder = this.#holders.get(agentId);
    if (holder && holder.instance !== instance) {
      const connected = holder.open > 0 || now - holder.activeAt < holder.timeoutMs;
      if (connected) {
        if (!check) return NO_HOLD;
        const message = `agent id ${agentId} is already connected from another process ` +
          `(instance ${holder.instance}); are two machines configured with one AGENT_ID? Give ` +
          `each agent its own id. This process may take over once the other stops polling`;
        noteCallRefusal(call, message);
        audit.warning("second agent process refused: {reason}", {
          reason: message,
          agentId,
          instance,
          connectedInstance: holder.instance,
          remote: call.remote,
        });
        throw new HttpError(409, message, {
          details: { agent_id: agentId, connected_instance: holder.instance, instance },
        });
      }
      audit.warning("agent {agentId} taken over by instance {instance}", {
        agentId,
        instance,
        previousInstance: holder.instance,
        remote: call.remote,
      });
      holder = undefined;
    }
    if (!holder) {
      holder = { instance, open: 0, activeAt: now, timeoutMs };
      this.#holders.set(agentId, holder);
    }
    holder.open++;
    holder.activeAt = now;
    if (check) holder.timeoutMs = timeoutMs;
    return new Hold(holder, this.#clock);
  }

  /**
   * The instance that holds an agent id, if any is known.
   *
   * @param agentId The agent.
   */
  holder(agentId: string): string | undefined {
    return this.#holders.get(agentId)?.instance;
  }
}
