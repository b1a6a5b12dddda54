/**
 * Sockets that do not behave: idle or half-sent request heads, more connections than the limit,
 * malformed HTTP (a process at its open-files limit: `tests/slow/nofile_test.ts`).
 */
import { until } from "../_until.ts";
import assert from "node:assert/strict";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { MAX_PIPELINED } from "../../src/http_listener.ts";
import { MAX_FORMS_PER_ADDRESS } from "../../src/server/web/routes.tsx";
import { ADMIN_TOKEN, agentHeaders, P, TOKEN } from "./_helpers.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { PARSE_FAILURE_REASONS as R } from "../../src/http_parse_error.ts";
import { closeQuietly, rawConnect, readAll, readAnswer, send, waitHead } from "./_sockets.ts";
import { connect, type Socket } from "node:net";

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

/** Enqueues a command for `agent` and checks that its wait held on `wait` is answered with it. */
async function enqueueAndExpectWake(
  server: { url: string },
  agent: string,
  wait: Deno.Conn,
  readMs: number,
): Promise<void> {
  const enqueued = await fetch(`${server.url}${P.enqueue}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": agent },
    body: JSON.stringify({ id: `for-${agent}`, name: "echo hi" }),
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const woken = await readAll(wait, readMs);
  assert.match(woken.text, /^HTTP\/1\.1 200 /);
  assert.match(woken.text, new RegExp(`"id":"for-${agent}"`));
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
    assert.match(halfAnswer.text, /\r\nDate: \w{3}, \d\d \w{3} \d{4} /);
    assert.match(halfAnswer.text, /"error":"the request did not arrive completely/);
    // The wait outlives the header timeout and ends as asked, with 204.
    assert.equal(server.dashboard.hub.size, 1);
    const waitAnswer = await readAll(waiting, 6000);
    assert.match(waitAnswer.text, /^HTTP\/1\.1 204 /);
  } finally {
    for (const conn of [idle, half, waiting]) closeQuietly(conn);
  }
});

Deno.test("a keep-alive connection idle between requests is closed without an answer", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    headerTimeoutSecs: 1,
  });
  const conn = await rawConnect(server);
  try {
    await send(conn, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert.match((await readAnswer(conn)).text, /^HTTP\/1\.1 200 /);
    // A 408 now could be taken for the answer to a request the client is sending at that moment.
    const after = await readAll(conn, 10_000);
    assert.ok(after.closed, "the idle connection is closed");
    assert.equal(after.text, "");
  } finally {
    closeQuietly(conn);
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
      await enqueueAndExpectWake(server, "w2", waits[1], 5000);
    } finally {
      for (const conn of waits) closeQuietly(conn);
    }
  });
});

Deno.test("at the connection limit a new connection takes the place of an idle one, never of a held wait", async () => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      db: ":memory:",
      port: 0,
      maxConnections: 4,
      rateLimitPerMinute: 1_000_000,
    });
    const conns: Deno.TcpConn[] = [];
    const open = async (): Promise<Deno.TcpConn> => {
      const conn = await rawConnect(server);
      conns.push(conn);
      return conn;
    };
    try {
      const waits = [await open(), await open()];
      for (const [i, conn] of waits.entries()) await send(conn, waitHead(`w${i}`, 30));
      await until(() => server.dashboard.hub.size === 2, "two waits are held");
      // Sockets that send nothing, or half a head, hold the other two places.
      const silent = await open();
      const half = await open();
      await send(half, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      await until(() => server.listener.connections === 4, "the limit is reached");
      // Each new client gets in, in place of the oldest idle connection: the silent one, the
      // half-sent one, then the first client's, kept alive and idle after its answer.
      const clients: Deno.TcpConn[] = [];
      for (let i = 0; i < 3; i++) {
        const client = await open();
        clients.push(client);
        await send(client, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        const answer = await readAnswer(client);
        assert.match(answer.text, /^HTTP\/1\.1 200 /, `client ${i} is served`);
        // Its answer sent, the client's connection is idle: the next one may take its place.
        await until(() => server.listener.idle === 2, "two idle connections");
      }
      assert.equal(server.listener.refused, 0);
      assert.equal(server.listener.evicted, 3);
      assert.ok((await readAll(clients[0], 2000)).closed, "the first client's idle connection");
      assert.equal((await readAll(clients[2], 100)).closed, false, "the last client's is open");
      for (const conn of [silent, half]) {
        const answer = await readAll(conn, 2000);
        assert.ok(answer.closed, "an idle connection made room");
        assert.equal(answer.text, "", "without an answer");
      }
      assert.equal(server.dashboard.hub.size, 2, "the held waits were kept");
      assert.equal(
        lines.filter((line) => line.includes("connection limit reached")).length,
        1,
        "one warning when the limit is reached",
      );
      await enqueueAndExpectWake(server, "w1", waits[1], 1000);
    } finally {
      for (const conn of conns) closeQuietly(conn);
    }
  });
});

Deno.test("at the connection limit an address's new connections take the places of its own idle ones, never another address's", async () => {
  await using server = await startServer({
    db: ":memory:",
    port: 0,
    maxConnections: 4,
    rateLimitPerMinute: 1_000_000,
  });
  // The attacker's sockets come from 127.0.0.2 and send half a head; the client is 127.0.0.1.
  const attackers: Socket[] = [];
  const attack = () =>
    new Promise<void>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port: server.port, localAddress: "127.0.0.2" });
      socket.on("error", () => {});
      socket.on("data", () => {});
      socket.on("connect", () => socket.write("GET /health HTTP/1.1\r\n", () => resolve()));
      attackers.push(socket);
    });
  const client = await rawConnect(server);
  try {
    for (let i = 0; i < 4; i++) await attack();
    await until(() => server.listener.evicted === 1, "the fourth attacker made room");
    // The client has sent nothing yet; ten more attackers take their own address's places.
    for (let i = 0; i < 10; i++) await attack();
    await until(() => server.listener.evicted === 11, "each made room");
    assert.equal(server.listener.refused, 0);
    await send(client, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert.match((await readAll(client, 5000)).text, /^HTTP\/1\.1 200 /, "the client is served");
  } finally {
    closeQuietly(client);
    for (const socket of attackers) socket.destroy();
  }
});

Deno.test("a keep-alive connection idle after its answer makes room at the limit, one answering does not", async () => {
  await using server = await startServer({
    db: ":memory:",
    port: 0,
    maxConnections: 2,
    rateLimitPerMinute: 1_000_000,
  });
  const conns: Deno.TcpConn[] = [];
  const open = async (): Promise<Deno.TcpConn> => {
    const conn = await rawConnect(server);
    conns.push(conn);
    return conn;
  };
  try {
    const held = await open();
    await send(held, waitHead("w0", 30));
    await until(() => server.dashboard.hub.size === 1, "the wait is held");
    const kept = await open();
    await send(kept, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const first = await readAnswer(kept);
    assert.match(first.text, /^HTTP\/1\.1 200 /);
    assert.equal(first.closed, false, "kept alive");
    await until(() => server.listener.idle === 1, "the kept-alive connection is idle");
    const client = await open();
    await send(client, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert.match((await readAll(client, 5000)).text, /^HTTP\/1\.1 200 /);
    assert.ok((await readAll(kept, 2000)).closed, "the idle keep-alive connection made room");
    assert.equal(server.listener.evicted, 1);
    assert.equal(server.dashboard.hub.size, 1, "the held wait was kept");
    // With both places busy (the wait, and a request whose body is still to come), a new
    // connection is refused.
    const slowBody = await open();
    await send(
      slowBody,
      `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        "X-Agent-Id: w0\r\nContent-Length: 100\r\n\r\n{",
    );
    await until(() => server.listener.connections === 2, "both places are taken");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const refused = await open();
    await send(refused, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").catch(() => 0);
    const answer = await readAll(refused, 5000);
    assert.ok(answer.closed);
    assert.equal(answer.text, "", "refused without an answer");
    assert.equal(server.listener.refused, 1);
    assert.equal((await readAll(slowBody, 200)).closed, false, "the request in progress goes on");
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
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

Deno.test("malformed requests get 400 naming the fault, with a Date, never quoting the request", async (t) => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    const head = `POST ${P.ack} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n`;
    const cases: Array<[string, string, string]> = [
      [
        "a repeated Content-Length",
        "Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        R.contentLength,
      ],
      ["a negative Content-Length", "Content-Length: -1\r\n\r\n", R.contentLength],
      ["a Content-Length in hex", "Content-Length: 0x10\r\n\r\n", R.contentLength],
      ["Transfer-Encoding: gzip", "Transfer-Encoding: gzip\r\n\r\n", R.transferEncoding],
      [
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        R.transferEncoding,
      ],
      [
        "Transfer-Encoding given twice",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        R.transferEncoding,
      ],
      [
        "Content-Length with Transfer-Encoding",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        R.transferEncoding,
      ],
      [
        "a chunk size that is not hexadecimal",
        "Transfer-Encoding: chunked\r\n\r\nZZ-secret\r\nabc\r\n0\r\n\r\n",
        R.chunked,
      ],
      ["a header without a colon", "X-Secret secret\r\n\r\n", R.header],
    ];
    for (const [name, rest, reason] of cases) {
      await t.step(name, async () => {
        const conn = await rawConnect(server);
        try {
          await send(conn, head + rest);
          const answer = await readAll(conn, 5000);
          assert.match(answer.text, /^HTTP\/1\.1 400 /);
          assert.match(answer.text, /\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n/);
          const body = JSON.parse(answer.text.slice(answer.text.indexOf("\r\n\r\n") + 4));
          assert.equal(body.error, `malformed HTTP request: ${reason}`);
          assert.ok(answer.closed);
        } finally {
          closeQuietly(conn);
        }
      });
    }
    await t.step("a request line that is not one", async () => {
      const conn = await rawConnect(server);
      try {
        await send(conn, "GARBAGE-secret\r\n\r\n");
        const answer = await readAll(conn, 5000);
        assert.match(answer.text, /^HTTP\/1\.1 400 [\s\S]*\r\nDate: /);
        assert.ok(answer.text.endsWith(`{"error":"malformed HTTP request: ${R.requestLine}"}`));
      } finally {
        closeQuietly(conn);
      }
    });
    await t.step("headers too large: 431 with a Date", async () => {
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ${"a".repeat(70_000)}\r\n\r\n`,
        )
          .catch(() => 0);
        const answer = await readAll(conn, 5000);
        assert.match(
          answer.text,
          /^HTTP\/1\.1 431 [\s\S]*\r\nDate: [\s\S]*"error":"request headers/,
        );
      } finally {
        closeQuietly(conn);
      }
    });
    assert.ok(!lines.join("\n").includes("secret"), "the log does not quote the request either");
    const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
    assert.deepEqual(errors, []);
  });
});

Deno.test("an HTTP/1.1 request without Host or with two, an HTTP version other than 1.1 and 1.0, a Transfer-Encoding other than chunked or in HTTP/1.0, and a CONNECT get 400 with a JSON error", async (t) => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    const cases = {
      "no Host": ["GET /health HTTP/1.1\r\n\r\n", /"error":"malformed request: .*host/i],
      "CONNECT": [
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        /"error":"CONNECT is not served: the dashboard is not a proxy"/,
      ],
      "two Host headers": [
        "GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n",
        /"error":"malformed HTTP request: more than one Host header"/,
      ],
      "two Host headers on a lean route": [
        "GET /api/v1/agent/commands/wait/h1 HTTP/1.1\r\nHost: localhost\r\nhost: x\r\n\r\n",
        /"error":"malformed HTTP request: more than one Host header"/,
      ],
      "a Host with user info (evil@localhost)": [
        "GET /api/v1/commands HTTP/1.1\r\nHost: evil@localhost\r\n\r\n",
        /"error":"malformed request: Invalid host header"/,
      ],
      "a Host with user info on a lean route": [
        "GET /api/v1/agent/commands/wait/h1 HTTP/1.1\r\nHost: evil@localhost\r\n" +
        "X-Agent-Id: a1\r\n\r\n",
        /"error":"malformed request: Invalid host header"/,
      ],
      "a Host with a path on a lean route": [
        "POST /api/v1/agent/commands/ack HTTP/1.1\r\nHost: localhost/x\r\n" +
        "X-Agent-Id: a1\r\nContent-Length: 2\r\n\r\n{}",
        /"error":"malformed request: Invalid host header"/,
      ],
      "a request line without an HTTP version (HTTP/0.9)": [
        "GET /health\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.version}"`),
      ],
      "HTTP/0.9 with a Host on a lean route": [
        "GET /api/v1/agent/commands/wait/h1 HTTP/0.9\r\nHost: localhost\r\nX-Agent-Id: a1\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.version}"`),
      ],
      "HTTP/2.0 in a request line": [
        "GET /api/v1/commands HTTP/2.0\r\nHost: localhost\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.http2}"`),
      ],
      "a request target that is no path (OPTIONS *)": [
        "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
        /"error":"malformed request: Invalid URL: the request target must be a path starting with \/ /,
      ],
      "a Host no URL takes": [
        "GET /health HTTP/1.1\r\nHost: [zz\r\n\r\n",
        /"error":"malformed request: Invalid URL: .*and Host a host name or address/,
      ],
      "a Host of plain characters no URL takes (999.1.1.1)": [
        "GET /api/v1/commands HTTP/1.1\r\nHost: 999.1.1.1\r\n\r\n",
        /"error":"malformed request: Invalid URL: [^']*and Host a host name or address[^']*"}$/,
      ],
      "a Host of plain characters no URL takes, on a lean route (1.2.3.4.5)": [
        "GET /api/v1/agent/commands/wait/h1?timeout=1 HTTP/1.1\r\nHost: 1.2.3.4.5\r\n" +
        "X-Agent-Id: a1\r\n\r\n",
        /"error":"malformed request: Invalid URL: [^']*and Host a host name or address[^']*"}$/,
      ],
      "a Host of plain characters no URL takes, on a lean POST (xn--)": [
        "POST /api/v1/agent/commands/ack HTTP/1.1\r\nHost: xn--\r\nX-Agent-Id: a1\r\n" +
        "Content-Length: 2\r\n\r\n{}",
        /"error":"malformed request: Invalid URL: [^']*and Host a host name or address[^']*"}$/,
      ],
      "a Transfer-Encoding other than chunked": [
        "POST /api/v1/agent/commands/enqueue HTTP/1.1\r\nHost: localhost\r\n" +
        "Transfer-Encoding: gzip, chunked\r\nContent-Type: application/json\r\n\r\n" +
        "2\r\n{}\r\n0\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.transferEncoding}"`),
      ],
      "an empty Transfer-Encoding beside a Content-Length": [
        "POST /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: \r\n" +
        "Content-Length: 2\r\n\r\n{}GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.transferEncoding}"}$`),
      ],
      "an empty Transfer-Encoding before a chunked body, on a lean route": [
        "POST /api/v1/agent/commands/ack HTTP/1.1\r\nHost: localhost\r\nX-Agent-Id: a1\r\n" +
        "Transfer-Encoding: \r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.transferEncoding}"}$`),
      ],
      "Transfer-Encoding: chunked and an empty one": [
        "POST /api/v1/agents HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n" +
        "Transfer-Encoding: \r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.transferEncoding}"}$`),
      ],
      "a Transfer-Encoding in an HTTP/1.0 request kept alive, with a request behind it": [
        "POST /api/v1/agents HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" +
        "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.http10TransferEncoding}"}$`),
      ],
      "a Transfer-Encoding in an HTTP/1.0 request on a lean route": [
        "POST /api/v1/agent/commands/report HTTP/1.0\r\nHost: localhost\r\nX-Agent-Id: a1\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        new RegExp(`"error":"malformed HTTP request: ${R.http10TransferEncoding}"}$`),
      ],
    } as const;
    for (const [name, [request, message]] of Object.entries(cases)) {
      await t.step(name, async () => {
        const conn = await rawConnect(server);
        try {
          await send(conn, request);
          const answer = await readAll(conn, 5000);
          assert.match(answer.text, /^HTTP\/1\.1 400 /);
          assert.match(answer.text, /\r\nContent-Type: application\/json\r\n/i);
          assert.match(answer.text, message);
          assert.ok(answer.closed, "the connection is closed");
        } finally {
          closeQuietly(conn);
        }
      });
    }
    const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
    assert.deepEqual(errors, []);
  });
});

Deno.test("a body cut short by a half-close is answered 400 and never logged as an error", async (t) => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    const cases = {
      // Answered before Hono, with a declared length and chunked.
      "an agent POST": `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: a1\r\n` +
        'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"id":"x",',
      "a chunked agent POST": `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        "X-Agent-Id: a1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
        '5\r\n{"id"\r\n',
      // Answered by Hono.
      "an operator POST": "POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"name":',
      "the console's login form": "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=a",
    };
    for (const [name, request] of Object.entries(cases)) {
      await t.step(name, async () => {
        const conn = await rawConnect(server);
        try {
          await send(conn, request);
          await conn.closeWrite();
          const answer = await readAll(conn, 5000);
          assert.match(answer.text, /^HTTP\/1\.1 400 [\s\S]*\r\nDate: /);
          assert.ok(
            answer.text.endsWith(
              '{"error":"request body could not be read to its end: the client closed its side ' +
                'of the connection first"}',
            ),
            answer.text,
          );
          assert.ok(answer.closed);
        } finally {
          closeQuietly(conn);
        }
        // The server has logged whatever it logs about the cut body once the connection is gone.
        await until(() => server.listener.connections === 0, "the connection is closed");
      });
    }
    const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
    assert.deepEqual(errors, []);
  });
});

