/**
 * Hostile input that must get a clear `400` and leave nothing behind: control characters in a
 * command name, JSON nested too deep, and floods of made-up agent ids that must not grow memory.
 */
import assert from "node:assert/strict";
import { fromBase64, MAX_PARAMS_BYTES, toBase64 } from "../../src/protocol/mod.ts";
import { TokenBucketLimiter } from "../../src/server/rate_limit.ts";
import { ReplayCache } from "../../src/server/replay.ts";
import { parseTimeoutSecs } from "../../src/server/wait_route.ts";
import { ADMIN_TOKEN, FakeClock, json, makeDashboard, P, reportBody, T0 } from "./_helpers.ts";

function randomId(): string {
  return `x-${crypto.randomUUID()}`;
}

Deno.test("a command name with a control character is refused at enqueue with 400", async (t) => {
  await using d = await makeDashboard();
  for (
    const [label, name] of [
      ["NUL", "echo a\u0000 --to-command=evil"],
      ["newline", "echo a\nrm -rf /tmp/x"],
      ["escape", "echo \u001b[2Jhidden"],
      ["DEL", "echo a\u007f"],
      ["C1", "echo a\u0085b"],
    ]
  ) {
    await t.step(label, async () => {
      const response = await d.admin("POST", P.enqueue, { agent_id: "a1", name });
      assert.equal(response.status, 400);
      const body = await json(response);
      assert.match(body.error as string, /field "name": must not contain control characters/);
    });
  }
  const listed = await d.admin("GET", "/api/v1/commands");
  assert.deepEqual((await json(listed)).commands, [], "nothing was stored");
  const fine = await d.admin("POST", P.enqueue, { agent_id: "a1", name: "echo tab-free é ✓" });
  assert.equal(fine.status, 202);
  await fine.body?.cancel();
});

Deno.test("a body nested 4,000 deep is a 400 with a message, not a stack overflow", async () => {
  await using d = await makeDashboard();
  const deep = "[".repeat(4000) + "]".repeat(4000);
  const body = `{"agent_id":"a1","name":"echo hi","params":{"metadata":{"x":${deep}}}}`;
  const response = await d.dashboard.app.request(P.enqueue, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + "x" },
    body,
  });
  // Wrong admin token first: the nesting check must not depend on auth order for operators.
  assert.equal(response.status, 401);
  await response.body?.cancel();
  const admin = await d.admin("POST", P.enqueue, JSON.parse(body));
  assert.equal(admin.status, 400);
  assert.match((await json(admin)).error as string, /nests arrays and objects more than 64 levels/);
  // From an agent too, signed.
  const agent = await d.agent({ path: P.enqueue, body: JSON.parse(body) });
  assert.equal(agent.status, 400);
  await agent.body?.cancel();
  // 64 levels are fine.
  const ok = "[".repeat(60) + "]".repeat(60);
  const shallow = await d.admin("POST", P.enqueue, {
    agent_id: "a1",
    name: "echo hi",
    params: { metadata: { x: JSON.parse(ok) } },
  });
  assert.equal(shallow.status, 202);
  await shallow.body?.cancel();
});

Deno.test("thousands of made-up agent ids do not grow the dashboard's caches", async (t) => {
  await t.step("signed mode: every unknown id is a 401 and none is cached", async () => {
    await using d = await makeDashboard();
    for (let i = 0; i < 3000; i++) {
      const response = await d.agent({
        path: P.wait("default", 1),
        agentId: randomId(),
        token: "t".repeat(43),
      });
      assert.equal(response.status, 401);
      await response.body?.cancel();
    }
    assert.ok(d.store.cachedAgents <= 2, `${d.store.cachedAgents} agents cached`);
    assert.equal(d.dashboard.trackedAgents, 0);
  });

  await t.step("dev mode: last-seen times in memory stay within their bound", async () => {
    await using d = await makeDashboard({ devMode: true, lastSeenMax: 100 });
    for (let i = 0; i < 500; i++) {
      const response = await d.dashboard.app.request(P.enqueue, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Agent-Id": randomId() },
        body: JSON.stringify({ name: "echo hi" }),
      });
      assert.equal(response.status, 202);
      await response.body?.cancel();
    }
    assert.ok(d.dashboard.trackedAgents <= 100, `${d.dashboard.trackedAgents} tracked`);
  });

  await t.step("rate-limit buckets and the replay cache stay within their bounds", () => {
    const clock = new FakeClock(T0);
    const limiter = new TokenBucketLimiter({ perMinute: 10, clock, maxKeys: 100 });
    const replay = new ReplayCache({ windowMs: 600_000, clock, maxEntries: 100 });
    for (let i = 0; i < 10_000; i++) {
      const id = randomId();
      limiter.take(id);
      limiter.take(id);
      replay.remember(`${id}\nreq`);
    }
    assert.ok(limiter.size <= 100, `${limiter.size} buckets`);
    assert.ok(replay.size <= 100, `${replay.size} request ids`);
  });
});

Deno.test("the command id wait is refused at enqueue: its agent routes would be read as waits", async () => {
  await using d = await makeDashboard();
  const response = await d.admin("POST", P.enqueue, {
    id: "wait",
    agent_id: "a1",
    name: "echo hi",
  });
  assert.equal(response.status, 400);
  assert.match(String((await json(response)).error), /^field "id": must not be "wait"/);
  const other = await d.admin("POST", P.enqueue, { id: "wait-1", agent_id: "a1", name: "echo hi" });
  assert.equal(other.status, 202);
  await other.body?.cancel();
});

Deno.test("the run id new is refused at creation: the console's page of that run is the start-a-run form", async () => {
  // A run of that id was started, and could not be opened in the console: /runs/new showed the
  // form instead.
  await using d = await makeDashboard();
  const response = await d.admin("POST", "/api/v1/runs", {
    id: "new",
    name: "echo hi",
    target: { agents: ["a1"] },
  });
  assert.equal(response.status, 400);
  assert.equal(
    (await json(response)).error,
    'field "id": must not be "new": the console\'s page of a run with that id (/runs/new) is its ' +
      "start-a-run form",
  );
  assert.deepEqual((await json(await d.admin("GET", "/api/v1/runs"))).runs, []);
  const other = await d.admin("POST", "/api/v1/runs", {
    id: "new-1",
    name: "echo hi",
    target: { agents: ["a1"] },
  });
  assert.equal(other.status, 201);
  await other.body?.cancel();
});

Deno.test("an operator's enqueue naming its target by a malformed X-Agent-Id is a 400 naming that header", async () => {
  await using d = await makeDashboard();
  const enqueue = (headers: Record<string, string>) =>
    d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
      body: JSON.stringify({ name: "echo hi" }),
    });
  const malformed = await enqueue({ "X-Agent-Id": "a 1" });
  assert.equal(malformed.status, 400);
  assert.match(String((await json(malformed)).error), /^X-Agent-Id must be 1–128 characters/);
  const absent = await enqueue({});
  assert.equal(absent.status, 400);
  assert.match(
    String((await json(absent)).error),
    /^field "agent_id": is required without an X-Agent-Id header/,
  );
  const named = await enqueue({ "X-Agent-Id": "a1" });
  assert.equal(named.status, 202);
  await named.body?.cancel();
});

