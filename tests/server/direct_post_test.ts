/**
 * The agent `POST`s (ack, report, enqueue) answered straight on `node:http` (`http_app.ts`'s
 * direct handler): the same answers, log lines and metrics as through `app.request` (a web
 * `Request`), and what a real socket adds: a chunked body, a client that goes away mid-body, a
 * body refused unread or too large, and the keep-alive connection after each.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import { listenHttp } from "../../src/http_listener.ts";
import { directHandlerOf } from "../../src/server/http_app.ts";
import { type RunningServer, type ServeOptions, startServer } from "../../src/server/mod.ts";
import {
  ADMIN_TOKEN,
  agentHeaders,
  makeDashboard,
  type MakeDashboardOptions,
  P,
  reportBody,
  type TestDashboard,
  TOKEN,
} from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, send } from "./_sockets.ts";

/** One request, as both sides send it. */
interface Call {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** What is compared of an answer. */
interface Seen {
  status: number;
  body: string;
  contentType: string | null;
  retryAfter: string | null;
  date: string | null;
  lengthOk: boolean;
  logs: string[];
}

/** Log lines as compared: JSON without the fields that differ by transport or by time. */
function normalised(lines: string[]): string[] {
  return lines.map((line) => {
    const record = JSON.parse(line) as Record<string, unknown>;
    for (const key of ["@timestamp", "time", "timestamp", "remote", "durationMs"]) {
      delete record[key];
      delete (record.properties as Record<string, unknown> | undefined)?.[key];
    }
    return JSON.stringify(record);
  });
}

async function seen(response: Response, lines: string[]): Promise<Seen> {
  const body = await response.text();
  // Deferred audit lines (a wake-up's) are written a turn later.
  await new Promise((resolve) => setTimeout(resolve, 5));
  const length = response.headers.get("content-length");
  return {
    status: response.status,
    body,
    contentType: response.headers.get("content-type"),
    retryAfter: response.headers.get("retry-after"),
    date: response.headers.get("date"),
    // A web `Response` made in process has no length; on the wire it is the body's.
    lengthOk: length === null || Number(length) === new TextEncoder().encode(body).length,
    logs: normalised(lines.splice(0)),
  };
}

/**
 * Two dashboards alike (same store contents, same fake clock): one asked through `app.request`,
 * the other over a real `node:http` listener with the direct handler; each call goes to both.
 */
async function pair(options: MakeDashboardOptions = {}) {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => lines.push(line) });
  const agents = {
    a1: { token: TOKEN },
    // Not granted commands:report.
    a3: { token: "agent-token-a3-0123456789abcdefghijklmnopq", scopes: ["commands:wait"] as const },
  };
  const web = await makeDashboard({ agents, ...options });
  const node = await makeDashboard({ agents, ...options });
  const direct = directHandlerOf(node.dashboard.app);
  assert.ok(direct);
  let adapted = 0;
  const listener = await listenHttp({
    port: 0,
    hostname: "127.0.0.1",
    availableDescriptors: "plenty",
    direct,
    fetch(request) {
      adapted++;
      return node.dashboard.app.fetch(request);
    },
  });
  const base = `http://127.0.0.1:${listener.port}`;
  return {
    web,
    node,
    lines,
    get adapted() {
      return adapted;
    },
    /** Sends a call to both and checks that the answers (and their log lines) are the same. */
    async both(call: Call): Promise<Seen> {
      const init = { method: call.method ?? "POST", headers: call.headers, body: call.body };
      lines.length = 0;
      const a = await seen(await web.dashboard.app.request(call.path, init), lines);
      const b = await seen(await fetch(`${base}${call.path}`, init), lines);
      assert.deepEqual(b, a, `${init.method} ${call.path}`);
      assert.ok(a.date, "a Date header");
      return a;
    },
    async [Symbol.asyncDispose]() {
      await listener.close();
      await web[Symbol.asyncDispose]();
      await node[Symbol.asyncDispose]();
      closeLogging();
    },
  };
}

