/**
 * This instance's link to the others on a shared store (PostgreSQL): subscribed at start and again
 * after the store comes back, closed at shutdown. See `notify.ts` for what the events do.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { StoreSubscription } from "../store/mod.ts";
import { connectInstances, type InstanceLinks } from "./notify.ts";

const log = logger("server");

/** The subscription to the other instances' events, at most one at a time. */
export class InstanceLink {
  readonly #links: InstanceLinks;
  #subscription: StoreSubscription | null = null;
  #subscribing: Promise<void> | undefined;
  #closed = false;

  /**
   * Makes an unconnected link.
   *
   * @param links The shared store, this instance's waits and the availability tracker.
   */
  constructor(links: InstanceLinks) {
    this.#links = links;
  }

  /** Subscribes, unless subscribed or subscribing already (or closed). */
  connect(): void {
    if (this.#closed || this.#subscription || this.#subscribing) return;
    this.#subscribing = connectInstances(this.#links).then(async (opened) => {
      if (this.#closed) await opened?.close();
      else this.#subscription = opened;
    }, (error) => log.error("could not listen for other instances: {error}", { error }))
      .finally(() => this.#subscribing = undefined);
  }

  /** Ends the subscription (one still being made is closed once made). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#subscribing;
    await this.#subscription?.close();
  }
}
