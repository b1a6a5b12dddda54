/**
 * Sockets that do not behave: idle or half-sent request heads, more connections than the limit,
 * a process at its open-files limit, malformed HTTP.
 */
import { until } from "../_until.ts";
import assert from "node:assert/strict";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { P } from "./_helpers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Log lines (JSON) of the process while `fn` runs. */
async function withLogs<T>(fn: (lines: string[]) => Promise<T>): Promise<T> {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => lines.push(line) });
  try {
    return await fn(lines);
  } finally {
    closeLogging();
  }
}

/** Reads from a raw connection until it closes (or `ms` pass): what the server sent. */
async function readAll(conn: Deno.Conn, ms: number): Promise<{ text: string; closed: boolean }> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    let n: number | null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      n = await Promise.race([
        conn.read(buffer),
        new Promise<number>((resolve) => {
          timer = setTimeout(() => resolve(-1), Math.max(1, deadline - Date.now()));
        }),
      ]);
    } catch {
      n = null; // reset by the server
    } finally {
      clearTimeout(timer);
    }
    if (n === -1) return { text: decode(chunks), closed: false };
    if (n === null) return { text: decode(chunks), closed: true };
    chunks.push(buffer.slice(0, n));
  }
  return { text: decode(chunks), closed: false };
}

function decode(chunks: Uint8Array[]): string {
  return chunks.map((chunk) => new TextDecoder().decode(chunk)).join("");
}

async function rawConnect(server: { port: number }): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port: server.port });
}

function send(conn: Deno.Conn, text: string): Promise<number> {
  return conn.write(new TextEncoder().encode(text));
}

function waitHead(agentId: string, timeout: number): string {
  return `GET ${P.wait("default", timeout)} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `X-Agent-Id: ${agentId}\r\n\r\n`;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

Deno.test("a connection without a complete request head is closed after the header timeout, a held wait is not", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    headerTimeoutSecs: 1,
    rateLimitPerMinute: 1_000_000,
  });
  const idle = await rawConnect(server);
  const half = await rawConnect(server);
  const waiting = await rawConnect(server);
  try {
    await send(half, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    await send(waiting, waitHead("w1", 3));
    await until(() => server.dashboard.hub.size === 1, "the wait is held");
    const [idleAnswer, halfAnswer] = await Promise.all([
      readAll(idle, 5000),
      readAll(half, 5000),
    ]);
    assert.ok(idleAnswer.closed, "the idle connection is closed");
    assert.ok(halfAnswer.closed, "the half-sent head is closed");
    assert.match(halfAnswer.text, /^HTTP\/1\.1 408 /);
    assert.match(halfAnswer.text, /"error":"the request did not arrive completely/);
    // The wait outlives the header timeout and ends as asked, with 204.
    assert.equal(server.dashboard.hub.size, 1);
    const waitAnswer = await readAll(waiting, 6000);
    assert.match(waitAnswer.text, /^HTTP\/1\.1 204 /);
  } finally {
    for (const conn of [idle, half, waiting]) closeQuietly(conn);
  }
});

Deno.test("beyond the connection limit new connections are refused with one warning, open waits are still served", async () => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      db: ":memory:",
      port: 0,
      maxConnections: 4,
      rateLimitPerMinute: 1_000_000,
    });
    assert.equal(server.listener.maxConnections, 4);
    const waits: Deno.TcpConn[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const conn = await rawConnect(server);
        await send(conn, waitHead(`w${i}`, 30));
        waits.push(conn);
      }
      await until(() => server.dashboard.hub.size === 4, "four waits are held");
      for (let i = 0; i < 3; i++) {
        const extra = await rawConnect(server);
        await send(extra, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").catch(() => 0);
        const answer = await readAll(extra, 5000);
        closeQuietly(extra);
        assert.ok(answer.closed, "a connection beyond the limit is closed");
        assert.equal(answer.text, "", "and gets no answer");
      }
      assert.equal(server.listener.refused, 3);
      const warnings = lines.filter((line) => line.includes("connection limit reached"));
      assert.equal(warnings.length, 1, "one warning when the limit is reached");
      // One waiting agent goes away: the operator gets in and wakes another one.
      closeQuietly(waits.shift()!);
      await until(() => server.listener.connections === 3, "the closed connection is gone");
      const enqueued = await fetch(`${server.url}${P.enqueue}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Agent-Id": "w2" },
        body: JSON.stringify({ id: "for-w2", name: "echo hi" }),
      });
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      const woken = await readAll(waits[1], 5000);
      assert.match(woken.text, /^HTTP\/1\.1 200 /);
      assert.match(woken.text, /"id":"for-w2"/);
    } finally {
      for (const conn of waits) closeQuietly(conn);
    }
  });
});

Deno.test("the connection limit stays below the open-files limit", async () => {
  await using server = await startServer({
    db: ":memory:",
    port: 0,
    maxConnections: 5000,
    availableDescriptors: 1024,
  });
  assert.equal(server.listener.maxConnections, 1024 - 128);
});