/** A signed agent `POST` (the same headers for both sides: same clock, same request id). */
function signed(
  t: TestDashboard,
  path: string,
  body: unknown,
  requestId: string,
  extra: { agentId?: string; token?: string; headers?: Record<string, string | undefined> } = {},
): Call {
  const bodyText = typeof body === "string" ? body : JSON.stringify(body);
  return {
    path,
    body: bodyText,
    headers: agentHeaders({
      path,
      body,
      bodyText,
      now: t.clock.now(),
      requestId,
      method: "POST",
      ...extra,
    }),
  };
}

const admin = (body: unknown, token = ADMIN_TOKEN): Call => ({
  path: P.enqueue,
  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  body: typeof body === "string" ? body : JSON.stringify(body),
});

/** The counters of answers and refusals, as `/metrics` shows them. */
async function counters(t: TestDashboard): Promise<string[]> {
  const text = await (await t.dashboard.metrics.render()).text();
  return text.split("\n").filter((line) =>
    /^status_(http_requests_total|auth_refusals_total|rate_limit_refusals_total)/.test(line)
  );
}

Deno.test("ack, report and enqueue answer the same on node:http as through app.request", async () => {
  await using both = await pair({ maxBodyBytes: 2048 });
  const t = both.web;

  // Enqueue: created, duplicate, conflict, refused, malformed bodies.
  const created = await both.both(admin({ agent_id: "a1", id: "c1", name: "echo hi" }));
  assert.equal(created.status, 202);
  assert.equal((await both.both(admin({ agent_id: "a1", id: "c1", name: "echo hi" }))).status, 202);
  assert.equal((await both.both(admin({ agent_id: "a1", id: "c1", name: "other" }))).status, 409);
  assert.equal((await both.both(admin({ agent_id: "a1", name: "x" }, "wrong"))).status, 401);
  assert.equal(
    (await both.both({ path: P.enqueue, body: "{}", headers: {} })).status,
    401,
  );
  assert.equal((await both.both(admin("{not json"))).status, 400);
  assert.equal((await both.both(admin("[".repeat(100) + "]".repeat(100)))).status, 400);
  assert.equal((await both.both(admin({ agent_id: "a1" }))).status, 400);
  assert.equal((await both.both(admin({ agent_id: "nobody", name: "x" }))).status, 404);
  // Its length declared to both (a web Request made in process has none, and a body of no declared
  // length is refused as soon as it grows beyond the limit, its size unknown).
  const largeCall = admin({ agent_id: "a1", name: "x".repeat(3000) });
  const declared = { ...largeCall.headers, "Content-Length": String(largeCall.body!.length) };
  const large = await both.both({ ...largeCall, headers: declared });
  assert.equal(large.status, 413);
  assert.match(large.body, /larger than 2048 bytes/);
  // An agent may enqueue for itself only.
  assert.equal(
    (await both.both(signed(t, P.enqueue, { agent_id: "a3", name: "x" }, "e-1"))).status,
    403,
  );

  // The agent takes the command (a wait), acks and reports it.
  for (const side of [both.web, both.node]) {
    const wait = await side.agent({ path: P.wait("default", 1), requestId: "w-1" });
    assert.equal(wait.status, 200);
    await wait.body?.cancel();
  }
  // Their "command delivered" lines are written a turn later (or more, on a busy machine).
  await until(
    () => both.lines.filter((line) => line.includes('"message":"command delivered')).length >= 2,
    "both sides logged the delivery",
  );
  both.lines.length = 0;
  const acked = await both.both(signed(t, P.ack, { command_id: "c1", attempt: 1 }, "ack-1"));
  assert.equal(acked.status, 200);
  assert.match(acked.body, /"acked":true/);
  // A replayed request id, a stale attempt, an unknown command, a bad signature, no request id.
  assert.equal(
    (await both.both(signed(t, P.ack, { command_id: "c1", attempt: 1 }, "ack-1"))).status,
    409,
  );
  assert.equal(
    (await both.both(signed(t, P.ack, { command_id: "c1", attempt: 2 }, "ack-2"))).status,
    409,
  );
  assert.equal(
    (await both.both(signed(t, P.ack, { command_id: "nope", attempt: 1 }, "ack-3"))).status,
    404,
  );
  const badSignature = signed(t, P.ack, { command_id: "c1", attempt: 1 }, "ack-4");
  badSignature.headers!["X-Agent-Signature"] = "AAAA";
  assert.equal((await both.both(badSignature)).status, 401);
  // Without its request id (which the signature covers): the signature is wrong first.
  assert.equal(
    (await both.both(
      signed(t, P.ack, { command_id: "c1", attempt: 1 }, "ack-5", {
        headers: { "X-Request-Id": undefined },
      }),
    )).status,
    401,
  );
  assert.equal(
    (await both.both(signed(t, P.ack, { command_id: "c1", attempt: 1 }, "ack-6", {
      agentId: "ghost",
    }))).status,
    401,
  );

  // Report: accepted, duplicate, a scope not granted, a body not of the schema.
  const report = reportBody("c1");
  assert.equal((await both.both(signed(t, P.report, report, "rep-1"))).status, 200);
  const duplicate = await both.both(signed(t, P.report, report, "rep-2"));
  assert.equal(duplicate.body, '{"accepted":true,"duplicate":true}');
  assert.equal(
    (await both.both(
      signed(t, P.report, report, "rep-3", {
        agentId: "a3",
        token: "agent-token-a3-0123456789abcdefghijklmnopq",
      }),
    )).status,
    403,
  );
  assert.equal((await both.both(signed(t, P.report, { status: 5 }, "rep-4"))).status, 400);

  // Other methods on these paths are Hono's 405, and a percent-escaped path is the route.
  const other = await both.both({ method: "GET", path: P.ack });
  assert.equal(other.status, 405);
  assert.match(other.body, /method GET is not allowed on \/api\/v1\/agent\/commands\/ack/);
  assert.equal(
    (await both.both(admin({ agent_id: "a1", id: "c2", name: "echo" }))).status,
    202,
  );
  const escaped = admin({ agent_id: "a1", id: "c3", name: "echo" });
  escaped.path = "/api/v1/agent/commands/%65nqueue";
  assert.equal((await both.both(escaped)).status, 202);

  assert.deepEqual(await counters(both.node), await counters(both.web));
  assert.match((await counters(both.node)).join("\n"), /reason="replay"/);
  assert.equal(both.adapted, 1, "only the GET went through the web-Request adapter");
});