Deno.test("ids made only of dots are refused with 400 wherever ids are given", async (t) => {
  await using d = await makeDashboard();
  for (const id of [".", "..", "..."]) {
    await t.step(`command id ${JSON.stringify(id)} at enqueue`, async () => {
      const response = await d.admin("POST", P.enqueue, { id, agent_id: "a1", name: "echo hi" });
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).error,
        `field "id": must be 1–128 characters of A-Z a-z 0-9 . _ : -, not only dots`,
      );
    });
    await t.step(`agent id ${JSON.stringify(id)} at enqueue and registration`, async () => {
      const enqueue = await d.admin("POST", P.enqueue, { agent_id: id, name: "echo hi" });
      assert.equal(enqueue.status, 400);
      await enqueue.body?.cancel();
      const added = await d.admin("POST", "/api/v1/agents", { id });
      assert.equal(added.status, 400);
      assert.match(String((await json(added)).error), /field "id": .*not only dots/);
    });
    await t.step(
      `run id ${JSON.stringify(id)} and a target agent ${JSON.stringify(id)}`,
      async () => {
        const run = await d.admin("POST", "/api/v1/runs", {
          id,
          name: "echo hi",
          target: { agents: ["a1"] },
        });
        assert.equal(run.status, 400);
        assert.equal(
          (await json(run)).error,
          `field "id": must be 1–64 characters of A-Z a-z 0-9 . _ -, not only dots`,
        );
        const target = await d.admin("POST", "/api/v1/runs", {
          name: "echo hi",
          target: { agents: [id] },
        });
        assert.equal(target.status, 400);
        await target.body?.cancel();
      },
    );
  }
  await t.step("dots with anything else are ids like any other", async () => {
    const response = await d.admin("POST", P.enqueue, { id: ".a.", agent_id: "a1", name: "echo" });
    assert.equal(response.status, 202);
    await response.body?.cancel();
    const shown = await d.admin("GET", "/api/v1/commands/.a.");
    assert.equal(shown.status, 200);
    await shown.body?.cancel();
  });
  const listed = await json(await d.admin("GET", "/api/v1/commands"));
  assert.deepEqual((listed.commands as { id: string }[]).map((c) => c.id), [".a."]);
  assert.deepEqual(
    ((await json(await d.admin("GET", "/api/v1/agents"))).agents as { id: string }[])
      .map((a) => a.id),
    ["a1", "a2"],
  );
});

Deno.test("a dev-mode dashboard registers no agent whose id is only dots", async () => {
  await using d = await makeDashboard({ devMode: true });
  const response = await d.agent({ path: "/api/v1/agent/ping", agentId: "..", token: null });
  assert.equal(response.status, 401);
  assert.match(String((await json(response)).error), /X-Agent-Id must be .*not only dots/);
  assert.equal(await d.store.getAgent(".."), null);
});

Deno.test("a deployment hash no wait could name is refused at enqueue, runs and heartbeats", async (t) => {
  await using d = await makeDashboard();
  const rule = "1–256 characters without / ? #, spaces or control characters, not only dots";
  // A lone surrogate (JSON's \ud800) cannot be percent-encoded, so no wait's path holds it.
  const loneSurrogates = ["a\ud800b", "\udc00"];
  for (
    const hash of [
      "a b",
      "a/b",
      "a?b",
      "a#b",
      "a\u0000b",
      "a\tb",
      "a\u0085b",
      "..",
      "",
      ...loneSurrogates,
    ]
  ) {
    const label = JSON.stringify(hash);
    await t.step(`${label} in an enqueue's params`, async () => {
      const response = await d.admin("POST", P.enqueue, {
        agent_id: "a1",
        name: "echo hi",
        params: { deployment_hash: hash },
      });
      assert.equal(response.status, 400);
      const error = String((await json(response)).error);
      assert.match(error, /^field "params\.deployment_hash": /);
      if (loneSurrogates.includes(hash)) {
        assert.match(error, /^field "params\.deployment_hash": must be well-formed Unicode/);
      } else if (hash !== "") {
        assert.equal(error, `field "params.deployment_hash": must be ${rule}`);
      }
    });
    await t.step(`${label} in a run's params and target`, async () => {
      for (
        const body of [
          { name: "echo hi", params: { deployment_hash: hash }, target: { agents: ["a1"] } },
          { name: "echo hi", target: { deployment: hash } },
        ]
      ) {
        const response = await d.admin("POST", "/api/v1/runs", body);
        assert.equal(response.status, 400);
        assert.match(String((await json(response)).error), /deployment/);
      }
    });
    await t.step(`${label} in a heartbeat`, async () => {
      const response = await d.agent({
        path: "/api/v1/agent/heartbeat",
        body: { deployment_hash: hash },
      });
      assert.equal(response.status, 400);
      assert.match(String((await json(response)).error), /^field "deployment_hash": /);
    });
  }
  await t.step("nothing was stored", async () => {
    assert.deepEqual((await json(await d.admin("GET", "/api/v1/commands"))).commands, []);
    assert.deepEqual((await json(await d.admin("GET", "/api/v1/runs"))).runs, []);
    const agents = (await json(await d.admin("GET", "/api/v1/agents"))).agents as Array<
      Record<string, unknown>
    >;
    assert.equal(agents.find((agent) => agent.id === "a1")!.deployment_hash, null);
  });
  await t.step("a hash a wait can name is accepted", async () => {
    const response = await d.admin("POST", P.enqueue, {
      agent_id: "a1",
      name: "echo hi",
      params: { deployment_hash: "prod.eu-1:v2%é" },
    });
    assert.equal(response.status, 202);
    await response.body?.cancel();
  });
});

Deno.test("a wait on a deployment hash with a control character is a 400 and records nothing", async () => {
  await using d = await makeDashboard();
  for (const segment of ["%00", "a%0Ab", "%7F", "%C2%85"]) {
    const waited = d.agent({ path: `/api/v1/agent/commands/wait/${segment}?timeout=1` });
    // A wait that was held (the bug) ends by its timeout.
    await d.clock.advanceAsync(2000);
    const response = await waited;
    assert.equal(response.status, 400, segment);
    assert.equal(
      (await json(response)).error,
      `path "deployment_hash": must be 1–256 characters without / ? #, spaces or control ` +
        `characters, not only dots`,
    );
  }
  // The refused waits left no deployment behind: a command for dep-1 gets no warning that the
  // agent last waited on another hash.
  const enqueued = await json(
    await d.admin("POST", P.enqueue, {
      agent_id: "a1",
      name: "echo hi",
      params: { deployment_hash: "dep-1" },
    }),
  );
  assert.equal(enqueued.warning, undefined);
});

Deno.test("an agent's NUL in a command id or a heartbeat's text is a 4xx, never the store's error", async (t) => {
  await using d = await makeDashboard();
  // As PostgreSQL: a NUL in a text parameter is an error ("invalid byte sequence"), not a miss.
  const getCommand = d.store.getCommand.bind(d.store);
  d.store.getCommand = (id) =>
    id.includes("\0")
      ? Promise.reject(new Error('invalid byte sequence for encoding "UTF8": 0x00'))
      : getCommand(id);
  await t.step("a cancel-wait: 404", async () => {
    const response = await d.agent({ path: "/api/v1/agent/commands/a%00b/cancel-wait?timeout=1" });
    assert.equal(response.status, 404);
    assert.equal((await json(response)).error, "command a\\u0000b does not exist");
  });
  await t.step("an output chunk: 404", async () => {
    const response = await d.agent({
      path: "/api/v1/agent/commands/%00/output",
      body: { attempt: 1, stream: "stdout", offset: 0, data: "aGk=" },
    });
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });
  for (const field of ["version", "instance_id"]) {
    await t.step(`a heartbeat's ${field}: 400`, async () => {
      const response = await d.agent({
        path: "/api/v1/agent/heartbeat",
        body: { [field]: "1\u0000" },
      });
      assert.equal(response.status, 400);
      assert.match(
        (await json(response)).error as string,
        new RegExp(`^field "${field}": must not contain control characters`),
      );
    });
  }
});

Deno.test("a heartbeat's version or instance_id with a lone surrogate is a 400, not kept as U+FFFD", async (t) => {
  await using d = await makeDashboard();
  for (const field of ["version", "instance_id"]) {
    await t.step(field, async () => {
      // JSON's escape: a lone surrogate the database would keep as U+FFFD.
      const response = await d.agent({
        path: "/api/v1/agent/heartbeat",
        body: `{"${field}":"1.\\ud800"}`,
      });
      assert.equal(response.status, 400);
      assert.match(
        (await json(response)).error as string,
        new RegExp(`^field "${field}": must be well-formed Unicode`),
      );
    });
  }
  await t.step("nothing was recorded", async () => {
    const fleet = await json(await d.admin("GET", "/api/v1/agents"));
    const agent = (fleet.agents as Array<Record<string, unknown>>).find((a) => a.id === "a1")!;
    assert.equal(agent.version, null);
    assert.equal(agent.instance_id, null);
    assert.equal(agent.heartbeat_at, null);
  });
});

