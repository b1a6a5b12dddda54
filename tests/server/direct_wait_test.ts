/**
 * The long-polls answered straight on `node:http` (`http_app.ts`'s direct handler, wired through
 * `listenHttp`'s `direct` option): what the web-`Request` adapter used to do for them is done
 * there, over real sockets.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { directHandlerOf, RawHeaders, webHeadersAccept } from "../../src/server/http_app.ts";
import { openSqliteStore } from "../../src/store/mod.ts";
import { listenHttp } from "../../src/http_listener.ts";
import { type RunningServer, startServer } from "../../src/server/mod.ts";
import { P } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, send } from "./_sockets.ts";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

async function devServer(rateLimitPerMinute = 1_000_000): Promise<RunningServer> {
  return await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute,
  });
}

Deno.test("listenHttp hands a request to `direct` first and to `fetch` only when it declines", async () => {
  const fetched: string[] = [];
  const listener = await listenHttp({
    port: 0,
    hostname: "127.0.0.1",
    availableDescriptors: "plenty",
    direct(incoming, outgoing, remote) {
      if (incoming.url !== "/direct") return false;
      outgoing.writeHead(200, { "content-type": "text/plain" });
      outgoing.end(`direct from ${remote}`);
      return true;
    },
    fetch(request) {
      fetched.push(new URL(request.url).pathname);
      return new Response("adapted");
    },
  });
  try {
    const base = `http://127.0.0.1:${listener.port}`;
    assert.equal(await (await fetch(`${base}/direct`)).text(), "direct from 127.0.0.1");
    assert.equal(await (await fetch(`${base}/other`)).text(), "adapted");
    assert.deepEqual(fetched, ["/other"]);
  } finally {
    await listener.close();
  }
});

Deno.test("the dashboard answers its long-polls on node:http directly", async () => {
  await using server = await devServer();
  assert.ok(directHandlerOf(server.dashboard.app), "the app has a direct handler");
});

Deno.test("a direct wait's answers: 204 without a body, JSON errors with Date and length", async () => {
  await using server = await devServer();
  const empty = await fetch(`${server.url}${P.wait("default", 1)}`, {
    headers: { "X-Agent-Id": "direct-agent" },
  });
  assert.equal(empty.status, 204);
  assert.equal(await empty.text(), "");
  assert.ok(empty.headers.get("date"));

  const bad = await fetch(`${server.url}${P.wait("not a hash!", 1)}`, {
    headers: { "X-Agent-Id": "direct-agent" },
  });
  const text = await bad.text();
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.get("content-type"), "application/json");
  assert.equal(Number(bad.headers.get("content-length")), new TextEncoder().encode(text).length);
  assert.ok(bad.headers.get("date"));
  assert.match(JSON.parse(text).error, /deployment_hash/);

  const delivered = fetch(`${server.url}${P.wait("default", 10)}`, {
    headers: { "X-Agent-Id": "direct-agent" },
  });
  await until(() => server.dashboard.hub.size === 1, "the wait is open", 5000);
  const enqueued = await fetch(`${server.url}${P.enqueue}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": "direct-agent" },
    body: JSON.stringify({ id: "direct-1", name: "echo" }),
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const answer = await delivered;
  assert.equal(answer.status, 200);
  assert.equal((await answer.json()).id, "direct-1");
});

Deno.test("a direct wait over the rate limit is 429 with Retry-After", async () => {
  await using server = await devServer(1);
  const headers = { "X-Agent-Id": "limited-agent" };
  const first = await fetch(`${server.url}${P.wait("default", 1)}`, { headers });
  assert.equal(first.status, 204);
  await first.body?.cancel();
  const second = await fetch(`${server.url}${P.wait("default", 1)}`, { headers });
  assert.equal(second.status, 429);
  assert.ok(Number(second.headers.get("retry-after")) >= 1);
  assert.match((await second.json()).error, /rate limit/);
});

Deno.test("a direct wait whose client went away is dropped and claims nothing", async () => {
  await using server = await devServer();
  const controller = new AbortController();
  const waiting = fetch(`${server.url}${P.wait("default", 30)}`, {
    headers: { "X-Agent-Id": "gone-agent" },
    signal: controller.signal,
  }).catch((error) => error);
  await until(() => server.dashboard.hub.size === 1, "the wait is open", 5000);
  controller.abort();
  assert.equal((await waiting).name, "AbortError");
  await until(() => server.dashboard.hub.size === 0, "the server dropped the wait", 5000);
});

Deno.test("dev mode's browser guard still refuses a foreign site's wait", async () => {
  await using server = await devServer();
  const refused = await fetch(`${server.url}${P.wait("default", 1)}`, {
    headers: { "X-Agent-Id": "guarded-agent", "Sec-Fetch-Site": "cross-site" },
  });
  assert.equal(refused.status, 403);
  assert.match((await refused.json()).error, /another site/);
  assert.equal(server.dashboard.hub.size, 0);
});

Deno.test("a held direct wait keeps none of node's header copies", async () => {
  await using server = await devServer();
  const direct = directHandlerOf(server.dashboard.app)!;
  let held: IncomingMessage | undefined;
  const node = createServer((incoming, outgoing) => {
    held = incoming;
    if (!direct(incoming, outgoing, "127.0.0.1")) outgoing.end();
  });
  await new Promise<void>((resolve) => node.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = node.address() as AddressInfo;
    const waiting = fetch(`http://127.0.0.1:${port}${P.wait("default", 10)}`, {
      headers: { "X-Agent-Id": "bare-agent" },
    });
    await until(() => server.dashboard.hub.size === 1, "the wait is open", 5000);
    assert.deepEqual(held!.rawHeaders, []);
    assert.deepEqual(held!.headers, {});
    const enqueued = await server.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "bare-agent" },
      body: JSON.stringify({ id: "bare-1", name: "echo" }),
    });
    assert.equal(enqueued.status, 202);
    const answer = await waiting;
    assert.equal(answer.status, 200);
    assert.equal((await answer.json()).id, "bare-1");
  } finally {
    await new Promise((resolve) => node.close(resolve));
  }
});

Deno.test("a lean wait whose client is gone before it is held is answered 204 and holds nothing", async () => {
  await using server = await devServer();
  const controller = new AbortController();
  controller.abort();
  const answer = await server.dashboard.app.request(P.wait("default", 30), {
    headers: { "X-Agent-Id": "early-gone-agent" },
    signal: controller.signal,
  });
  assert.equal(answer.status, 204);
  assert.equal(server.dashboard.hub.size, 0);
});

Deno.test("listenHttp's close ends idle connections at once and busy ones after their answer", async () => {
  const release = Promise.withResolvers<void>();
  const arrived = Promise.withResolvers<void>();
  const listener = await listenHttp({
    port: 0,
    hostname: "127.0.0.1",
    availableDescriptors: "plenty",
    async fetch(request) {
      if (new URL(request.url).pathname === "/slow") {
        arrived.resolve();
        await release.promise;
      }
      return new Response("done");
    },
  });
  const idle = await rawConnect(listener);
  const busy = await rawConnect(listener);
  try {
    await send(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
    await until(
      async () => (await readAll(idle, 200)).text.includes("done"),
      "the idle one's answer",
    );
    await send(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    await arrived.promise;
    const closed = listener.close();
    const idleEnd = await readAll(idle, 2000);
    assert.equal(idleEnd.closed, true, "the idle keep-alive connection is closed at once");
    release.resolve();
    const answer = await readAll(busy, 5000);
    assert.match(answer.text, /200 OK[\s\S]*done/);
    assert.equal(answer.closed, true, "the busy connection ends after its answer");
    await closed;
  } finally {
    release.resolve();
    closeQuietly(idle);
    closeQuietly(busy);
    await listener.close();
  }
});

Deno.test("RawHeaders reads node's raw headers as a web Headers reads them", () => {
  const raw = [
    "Host",
    "127.0.0.1",
    "X-Agent-Id",
    " \tagent-1\t ",
    "x-request-id",
    "one",
    "X-REQUEST-ID",
    "two",
    "Authorization",
    "Bearer abc",
  ];
  const web = new Headers();
  for (let i = 0; i < raw.length; i += 2) web.append(raw[i], raw[i + 1]);
  const read = new RawHeaders(raw);
  for (const name of ["x-agent-id", "X-Request-Id", "authorization", "host", "x-timestamp"]) {
    assert.equal(read.get(name), web.get(name), name);
  }
  assert.equal(read.get("x-request-id"), "one, two");
  assert.equal(read.get("X-Agent-Id"), "agent-1");
  assert.equal(read.get("x-missing"), null);
});

Deno.test("webHeadersAccept refuses what a web Headers refuses", () => {
  assert.equal(webHeadersAccept(["Host", "h", "X-Agent-Id", "a"]), true);
  for (
    const raw of [["Bad Name", "v"], ["X-A", "a\r\nb"], ["X-A", "nul\0"], ["X-A", "wide\u0100"]]
  ) {
    assert.equal(webHeadersAccept(raw), false, JSON.stringify(raw));
    assert.throws(() => new Headers([raw as [string, string]]));
  }
});

Deno.test("direct waits' refusals are counted in the metrics by reason", async () => {
  await using store = openSqliteStore(":memory:");
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: "a".repeat(40),
    metricsBind: "127.0.0.1:0",
  });
  const anonymous = await fetch(`${server.url}${P.wait("default", 1)}`);
  assert.equal(anonymous.status, 401);
  await anonymous.body?.cancel();
  const unknown = await fetch(`${server.url}${P.wait("default", 1)}`, {
    headers: { "X-Agent-Id": "nobody", Authorization: `Bearer ${"t".repeat(43)}` },
  });
  assert.equal(unknown.status, 401);
  assert.match((await unknown.json()).error, /^agent id or bearer token is wrong/);
  const text = await (await fetch(server.metricsUrl!)).text();
  assert.match(text, /status_auth_refusals_total\{reason="missing_agent_id"\} 1/);
  assert.match(text, /status_auth_refusals_total\{reason="unknown_agent"\} 1/);
  assert.match(
    text,
    /status_http_requests_total\{route="\/api\/v1\/agent\/commands\/wait\/:hash",status="401"\} 2/,
  );
});