Deno.test("the operators' and an agent's rate limits answer 429 with Retry-After on node:http too", async () => {
  await using both = await pair({ operatorRateLimitPerMinute: 1, rateLimitPerMinute: 1 });
  const t = both.web;
  assert.equal((await both.both(admin({ agent_id: "a1", id: "r1", name: "x" }))).status, 202);
  const limited = await both.both(admin({ agent_id: "a1", id: "r2", name: "x" }));
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.retryAfter) >= 1);
  assert.notEqual(
    (await both.both(signed(t, P.ack, { command_id: "r1", attempt: 1 }, "a-1"))).status,
    429,
  );
  const agentLimited = await both.both(signed(t, P.ack, { command_id: "r1", attempt: 1 }, "a-2"));
  assert.equal(agentLimited.status, 429);
  assert.ok(agentLimited.retryAfter);
  assert.deepEqual(await counters(both.node), await counters(both.web));
  assert.match((await counters(both.node)).join("\n"), /status_rate_limit_refusals_total 2/);
});

/** Sends a request head (and maybe a body) on a raw connection. */
function head(method: string, path: string, headers: Record<string, string>): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") + "\r\n";
}

/** Reads from a connection until `done` says the text read so far is complete. */
async function readUntil(
  conn: Deno.Conn,
  done: (text: string) => boolean,
  ms = 5000,
): Promise<string> {
  const buffer = new Uint8Array(65536);
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + ms;
  while (!done(text)) {
    if (Date.now() > deadline) throw new Error(`no complete answer in ${ms} ms: ${text}`);
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`the connection closed after: ${text}`);
    text += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  return text;
}

