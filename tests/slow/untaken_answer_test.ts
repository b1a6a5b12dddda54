/**
 * A `status serve` process whose every connection is taken by clients that asked for a large list
 * of commands and read none of it: the connections are dropped once their answers have waited the
 * body timeout (60 s), and an agent gets in again. Slow (a real process, a minute of real time).
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { startServe } from "../e2e/helpers.ts";
import { P } from "../server/_helpers.ts";
import { closeQuietly, rawConnect, readAll, send, waitHead } from "../server/_sockets.ts";

/** Enqueues a command for `a1`, takes it as `a1` and reports 128 KiB of output for it. */
async function finishedCommand(url: string, id: string): Promise<void> {
  const json = { "Content-Type": "application/json", "X-Agent-Id": "a1" };
  const enqueued = await fetch(`${url}${P.enqueue}`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ id, name: "echo hi", agent_id: "a1" }),
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const waited = await fetch(`${url}${P.wait("default", 1)}`, { headers: json });
  assert.equal((await waited.json()).id, id);
  const output = "x".repeat(64 * 1024);
  const reported = await fetch(`${url}${P.report}`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({
      command_id: id,
      status: "success",
      attempt: 1,
      result: {
        exit_code: 0,
        signal: null,
        duration_secs: 0.1,
        stdout: output,
        stderr: output,
        stdout_truncated_bytes: 0,
        stderr_truncated_bytes: 0,
      },
      error: null,
      started_at: new Date().toISOString(),
      completed_at: new Date().toISOString(),
    }),
  });
  assert.equal(reported.status, 200);
  await reported.body?.cancel();
}

Deno.test({
  name:
    "status serve drops the connections of clients that read none of a large answer, and an agent gets in again",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "status-untaken-" });
    const limit = 4;
    await using served = await startServe({
      db: `${dir}/status.db`,
      args: ["--max-connections", String(limit), "--rate-limit-per-minute", "100000"],
    });
    const readers: Deno.TcpConn[] = [];
    try {
      // 200 commands of 128 KiB each: a list of them (26 MB) is more than loopback's buffers take.
      for (let i = 0; i < 200; i++) await finishedCommand(served.url, `c${i}`);
      for (let i = 0; i < limit; i++) {
        const conn = await rawConnect(served);
        await send(conn, "GET /api/v1/commands?limit=200 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        readers.push(conn);
        // The answer has begun (its request is in progress, not idle); nothing more is read.
        assert.ok(await conn.read(new Uint8Array(1024)));
      }
      // Every connection is busy sending an answer: a new one is closed at once.
      await until(async () => {
        const conn = await rawConnect(served);
        try {
          await send(conn, waitHead("a2", 1));
          return (await readAll(conn, 3000)).text === "";
        } catch {
          return true; // reset: refused
        } finally {
          closeQuietly(conn);
        }
      }, "the limit is reached");
      // Within the body timeout (60 s) and a check of it, an agent's wait is answered again.
      await until(
        async () => {
          const conn = await rawConnect(served);
          try {
            await send(conn, waitHead("a2", 1));
            return /^HTTP\/1\.1 204 /.test((await readAll(conn, 3000)).text);
          } catch {
            return false;
          } finally {
            closeQuietly(conn);
          }
        },
        "an agent gets in again",
        90_000,
        1000,
      );
    } finally {
      for (const conn of readers) closeQuietly(conn);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