Deno.test("an operator's NUL in an id or a filter is a 4xx, never the store's error", async (t) => {
  await using d = await makeDashboard();
  // As PostgreSQL: a NUL in any text parameter is an error ("invalid byte sequence"), not a miss.
  const hasNul = (value: unknown): boolean =>
    typeof value === "string"
      ? value.includes("\0")
      : typeof value === "object" && value !== null && Object.values(value).some(hasNul);
  const store = d.store as unknown as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(d.store))) {
    const method = store[name];
    if (name === "constructor" || typeof method !== "function") continue;
    store[name] = (...args: unknown[]) =>
      args.some(hasNul)
        ? Promise.reject(new Error('invalid byte sequence for encoding "UTF8": 0x00'))
        : method.apply(d.store, args);
  }
  const cases: Array<[string, string, number, string]> = [
    ["GET", "/api/v1/commands/a%00b", 404, "command a\\u0000b does not exist"],
    ["GET", "/api/v1/commands/a%00b/events", 404, "command a\\u0000b does not exist"],
    ["POST", "/api/v1/commands/a%00b/cancel", 404, "command a\\u0000b does not exist"],
    [
      "GET",
      "/api/v1/commands?agent_id=a%00",
      400,
      'query "agent_id": must be 1–128 characters of A-Z a-z 0-9 . _ : -, not only dots',
    ],
    ["GET", "/api/v1/runs/r%00", 404, "run r\\u0000 does not exist"],
    ["GET", "/api/v1/runs/r%00/events", 404, "run r\\u0000 does not exist"],
    ["POST", "/api/v1/runs/r%00/cancel", 404, "run r\\u0000 does not exist"],
    ["POST", "/api/v1/agents/a%00/rotate", 404, "agent a\\u0000 does not exist"],
    ["DELETE", "/api/v1/agents/a%00", 404, "agent a\\u0000 does not exist"],
  ];
  for (const [method, path, status, error] of cases) {
    await t.step(`${method} ${path}: ${status}`, async () => {
      const response = await d.admin(method, path);
      assert.equal(response.status, status);
      assert.equal((await json(response)).error, error);
    });
  }
});

Deno.test("a list limit beyond its range is a 400, not clamped", async (t) => {
  await using d = await makeDashboard();
  for (
    const [path, max] of [["/api/v1/commands", 1000], ["/api/v1/runs", 500]] as const
  ) {
    await t.step(path, async () => {
      for (const limit of ["0", String(max + 1), "99999999", "99999999999999999999999", "1.5"]) {
        const response = await d.admin("GET", `${path}?limit=${limit}`);
        assert.equal(response.status, 400, `limit=${limit}`);
        assert.equal(
          (await json(response)).error,
          `query "limit": must be a whole number from 1 to ${max}`,
        );
      }
      const most = await d.admin("GET", `${path}?limit=${max}`);
      assert.equal(most.status, 200);
      await most.body?.cancel();
    });
  }
});

Deno.test("an ack or a report names its command by a valid id, else 400", async (t) => {
  await using d = await makeDashboard();
  const huge = "c".repeat(100_000);
  const rule = "1–193 characters of A-Z a-z 0-9 . _ : -, not only dots";
  for (
    const [label, commandId] of [["100,000 characters", huge], ["a space", "a b"], ["..", ".."]]
  ) {
    await t.step(`ack of ${label}`, async () => {
      const response = await d.agent({ path: P.ack, body: { command_id: commandId, attempt: 1 } });
      const text = await response.text();
      assert.equal(response.status, 400);
      assert.equal(JSON.parse(text).error, `field "command_id": must be ${rule}`);
      assert.ok(text.length < 1000, `a short answer, not ${text.length} bytes`);
    });
    await t.step(`report of ${label}`, async () => {
      const response = await d.agent({ path: P.report, body: reportBody(commandId) });
      const text = await response.text();
      assert.equal(response.status, 400);
      assert.equal(JSON.parse(text).error, `field "command_id": must be ${rule}`);
      assert.ok(text.length < 1000, `a short answer, not ${text.length} bytes`);
    });
  }
  await t.step("a run's command id (193 characters) is valid and named whole", async () => {
    const id = `${"r".repeat(64)}:${"a".repeat(128)}`;
    const response = await d.agent({ path: P.ack, body: { command_id: id, attempt: 1 } });
    assert.equal(response.status, 404);
    assert.equal((await json(response)).error, `command ${id} does not exist`);
  });
});

Deno.test("errors show a client's long value cut short, never whole", async (t) => {
  await using d = await makeDashboard();
  const long = "x".repeat(10_000);
  const cut = `${"x".repeat(200)}… (10000 characters)`;
  const small = async (response: Response, status: number, error: string) => {
    const text = await response.text();
    assert.equal(response.status, status, text.slice(0, 300));
    assert.ok(text.length < 1000, `a short answer, not ${text.length} bytes`);
    assert.equal(JSON.parse(text).error, error);
  };
  await t.step("operator routes naming a command, an agent or a run", async () => {
    await small(
      await d.admin("GET", `/api/v1/commands/${long}`),
      404,
      `command ${cut} does not exist`,
    );
    await small(
      await d.admin("GET", `/api/v1/commands/${long}/events`),
      404,
      `command ${cut} does not exist`,
    );
    await small(
      await d.admin("POST", `/api/v1/commands/${long}/cancel`),
      404,
      `command ${cut} does not exist`,
    );
    await small(
      await d.admin("POST", `/api/v1/agents/${long}/rotate`),
      404,
      `agent ${cut} does not exist`,
    );
    await small(
      await d.admin("DELETE", `/api/v1/agents/${long}`),
      404,
      `agent ${cut} does not exist`,
    );
    await small(await d.admin("GET", `/api/v1/runs/${long}`), 404, `run ${cut} does not exist`);
    await small(
      await d.admin("POST", `/api/v1/runs/${long}/cancel`),
      404,
      `run ${cut} does not exist`,
    );
  });
  await t.step("agent routes naming a command in their path", async () => {
    await small(
      await d.agent({
        path: `/api/v1/agent/commands/${long}/output`,
        body: { attempt: 1, stream: "stdout", offset: 0, data: "aGkK" },
      }),
      404,
      `command ${cut} does not exist`,
    );
    await small(
      await d.agent({ path: `/api/v1/agent/commands/${long}/cancel-wait?timeout=1` }),
      404,
      `command ${cut} does not exist`,
    );
  });
  await t.step("a path no route answers", async () => {
    await small(
      await d.admin("GET", `/api/v1/${long}`),
      404,
      `no route for GET /api/v1/${"x".repeat(192)}… (10008 characters)`,
    );
  });
  await t.step("a field named by a client's key", async () => {
    const key = "k".repeat(10_000);
    const response = await d.admin("POST", "/api/v1/runs", {
      name: "echo hi",
      target: { labels: { [key]: "v" } },
    });
    const text = await response.text();
    assert.equal(response.status, 400);
    assert.ok(text.length < 2000, `a short answer, not ${text.length} bytes`);
    assert.match(JSON.parse(text).error, /^field "target\.labels\.k{186}… \(10014 characters\)": /);
  });
  await t.step("a run's unknown agents: ten named, a hundred detailed", async () => {
    const agents = Array.from({ length: 150 }, (_, i) => `ghost-${i}`);
    const response = await d.admin("POST", "/api/v1/runs", { name: "echo", target: { agents } });
    const answer = await json(response);
    assert.equal(response.status, 404);
    assert.equal(
      answer.error,
      `agents not registered: ${agents.slice(0, 10).join(", ")} and 140 more`,
    );
    assert.deepEqual(answer.details, { unknown_agents: agents.slice(0, 100), unknown_count: 150 });
  });
});

