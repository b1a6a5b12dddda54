/**
 * Shutting the dashboard down while clients hold connections open: a request whose body trickles
 * in is still held to the body timeout, and whatever is left at the close deadline is closed, so
 * that a shutdown always ends.
 */
import assert from "node:assert/strict";
import { listenHttp } from "../../src/http_listener.ts";
import { startServer } from "../../src/server/mod.ts";
import { FakeClock } from "../../src/clock.ts";
import { P } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, send } from "./_sockets.ts";

/** Sends a byte every `everyMs` until disposed (a client trickling its body). */
function trickle(conn: Deno.Conn, everyMs: number): Disposable {
  const timer = setInterval(() => void send(conn, " ").catch(() => {}), everyMs);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}

/**
 * Sends a request head asking `Expect: 100-continue` and reads until the server's `100 Continue`:
 * then the request has been handed to the server's handler.
 */
async function sendHead(conn: Deno.Conn, head: string): Promise<void> {
  await send(conn, head.replace("\r\n", "\r\nExpect: 100-continue\r\n"));
  let seen = "";
  const buffer = new Uint8Array(1024);
  while (!seen.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`the server closed the connection: ${seen}`);
    seen += new TextDecoder().decode(buffer.subarray(0, n));
  }
  assert.match(seen, /^HTTP\/1\.1 100 Continue\r\n/);
}

/** Whether `promise` settles within `ms` of real time. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A handler that reads the whole body before it answers. */
async function readsBody(request: Request): Promise<Response> {
  try {
    await request.arrayBuffer();
  } catch {
    return Response.json({ error: "cut short" }, { status: 400 });
  }
  return Response.json({ ok: true });
}

Deno.test("a body still trickling in when close begins is held to the body timeout", async () => {
  // The close deadline is on a clock that never moves: only the body timeout can end this.
  const clock = new FakeClock();
  const listener = await listenHttp({
    port: 0,
    hostname: "127.0.0.1",
    availableDescriptors: "plenty",
    headerTimeoutSecs: 1,
    bodyTimeoutSecs: 2,
    clock,
    fetch: readsBody,
  });
  const conn = await rawConnect(listener);
  try {
    const started = Date.now();
    await sendHead(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    using _ = trickle(conn, 200);
    const closed = listener.close();
    const answer = await readAll(conn, 8000);
    assert.match(answer.text, /^HTTP\/1\.1 408 /);
    assert.equal(answer.closed, true);
    assert.ok(await settlesWithin(closed, 3000), "close ends once the connection is gone");
    // Body timeout 2 s, checked every second; far less than the 131 s seen before.
    assert.ok(Date.now() - started < 6000, `took ${Date.now() - started} ms`);
  } finally {
    closeQuietly(conn);
    await listener.close();
  }
});

Deno.test("close destroys the connections left at its deadline", async () => {
  const clock = new FakeClock();
  const listener = await listenHttp({
    port: 0,
    hostname: "127.0.0.1",
    availableDescriptors: "plenty",
    headerTimeoutSecs: 1,
    bodyTimeoutSecs: 600,
    closeTimeoutSecs: 20,
    clock,
    fetch: readsBody,
  });
  const conn = await rawConnect(listener);
  try {
    await sendHead(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    using _ = trickle(conn, 200);
    const closed = listener.close();
    // Past a check of the timeouts (every second here): the body is in time, close waits.
    assert.equal(await settlesWithin(closed, 1500), false, "close waits for the request");
    clock.advance(19_999);
    assert.equal(await settlesWithin(closed, 200), false, "not before the deadline");
    clock.advance(1);
    assert.ok(await settlesWithin(closed, 3000), "close ends at its deadline");
    assert.equal((await readAll(conn, 3000)).closed, true, "the connection was closed");
    assert.equal(listener.connections, 0);
  } finally {
    closeQuietly(conn);
    await listener.close();
  }
});

Deno.test("the dashboard's shutdown ends while clients trickle request bodies", async () => {
  const clock = new FakeClock();
  const server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    headerTimeoutSecs: 1,
    rateLimitPerMinute: 1_000_000,
    autoExpireLeases: false,
    clock,
  });
  // One request answered before Hono (an agent POST), one by Hono (the console's login form).
  const lean = await rawConnect(server);
  const hono = await rawConnect(server);
  try {
    await sendHead(
      lean,
      `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n` +
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    );
    await sendHead(
      hono,
      "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n",
    );
    using _lean = trickle(lean, 200);
    using _hono = trickle(hono, 200);
    const stopped = server.shutdown();
    assert.equal(await settlesWithin(stopped, 1500), false, "in-flight requests are waited for");
    clock.advance(20_000);
    assert.ok(await settlesWithin(server.finished, 5000), "the shutdown ended");
    for (const conn of [lean, hono]) {
      assert.equal((await readAll(conn, 3000)).closed, true, "the connection was closed");
    }
  } finally {
    closeQuietly(lean);
    closeQuietly(hono);
    await server.shutdown();
  }
});

Deno.test("a second shutdown with now closes the requests in flight at once", async () => {
  const clock = new FakeClock();
  const server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    headerTimeoutSecs: 1,
    rateLimitPerMinute: 1_000_000,
    autoExpireLeases: false,
    clock,
  });
  const conn = await rawConnect(server);
  try {
    await sendHead(
      conn,
      `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n` +
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    );
    using _ = trickle(conn, 200);
    const stopped = server.shutdown();
    assert.equal(await settlesWithin(stopped, 1500), false, "in flight: waited for");
    // A second Ctrl-C: the clock of the 20 s deadline never moves here.
    const now = server.shutdown({ now: true });
    assert.ok(await settlesWithin(server.finished, 5000), "the shutdown ended at once");
    assert.equal(await now, undefined);
    assert.equal((await readAll(conn, 3000)).closed, true, "the connection was closed");
  } finally {
    closeQuietly(conn);
    await server.shutdown();
  }
});
