/**
 * This instance's link to the others on a shared store (PostgreSQL): subscribed at start and again
 * after the store comes back, closed at shutdown. See `notify.ts` for what the events do.
 *
 * @module
 */
import { logger } from "../log/mod.ts";
import type { StoreSubscription } from "../store/mod.ts";
import { systemClock, type TimerId } from "./clock.ts";
import { connectInstances, type InstanceLinks } from "./notify.ts";

const log = logger("server");

/** First and largest delay before subscribing again after a failure other than an outage, in ms. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;

/** The subscription to the other instances' events, at most one at a time. */
export class InstanceLink {
  readonly #links: InstanceLinks;
  #subscription: StoreSubscription | null = null;
  #subscribing: Promise<void> | undefined;
  #closed = false;
  #retry: TimerId | undefined;
  #delay = RETRY_MIN_MS;

  /**
   * Makes an unconnected link.
   *
   * @param links The shared store, this instance's waits and the availability tracker.
   */
  constructor(links: InstanceLinks) {
    this.#links = links;
  }

  /**
   * Subscribes, unless subscribed or subscribing already (or closed). A store that is unavailable
   * is connected again when it comes back (see `StoreAvailability`); after any other failure the
   * link tries again by itself, after 1 s, 2 s, ... up to 60 s, and `/health` says that the other
   * instances are not heard meanwhile.
   */
  connect(): void {
    if (this.#closed || this.#subscription || this.#subscribing) return;
    const clock = this.#links.clock ?? systemClock;
    clock.clearTimeout(this.#retry);
    this.#retry = undefined;
    this.#subscribing = connectInstances(this.#links).then(async (opened) => {
      if (this.#closed) await opened?.close();
      else this.#subscription = opened;
      if (opened && !this.#closed) {
        this.#delay = RETRY_MIN_MS;
        this.#links.availability.notificationsBack();
        // What the other instances sent before this one listened was not heard (waits come in
        // from the start, and while the subscription could not be made): the open waits and
        // cancel-waits are checked against the store once, and every event stream reads again.
        this.#links.resync().catch((error) => {
          if (!this.#links.availability.observe(error)) {
            log.error("re-check of open waits failed: {error}", { error });
          }
        });
        this.#links.changedAll?.();
      }
    }, (error) => {
      const secs = this.#delay / 1000;
      log.error("could not listen for other instances: {error}; trying again in {secs} s", {
        error,
        secs,
      });
      this.#links.availability.notificationsLost(error);
      if (this.#closed) return;
      this.#retry = clock.setTimeout(() => {
        this.#retry = undefined;
        this.connect();
      }, this.#delay);
      this.#delay = Math.min(this.#delay * 2, RETRY_MAX_MS);
    }).finally(() => this.#subscribing = undefined);
  }

  /** Ends the subscription (one still being made is closed once made). */
  async close(): Promise<void> {
    this.#closed = true;
    (this.#links.clock ?? systemClock).clearTimeout(this.#retry);
    await this.#subscribing;
    await this.#subscription?.close();
  }
}