Deno.test("errors show a client's control and bidirectional characters as escapes, never raw", async (t) => {
  await using d = await makeDashboard();
  /** The answer's error, checked to hold no raw control or formatting character. */
  const errorOf = async (response: Response, status: number) => {
    const text = await response.text();
    assert.equal(response.status, status, text);
    const answer = JSON.parse(text);
    assert.doesNotMatch(text, /[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/, text);
    // deno-lint-ignore no-control-regex -- the control characters are what it looks for
    assert.doesNotMatch(answer.error, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    return answer as { error: string; details?: unknown };
  };
  await t.step("an id decoded from an operator route's path", async () => {
    const override = await errorOf(await d.admin("GET", "/api/v1/commands/%E2%80%AEabc"), 404);
    assert.equal(override.error, "command \\u202eabc does not exist");
    const escape = await errorOf(await d.admin("GET", "/api/v1/runs/%1B%5B2J"), 404);
    assert.equal(escape.error, "run \\u001b[2J does not exist");
  });
  await t.step("a tab is the one control character kept as it is", async () => {
    const response = await d.admin("GET", "/api/v1/commands/a%09b%0Ac");
    assert.equal(response.status, 404);
    assert.equal((await json(response)).error, "command a\tb\\nc does not exist");
  });
  await t.step("an id decoded from a long-poll's path", async () => {
    const answer = await errorOf(
      await d.agent({ path: "/api/v1/agent/commands/%E2%80%AE/cancel-wait?timeout=1" }),
      404,
    );
    assert.equal(answer.error, "command \\u202e does not exist");
  });
  await t.step("a header's C1 control character", async () => {
    const answer = await errorOf(
      await d.agent({
        path: P.ack,
        body: { command_id: "c1", attempt: 1 },
        headers: { "X-Signature-Version": "\u009b2J" },
      }),
      401,
    );
    assert.match(answer.error, /^X-Signature-Version "\\u009b2J" is not supported/);
  });
  await t.step("a field named by a client's key, in the error and its details", async () => {
    const answer = await errorOf(
      await d.admin("POST", "/api/v1/agents", { id: "a9", "to\u202eken": "x" }),
      400,
    );
    assert.equal(answer.error, 'field "to\\u202eken": is not a field of this object');
    assert.deepEqual(answer.details, [
      { field: "to\\u202eken", message: "is not a field of this object" },
    ]);
  });
  await t.step("a query parameter's name, in the error and its details", async () => {
    const answer = await errorOf(await d.admin("GET", "/api/v1/commands?agent%E2%80%AE_id=1"), 400);
    assert.match(answer.error, /^query "agent\\u202e_id": is not a parameter of this list/);
    assert.equal((answer.details as { field: string }[])[0].field, "agent\\u202e_id");
  });
  await t.step("a run's target that no agent matches, in the error and its details", async () => {
    const answer = await errorOf(
      await d.admin("POST", "/api/v1/runs", {
        name: "echo",
        target: { deployment: "prod\u202eved", labels: { role: "web" } },
      }),
      404,
    );
    assert.match(answer.error, /^no agent matches the target \(deployment prod\\u202eved and /);
    assert.deepEqual(answer.details, {
      target: { deployment: "prod\\u202eved", labels: { role: "web" } },
      registered_agents: 2,
    });
  });
  await t.step("a value a field's message quotes, in the error and its details", async () => {
    const answer = await errorOf(
      await d.admin("POST", "/api/v1/runs", {
        name: "echo",
        params: { deployment_hash: "prod\u202eved" },
        target: { deployment: "prod" },
      }),
      400,
    );
    assert.match(answer.error, /^field "params\.deployment_hash": "prod\\u202eved" is not /);
    const [detail] = answer.details as { field: string; message: string }[];
    assert.equal(detail.field, "params.deployment_hash");
    assert.match(detail.message, /^"prod\\u202eved" is not the target's deployment "prod"/);
  });
  await t.step("dev mode's refusal of a browser's foreign request", async () => {
    await using dev = await makeDashboard({ devMode: true });
    const answer = await errorOf(
      await dev.dashboard.app.request("/api/v1/commands", {
        headers: { "Sec-Fetch-Site": "cross-site\u009b2J" },
      }),
      403,
    );
    assert.match(answer.error, /\(cross-site\\u009b2J\)$/);
  });
});

Deno.test("a JSON body that begins with a byte order mark is a 400 saying so, and nothing is kept", async (t) => {
  await using d = await makeDashboard();
  const withBom = (value: unknown) =>
    new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode(JSON.stringify(value))]);
  const message = "request body begins with a byte order mark (U+FEFF), which JSON sent over a " +
    "network must not have; send the body without it";
  await t.step("an operator's enqueue", async () => {
    const response = await d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
      body: withBom({ id: "bom-1", agent_id: "a1", name: "echo hi" }),
    });
    assert.equal(response.status, 400);
    assert.equal((await json(response)).error, message);
  });
  await t.step("an agent's signed enqueue (a route answered before Hono)", async () => {
    const response = await d.agent({
      path: P.enqueue,
      body: withBom({ id: "bom-2", name: "echo" }),
    });
    assert.equal(response.status, 400);
    assert.equal((await json(response)).error, message);
  });
  await t.step("nothing was queued; the same body without it is", async () => {
    assert.deepEqual((await json(await d.admin("GET", "/api/v1/commands"))).commands, []);
    const fine = await d.admin("POST", P.enqueue, { id: "bom-1", agent_id: "a1", name: "echo hi" });
    assert.equal(fine.status, 202);
    await fine.body?.cancel();
  });
});

Deno.test("a path with a malformed percent-escape is a 400 on every route, never read as it is", async (t) => {
  await using d = await makeDashboard();
  const error = "malformed path: a % in it must begin an escape of two hex digits (%25 for a % " +
    "itself), and its escapes must be UTF-8";
  const enqueued = await d.admin("POST", P.enqueue, {
    id: "pct-1",
    agent_id: "a1",
    name: "echo hi",
    params: { deployment_hash: "%zz" },
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const refused = async (response: Response) => {
    assert.equal(response.status, 400);
    assert.equal((await json(response)).error, error);
  };
  for (const hash of ["%zz", "%ff", "%C3", "a%", "%e2%80"]) {
    await t.step(`a wait on ${hash}`, async () => {
      await refused(await d.agent({ path: P.wait(hash, 1) }));
    });
  }
  await t.step(
    "a cancel-wait, an agent's POST, an operator's route, a path no route has",
    async () => {
      await refused(await d.agent({ path: "/api/v1/agent/commands/c%zz/cancel-wait?timeout=1" }));
      await refused(await d.agent({ path: `${P.ack}%zz`, body: { command_id: "c1", attempt: 1 } }));
      await refused(await d.admin("GET", "/api/v1/commands/%zz"));
      await refused(await d.admin("GET", "/x%zz"));
    },
  );
  await t.step("the command was claimed by none of them; %25zz names its hash", async () => {
    const command = await json(await d.admin("GET", "/api/v1/commands/pct-1"));
    assert.equal(command.status, "queued");
    const wait = await d.agent({ path: P.wait("%25zz", 1) });
    assert.equal(wait.status, 200);
    assert.equal((await json(wait)).id, "pct-1");
  });
  await t.step("a % in the query is the query's own business", async () => {
    const response = await d.admin("GET", "/api/v1/commands?agent_id=%zz");
    assert.equal(response.status, 400);
    assert.match((await json(response)).error as string, /^query "agent_id": /);
  });
});

Deno.test("a query parameter with a malformed percent-escape is a 400 naming it, on every route", async (t) => {
  await using d = await makeDashboard();
  const enqueued = await d.admin("POST", P.enqueue, { id: "pct-q", agent_id: "a1", name: "echo" });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const refused = async (response: Response, name: string) => {
    assert.equal(response.status, 400);
    const message = "a % in it must begin an escape of two hex digits (%25 for a % itself), " +
      "and its escapes must be UTF-8";
    assert.deepEqual(await json(response), {
      error: `query "${name}": ${message}`,
      details: [{ field: name, message }],
    });
  };
  await t.step("an operator's list: its own parameters and others", async () => {
    await refused(await d.admin("GET", "/api/v1/commands?limit=%zz"), "limit");
    await refused(await d.admin("GET", "/api/v1/commands?agent_id=a%E0%A4"), "agent_id");
    await refused(await d.admin("GET", "/api/v1/agents?after=%E0%A4"), "after");
    await refused(await d.admin("GET", "/api/v1/runs?open=1&cache=%ff"), "cache");
    // A name that is malformed itself is shown as sent; one that decodes, decoded.
    await refused(await d.admin("GET", "/api/v1/commands?%zz=1"), "%zz");
    await refused(await d.admin("GET", "/api/v1/commands?%6Cimit=%"), "limit");
  });
  await t.step("a wait: refused, the command not handed out", async () => {
    await refused(
      await d.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1&x=%zz" }),
      "x",
    );
    await refused(
      await d.agent({ path: "/api/v1/agent/commands/wait/default?timeout=%" }),
      "timeout",
    );
    const command = await json(await d.admin("GET", "/api/v1/commands/pct-q"));
    assert.equal(command.status, "queued");
  });
  await t.step("well-formed escapes are read as before", async () => {
    const listed = await d.admin("GET", "/api/v1/commands?agent_id=%61%31&limit=%31");
    assert.equal(listed.status, 200);
    assert.deepEqual(
      ((await json(listed)).commands as Array<{ id: string }>).map((c) => c.id),
      ["pct-q"],
    );
  });
});

Deno.test("a report's started_at and completed_at are ISO 8601 date-times, else 400", async (t) => {
  await using d = await makeDashboard();
  const enqueued = await d.admin("POST", P.enqueue, { id: "c1", agent_id: "a1", name: "echo" });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const delivered = await d.agent({ path: P.wait() });
  assert.equal(delivered.status, 200);
  await delivered.body?.cancel();
  for (
    const [field, value] of [
      ["started_at", "not a date"],
      ["completed_at", "2026-02-30T10:00:05Z"],
      ["started_at", "2026-01-12 10:00:05Z"],
      ["completed_at", "2026-01-12T10:00:05"],
      ["started_at", ""],
    ]
  ) {
    await t.step(`${field} ${JSON.stringify(value)}`, async () => {
      const response = await d.agent({
        path: P.report,
        body: reportBody("c1", { [field]: value }),
      });
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).error,
        `field "${field}": must be an ISO 8601 date-time with a time zone, such as ` +
          `2026-01-12T10:00:05.120Z`,
      );
    });
  }
  await t.step("null, absent, UTC or an offset are accepted", async () => {
    const response = await d.agent({
      path: P.report,
      body: reportBody("c1", { started_at: "2026-01-12T11:00:05+01:00", completed_at: null }),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const command = await json(await d.admin("GET", "/api/v1/commands/c1"));
    assert.equal(command.started_at, "2026-01-12T11:00:05+01:00");
  });
});

Deno.test("a number beyond a double's range (1e400) is a 400 naming its field, not stored as null", async (t) => {
  await using d = await makeDashboard();
  const send = (body: string) =>
    d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
      body,
    });
  for (
    const [params, field] of [
      ['{"big":1e400}', "params.big"],
      ['{"metadata":{"list":[1,-1e400]}}', "params.metadata.list.1"],
      ['{"timeout_secs":1e999}', "params.timeout_secs"],
    ]
  ) {
    await t.step(params, async () => {
      const response = await send(`{"agent_id":"a1","name":"echo","params":${params}}`);
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).error,
        `field "${field}": must be a finite number (at most about 1.8e308)`,
      );
    });
  }
  await t.step("from an agent too", async () => {
    const response = await d.agent({
      path: "/api/v1/agent/heartbeat",
      body: '{"cpu_percent":1e400}',
    });
    assert.equal(response.status, 400);
    assert.match(String((await json(response)).error), /^field "cpu_percent": must be a finite/);
  });
  assert.deepEqual((await json(await d.admin("GET", "/api/v1/commands"))).commands, []);
  const large = await send('{"agent_id":"a1","id":"c1","name":"echo","params":{"big":1e300}}');
  assert.equal(large.status, 202);
  await large.body?.cancel();
  const stored = await json(await d.admin("GET", "/api/v1/commands/c1"));
  assert.deepEqual(stored.params, { big: 1e300 });
});

