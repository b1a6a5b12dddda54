/**
 * The headers every answer of the operator API carries, for a browser and any cache between:
 * `Cache-Control: no-store` (an answer may hold an agent's token or a command's output) and
 * `X-Content-Type-Options: nosniff` (an error quotes the path a client sent).
 */
import assert from "node:assert/strict";
import { startServer } from "../../src/server/mod.ts";
import { ADMIN_TOKEN, makeDashboard, P } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, send } from "./_sockets.ts";

function assertNotKept(response: Response, label: string): void {
  assert.equal(response.headers.get("Cache-Control"), "no-store", `${label}: Cache-Control`);
  assert.equal(response.headers.get("X-Content-Type-Options"), "nosniff", `${label}: nosniff`);
}

Deno.test("operator answers holding a token or output are kept by no cache and never sniffed", async (t) => {
  await using d = await makeDashboard();

  await t.step("an agent's new token and its rotated one", async () => {
    const added = await d.admin("POST", "/api/v1/agents", { id: "web-9" });
    assert.equal(added.status, 201);
    assert.ok((await added.json()).token);
    assertNotKept(added, "POST /api/v1/agents");
    const rotated = await d.admin("POST", "/api/v1/agents/web-9/rotate");
    assert.equal(rotated.status, 200);
    await rotated.body?.cancel();
    assertNotKept(rotated, "POST /api/v1/agents/web-9/rotate");
  });

  await t.step("a command, the commands list, the fleet, the runs and the metrics", async () => {
    const queued = await d.admin("POST", P.enqueue, { id: "c1", agent_id: "a1", name: "echo" });
    assert.equal(queued.status, 202);
    assertNotKept(queued, "enqueue");
    for (const path of ["/api/v1/commands/c1", "/api/v1/commands", "/api/v1/agents"]) {
      const response = await d.admin("GET", path);
      assert.equal(response.status, 200, path);
      await response.body?.cancel();
      assertNotKept(response, `GET ${path}`);
    }
    for (const path of ["/api/v1/runs", "/metrics", "/health"]) {
      const response = await d.admin("GET", path);
      assert.equal(response.status, 200, path);
      await response.body?.cancel();
      assertNotKept(response, `GET ${path}`);
    }
    const head = await d.admin("HEAD", "/api/v1/commands/c1");
    assert.equal(head.status, 200);
    assertNotKept(head, "HEAD /api/v1/commands/c1");
  });

  await t.step(
    "errors too: a refusal, an unknown id, a path no route has, a wrong method",
    async () => {
      const refused = await d.dashboard.app.request("/api/v1/commands/c1");
      assert.equal(refused.status, 401);
      await refused.body?.cancel();
      assertNotKept(refused, "401");
      for (
        const [method, path, status] of [
          ["GET", "/api/v1/commands/nope", 404],
          ["GET", "/api/v1/<b>nope</b>", 404],
          ["PUT", "/api/v1/commands", 405],
        ] as const
      ) {
        const response = await d.dashboard.app.request(path, {
          method,
          headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        assert.equal(response.status, status, `${method} ${path}`);
        await response.body?.cancel();
        assertNotKept(response, `${method} ${path}`);
      }
    },
  );

  await t.step(
    "the event streams, which carry a command's output, are kept by no cache either",
    async () => {
      // Old behaviour: `no-cache`, which lets a browser or a proxy store the answer (it only has
      // to ask again before using it), output and all.
      const run = await d.admin("POST", "/api/v1/runs", {
        id: "r1",
        name: "ls",
        target: { agents: ["a1"] },
      });
      assert.equal(run.status, 201, await run.clone().text());
      await run.body?.cancel();
      for (const path of ["/api/v1/commands/c1/events", "/api/v1/runs/r1/events"]) {
        for (const method of ["HEAD", "GET"]) {
          const stream = await d.admin(method, path);
          assert.equal(stream.status, 200, `${method} ${path}`);
          await stream.body?.cancel();
          assert.equal(stream.headers.get("Content-Type"), "text/event-stream; charset=utf-8");
          assertNotKept(stream, `${method} ${path}`);
        }
      }
    },
  );

  await t.step(
    "an answer that says otherwise keeps its own: the favicon",
    async () => {
      const icon = await d.dashboard.app.request("/favicon.ico");
      assert.equal(icon.status, 204);
      assert.equal(icon.headers.get("Cache-Control"), "public, max-age=86400");
    },
  );
});

Deno.test("over a socket, the agent routes answered before the app carry the same headers", async () => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const answers = [
    await fetch(`${server.url}${P.enqueue}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "web-1" },
      body: JSON.stringify({ id: "c1", name: "echo hi" }),
    }),
    await fetch(`${server.url}${P.wait("default", 5)}`, { headers: { "X-Agent-Id": "web-1" } }),
    await fetch(`${server.url}${P.ack}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Agent-Id": "web-1" },
      body: "{",
    }),
  ];
  assert.deepEqual(answers.map((answer) => answer.status), [202, 200, 400]);
  for (const [i, answer] of answers.entries()) {
    await answer.body?.cancel();
    assertNotKept(answer, `answer ${i}`);
  }
});

Deno.test("the listener's own answers to malformed requests carry the same headers", async () => {
  // The 400s, 413s and 417s made before any route lacked them.
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const heads = [
    // A broken request line: answered by the parser's error.
    "GET /x HTTP/1.1 junk\r\nHost: a\r\n\r\n",
    // A second Host: refused before the app, its body unread.
    "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    // An expectation no one knows.
    `POST ${P.enqueue} HTTP/1.1\r\nHost: a\r\nExpect: dance\r\nContent-Length: 2\r\n\r\n`,
  ];
  for (const head of heads) {
    const conn = await rawConnect(server);
    try {
      await send(conn, head);
      const { text } = await readAll(conn, 10_000);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1];
      assert.ok(status === "400" || status === "417", `${JSON.stringify(head)}: ${text}`);
      assert.match(text, /\r\ncache-control: no-store\r\n/i, JSON.stringify(head));
      assert.match(text, /\r\nx-content-type-options: nosniff\r\n/i, JSON.stringify(head));
    } finally {
      closeQuietly(conn);
    }
  }
});
