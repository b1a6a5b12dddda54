/**
 * The metrics listener (the agent's `--metrics-port`, the dashboard's `--metrics-bind`) has the
 * dashboard's socket defences: idle sockets are closed, and a flood of them is refused instead of
 * running the process out of descriptors.
 */
import assert from "node:assert/strict";
import { serveMetrics } from "../src/metrics_server.ts";
import { readAll } from "./server/_sockets.ts";

Deno.test("the metrics listener refuses connections beyond its limit, closes idle ones, then serves a scrape", async () => {
  const stop = new AbortController();
  const server = await serveMetrics(
    () => Promise.resolve(new Response("up 1\n")),
    { hostname: "127.0.0.1", port: 0 },
    stop.signal,
    { headerTimeoutSecs: 1, maxConnections: 4 },
  );
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
    }
    // Beyond the limit: closed at once. Within it: closed once the header timeout passed.
    const outcomes = await Promise.all(conns.map((conn) => readAll(conn, 5000)));
    assert.ok(outcomes.every((outcome) => outcome.closed), JSON.stringify(outcomes));
    const scrape = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(scrape.status, 200);
    assert.equal(await scrape.text(), "up 1\n");
    const other = await fetch(`http://127.0.0.1:${server.port}/`);
    assert.equal(other.status, 404);
    await other.body?.cancel();
    // A monitor's HEAD gets the scrape's headers; another method is told which ones there are.
    const head = await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
    const post = await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("Allow"), "GET, HEAD");
    await post.body?.cancel();
  } finally {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
    }
    stop.abort();
    await server.finished;
  }
});