Deno.test("a __proto__ key in params or params.metadata is dropped, as documented; deeper ones are kept", async () => {
  await using d = await makeDashboard();
  const response = await d.dashboard.app.request(P.enqueue, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: '{"agent_id":"a1","id":"p1","name":"echo","params":' +
      '{"__proto__":{"polluted":1},"keep":1,"metadata":{"__proto__":2,"m":2},"deep":{"__proto__":3}}}',
  });
  assert.equal(response.status, 202);
  await response.body?.cancel();
  const params = (await json(await d.admin("GET", "/api/v1/commands/p1"))).params as Record<
    string,
    unknown
  >;
  assert.equal(JSON.stringify(params), '{"metadata":{"m":2},"keep":1,"deep":{"__proto__":3}}');
  assert.equal(({} as Record<string, unknown>).polluted, undefined, "no prototype was changed");
  const delivered = await d.agent({ path: P.wait() });
  assert.equal(
    JSON.stringify((await json(delivered)).params),
    '{"metadata":{"m":2},"keep":1,"deep":{"__proto__":3}}',
  );
});

Deno.test("a command name with a lone surrogate is refused (400), not stored changed to U+FFFD", async (t) => {
  await using d = await makeDashboard();
  // JSON.stringify sends a lone surrogate as the escape \ud800, which JSON.parse gives back.
  for (const [label, name] of [["high", "echo a\ud800b"], ["low", "echo \udc00"]]) {
    await t.step(`enqueue, ${label}`, async () => {
      const response = await d.admin("POST", P.enqueue, { id: `s-${label}`, agent_id: "a1", name });
      assert.equal(response.status, 400);
      const body = await json(response);
      assert.match(body.error as string, /field "name": must be well-formed Unicode/);
    });
    await t.step(`run, ${label}`, async () => {
      const response = await d.admin("POST", "/api/v1/runs", {
        name,
        target: { agents: ["a1"] },
      });
      assert.equal(response.status, 400);
      const body = await json(response);
      assert.match(body.error as string, /field "name": must be well-formed Unicode/);
    });
  }
  const listed = await d.admin("GET", "/api/v1/commands");
  assert.deepEqual((await json(listed)).commands, [], "nothing was stored");
  const paired = await d.admin("POST", P.enqueue, { agent_id: "a1", name: "echo \ud83d\ude00" });
  assert.equal(paired.status, 202, "a surrogate pair (an emoji) is a character like any other");
  await paired.body?.cancel();
});

Deno.test("a whole number beyond 2^53 is told its field's own bound, not the safe-integer range", async (t) => {
  await using d = await makeDashboard();
  for (
    const [params, message] of [
      [
        '{"timeout_secs":1e308}',
        'field "params.timeout_secs": must be at most 86400',
      ],
      [
        '{"timeout_secs":-1e308}',
        'field "params.timeout_secs": must be more than 0',
      ],
    ]
  ) {
    await t.step(params, async () => {
      const response = await d.dashboard.app.request(P.enqueue, {
        method: "POST",
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
        body: `{"agent_id":"a1","name":"echo","params":${params}}`,
      });
      assert.equal(response.status, 400);
      const body = await json(response);
      assert.equal(body.error, message);
      assert.equal((body.details as unknown[]).length, 1, JSON.stringify(body.details));
    });
  }
});

Deno.test("a key given twice in a body: the last one counts, as docs/protocol.md says", async () => {
  await using d = await makeDashboard();
  const response = await d.dashboard.app.request(P.enqueue, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: '{"agent_id":"a1","id":"c1","id":"c2","name":"echo","params":{}}',
  });
  assert.equal(response.status, 202);
  assert.equal((await json(response)).id, "c2");
  const protocol = await Deno.readTextFile(new URL("../../docs/protocol.md", import.meta.url));
  assert.match(
    protocol.replace(/\s+/g, " "),
    /A key given twice in one object is not refused: the last one counts/,
  );
});

Deno.test("a label key that breaks the rule is a 400 saying the rule, __proto__ included", async (t) => {
  await using d = await makeDashboard();
  const rule =
    "label keys are 1–63 characters of A-Z a-z 0-9 . _ / -, starting with a letter or digit";
  assert.equal(
    (await d.agent({ path: "/api/v1/agent/heartbeat", body: '{"labels":{"role":"web"}}' })).status,
    200,
  );
  for (
    const [name, labels] of [
      ["__proto__", '{"__proto__":"x","role":"db"}'],
      ["_x", '{"_x":"1"}'],
    ]
  ) {
    await t.step(`heartbeat: ${name}`, async () => {
      const response = await d.agent({
        path: "/api/v1/agent/heartbeat",
        body: `{"labels":${labels}}`,
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).error, `field "labels.${name}": ${rule}`);
    });
    await t.step(`run target: ${name}`, async () => {
      const response = await d.dashboard.app.request("/api/v1/runs", {
        method: "POST",
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
        body: `{"name":"echo","target":{"labels":${labels}}}`,
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).error, `field "target.labels.${name}": ${rule}`);
    });
  }
  const fleet = (await json(await d.admin("GET", "/api/v1/agents"))).agents as {
    id: string;
    labels: Record<string, string>;
  }[];
  assert.deepEqual(fleet.find((agent) => agent.id === "a1")?.labels, { role: "web" }, "kept");
});

