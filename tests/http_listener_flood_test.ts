/**
 * A flood of malformed requests is not a flood of log lines (each a write, synced to disk under
 * `LOG_FILE`): the listener writes a burst of them, then a few a second.
 */
import assert from "node:assert/strict";
import { LIMIT_QUIET_MS, listenHttp } from "../src/http_listener.ts";
import { FakeClock } from "../src/clock.ts";
import { until } from "./_until.ts";
import { closeLogging, setupLogging } from "../src/log/mod.ts";
import { REFUSAL_LINES_BURST } from "../src/log/refusal_lines.ts";
import { readAll } from "./server/_sockets.ts";

Deno.test("a flood of malformed requests writes a burst of log lines, not one each", async () => {
  const written: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => written.push(line) });
  const listener = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    availableDescriptors: "plenty",
    fetch: () => new Response("ok"),
  });
  const flood = 4 * REFUSAL_LINES_BURST;
  try {
    for (let i = 0; i < flood; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
      await conn.write(new TextEncoder().encode("GARBAGE\r\n\r\n"));
      const answer = await readAll(conn, 5000);
      assert.match(answer.text, /^HTTP\/1\.1 400 /);
      conn.close();
    }
  } finally {
    await listener.close();
    closeLogging();
  }
  const refused = written.map((line) => JSON.parse(line)).filter((r) =>
    /^malformed request refused/.test(r.message)
  );
  // The burst, and the steady rate for as long as the flood lasted (well under its length).
  assert.ok(refused.length >= REFUSAL_LINES_BURST, `${refused.length} lines`);
  assert.ok(refused.length < flood, `${refused.length} lines for ${flood} requests`);
});

Deno.test("connections opened and closed as fast as they can at the limit say it is reached once, and left once quiet", async () => {
  const written: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => written.push(line) });
  const clock = new FakeClock(0);
  const listener = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    availableDescriptors: "plenty",
    maxConnections: 4,
    clock,
    fetch: () => new Response("ok"),
  });
  const said = (words: string) => written.filter((line) => line.includes(words)).length;
  const open: Deno.Conn[] = [];
  /** Opens `count` connections that send nothing, each beyond the limit taking an idle one's place. */
  const churn = async (count: number) => {
    const evicted = listener.evicted;
    for (let i = 0; i < count; i++) {
      open.push(await Deno.connect({ hostname: "127.0.0.1", port: listener.port }));
      // Each accepted before the next: open, or closed for a later one.
      await until(() => listener.connections + listener.evicted - evicted === i + 1, "accepted");
    }
    assert.equal(listener.evicted - evicted, count - 4);
    for (const conn of open.splice(0)) conn.close();
    await until(() => listener.connections === 0, "every connection is closed");
  };
  try {
    await churn(6);
    await churn(6);
    await churn(6);
    assert.equal(said("connection limit reached"), 1);
    assert.equal(said("below the connection limit again"), 0, "not yet quiet");
    clock.advance(LIMIT_QUIET_MS);
    assert.equal(said("below the connection limit again"), 1);
    assert.match(written.at(-1)!, /"evicted":6/);
    await churn(6);
    assert.equal(said("connection limit reached"), 2, "a new time, said again");
  } finally {
    for (const conn of open) conn.close();
    await listener.close();
    closeLogging();
  }
});
