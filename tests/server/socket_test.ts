import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { signedHeaders } from "../../src/protocol/mod.ts";
import { type RunningServer, startServer } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, P, reportBody, TOKEN } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAnswer, send, waitHead } from "./_sockets.ts";

type Delivered = { id: string; attempt: number };

/** A dev-mode dashboard on a free port. */
async function devServer(maxWaitsPerAgent?: number): Promise<RunningServer> {
  return await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    rateLimitPerMinute: 1_000_000,
    maxWaitsPerAgent,
  });
}

function enqueue(server: RunningServer, body: Record<string, unknown>, agentId = "test-agent") {
  return fetch(`${server.url}${P.enqueue}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Agent-Id": agentId },
    body: JSON.stringify(body),
  }).then(async (response) => {
    const answer = await response.json();
    assert.equal(response.status, 202, JSON.stringify(answer));
    return answer as { id: string };
  });
}

async function wait(
  server: RunningServer,
  options: { timeout?: number; agentId?: string; hash?: string; signal?: AbortSignal } = {},
): Promise<{ status: number; command: Delivered | null }> {
  const response = await fetch(
    `${server.url}${P.wait(options.hash ?? "default", options.timeout ?? 10)}`,
    { headers: { "X-Agent-Id": options.agentId ?? "test-agent" }, signal: options.signal },
  );
  if (response.status === 204) {
    await response.body?.cancel();
    return { status: 204, command: null };
  }
  return { status: response.status, command: await response.json() as Delivered };
}

Deno.test("a waiting agent is answered by the enqueue, not by its wait's timeout", async () => {
  await using server = await devServer();
  const latencies: number[] = [];
  for (let i = 0; i < 5; i++) {
    const waiting = wait(server);
    await until(() => server.dashboard.hub.size === 1, "the wait is open", 5000);
    const started = performance.now();
    const [answer] = await Promise.all([waiting, enqueue(server, { id: `c${i}`, name: "echo" })]);
    latencies.push(performance.now() - started);
    assert.equal(answer.status, 200);
    assert.equal(answer.command?.id, `c${i}`);
  }
  // Woken by the enqueue (the wait's own timeout is 10 s). No bound on speed: the benchmarks
  // measure it, and a busy machine stretches it.
  assert.ok(Math.max(...latencies) < 5000, `answered after ${latencies.join(", ")} ms`);
});

Deno.test("no wake-up is lost when an enqueue races a new wait", async () => {
  await using server = await devServer();
  for (let i = 0; i < 150; i++) {
    const id = `race-${i}`;
    // Both requests are in flight at once; which one the server handles first varies.
    let answer: Awaited<ReturnType<typeof wait>>;
    if (i % 2 === 0) {
      [answer] = await Promise.all([
        wait(server, { timeout: 3 }),
        enqueue(server, { id, name: "echo" }),
      ]);
    } else {
      const enqueued = enqueue(server, { id, name: "echo" });
      answer = await wait(server, { timeout: 3 });
      await enqueued;
    }
    assert.equal(answer.status, 200, `iteration ${i}: the command was not delivered`);
    assert.equal(answer.command?.id, id);
  }
  assert.equal(server.dashboard.hub.size, 0);
});

Deno.test("concurrent waits of one agent never receive the same command", async (t) => {
  // Twenty waits of one agent: more than the default cap of 8 open waits per agent.
  await using server = await devServer(20);
  await t.step("two waits, two commands: one each", async () => {
    const waits = [wait(server), wait(server)];
    await until(() => server.dashboard.hub.size === 2, "both waits are open", 5000);
    await enqueue(server, { id: "one", name: "echo" });
    await enqueue(server, { id: "two", name: "echo" });
    const answers = await Promise.all(waits);
    assert.deepEqual(answers.map((a) => a.command?.id).sort(), ["one", "two"]);
  });
  await t.step("twenty waits, twenty commands at once: each delivered exactly once", async () => {
    const waits = Array.from({ length: 20 }, () => wait(server));
    await until(() => server.dashboard.hub.size === 20, "all waits are open", 5000);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => enqueue(server, { id: `m${i}`, name: "echo" })),
    );
    const ids = (await Promise.all(waits)).map((a) => a.command?.id);
    assert.equal(new Set(ids).size, 20, `duplicates in ${ids.join(",")}`);
  });
  await t.step("one command, two waits: one gets it, the other times out empty", async () => {
    const waits = [wait(server, { timeout: 1 }), wait(server, { timeout: 1 })];
    await until(() => server.dashboard.hub.size === 2, "both waits are open", 5000);
    await enqueue(server, { id: "single", name: "echo" });
    const answers = await Promise.all(waits);
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 204]);
  });
});

Deno.test("an agent's ninth open wait ends its first with 204; the others stay open", async () => {
  await using server = await devServer();
  const conns: Deno.TcpConn[] = [];
  try {
    // One connection per wait, as an agent reconnecting after half-open connections has them.
    for (let i = 1; i <= 9; i++) {
      const conn = await rawConnect(server);
      conns.push(conn);
      await send(conn, waitHead("capped-agent", 60));
      const open = Math.min(i, 8);
      await until(() => server.dashboard.hub.size === open, `${open} waits are open`, 5000);
    }
    const first = await readAnswer(conns[0]);
    assert.match(first.text, /^HTTP\/1\.1 204 No Content\r\n/, "answered as at its timeout");
    assert.ok(first.text.endsWith("\r\n\r\n"), "with no body");
    assert.equal(server.dashboard.hub.size, 8, "the eight newest are held");

    // They are still open: an enqueue goes to the oldest of them, on the second connection.
    await enqueue(server, { id: "after-cap", name: "echo" }, "capped-agent");
    const second = await readAnswer(conns[1]);
    assert.match(second.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(second.text, /"id":"after-cap"/);
    assert.equal(server.dashboard.hub.size, 7);
  } finally {
    for (const conn of conns) closeQuietly(conn);
  }
  await until(() => server.dashboard.hub.size === 0, "the closed waits are dropped", 5000);
});

Deno.test("a wait with nothing to deliver ends with 204 at its timeout", async () => {
  await using server = await devServer();
  const started = performance.now();
  const response = await fetch(`${server.url}${P.wait("default", 1)}`, {
    headers: { "X-Agent-Id": "test-agent" },
  });
  const elapsed = performance.now() - started;
  assert.equal(response.status, 204);
  assert.equal(await response.text(), "");
  assert.ok(response.headers.get("date"));
  assert.ok(elapsed >= 950 && elapsed < 3000, `answered after ${elapsed.toFixed(0)} ms`);
});

Deno.test("commands are delivered by priority, then first in first out", async () => {
  await using server = await devServer();
  const plan: Array<[string, string]> = [
    ["low-1", "low"],
    ["normal-1", "normal"],
    ["critical-1", "critical"],
    ["high-1", "high"],
    ["normal-2", "normal"],
    ["high-2", "high"],
  ];
  for (const [id, priority] of plan) {
    await enqueue(server, { id, name: "echo", params: { priority } });
  }
  const order: string[] = [];
  for (let i = 0; i < plan.length; i++) order.push((await wait(server)).command!.id);
  assert.deepEqual(order, ["critical-1", "high-1", "high-2", "normal-1", "normal-2", "low-1"]);
});

Deno.test("a wait whose client went away claims nothing", async () => {
  await using server = await devServer();
  const controller = new AbortController();
  const waiting = wait(server, { signal: controller.signal }).catch((error) => error);
  await until(() => server.dashboard.hub.size === 1, "the wait is open", 5000);
  controller.abort();
  assert.equal((await waiting).name, "AbortError");
  await until(() => server.dashboard.hub.size === 0, "the server dropped the wait", 5000);
  await enqueue(server, { id: "kept", name: "echo" });
  const response = await fetch(`${server.url}/api/v1/commands/kept`);
  assert.equal((await response.json()).status, "queued");
});

Deno.test("shutdown answers open waits with 204 and stops listening", async () => {
  const server = await devServer();
  const waits = [wait(server), wait(server, { agentId: "other" })];
  await until(() => server.dashboard.hub.size === 2, "the waits are open", 5000);
  await server.shutdown();
  assert.deepEqual((await Promise.all(waits)).map((a) => a.status), [204, 204]);
  await server.finished;
  await assert.rejects(() => fetch(`${server.url}/health`));
  await server.shutdown();
});

Deno.test("signed agent requests work over a real socket", async () => {
  await using store = openSqliteStore(":memory:");
  await store.addAgent({ id: "web-1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
  await using server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: ADMIN_TOKEN,
  });
  assert.equal(server.devMode, false);
  const call = (method: string, pathAndQuery: string, body?: unknown) => {
    const text = body === undefined ? "" : JSON.stringify(body);
    const headers = signedHeaders({
      agentId: "web-1",
      token: TOKEN,
      method,
      pathAndQuery,
      body: text,
    });
    if (text) headers["Content-Type"] = "application/json";
    return fetch(`${server.url}${pathAndQuery}`, { method, headers, body: text || undefined });
  };
  const waitPath = "/api/v1/agent/commands/wait/dep-1%3Ablue?timeout=5";
  const waiting = call("GET", waitPath);
  await until(() => server.dashboard.hub.size === 1, "the wait is open", 5000);
  const enqueued = await call("POST", P.enqueue, { id: "s1", name: "echo hi" });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const delivered = await waiting;
  assert.equal(delivered.status, 200);
  assert.ok(delivered.headers.get("date"), "the Date header lets the agent see its clock offset");
  assert.equal((await delivered.json()).id, "s1");
  const ack = await call("POST", P.ack, { command_id: "s1", attempt: 1 });
  assert.equal(ack.status, 200);
  await ack.body?.cancel();
  const report = await call("POST", P.report, reportBody("s1"));
  assert.deepEqual(await report.json(), { accepted: true });
  const result = await fetch(`${server.url}/api/v1/commands/s1`, {
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  assert.equal((await result.json()).status, "success");
});