/** Whether `text` holds `count` complete answers with a Content-Length each. */
function answers(count: number) {
  return (text: string) => {
    let rest = text;
    for (let i = 0; i < count; i++) {
      const end = rest.indexOf("\r\n\r\n");
      if (end < 0) return false;
      const length = Number(/content-length: (\d+)/i.exec(rest.slice(0, end))?.[1] ?? 0);
      if (rest.length < end + 4 + length) return false;
      rest = rest.slice(end + 4 + length);
    }
    return true;
  };
}

/** A dashboard on a real listener (dev mode unless an admin token is given) and a raw socket. */
async function onSocket(
  options: ServeOptions,
  fn: (conn: Deno.TcpConn, server: RunningServer) => Promise<void>,
): Promise<void> {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    ...options,
  });
  const conn = await rawConnect(server);
  try {
    await fn(conn, server);
  } finally {
    closeQuietly(conn);
  }
}

/** The head of a JSON `POST` of `agentId` with the given length header(s). */
function postHead(path: string, agentId: string, framing: Record<string, string>): string {
  return head("POST", path, {
    "X-Agent-Id": agentId,
    "Content-Type": "application/json",
    ...framing,
  });
}

Deno.test("a chunked enqueue body is read on node:http", async () => {
  await onSocket({}, async (conn, server) => {
    const body = JSON.stringify({ id: "chunked-1", name: "echo chunked" });
    const parts = [body.slice(0, 10), body.slice(10)];
    await send(
      conn,
      postHead(P.enqueue, "chunk-agent", { "Transfer-Encoding": "chunked" }) +
        parts.map((part) => `${part.length.toString(16)}\r\n${part}\r\n`).join("") + "0\r\n\r\n",
    );
    const text = await readUntil(conn, answers(1));
    assert.match(text, /^HTTP\/1\.1 202 /);
    assert.match(text, /"id":"chunked-1"/);
    const listed = await server.dashboard.app.request("/api/v1/commands/chunked-1");
    assert.equal(listed.status, 200);
  });
});

Deno.test("an unknown agent's POST is refused before its body arrives, and the connection carries the next request", async () => {
  await onSocket({ adminToken: ADMIN_TOKEN }, async (conn) => {
    // The head only: the body (declared) is not sent before the answer.
    await send(
      conn,
      postHead(P.ack, "ghost", { "Content-Length": "300", Authorization: `Bearer ${TOKEN}` }),
    );
    const refused = await readUntil(conn, answers(1));
    assert.match(refused, /^HTTP\/1\.1 401 /);
    assert.match(refused, /agent id or bearer token is wrong/);
    // The body follows, then a second request on the same connection.
    await send(conn, "x".repeat(300) + head("GET", "/health", {}));
    const next = await readUntil(conn, answers(1));
    assert.match(next, /^HTTP\/1\.1 200 /);
  });
});

Deno.test("dev mode's browser guard refuses a foreign page's enqueue on node:http, unread", async () => {
  await onSocket({}, async (conn, server) => {
    const body = JSON.stringify({ id: "forged", name: "echo forged" });
    await send(
      conn,
      postHead(P.enqueue, "guarded-agent", {
        "Content-Length": String(body.length),
        Origin: "https://evil.example",
      }) + body + head("GET", "/health", {}),
    );
    const text = await readUntil(conn, answers(2));
    assert.match(text, /^HTTP\/1\.1 403 /);
    assert.match(text, /another origin/);
    assert.match(text, /\r\n\r\n[^]*HTTP\/1\.1 200 /);
    const forged = await server.dashboard.app.request("/api/v1/commands/forged");
    assert.equal(forged.status, 404);
  });
});

Deno.test("a body over the limit is 413 and the connection carries the next request", async () => {
  await onSocket({ maxBodyBytes: 1024 }, async (conn) => {
    const body = JSON.stringify({ id: "big", name: "x".repeat(2000) });
    await send(
      conn,
      postHead(P.enqueue, "big-agent", { "Content-Length": String(body.length) }) + body +
        head("GET", "/health", {}),
    );
    const text = await readUntil(conn, answers(2));
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /request body is larger than 1024 bytes/);
    assert.match(text, /\r\n\r\n[^]*HTTP\/1\.1 200 /);
  });
});

