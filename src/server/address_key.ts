/**
 * The key a per-address limit counts a client under. One IPv6 host is usually given a whole /64
 * (2^64 addresses), so a limit keyed by the full address would give a client as many buckets as it
 * cares to use; its /64 is the client. An IPv4 address (also one mapped into IPv6, as a
 * dual-stack socket shows it) is its own key.
 *
 * @module
 */

/**
 * The key of a client address for a per-address limit.
 *
 * @example IPv6 by its /64, IPv4 as it is
 * ```ts
 * import assert from "node:assert/strict";
 * import { addressKey } from "./address_key.ts";
 *
 * assert.equal(addressKey("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
 * assert.equal(addressKey("2001:db8:1:2:ffff:ffff:ffff:fffe"), "2001:db8:1:2::/64");
 * assert.equal(addressKey("::ffff:192.0.2.7"), "192.0.2.7");
 * assert.equal(addressKey("192.0.2.7"), "192.0.2.7");
 * ```
 *
 * @param remote The client's address as the socket gives it, if known.
 * @returns The key; the address itself when it is not an IPv6 address; `undefined` when not known.
 */
export function addressKey(remote: string | undefined): string | undefined {
  if (remote === undefined || !remote.includes(":")) return remote;
  const address = remote.replace(/^\[|\]$/g, "").replace(/%.*$/, "").toLowerCase();
  const groups = hextets(address);
  if (groups === null) return remote;
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) {
    const [a, b] = [groups[6], groups[7]];
    return `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (`::` and a dotted IPv4 tail allowed), or `null`. */
function hextets(address: string): number[] | null {
  const halves = address.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes(".")) {
        const octets = piece.split(".");
        if (octets.length !== 4 || !octets.every((o) => /^\d{1,3}$/.test(o) && Number(o) < 256)) {
          return null;
        }
        const [a, b, c, d] = octets.map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else if (/^[0-9a-f]{1,4}$/.test(piece)) {
        out.push(parseInt(piece, 16));
      } else return null;
    }
    return out;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const missing = 8 - head.length - tail.length;
  if (missing < 1) return null;
  return [...head, ...new Array<number>(missing).fill(0), ...tail];
}
