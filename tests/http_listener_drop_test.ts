/**
 * `dropConnection`: a route closes the connection of a request whose answer has no end (an event
 * stream whose client stopped reading).
 */
import assert from "node:assert/strict";
import { dropConnection, listenHttp } from "../src/http_listener.ts";
import { FakeClock } from "../src/clock.ts";
import { readAll } from "./server/_sockets.ts";
import { until } from "./_until.ts";

Deno.test("dropConnection closes the connection a request came on; a request made in process has none", async () => {
  let seen: Request | undefined;
  const listener = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    availableDescriptors: "plenty",
    fetch(request) {
      seen = request;
      // An answer without end, as an event stream's.
      return new Response(new ReadableStream({ start: (c) => c.enqueue(new Uint8Array([0x3a])) }));
    },
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  try {
    await conn.write(new TextEncoder().encode("GET /endless HTTP/1.1\r\nHost: x\r\n\r\n"));
    const head = await readAll(conn, 500);
    assert.match(head.text, /^HTTP\/1\.1 200 /);
    assert.ok(!head.closed);
    assert.equal(listener.connections, 1);
    assert.equal(dropConnection(seen!), true);
    assert.ok((await readAll(conn, 5000)).closed, "the client sees its connection closed");
    assert.equal(listener.connections, 0);
    assert.equal(dropConnection(new Request("http://localhost/endless")), false);
  } finally {
    conn.close();
    await listener.close();
  }
});

Deno.test("an answer its client does not take within the body timeout is dropped with its connection", async (t) => {
  const clock = new FakeClock(0);
  // Larger than the kernel's buffers on both sides of a loopback connection.
  const answer = new Uint8Array(32 * 1024 * 1024).fill(0x61);
  const listener = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    availableDescriptors: "plenty",
    bodyTimeoutSecs: 60,
    clock,
    fetch: () => new Response(answer),
  });
  const request = new TextEncoder().encode("GET /large HTTP/1.1\r\nHost: x\r\n\r\n");
  try {
    await t.step("a client that reads nothing: closed at the timeout, not before", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
      try {
        await conn.write(request);
        await until(() => clock.pending === 1, "the answer is written");
        clock.advance(59_999);
        assert.equal(listener.connections, 1);
        clock.advance(1);
        await until(() => listener.connections === 0, "its connection is closed");
        assert.equal(clock.pending, 0);
      } finally {
        conn.close();
      }
    });
    await t.step("a client that reads its answer: kept, and nothing left to fire", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
      try {
        await conn.write(request);
        const buffer = new Uint8Array(1 << 20);
        let read = 0;
        while (read < answer.byteLength) read += (await conn.read(buffer)) ?? Infinity;
        await until(() => clock.pending === 0, "the answer is taken");
        clock.advance(60_000);
        assert.equal(listener.connections, 1);
      } finally {
        conn.close();
      }
    });
  } finally {
    await listener.close();
  }
});