Deno.test("a whole request whose client then half-closes gets its answer when it changes something", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
  });
  const enqueue = (id: string, path: string) => {
    const body = JSON.stringify({ id, name: "echo hi" });
    return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: h1\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  };
  // The agent's enqueue is answered before Hono; an operator's cancel by Hono.
  await t.step("an enqueue (a lean route): 202, then the connection closes", async () => {
    const conn = await rawConnect(server);
    try {
      await send(conn, enqueue("half-closed", P.enqueue));
      await conn.closeWrite();
      const answer = await readAll(conn, 10_000);
      assert.match(answer.text, /^HTTP\/1\.1 202 [^]*"id":"half-closed"/);
      assert.ok(answer.closed);
    } finally {
      closeQuietly(conn);
    }
  });
  await t.step("a cancel (a Hono route): 200 with the command, then closed", async () => {
    const conn = await rawConnect(server);
    try {
      await send(
        conn,
        "POST /api/v1/commands/half-closed/cancel HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
          "Content-Length: 0\r\n\r\n",
      );
      await conn.closeWrite();
      const answer = await readAll(conn, 10_000);
      assert.match(answer.text, /^HTTP\/1\.1 200 [^]*"status":"cancelled"/);
      assert.ok(answer.closed);
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test("a held wait whose client half-closes its connection is dropped and claims nothing", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
  });
  const conn = await rawConnect(server);
  try {
    await send(conn, waitHead("w1", 30));
    await until(() => server.dashboard.hub.size === 1, "the wait is held");
    await conn.closeWrite();
    await until(() => server.dashboard.hub.size === 0, "the wait is dropped");
    const enqueued = await fetch(`${server.url}${P.enqueue}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "w1" },
      body: JSON.stringify({ id: "for-w1", name: "echo hi" }),
    });
    assert.equal(enqueued.status, 202);
    await enqueued.body?.cancel();
    const command = await fetch(`${server.url}/api/v1/commands/for-w1`);
    assert.equal((await command.json()).status, "queued", "nobody claimed it");
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("a wait pipelined behind a held one is held only once that one is answered", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
  });
  const waitOn = (hash: string, timeout: number) =>
    `GET ${P.wait(hash, timeout)} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: p1\r\n\r\n`;
  const enqueueFor = async (id: string, hash: string) => {
    const enqueued = await fetch(`${server.url}${P.enqueue}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "p1" },
      body: JSON.stringify({ id, name: "echo hi", params: { deployment_hash: hash } }),
    });
    assert.equal(enqueued.status, 202);
    await enqueued.body?.cancel();
    return (await (await fetch(`${server.url}/api/v1/commands/${id}`)).json()).status;
  };

  await t.step("its client gone before, it claims nothing", async () => {
    const conn = await rawConnect(server);
    try {
      await send(conn, waitOn("first", 30) + waitOn("second", 30));
      await until(() => server.dashboard.hub.size === 1, "the first wait is held");
      assert.equal(await enqueueFor("for-second", "second"), "queued", "nobody could send it");
      closeQuietly(conn);
      await until(() => server.dashboard.hub.size === 0, "the first wait is dropped");
      assert.equal(await enqueueFor("for-second-2", "second"), "queued");
    } finally {
      closeQuietly(conn);
    }
  });

  await t.step("it is served after the first one's answer", async () => {
    // It is handed the command queued in the step before.
    const conn = await rawConnect(server);
    try {
      const last = waitOn("second", 30).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
      await send(conn, waitOn("first", 1) + last);
      const answers = await readAll(conn, 10_000);
      assert.ok(answers.closed, "closed after the second answer (Connection: close)");
      assert.match(answers.text, /^HTTP\/1\.1 204 [^]*HTTP\/1\.1 200 [^]*"id":"for-second"/);
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test("behind a held wait, nothing more is read once a request is malformed", async () => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    const refusals = () => lines.filter((line) => line.includes("malformed request refused"));
    const conn = await rawConnect(server);
    try {
      await send(conn, waitHead("r1", 1) + "junk\r\n\r\n");
      await until(() => refusals().length === 1, "the junk is refused");
      for (let i = 0; i < 10; i++) await send(conn, "more junk\r\n\r\n");
      const answers = await readAll(conn, 10_000);
      assert.match(answers.text, /^HTTP\/1\.1 204 [^]*HTTP\/1\.1 400 /);
      assert.equal(refusals().length, 1, "what came after the junk was not parsed");
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test("requests sent before a malformed one on the same connection get their own answers first", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
  });
  const enqueue = (id: string) => {
    const body = JSON.stringify({ id, name: "echo hi" });
    return `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: m1\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  };
  const health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const junk = "junk\r\n\r\n";
  const statusOf = async (id: string) =>
    (await (await fetch(`${server.url}/api/v1/commands/${id}`)).json()).status;

  await t.step("an enqueue, then junk: 202 for the enqueue, then 400, closed", async () => {
    const conn = await rawConnect(server);
    try {
      await send(conn, enqueue("before-junk") + junk);
      const answers = await readAll(conn, 10_000);
      assert.ok(answers.closed);
      assert.match(
        answers.text,
        /^HTTP\/1\.1 202 [^]*"id":"before-junk"[^]*HTTP\/1\.1 400 [^]*malformed HTTP request/,
      );
      assert.ok(
        answers.text.endsWith(`"malformed HTTP request: ${R.requestLine}"}`),
        "not a header",
      );
      assert.equal(await statusOf("before-junk"), "queued");
    } finally {
      closeQuietly(conn);
    }
  });

  await t.step(
    "a held wait and a pipelined request, then junk: each answered in turn",
    async () => {
      const conn = await rawConnect(server);
      try {
        await send(conn, waitHead("m2", 1) + health + junk);
        const answers = await readAll(conn, 10_000);
        assert.ok(answers.closed);
        assert.match(
          answers.text,
          /^HTTP\/1\.1 204 [^]*HTTP\/1\.1 200 [^]*"status":"ok"[^]*HTTP\/1\.1 400 /,
        );
      } finally {
        closeQuietly(conn);
      }
    },
  );

  await t.step(
    "a broken chunked body behind a held wait: 400 at once, naming the chunks",
    async () => {
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          waitHead("m3", 30) +
            `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: m3\r\n` +
            "Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
        );
        const answers = await readAll(conn, 10_000);
        assert.ok(answers.closed);
        assert.match(answers.text, /^HTTP\/1\.1 400 /);
        assert.ok(answers.text.endsWith(`"malformed HTTP request: ${R.chunked}"}`));
      } finally {
        closeQuietly(conn);
      }
    },
  );

  await t.step("an unknown method pipelined behind a request: 400 naming the method", async () => {
    const conn = await rawConnect(server);
    try {
      await send(conn, health + "FOO /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      const answers = await readAll(conn, 10_000);
      assert.match(answers.text, /^HTTP\/1\.1 200 [^]*HTTP\/1\.1 400 /);
      assert.ok(answers.text.endsWith(`"malformed HTTP request: ${R.method}"}`));
    } finally {
      closeQuietly(conn);
    }
  });

  await t.step(
    "a request after one that closes the connection: the first is answered",
    async () => {
      const conn = await rawConnect(server);
      try {
        const closing = health.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        await send(conn, closing + health);
        const answers = await readAll(conn, 10_000);
        assert.ok(answers.closed);
        assert.match(answers.text, /^HTTP\/1\.1 200 [^]*"status":"ok"/);
        assert.equal(answers.text.match(/HTTP\/1\.1 /g)?.length, 1, "one answer, then closed");
      } finally {
        closeQuietly(conn);
      }
    },
  );

  await t.step(
    "the lean routes too: a signed-less heartbeat's refusal comes before the 400",
    async () => {
      const conn = await rawConnect(server);
      try {
        const body = "{}";
        await send(
          conn,
          `POST /api/v1/agent/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
            junk,
        );
        const answers = await readAll(conn, 10_000);
        assert.ok(answers.closed);
        assert.match(answers.text, /^HTTP\/1\.1 401 [^]*X-Agent-Id[^]*HTTP\/1\.1 400 /);
      } finally {
        closeQuietly(conn);
      }
    },
  );
});

