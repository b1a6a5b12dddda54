/**
 * The connections with no request in progress (a request head still to come, or idle between
 * requests), by client address, oldest first: at the connection limit one of them makes room for
 * a new connection, so that sockets that send nothing cannot keep everyone else out until the
 * header timeout closes them (and then take the places again).
 *
 * Which one: the oldest idle connection of the new connection's own address if it has one (a
 * client, or a reverse proxy, that opens yet another connection gives up its own idle one first);
 * otherwise the oldest idle connection of the address holding the most idle ones. A connection
 * with a request in progress (a held long-poll, an answer being sent, a body arriving) is never
 * chosen: with every connection busy, the new one is refused.
 *
 * @module
 */

/**
 * Idle connections by address (see the module doc).
 *
 * @typeParam C The connection (a socket).
 *
 * @example The new connection's own address first, else the address holding the most
 * ```ts
 * import assert from "node:assert/strict";
 * import { IdleConnections } from "./idle_connections.ts";
 *
 * const [a1, b1, b2] = [{ id: "a1" }, { id: "b1" }, { id: "b2" }];
 * const idle = new IdleConnections<{ id: string }>();
 * idle.idle(a1, "10.0.0.1");
 * idle.idle(b1, "10.0.0.2");
 * idle.idle(b2, "10.0.0.2");
 * assert.equal(idle.victimFor("10.0.0.1"), a1);
 * assert.equal(idle.victimFor("10.0.0.9"), b1);
 * idle.busy(b1);
 * idle.busy(a1);
 * assert.equal(idle.victimFor("10.0.0.9"), b2);
 * idle.busy(b2);
 * assert.equal(idle.victimFor("10.0.0.9"), undefined);
 * ```
 */
export class IdleConnections<C extends object> {
  #byAddress = new Map<string, Set<C>>();
  #addressOf = new WeakMap<C, string>();

  /** Idle connections, all addresses together. */
  get size(): number {
    let size = 0;
    for (const set of this.#byAddress.values()) size += set.size;
    return size;
  }

  /**
   * Notes a connection as idle, after any other idle one of its address; one already idle keeps
   * its place.
   *
   * @param connection The connection.
   * @param address The key of its client's address; the one it was first noted with when not
   *   given (a connection never noted is then left alone).
   */
  idle(connection: C, address?: string): void {
    if (address === undefined) address = this.#addressOf.get(connection);
    else this.#addressOf.set(connection, address);
    if (address === undefined) return;
    let set = this.#byAddress.get(address);
    if (set === undefined) this.#byAddress.set(address, set = new Set());
    set.add(connection);
  }

  /**
   * Notes a connection as busy (a request arrived) or gone; one not noted as idle is left alone.
   *
   * @param connection The connection.
   */
  busy(connection: C): void {
    const address = this.#addressOf.get(connection);
    if (address === undefined) return;
    const set = this.#byAddress.get(address);
    if (set !== undefined && set.delete(connection) && set.size === 0) {
      this.#byAddress.delete(address);
    }
  }

  /**
   * The idle connection to close for a new connection from `address`, if any (see the module
   * doc). It stays noted until {@link busy}.
   *
   * @param address The key of the new connection's client address.
   * @returns The connection, or `undefined` when none is idle.
   */
  victimFor(address: string): C | undefined {
    let from = this.#byAddress.get(address);
    if (from === undefined) {
      for (const set of this.#byAddress.values()) {
        if (from === undefined || set.size > from.size) from = set;
      }
    }
    if (from === undefined) return undefined;
    for (const connection of from) return connection;
    return undefined;
  }

  /** Forgets every connection. */
  clear(): void {
    this.#byAddress.clear();
    this.#addressOf = new WeakMap();
  }
}