Deno.test("a command name with a bidirectional override (U+202E) is refused at enqueue and in runs", async () => {
  await using d = await makeDashboard();
  const message = 'field "name": must not contain bidirectional formatting characters (U+202E ' +
    "and the like), which make a command line show in another order than it runs";
  for (const char of ["\u202e", "\u2066", "\u200f"]) {
    const enqueue = await d.admin("POST", P.enqueue, { agent_id: "a1", name: `echo a ${char}b` });
    assert.equal(enqueue.status, 400);
    assert.equal((await json(enqueue)).error, message);
    const run = await d.admin("POST", "/api/v1/runs", {
      name: `echo ${char}`,
      target: { agents: ["a1"] },
    });
    assert.equal(run.status, 400);
    assert.equal((await json(run)).error, message);
  }
  const plain = await d.admin("POST", P.enqueue, { agent_id: "a1", name: "echo שלום مرحبا" });
  assert.equal(plain.status, 202, "right-to-left text itself is fine");
  await plain.body?.cancel();
});

Deno.test("an enqueue field of params given beside it is refused with 400, not dropped", async (t) => {
  await using d = await makeDashboard();
  // The shape of a command as GET shows it: priority and deployment_hash at the top. They were
  // dropped, and the command went to any deployment, at normal priority, on the default deadline.
  for (
    const [key, value] of [
      ["deployment_hash", "prod"],
      ["priority", "critical"],
      ["timeout_secs", 5],
      ["ttl_secs", 60],
      ["metadata", { ticket: "OPS-1" }],
    ] as const
  ) {
    await t.step(key, async () => {
      const response = await d.admin("POST", P.enqueue, {
        agent_id: "a1",
        name: "sleep 600",
        [key]: value,
      });
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).error,
        `field "${key}": must be given inside params ({"params": {"${key}": ...}}); beside it, ` +
          "it would be ignored",
      );
    });
  }
  const listed = await d.admin("GET", "/api/v1/commands");
  assert.deepEqual((await json(listed)).commands, [], "nothing was stored");
  await t.step("inside params, and other fields beside it, are taken as before", async () => {
    const response = await d.admin("POST", P.enqueue, {
      agent_id: "a1",
      name: "sleep 600",
      params: { priority: "critical", deployment_hash: "prod", timeout_secs: 5 },
      source: "a script of another dashboard",
    });
    assert.equal(response.status, 202);
    const { id } = await json(response);
    const command = await json(await d.admin("GET", `/api/v1/commands/${id}`));
    assert.equal(command.priority, "critical");
    assert.equal(command.deployment_hash, "prod");
  });
});

Deno.test("a list query parameter near a filter's name is refused, not ignored", async (t) => {
  await using d = await makeDashboard();
  for (const agent of ["a1", "a2"]) {
    const response = await d.admin("POST", P.enqueue, { agent_id: agent, name: "echo hi" });
    assert.equal(response.status, 202);
    await response.body?.cancel();
  }
  for (
    const [path, name, meant] of [
      ["/api/v1/commands?agent=a1", "agent", "agent_id"],
      ["/api/v1/commands?agentId=a1", "agentId", "agent_id"],
      ["/api/v1/commands?statuses=queued", "statuses", "status"],
      ["/api/v1/commands?befor=5", "befor", "before"],
      ["/api/v1/runs?limits=5", "limits", "limit"],
    ] as const
  ) {
    await t.step(path, async () => {
      // Ignored, `agent=a1` listed every agent's commands as if they were a1's.
      const response = await d.admin("GET", path);
      assert.equal(response.status, 400);
      assert.match(
        (await json(response)).error as string,
        new RegExp(
          `^query "${name}": is not a parameter of this list \\(did you mean "${meant}"\\?\\)`,
        ),
      );
    });
  }
  for (
    const path of [
      "/api/v1/commands?agent_id=a1&agent_id=a2",
      "/api/v1/commands?status=queued&limit=5&status=running",
      "/api/v1/runs?open=1&open=",
    ]
  ) {
    await t.step(`a filter given twice: ${path}`, async () => {
      // Only the first was read: a list of a1's commands read as one of a1's and a2's.
      const response = await d.admin("GET", path);
      assert.equal(response.status, 400);
      assert.match(
        (await json(response)).error as string,
        /^query "(agent_id|status|open)": is given 2 times; a list takes one value of it$/,
      );
    });
  }
  await t.step("the right names, and unrelated parameters, are read as before", async () => {
    const response = await d.admin("GET", "/api/v1/commands?agent_id=a1&_=1767261605");
    assert.equal(response.status, 200);
    const commands = (await json(response)).commands as { agent_id: string }[];
    assert.deepEqual(commands.map((command) => command.agent_id), ["a1"]);
  });
});

Deno.test("a query parameter given empty counts as absent: its default, not a 400", async (t) => {
  await using d = await makeDashboard();
  await t.step("a wait's or cancel-wait's timeout= is 30 s", () => {
    for (const empty of [null, "", " "]) assert.equal(parseTimeoutSecs(empty), 30);
    assert.throws(() => parseTimeoutSecs("soon"), /query "timeout": must be a number of seconds/);
  });
  for (let i = 0; i < 51; i++) {
    const enqueued = await d.admin("POST", P.enqueue, {
      id: `e${i}`,
      name: "echo",
      agent_id: "a1",
    });
    await enqueued.body?.cancel();
  }
  await t.step("the commands list: every filter off, 50 a page, output full", async () => {
    const response = await d.admin(
      "GET",
      "/api/v1/commands?agent_id=&status=&limit=&before=&output=",
    );
    assert.equal(response.status, 200);
    const page = await json(response);
    const commands = page.commands as { id: string; result: unknown }[];
    assert.equal(commands.length, 50);
    assert.equal(commands[0].id, "e50", "newest first, from the newest");
    assert.equal(typeof page.next_before, "string");
  });
  await t.step("the fleet: every agent, no page", async () => {
    const response = await d.admin("GET", "/api/v1/agents?limit=&after=");
    assert.equal(response.status, 200);
    const fleet = await json(response);
    assert.deepEqual((fleet.agents as { id: string }[]).map((agent) => agent.id), ["a1", "a2"]);
    assert.equal(fleet.next_after, undefined);
  });
  await t.step("the runs list: every run, 50 at most", async () => {
    const response = await d.admin("GET", "/api/v1/runs?open=&limit=");
    assert.equal(response.status, 200);
    assert.deepEqual((await json(response)).runs, []);
  });
});

Deno.test("a route's path asked with a method it does not answer is 405 with Allow", async (t) => {
  await using d = await makeDashboard();
  const ask = async (method: string, path: string) => {
    const response = await d.admin(method, path);
    const body = method === "HEAD" ? {} : await json(response);
    if (method === "HEAD") await response.body?.cancel();
    return { status: response.status, allow: response.headers.get("allow"), body };
  };
  for (
    const [method, path, allow] of [
      ["GET", P.ack, "POST"],
      ["PUT", P.report, "POST"],
      ["GET", P.enqueue, "POST"],
      ["POST", "/api/v1/agent/commands/wait/dep-1", "GET"],
      ["HEAD", "/api/v1/agent/commands/wait/dep-1", "GET"],
      ["DELETE", "/api/v1/agent/commands/c1/cancel-wait", "GET"],
      ["GET", "/api/v1/agent/commands/c1/output", "POST"],
      ["PUT", "/api/v1/commands/c1", "GET, HEAD"],
      ["GET", "/api/v1/commands/c1/cancel", "POST"],
      ["PATCH", "/api/v1/agents/web-1", "DELETE"],
      ["PUT", "/api/v1/agents", "GET, HEAD, POST"],
      ["DELETE", "/health", "GET, HEAD"],
    ] as const
  ) {
    await t.step(`${method} ${path}`, async () => {
      const answer = await ask(method, path);
      assert.equal(answer.status, 405);
      assert.equal(answer.allow, allow);
      if (method !== "HEAD") {
        assert.deepEqual(answer.body, {
          error: `method ${method} is not allowed on ${path}; it answers ${allow}`,
        });
      }
    });
  }
  await t.step("a path no route has stays 404, without Allow", async () => {
    for (const path of ["/api/v1/nothing", "/api/v1/commands/", "/api/v1/agent/commands/ack/"]) {
      const answer = await ask("PUT", path);
      assert.equal(answer.status, 404);
      assert.equal(answer.allow, null);
      assert.deepEqual(answer.body, { error: `no route for PUT ${path}` });
    }
  });
  await t.step("a method is quoted whole up to 16 characters, else cut and counted", async () => {
    const sixteen = "ABCDEFGHIJKLMNOP";
    assert.deepEqual((await ask(sixteen, "/health")).body, {
      error: `method ${sixteen} is not allowed on /health; it answers GET, HEAD`,
    });
    assert.deepEqual((await ask(`${sixteen}QRSTUVWXYZ`, "/api/v1/nothing")).body, {
      error: `no route for ${sixteen}… (26 characters) /api/v1/nothing`,
    });
  });
  const listed = await d.admin("GET", "/api/v1/commands");
  assert.deepEqual((await json(listed)).commands, [], "nothing was stored");
});