Deno.test("a connection with more than MAX_PIPELINED requests waiting behind a held wait is closed", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
  });
  const conn = await rawConnect(server);
  try {
    const health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    await send(conn, waitHead("flood", 30) + health.repeat(MAX_PIPELINED));
    await until(() => server.dashboard.hub.size === 1, "the wait is held");
    assert.equal((await readAll(conn, 200)).closed, false, "as many as the limit wait");
    await send(conn, health);
    assert.ok((await readAll(conn, 5000)).closed, "one more closes the connection");
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("an HTTP/1.0 request without Host is served, on the Hono routes and the lean ones", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const cases = {
    "GET /health": ["GET /health HTTP/1.0\r\n\r\n", /^HTTP\/1\.[01] 200 [^]*"status":"ok"/],
    "a wait (dev mode: its loopback guard passes)": [
      `GET ${P.wait("default", 1)} HTTP/1.0\r\nX-Agent-Id: h10\r\n\r\n`,
      /^HTTP\/1\.[01] 204 /,
    ],
  } as const;
  for (const [name, [request, expected]] of Object.entries(cases)) {
    await t.step(name, async () => {
      const conn = await rawConnect(server);
      try {
        await send(conn, request);
        const answer = await readAll(conn, 5000);
        assert.match(answer.text, expected);
        assert.ok(answer.closed, "HTTP/1.0 without keep-alive: the connection is closed after");
      } finally {
        closeQuietly(conn);
      }
    });
  }
});

