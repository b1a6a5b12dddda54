/**
 * A flood of malformed requests is not a flood of log lines (each a write, synced to disk under
 * `LOG_FILE`): the listener writes a burst of them, then a few a second.
 */
import assert from "node:assert/strict";
import { listenHttp } from "../src/http_listener.ts";
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