Deno.test("broken chunked encoding and a bad request head get 400 with a message and a warning at most", async () => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    const chunked = await rawConnect(server);
    const head = await rawConnect(server);
    try {
      await send(
        chunked,
        `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n` +
          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
          '5\r\n{"id"\r\nzz-not-hex\r\n\r\n',
      );
      const chunkedAnswer = await readAll(chunked, 5000);
      assert.match(chunkedAnswer.text, /^HTTP\/1\.1 400 /);
      assert.match(chunkedAnswer.text, /"error":"/);
      await send(head, "GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n");
      const headAnswer = await readAll(head, 5000);
      assert.match(headAnswer.text, /^HTTP\/1\.1 400 /);
      assert.match(headAnswer.text, /"error":"malformed HTTP request/);
    } finally {
      closeQuietly(chunked);
      closeQuietly(head);
    }
    const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
    assert.deepEqual(errors, []);
  });
});

Deno.test("a body cut short is answered 400 (when the client still listens) and never logged as an error", async () => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    const conn = await rawConnect(server);
    try {
      await send(
        conn,
        `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n` +
          'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"id":"x",',
      );
      await conn.closeWrite();
      const answer = await readAll(conn, 5000);
      if (answer.text !== "") assert.match(answer.text, /^HTTP\/1\.1 400 /);
    } finally {
      closeQuietly(conn);
    }
    // Give the server a moment to log whatever it logs about the cut body.
    await sleep(200);
    const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
    assert.deepEqual(errors, []);
  });
});

/** A `status serve` process under `prlimit --nofile=<n>`, or `null` without prlimit. */
async function serveUnderFileLimit(
  dir: string,
  nofile: number,
): Promise<{ child: Deno.ChildProcess; url: string; stderr: string[] } | null> {
  try {
    const probe = await new Deno.Command("prlimit", { args: ["--version"], stdout: "null" })
      .output();
    if (!probe.success) return null;
  } catch {
    return null;
  }
  const child = new Deno.Command("prlimit", {
    args: [
      `--nofile=${nofile}:${nofile}`,
      Deno.execPath(),
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      `${ROOT}main.ts`,
      "serve",
      "--port",
      "0",
      "--db",
      `${dir}/status.db`,
      "--header-timeout-secs",
      "2",
      "--rate-limit-per-minute",
      "100000",
      "--log-format",
      "json",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr: string[] = [];
  void (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr.push(...chunk.split("\n").filter(Boolean));
    }
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const deadline = Date.now() + 30_000;
  while (!/listening on (\S+)/.test(out)) {
    if (Date.now() > deadline) throw new Error(`status serve did not start: ${stderr.join("\n")}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`status serve exited: ${stderr.join("\n")}`);
    out += value;
  }
  void reader.read().then(function drain(r): Promise<void> | void {
    if (!r.done) return reader.read().then(drain);
  });
  return { child, url: /listening on (\S+)/.exec(out)![1], stderr };
}

Deno.test({
  name:
    "status serve at its open-files limit keeps serving waits, refuses new connections, and recovers",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "status-nofile-" });
    const served = await serveUnderFileLimit(dir, 256);
    if (!served) {
      if (Deno.env.get("CI")) throw new Error("prlimit is missing: .ci/run installs util-linux");
      await t.step({ name: "prlimit is not available", ignore: true, fn: () => {} });
      await Deno.remove(dir, { recursive: true });
      return;
    }
    const { child, url, stderr } = served;
    const port = Number(new URL(url).port);
    const conns: Deno.TcpConn[] = [];
    let ended = false;
    try {
      // Two agents wait, then 600 idle connections: more than the process has descriptors.
      const waiting: Deno.TcpConn[] = [];
      for (const agent of ["w1", "w2"]) {
        const conn = await rawConnect({ port });
        await send(conn, waitHead(agent, 60));
        waiting.push(conn);
      }
      await sleep(300);
      // All at once: a burst must not run the dashboard out of descriptors while it refuses.
      // (A dashboard that stopped accepting leaves connects hanging: give up on them after 10 s.)
      await Promise.allSettled(Array.from({ length: 600 }, async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const connecting = rawConnect({ port }).then((conn) => {
          if (ended) closeQuietly(conn);
          else conns.push(conn);
        });
        await Promise.race([
          connecting,
          new Promise((resolve) => timer = setTimeout(resolve, 10_000)),
        ]);
        clearTimeout(timer);
      }));
      await until(
        () => stderr.some((line) => line.includes("connection limit reached")),
        `the dashboard logs that the limit is reached: ${stderr.join("\n")}`,
      );
      // The idle ones are closed after the header timeout; then a new client gets in.
      let enqueued: Response | undefined;
      const deadline = Date.now() + 20_000;
      while (!enqueued) {
        try {
          enqueued = await fetch(`${url}${P.enqueue}`, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Agent-Id": "w1" },
            body: JSON.stringify({ id: "after-flood", name: "echo hi" }),
            signal: AbortSignal.timeout(3000),
          });
        } catch {
          if (Date.now() > deadline) throw new Error("no new connection was accepted again");
          await sleep(250);
        }
      }
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
      const woken = await readAll(waiting[0], 5000);
      assert.match(woken.text, /^HTTP\/1\.1 200 /, "the wait held through the flood is answered");
      assert.match(woken.text, /"id":"after-flood"/);
      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      await health.body?.cancel();
      conns.push(...waiting);
      assert.ok(
        !stderr.some((line) => /Too many open files|Uncaught/.test(line)),
        stderr.join("\n"),
      );
    } finally {
      ended = true;
      for (const conn of conns) closeQuietly(conn);
      child.kill("SIGTERM");
      await child.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
