import assert from "node:assert/strict";
import { IdleConnections } from "../src/idle_connections.ts";

type Conn = { name: string };
const conn = (name: string): Conn => ({ name });

Deno.test("the new connection's own address gives up its oldest idle connection first", () => {
  const idle = new IdleConnections<Conn>();
  const [a1, a2, b1, b2, b3] = ["a1", "a2", "b1", "b2", "b3"].map(conn);
  idle.idle(a1, "a");
  idle.idle(b1, "b");
  idle.idle(a2, "a");
  idle.idle(b2, "b");
  idle.idle(b3, "b");
  assert.equal(idle.victimFor("a"), a1, "its own, although b holds more");
  assert.equal(idle.victimFor("c"), b1, "else the oldest of the address holding the most");
  assert.equal(idle.size, 5);
});

Deno.test("a busy connection is never chosen; idle again, it is the newest of its address", () => {
  const idle = new IdleConnections<Conn>();
  const [a1, a2] = ["a1", "a2"].map(conn);
  idle.idle(a1, "a");
  idle.idle(a2, "a");
  idle.busy(a1);
  assert.equal(idle.victimFor("a"), a2);
  idle.idle(a1); // its address is remembered
  assert.equal(idle.victimFor("a"), a2, "a1 is now the newest");
  idle.busy(a2);
  assert.equal(idle.victimFor("a"), a1);
  idle.busy(a1);
  assert.equal(idle.victimFor("a"), undefined, "every connection busy");
  assert.equal(idle.victimFor("z"), undefined);
  assert.equal(idle.size, 0);
});

Deno.test("marking idle twice keeps the place; unknown connections are left alone", () => {
  const idle = new IdleConnections<Conn>();
  const [a1, a2, stranger] = ["a1", "a2", "x"].map(conn);
  idle.idle(a1, "a");
  idle.idle(a2, "a");
  idle.idle(a1, "a");
  assert.equal(idle.victimFor("a"), a1);
  idle.idle(stranger); // never noted with an address
  idle.busy(stranger);
  assert.equal(idle.size, 2);
  idle.clear();
  assert.equal(idle.size, 0);
  idle.idle(a1);
  assert.equal(idle.size, 0, "cleared connections are forgotten, address and all");
});