Deno.test("a compressed body is 415 naming its Content-Encoding, not 'not UTF-8'", async (t) => {
  await using d = await makeDashboard();
  const body = JSON.stringify({ agent_id: "a1", id: "gz-1", name: "echo hi" });
  const gzip = new Uint8Array(
    await new Response(
      new Blob([body]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  const enqueue = (payload: BodyInit, coding: string) =>
    d.dashboard.app.request(P.enqueue, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${ADMIN_TOKEN}`,
        "Content-Type": "application/json",
        "Content-Encoding": coding,
      },
      body: payload,
    });
  // Whole up to 200 characters (docs/protocol.md's conventions), else cut and counted.
  const long = "x-".repeat(50);
  const longer = "y".repeat(300);
  for (const coding of ["gzip", "GZIP", "br", "identity, gzip", long]) {
    await t.step(`an operator's enqueue with ${coding}`, async () => {
      const response = await enqueue(gzip, coding);
      assert.equal(response.status, 415);
      assert.deepEqual(await json(response), {
        error: `Content-Encoding ${coding} is not supported; send the body uncompressed`,
      });
    });
  }
  await t.step("an operator's enqueue with a coding of 300 characters", async () => {
    const response = await enqueue(gzip, longer);
    assert.equal(response.status, 415);
    assert.equal(
      (await json(response)).error,
      `Content-Encoding ${
        "y".repeat(200)
      }… (300 characters) is not supported; send the body uncompressed`,
    );
  });
  await t.step("an agent's report (a route answered before Hono)", async () => {
    const response = await d.agent({
      path: P.report,
      body: reportBody("gz-1"),
      headers: { "Content-Encoding": "gzip" },
    });
    assert.equal(response.status, 415);
    assert.match((await json(response)).error as string, /Content-Encoding gzip/);
  });
  const listed = await d.admin("GET", "/api/v1/commands");
  assert.deepEqual((await json(listed)).commands, [], "nothing was stored");
  await t.step("identity is no coding", async () => {
    const response = await enqueue(body, "identity");
    assert.equal(response.status, 202);
    await response.body?.cancel();
  });
});

Deno.test("a missing field is told it is required, not 'received undefined'", async (t) => {
  await using d = await makeDashboard();
  for (
    const [label, path, body, field, expected] of [
      ["an ack without attempt", P.ack, { command_id: "c1" }, "attempt", "number"],
      ["a report without command_id", P.report, { status: "success" }, "command_id", "string"],
      ["an enqueue without name", P.enqueue, { agent_id: "a1" }, "name", "string"],
      [
        "a report whose result lacks signal",
        P.report,
        { ...reportBody("c1"), result: { ...reportBody("c1").result, signal: undefined } },
        "result.signal",
        "string",
      ],
    ] as const
  ) {
    await t.step(label, async () => {
      const response = path === P.enqueue
        ? await d.admin("POST", path, body)
        : await d.agent({ path, body });
      assert.equal(response.status, 400);
      const answer = await json(response);
      const message = `is required (expected ${expected})`;
      assert.equal(answer.error, `field "${field}": ${message}`);
      assert.deepEqual((answer.details as unknown[])[0], { field, message });
    });
  }
});

Deno.test("an unknown field of a strict body is named as the field, not as the body", async (t) => {
  await using d = await makeDashboard();
  const cases = [
    ["a token of one's own for a new agent", "/api/v1/agents", { id: "a9", token: "x" }, "token"],
    [
      "a run with a field it has not",
      "/api/v1/runs",
      { name: "echo hi", target: { agents: ["a1"] }, max_concurency: 2 },
      "max_concurency",
    ],
    [
      "a run target with a part it has not",
      "/api/v1/runs",
      { name: "echo hi", target: { agents: ["a1"], label: { role: "web" } } },
      "target.label",
    ],
  ] as const;
  for (const [label, path, body, field] of cases) {
    await t.step(label, async () => {
      const response = await d.admin("POST", path, body);
      assert.equal(response.status, 400);
      const answer = await json(response);
      const message = "is not a field of this object";
      assert.equal(answer.error, `field "${field}": ${message}`);
      assert.deepEqual(answer.details, [{ field, message }]);
    });
  }
  await t.step("two unknown fields are two details", async () => {
    const response = await d.admin("POST", "/api/v1/agents", { id: "a9", token: "x", owner: "y" });
    const answer = await json(response);
    assert.equal(response.status, 400);
    assert.deepEqual((answer.details as { field: string }[]).map((d) => d.field), [
      "token",
      "owner",
    ]);
  });
});

Deno.test("a report carrying more output than an agent keeps is stored as the agent would keep it", async (t) => {
  await using d = await makeDashboard();
  /** Enqueues, delivers and acks a1's command `id`; returns its attempt. */
  const deliver = async (id: string) => {
    const enqueued = await d.admin("POST", P.enqueue, { id, name: "cat big.log", agent_id: "a1" });
    assert.equal(enqueued.status, 202);
    await enqueued.body?.cancel();
    const wait = await d.agent({ path: P.wait() });
    const { attempt } = await json(wait);
    const ack = await d.agent({ path: P.ack, body: { command_id: id, attempt } });
    assert.equal(ack.status, 200);
    await ack.body?.cancel();
    return attempt as number;
  };
  const bytes = new Uint8Array(200_000).map((_, i) => (i * 7) % 256);
  const big = (id: string, attempt: number) =>
    reportBody(id, {
      attempt,
      status: "failed",
      result: {
        exit_code: 1,
        signal: null,
        duration_secs: 1,
        stdout: `a${"é".repeat(250_000)}end\n`,
        stderr: toBase64(bytes),
        stderr_encoding: "base64",
        stdout_truncated_bytes: 5,
        stderr_truncated_bytes: 0,
      },
      error: "e".repeat(150_000),
    });

  await t.step(
    "each stream keeps its first and last 32 KiB; the error its first 8 Ki characters",
    async () => {
      const attempt = await deliver("big-1");
      const report = await d.agent({ path: P.report, body: big("big-1", attempt) });
      assert.equal(report.status, 200, await report.clone().text());
      await report.body?.cancel();
      const command = await json(await d.admin("GET", "/api/v1/commands/big-1"));
      const result = command.result as Record<string, unknown>;
      const stdout = result.stdout as string;
      const sent = 1 + 500_000 + 4;
      // The head ends before the "é" its last byte would cut in two.
      const dropped = sent - (32 * 1024 - 1) - 32 * 1024;
      assert.ok(stdout.startsWith(`a${"é".repeat(16 * 1024 - 1)}\n[status: `));
      assert.ok(
        stdout.includes(`\n[status: ${dropped} bytes dropped here]\n`),
        stdout.slice(16 * 1024 - 5, 16 * 1024 + 60),
      );
      assert.ok(stdout.endsWith("éend\n"));
      assert.equal(result.stdout_truncated_bytes, 5 + dropped);
      const stderr = fromBase64(result.stderr as string);
      assert.equal(result.stderr_encoding, "base64");
      assert.deepEqual(stderr.subarray(0, 32 * 1024), bytes.subarray(0, 32 * 1024));
      assert.deepEqual(stderr.subarray(32 * 1024), bytes.subarray(bytes.length - 32 * 1024));
      assert.equal(result.stderr_truncated_bytes, bytes.length - 64 * 1024);
      const error = command.error as string;
      assert.ok(error.length < 8 * 1024 + 64, `error of ${error.length} characters`);
      assert.ok(error.endsWith(`[status: ${150_000 - 8 * 1024} characters dropped]`));
    },
  );

  await t.step("the same report sent again is its duplicate, not a conflict", async () => {
    const again = await d.agent({ path: P.report, body: big("big-1", 1) });
    assert.equal(again.status, 200, await again.clone().text());
    assert.equal((await json(again)).duplicate, true);
  });

  await t.step("a list of such commands stays within what they keep", async () => {
    for (let i = 2; i <= 10; i++) {
      const attempt = await deliver(`big-${i}`);
      const report = await d.agent({ path: P.report, body: big(`big-${i}`, attempt) });
      assert.equal(report.status, 200);
      await report.body?.cancel();
    }
    const list = await d.admin("GET", "/api/v1/commands?limit=10");
    assert.equal(list.status, 200);
    const size = (await list.text()).length;
    assert.ok(size < 10 * 300_000, `a list of 10 is ${size} characters`);
  });

  await t.step(
    "a signal name keeps its first 64 characters; a real one is kept as sent",
    async () => {
      for (
        const [id, signal, kept] of [
          [
            "sig-1",
            `SIG${"X".repeat(900_000)}`,
            `SIG${"X".repeat(61)} [status: 899939 characters dropped]`,
          ],
          ["sig-2", "SIGKILL", "SIGKILL"],
        ]
      ) {
        const attempt = await deliver(id);
        const body = reportBody(id, { attempt, status: "killed" });
        Object.assign(body.result as Record<string, unknown>, { exit_code: null, signal });
        const report = await d.agent({ path: P.report, body });
        assert.equal(report.status, 200);
        await report.body?.cancel();
        const command = await json(await d.admin("GET", `/api/v1/commands/${id}`));
        assert.equal((command.result as Record<string, unknown>).signal, kept);
      }
    },
  );

  await t.step(
    "output within the bounds, with the agent's own marker, is kept as sent",
    async () => {
      const attempt = await deliver("small-1");
      const stdout = `${"a".repeat(32 * 1024)}\n[status: 99 bytes dropped here]\n${
        "b".repeat(32 * 1024)
      }`;
      const body = reportBody("small-1", { attempt });
      Object.assign(body.result as Record<string, unknown>, { stdout, stdout_truncated_bytes: 99 });
      const report = await d.agent({ path: P.report, body });
      assert.equal(report.status, 200);
      await report.body?.cancel();
      const result = (await json(await d.admin("GET", "/api/v1/commands/small-1")))
        .result as Record<string, unknown>;
      assert.equal(result.stdout, stdout);
      assert.equal(result.stdout_truncated_bytes, 99);
    },
  );
});

Deno.test("params of more than 64 KiB of JSON are refused at enqueue and in runs, from an agent too", async (t) => {
  await using d = await makeDashboard();
  /** Params whose JSON is `bytes` long. */
  const params = (bytes: number) => {
    const empty = JSON.stringify({ metadata: { pad: "" } }).length;
    return { metadata: { pad: "p".repeat(bytes - empty) } };
  };
  const tooLarge = params(MAX_PARAMS_BYTES + 1);
  const cases: Array<[string, () => Promise<Response>]> = [
    [
      "an operator's enqueue",
      () =>
        d.admin("POST", P.enqueue, { id: "p-1", name: "echo", agent_id: "a1", params: tooLarge }),
    ],
    [
      "an agent's enqueue for itself",
      () => d.agent({ path: P.enqueue, body: { id: "p-2", name: "echo", params: tooLarge } }),
    ],
    ["a run", () =>
      d.admin("POST", "/api/v1/runs", {
        id: "run-p",
        name: "echo",
        target: { agents: ["a1"] },
        params: tooLarge,
      })],
  ];
  for (const [label, send] of cases) {
    await t.step(label, async () => {
      const response = await send();
      const body = await json(response);
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.match(
        String(body.error),
        new RegExp(
          `^field "params": must be at most ${MAX_PARAMS_BYTES} bytes as JSON, got ${
            MAX_PARAMS_BYTES + 1
          }`,
        ),
      );
    });
  }
  await t.step("nothing was stored", async () => {
    assert.equal(await d.store.getCommand("p-1"), null);
    assert.equal(await d.store.getCommand("p-2"), null);
    assert.equal(await d.store.getRun("run-p"), null);
  });
  await t.step("64 KiB of JSON is accepted", async () => {
    const response = await d.admin("POST", P.enqueue, {
      id: "p-3",
      name: "echo",
      agent_id: "a1",
      params: params(MAX_PARAMS_BYTES),
    });
    assert.equal(response.status, 202, await response.text());
  });
});

Deno.test("a report's exit code beyond a signed 32-bit integer is a 400 naming it, and the command waits for a good one", async (t) => {
  await using d = await makeDashboard();
  const enqueued = await d.admin("POST", P.enqueue, {
    id: "big-exit",
    name: "echo hi",
    agent_id: "a1",
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const waited = await d.agent({ path: P.wait() });
  assert.equal(waited.status, 200);
  await waited.body?.cancel();
  const result = reportBody("big-exit").result;
  for (
    const [exitCode, message] of [
      [2 ** 31, "must be at most 2147483647"],
      [-(2 ** 31) - 1, "must be at least -2147483648"],
    ] as const
  ) {
    await t.step(String(exitCode), async () => {
      const response = await d.agent({
        path: P.report,
        body: reportBody("big-exit", { result: { ...result, exit_code: exitCode } }),
      });
      assert.equal(response.status, 400);
      assert.equal((await json(response)).error, `field "result.exit_code": ${message}`);
    });
  }
  await t.step("the edges of the range are taken", async () => {
    const response = await d.agent({
      path: P.report,
      body: reportBody("big-exit", {
        status: "failed",
        result: { ...result, exit_code: -(2 ** 31) },
      }),
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await json(response), { accepted: true });
    const command = await json(await d.admin("GET", "/api/v1/commands/big-exit"));
    assert.equal(command.status, "failed");
    assert.equal((command.result as Record<string, unknown>).exit_code, -(2 ** 31));
  });
});

Deno.test("a report's time with more than nanoseconds is a 400 naming it; nanoseconds are kept as sent", async (t) => {
  await using d = await makeDashboard();
  const enqueued = await d.admin("POST", P.enqueue, {
    id: "long-time",
    name: "echo hi",
    agent_id: "a1",
  });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const waited = await d.agent({ path: P.wait() });
  assert.equal(waited.status, 200);
  await waited.body?.cancel();
  for (const field of ["started_at", "completed_at"]) {
    await t.step(`${field} with a fraction of 900,000 digits`, async () => {
      const response = await d.agent({
        path: P.report,
        body: reportBody("long-time", { [field]: `2026-01-12T10:00:05.${"1".repeat(900_000)}Z` }),
      });
      assert.equal(response.status, 400);
      assert.equal(
        (await json(response)).error,
        `field "${field}": must have at most 9 digits of a fraction of a second`,
      );
    });
  }
  await t.step("nine digits and an offset are taken as sent", async () => {
    const response = await d.agent({
      path: P.report,
      body: reportBody("long-time", { started_at: "2026-01-12T11:00:05.123456789+01:00" }),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    const command = await json(await d.admin("GET", "/api/v1/commands/long-time"));
    assert.equal(command.started_at, "2026-01-12T11:00:05.123456789+01:00");
  });
});

Deno.test("a report whose attempt is null is taken as one that names no attempt", async () => {
  await using d = await makeDashboard();
  const enqueued = await d.admin("POST", P.enqueue, { id: "n-1", name: "uptime", agent_id: "a1" });
  assert.equal(enqueued.status, 202);
  await enqueued.body?.cancel();
  const wait = await d.agent({ path: P.wait() });
  assert.equal((await json(wait)).id, "n-1");
  const report = await d.agent({ path: P.report, body: reportBody("n-1", { attempt: null }) });
  assert.equal(report.status, 200);
  assert.equal((await json(report)).accepted, true);
  const command = await json(await d.admin("GET", "/api/v1/commands/n-1"));
  assert.equal(command.status, "success");
  assert.equal(command.attempt, 1);

  // A wrong type is still refused, naming the field.
  const bad = await d.agent({ path: P.report, body: reportBody("n-1", { attempt: "1" }) });
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(await json(bad)), /attempt/);
});