Deno.test("a chunked body growing beyond the limit is 413 and the rest is thrown away", async () => {
  await onSocket({ maxBodyBytes: 1024 }, async (conn) => {
    // Refused as soon as it passes the route's limit (1 KiB here), the rest thrown away: three
    // chunks of 1 MiB, then a second request. (What is thrown away must arrive within 500 ms, or
    // the connection is closed instead: a few MiB, so that a busy machine does not close it.)
    const chunk = `100000\r\n${"x".repeat(1024 * 1024)}\r\n`;
    const writeAll = async (text: string) => {
      const bytes = new TextEncoder().encode(text);
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    };
    const writing = (async () => {
      await writeAll(postHead(P.enqueue, "growing-agent", { "Transfer-Encoding": "chunked" }));
      for (let i = 0; i < 3; i++) await writeAll(chunk);
      await writeAll("0\r\n\r\n" + head("GET", "/health", {}));
    })().catch(() => {});
    const text = await readUntil(conn, answers(2), 10_000);
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /\r\n\r\n[^]*HTTP\/1\.1 200 /);
    await writing;
  });
});

Deno.test("a body declared beyond the hard limit is refused unread, and its connection closed", async () => {
  await onSocket({ maxBodyBytes: 1024 }, async (conn, server) => {
    await send(
      conn,
      postHead(P.enqueue, "huge-agent", { "Content-Length": String(1024 ** 3) }) + "x".repeat(4096),
    );
    const answer = await readAll(conn, 5000);
    assert.match(answer.text, /^HTTP\/1\.1 413 /);
    assert.ok(answer.closed, "the server closes a connection whose body it would not read");
    await until(() => server.listener.connections === 0, "the connection is closed");
  });
});

Deno.test("a client that goes away mid-body leaves nothing behind and the server goes on", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => lines.push(line) });
  try {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
    });
    for (const framing of ["Content-Length: 500", "Transfer-Encoding: chunked"]) {
      const conn = await rawConnect(server);
      const [name, value] = framing.split(": ");
      await send(
        conn,
        postHead(P.enqueue, "gone-agent", { [name]: value }) +
          (name === "Content-Length" ? '{"id":"gone",' : '9\r\n{"id":"go'),
      );
      // Dev mode registers the agent in step 1: the server is then at the body.
      await until(
        async () =>
          (await (await server.dashboard.app.request("/api/v1/agents")).text()).includes(
            "gone-agent",
          ),
        "the server identified the agent",
      );
      conn.close();
      await until(() => server.listener.connections === 0, "the connection is closed");
      lines.length = 0;
    }
    // Each cut body was answered (400, to nobody): no read is left pending.
    await until(async () => {
      const text = await (await server.dashboard.metrics.render()).text();
      return text.includes(
        'status_http_requests_total{route="/api/v1/agent/commands/enqueue",status="400"} 2',
      );
    }, "both cut bodies were answered");
    // Nothing was enqueued, and the server answers the next request.
    const answer = await fetch(`${server.url}/api/v1/commands/gone`);
    assert.equal(answer.status, 404);
    await answer.body?.cancel();
    const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
    assert.deepEqual(errors, []);
  } finally {
    closeLogging();
  }
});

Deno.test("a whole request from a client that half-closes at once is still answered and enqueued", async () => {
  await onSocket({}, async (first, server) => {
    // The first registers its agent (dev mode): its connection is gone before the body is read.
    for (const [conn, id] of [[first, "half-1"], [await rawConnect(server), "half-2"]] as const) {
      try {
        const body = JSON.stringify({ id, name: "echo half" });
        await send(
          conn,
          postHead(P.enqueue, "half-agent", { "Content-Length": String(body.length) }) + body,
        );
        await conn.closeWrite();
        await readAll(conn, 5000);
      } finally {
        closeQuietly(conn);
      }
      await until(async () => {
        const command = await server.dashboard.app.request(`/api/v1/commands/${id}`);
        await command.body?.cancel();
        return command.status === 200;
      }, `${id} is enqueued`);
    }
  });
});
