/**
 * `dropConnection`: a route closes the connection of a request whose answer has no end (an event
 * stream whose client stopped reading).
 */
import assert from "node:assert/strict";
import { dropConnection, listenHttp } from "../src/http_listener.ts";
import { readAll } from "./server/_sockets.ts";

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