Deno.test("Expect: an unknown expectation gets 417 with a JSON error, a body beyond the limit is refused before 100 Continue", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const enqueue = (expect: string, length: number) =>
    `POST ${P.enqueue} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: e1\r\n` +
    `Content-Type: application/json\r\nExpect: ${expect}\r\nContent-Length: ${length}\r\n\r\n`;
  await t.step("an expectation other than 100-continue: 417, JSON, closed", async () => {
    const conn = await rawConnect(server);
    try {
      await send(conn, enqueue("200-ok", 2) + "{}");
      const answer = await readAll(conn, 5000);
      assert.match(answer.text, /^HTTP\/1\.1 417 /);
      assert.match(answer.text, /\r\ncontent-type: application\/json\r\n/i);
      assert.match(answer.text, /\r\ndate: \w{3}, /i);
      assert.match(answer.text, /"error":"Expect: only 100-continue is understood"/);
      assert.ok(answer.closed, "the connection is closed (its body is not read)");
    } finally {
      closeQuietly(conn);
    }
  });
  await t.step("100-continue declaring more than the largest body: 413 and no 100", async () => {
    const conn = await rawConnect(server);
    try {
      await send(conn, enqueue("100-continue", 50_000_000));
      const answer = await readAll(conn, 5000);
      assert.match(answer.text, /^HTTP\/1\.1 413 /);
      assert.doesNotMatch(answer.text, /100 Continue/);
      // The largest body any route takes: a run's (1 MiB and 2 MiB for its agent ids).
      assert.match(answer.text, /"error":"request body is larger than 3145728 bytes"/);
      assert.ok(answer.closed, "the connection is closed");
    } finally {
      closeQuietly(conn);
    }
  });
  await t.step(
    "100-continue for a run of 1.5 MB (10,000 agent ids): told to continue",
    async () => {
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          `POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
            `Expect: 100-continue\r\nContent-Length: 1500000\r\n\r\n`,
        );
        const buffer = new Uint8Array(4096);
        const n = await conn.read(buffer);
        assert.match(
          new TextDecoder().decode(buffer.subarray(0, n ?? 0)),
          /^HTTP\/1\.1 100 Continue/,
        );
      } finally {
        closeQuietly(conn);
      }
    },
  );
  await t.step("100-continue within the limit: 100, then the answer", async () => {
    const conn = await rawConnect(server);
    const body = JSON.stringify({ id: "exp-1", name: "echo hi" });
    try {
      await send(conn, enqueue("100-continue", new TextEncoder().encode(body).length));
      // One read (readAll's timeout would leave a read pending that takes the answer).
      const buffer = new Uint8Array(4096);
      const n = await conn.read(buffer);
      const first = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
      assert.match(first, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      await send(conn, body);
      const answer = await readAll(conn, 2000);
      assert.match(answer.text, /^HTTP\/1\.1 202 [^]*"queued":true/);
    } finally {
      closeQuietly(conn);
    }
  });
});

Deno.test("a malformed percent-escape in a long-poll's path or query is a 400 on node:http too, not held", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const heads = {
    "a wait": `GET /api/v1/agent/commands/wait/%zz?timeout=30 HTTP/1.1\r\n`,
    "a cancel-wait": `GET /api/v1/agent/commands/c%ff/cancel-wait?timeout=30 HTTP/1.1\r\n`,
    "an agent's POST": `POST ${P.ack}%zz HTTP/1.1\r\nContent-Length: 2\r\n`,
    "a wait's query": `GET /api/v1/agent/commands/wait/default?timeout=30&x=%ff HTTP/1.1\r\n`,
    "an agent's POST's query": `POST ${P.ack}?x=%zz HTTP/1.1\r\nContent-Length: 2\r\n`,
  };
  for (const [name, head] of Object.entries(heads)) {
    await t.step(name, async () => {
      const conn = await rawConnect(server);
      try {
        const body = head.startsWith("POST") ? "{}" : "";
        await send(conn, `${head}Host: 127.0.0.1\r\nX-Agent-Id: pct\r\n\r\n${body}`);
        const answer = await readAnswer(conn, 5000);
        assert.match(answer.text, /^HTTP\/1\.1 400 /);
        assert.match(
          answer.text,
          /"error":"(malformed path|query \\"x\\"): a % in it must begin an escape/,
        );
        assert.equal(server.dashboard.hub.size, 0, "no wait is held");
      } finally {
        closeQuietly(conn);
      }
    });
  }
});

Deno.test("a signed chunked body growing beyond its route's limit is refused then, not read to its end", async (t) => {
  const store = openSqliteStore(":memory:");
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    adminToken: ADMIN_TOKEN,
    port: 0,
  });
  try {
    const cases: Array<[string, string, number]> = [
      ["an ack (answered on node:http), over 1 MiB", P.ack, 1024 * 1024],
      ["a heartbeat (a route of the Hono app), over 16 KiB", "/api/v1/agent/heartbeat", 16 * 1024],
    ];
    for (const [name, path, limit] of cases) {
      await t.step(name, async () => {
        // Signed over a body of the limit's size; one chunk a byte longer is sent, and the body's
        // end never: a dashboard that read on to check the signature would answer nothing.
        const signed = agentHeaders({
          path,
          body: {},
          bodyText: "x".repeat(limit),
          token: TOKEN,
          now: Date.now(),
        });
        const conn = await rawConnect(server);
        try {
          const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            Object.entries(signed).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
            "Transfer-Encoding: chunked\r\n\r\n";
          const chunk = `${(limit + 1).toString(16)}\r\n${"x".repeat(limit + 1)}\r\n`;
          const bytes = new TextEncoder().encode(head + chunk);
          for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
          const answer = await readAll(conn, 5000, (text) => /\}$/.test(text));
          assert.match(
            answer.text,
            new RegExp(`^HTTP/1\\.1 413 [^]*"error":"request body is larger than ${limit} bytes"`),
          );
        } finally {
          closeQuietly(conn);
        }
      });
    }
  } finally {
    await server.shutdown();
    await store.close();
  }
});

Deno.test("an operator's or a dev-mode agent's chunked body growing beyond its route's limit is refused then", async (t) => {
  // Read on to 16 MiB before their 413, where a signed one stopped at the route's limit.
  const sendGrowing = async (port: number, path: string, headers: string, limit: number) => {
    const conn = await rawConnect({ port });
    try {
      // One chunk a byte beyond the limit, and the body's end never: a dashboard that read on to
      // 16 MiB would answer nothing.
      const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}` +
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
      const chunk = `${(limit + 1).toString(16)}\r\n${"x".repeat(limit + 1)}\r\n`;
      const bytes = new TextEncoder().encode(head + chunk);
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      const answer = await readAll(conn, 5000, (text) => /\}$/.test(text));
      assert.match(
        answer.text,
        new RegExp(`^HTTP/1\\.1 413 [^]*"error":"request body is larger than ${limit} bytes"`),
      );
    } finally {
      closeQuietly(conn);
    }
  };
  await t.step("an operator's enqueue (node:http) and agent add (Hono)", async () => {
    await using store = openSqliteStore(":memory:");
    await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
    await using server = await startServer({
      availableDescriptors: "plenty",
      store,
      adminToken: ADMIN_TOKEN,
      port: 0,
    });
    const bearer = `Authorization: Bearer ${ADMIN_TOKEN}\r\n`;
    await sendGrowing(server.port, P.enqueue, bearer, 1024 * 1024);
    await sendGrowing(server.port, "/api/v1/agents", bearer, 16 * 1024);
  });
  await t.step("a dev-mode agent's ack (node:http) and heartbeat (Hono)", async () => {
    await using store = openSqliteStore(":memory:");
    await using server = await startServer({ availableDescriptors: "plenty", store, port: 0 });
    const unsigned = "X-Agent-Id: a1\r\n";
    await sendGrowing(server.port, P.ack, unsigned, 1024 * 1024);
    await sendGrowing(server.port, "/api/v1/agent/heartbeat", unsigned, 16 * 1024);
  });
});

Deno.test("Expect: 100-continue: a request refused from its head is answered without a 100, and its connection closed", async (t) => {
  const store = openSqliteStore(":memory:");
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    adminToken: ADMIN_TOKEN,
    port: 0,
  });
  try {
    const body = JSON.stringify({ command_id: "c1", attempt: 1 });
    const ask = (path: string, headers: Record<string, string>) =>
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      Object.entries({ "Content-Length": String(body.length), ...headers })
        .map(([name, value]) => `${name}: ${value}\r\n`).join("") +
      `Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n`;
    const signed = (agentId: string, token: string) =>
      agentHeaders({ path: P.ack, body: {}, bodyText: body, agentId, token, now: Date.now() });
    const cases: Array<[string, string, Record<string, string>, RegExp]> = [
      ["an unknown agent", P.ack, signed("ghost", TOKEN), /^HTTP\/1\.1 401 /],
      ["a wrong agent token", P.ack, signed("a1", "w".repeat(43)), /^HTTP\/1\.1 401 /],
      [
        "a timestamp an hour off",
        P.ack,
        { ...signed("a1", TOKEN), "X-Timestamp": String(Math.floor(Date.now() / 1000) - 3600) },
        /^HTTP\/1\.1 401 [^]*X-Timestamp/,
      ],
      [
        "a wrong admin token (a route of the Hono app)",
        "/api/v1/commands/c1/cancel",
        { Authorization: "Bearer wrong" },
        /^HTTP\/1\.1 401 /,
      ],
      [
        "an operator's enqueue declaring 2 MB, over its route's 1 MiB",
        P.enqueue,
        { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Length": "2000000" },
        /^HTTP\/1\.1 413 [^]*"error":"request body is larger than 1048576 bytes"/,
      ],
      [
        "an operator's compressed enqueue",
        P.enqueue,
        { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Encoding": "gzip" },
        /^HTTP\/1\.1 415 /,
      ],
      // Signed: refused before the signature step reads (and hashes) the body it covers.
      [
        "an agent's signed ack declaring 2 MB, over its route's 1 MiB",
        P.ack,
        { ...signed("a1", TOKEN), "Content-Length": "2000000" },
        /^HTTP\/1\.1 413 [^]*"error":"request body is larger than 1048576 bytes"/,
      ],
      [
        "an agent's signed heartbeat declaring 20 kB, over its route's 16 KiB",
        "/api/v1/agent/heartbeat",
        {
          ...agentHeaders({
            path: "/api/v1/agent/heartbeat",
            body: {},
            bodyText: body,
            token: TOKEN,
            now: Date.now(),
          }),
          "Content-Length": "20000",
        },
        /^HTTP\/1\.1 413 [^]*"error":"request body is larger than 16384 bytes"/,
      ],
      [
        "an agent's signed, compressed ack",
        P.ack,
        { ...signed("a1", TOKEN), "Content-Encoding": "gzip" },
        /^HTTP\/1\.1 415 /,
      ],
    ];
    for (const [name, path, headers, expected] of cases) {
      await t.step(name, async () => {
        const conn = await rawConnect(server);
        try {
          await send(conn, ask(path, headers));
          const answer = await readAll(conn, 5000);
          assert.doesNotMatch(answer.text, /100 Continue/);
          assert.match(answer.text, expected);
          assert.match(answer.text, /\r\nconnection: close\r\n/i);
          assert.ok(answer.closed, "the connection is closed");
        } finally {
          closeQuietly(conn);
        }
      });
    }
    await t.step(
      "a request that passes its head's checks is told to continue, and served",
      async () => {
        const enqueued = await fetch(`${server.url}${P.enqueue}`, {
          method: "POST",
          headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
          body: JSON.stringify({ id: "c1", agent_id: "a1", name: "echo hi" }),
        });
        assert.equal(enqueued.status, 202);
        await enqueued.body?.cancel();
        const conn = await rawConnect(server);
        try {
          await send(conn, ask(P.ack, signed("a1", TOKEN)));
          const buffer = new Uint8Array(4096);
          const n = await conn.read(buffer);
          const first = new TextDecoder().decode(buffer.subarray(0, n ?? 0));
          assert.match(first, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
          await send(conn, body);
          const answer = await readAnswer(conn, 5000);
          // Not delivered: an ack of an attempt never delivered is refused once the body is read.
          assert.match(answer.text, /^HTTP\/1\.1 409 /);
          assert.doesNotMatch(answer.text, /\r\nconnection: close\r\n/i, "kept alive");
        } finally {
          closeQuietly(conn);
        }
      },
    );
  } finally {
    await server.shutdown();
    await store.close();
  }
});

Deno.test("a header sent after a thousand others is read, not dropped", async () => {
  const token = "t".repeat(40);
  await using server = await startServer({
    port: 0,
    db: ":memory:",
    adminToken: token,
    availableDescriptors: "plenty",
  });
  // Short lines: 2,500 of them stay within the head's 16 KiB.
  for (const count of [10, 1_500, 2_500]) {
    const conn = await rawConnect(server);
    try {
      let head = `GET /api/v1/commands HTTP/1.1\r\n`;
      for (let i = 0; i < count; i++) head += `x:${i % 10}\r\n`;
      head += `Host: 127.0.0.1:${server.port}\r\nAuthorization: Bearer ${token}\r\n` +
        "Connection: close\r\n\r\n";
      await send(conn, head);
      const { text } = await readAll(conn, 15_000);
      assert.match(text, /^HTTP\/1\.1 200 /, `${count} headers first: ${text.slice(0, 200)}`);
    } finally {
      closeQuietly(conn);
    }
  }
});

Deno.test("console forms sent slowly from one address hold at most MAX_FORMS_PER_ADDRESS connections; the next is refused at once and an agent is still served", async () => {
  await using store = openSqliteStore(":memory:");
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    adminToken: ADMIN_TOKEN,
    port: 0,
    maxConnections: MAX_FORMS_PER_ADDRESS + 2,
  });
  // A login's (and a form's without a session) body is read before anything is checked; each
  // arrives a byte at a time, so slowly that it would take 60 s.
  const slowForm = async (path: string) => {
    const conn = await rawConnect(server);
    await send(
      conn,
      `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nt",
    );
    return conn;
  };
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < MAX_FORMS_PER_ADDRESS; i++) {
      held.push(await slowForm(i % 2 ? "/login" : "/enqueue"));
    }
    await until(
      () => server.listener.connections === MAX_FORMS_PER_ADDRESS,
      "the forms are arriving",
    );
    const refused = await slowForm("/login");
    try {
      const answer = await readAll(refused, 5000, (text) => text.includes("</html>"));
      assert.match(answer.text, /^HTTP\/1\.1 429 [^]*\r\nretry-after: 1\r\n/i);
      assert.match(answer.text, /Too many forms at once/);
    } finally {
      closeQuietly(refused);
    }
    // The forms took no more connections than their cap: an agent connects and is answered.
    const path = P.wait("default", 1);
    const wait = await fetch(`${server.url}${path}`, {
      headers: agentHeaders({ path, bodyText: "", now: Date.now() }),
    });
    assert.equal(wait.status, 204);
    await wait.body?.cancel();
    // One form given up makes room for another from the address.
    const open = server.listener.connections;
    closeQuietly(held.shift()!);
    await until(() => server.listener.connections === open - 1, "the form is given up");
    const next = await slowForm("/login");
    held.push(next);
    const nothing = await readAll(next, 300);
    assert.equal(nothing.text, "", "read, not refused");
  } finally {
    for (const conn of held) closeQuietly(conn);
  }
});

Deno.test("a request asking for an Upgrade is answered as HTTP/1.1 and its connection closed, not left to time out with a request behind it unanswered", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
  });
  const cases: Array<[string, string]> = [
    ["websocket", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"],
    [
      "h2c",
      "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
    ],
  ];
  for (const [name, headers] of cases) {
    for (const path of ["/health", P.wait("default", 1)]) {
      await t.step(`${name} on ${path}`, async () => {
        const conn = await rawConnect(server);
        try {
          // A request pipelined behind it, in the same write: node's parser drops it.
          await send(
            conn,
            `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Agent-Id: u1\r\n${headers}\r\n` +
              "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
          );
          const answer = await readAll(conn, 5000);
          assert.match(answer.text, /^HTTP\/1\.1 20[04] [^]*\r\nConnection: close\r\n/i);
          assert.equal(answer.text.match(/HTTP\/1\.1 /g)?.length, 1);
          assert.ok(answer.closed, "closed after its answer, before any timeout");
        } finally {
          closeQuietly(conn);
        }
      });
    }
  }
});

Deno.test("connections reset or half-closed in every state leave no connection counted, idle or busy, and nothing logged as an error", async () => {
  await withLogs(async (lines) => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
      maxConnections: 8,
      rateLimitPerMinute: 1_000_000,
      operatorRateLimitPerMinute: 1_000_000,
    });
    const host = "Host: 127.0.0.1\r\n";
    /** One request on a connection of its own, closed after its answer (none left kept alive). */
    const call = async (method: string, path: string, body?: unknown) => {
      const text = body === undefined ? "" : JSON.stringify(body);
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          `${method} ${path} HTTP/1.1\r\n${host}X-Agent-Id: r1\r\nConnection: close\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${text.length}\r\n\r\n${text}`,
        );
        return (await readAll(conn, 5000)).text;
      } finally {
        closeQuietly(conn);
      }
    };
    // A list of commands larger than one read: its answer is still being sent when reset.
    const output = "x".repeat(64 * 1024);
    for (let i = 0; i < 8; i++) {
      await call("POST", P.enqueue, { id: `c${i}`, name: "echo hi", agent_id: "r1" });
      assert.match(await call("GET", P.wait("default", 1)), /^HTTP\/1\.1 200 /);
      const reported = await call("POST", P.report, {
        command_id: `c${i}`,
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
      });
      assert.match(reported, /^HTTP\/1\.1 200 /);
    }
    const ways: Array<(conn: Deno.TcpConn) => Promise<unknown>> = [
      // Closed before a byte, and in the middle of a head.
      () => Promise.resolve(),
      (conn) => send(conn, `GET /health HTTP/1.1\r\n${host}`),
      // In the middle of a body.
      (conn) =>
        send(
          conn,
          `POST ${P.enqueue} HTTP/1.1\r\n${host}Content-Type: application/json\r\n` +
            'Content-Length: 90\r\n\r\n{"na',
        ),
      // With a wait held.
      async (conn) => {
        await send(conn, waitHead("r2", 30));
        await until(() => server.dashboard.hub.size > 0, "the wait is held");
      },
      // In the middle of an answer: what was not read makes the close a reset.
      async (conn) => {
        await send(conn, `GET /api/v1/commands?limit=8 HTTP/1.1\r\n${host}\r\n`);
        await conn.read(new Uint8Array(1024));
      },
      // Half-closed after a held wait, after an enqueue, in the middle of a body.
      async (conn) => {
        await send(conn, waitHead("r3", 30));
        await conn.closeWrite();
      },
      async (conn) => {
        const body = JSON.stringify({ name: "echo hi", agent_id: "r4" });
        await send(
          conn,
          `POST ${P.enqueue} HTTP/1.1\r\n${host}Content-Type: application/json\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}`,
        );
        await conn.closeWrite();
      },
      async (conn) => {
        await send(
          conn,
          `POST ${P.enqueue} HTTP/1.1\r\n${host}Content-Type: application/json\r\n` +
            "Content-Length: 90\r\n\r\n{",
        );
        await conn.closeWrite();
      },
    ];
    for (let round = 0; round < 10; round++) {
      for (const way of ways) {
        const conn = await rawConnect(server);
        try {
          await way(conn);
        } catch {
          // the dashboard closed it first
        } finally {
          closeQuietly(conn);
        }
      }
    }
    await until(() => server.listener.connections === 0, "every connection is closed");
    assert.equal(server.listener.idle, 0);
    assert.equal(server.dashboard.hub.size, 0, "no wait is left held");
    const errors = lines.filter((line) => /"level":"(error|fatal)"/.test(line));
    assert.deepEqual(errors, []);
    // And the dashboard serves as before.
    const conn = await rawConnect(server);
    try {
      await send(conn, waitHead("r5", 1));
      assert.match(
        (await readAll(conn, 5000, (text) => text.includes("\r\n\r\n"))).text,
        /^HTTP\/1\.1 204 /,
      );
    } finally {
      closeQuietly(conn);
    }
  });
});
