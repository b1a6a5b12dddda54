import assert from "node:assert/strict";
import {
  cancelRun,
  checkHealth,
  type CommandRecord,
  exitCodeOf,
  formatRecord,
  formatTable,
  getRun,
  OperatorClient,
  OperatorError,
} from "../../src/operator/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { closedPort, StubDashboard } from "../_stub_dashboard.ts";

const TOKEN = "admin-token-0123456789abcdef";

Deno.test("operator client enqueues with the seed's headers in dev mode", async () => {
  await using stub = new StubDashboard();
  const client = new OperatorClient({ dashboardUrl: stub.url });
  const answer = await client.enqueue({ agentId: "test-agent", name: "echo hi", id: "cmd-001" });
  assert.deepEqual(answer, { queued: true, id: "cmd-001" });
  const sent = stub.seen[0];
  assert.equal(sent.method, "POST");
  assert.equal(sent.path, "/api/v1/agent/commands/enqueue");
  assert.equal(sent.headers.get("x-agent-id"), "test-agent");
  assert.equal(sent.headers.get("content-type"), "application/json");
  assert.equal(sent.headers.get("authorization"), null);
  assert.deepEqual(sent.body, { id: "cmd-001", name: "echo hi", params: {} });
});

Deno.test("operator client enqueues with the admin token and agent_id in the body", async () => {
  await using stub = new StubDashboard({ adminToken: TOKEN });
  const client = new OperatorClient({ dashboardUrl: stub.url + "/", adminToken: TOKEN });
  const answer = await client.enqueue({
    agentId: "web-1",
    name: "sleep 1",
    params: { timeout_secs: 5, priority: "high" },
  });
  assert.equal(answer.id, "gen-1");
  const sent = stub.seen[0];
  assert.equal(sent.headers.get("authorization"), `Bearer ${TOKEN}`);
  assert.equal(sent.headers.get("x-agent-id"), null);
  assert.deepEqual(sent.body, {
    name: "sleep 1",
    params: { timeout_secs: 5, priority: "high" },
    agent_id: "web-1",
  });
});

Deno.test("operator client refuses an agent id that is not one, sending nothing", async (t) => {
  // In dev mode it went in X-Agent-Id: refused 401 and worded as a missing admin token on a
  // dashboard "not in dev mode", or (a line break) "cannot reach the dashboard".
  await using stub = new StubDashboard();
  for (const adminToken of [undefined, TOKEN]) {
    const client = new OperatorClient({ dashboardUrl: stub.url, adminToken });
    for (const agentId of ["a\nb", "café", "", "web 1", ".."]) {
      await t.step(
        `${adminToken ? "with" : "without"} a token: ${JSON.stringify(agentId)}`,
        async () => {
          const error = await client.enqueue({ agentId, name: "echo hi" }).catch((e) => e);
          assert.ok(error instanceof TypeError, String(error));
          assert.equal(
            error.message,
            `agentId must be 1–128 characters of A-Z a-z 0-9 . _ : -, not only dots, got ${
              JSON.stringify(agentId)
            }`,
          );
        },
      );
    }
  }
  assert.deepEqual(stub.seen, []);
});

Deno.test("operator client reports a duplicate and a conflicting enqueue", async (t) => {
  await using stub = new StubDashboard();
  const client = new OperatorClient({ dashboardUrl: stub.url });
  await client.enqueue({ agentId: "a", name: "echo 1", id: "same" });
  await t.step("same id and body: duplicate", async () => {
    const again = await client.enqueue({ agentId: "a", name: "echo 1", id: "same" });
    assert.equal(again.duplicate, true);
  });
  await t.step("same id, other body: conflict", async () => {
    const error = await client.enqueue({ agentId: "a", name: "echo 2", id: "same" }).then(
      () => assert.fail("no error"),
      (e) => e,
    );
    assert.ok(error instanceof OperatorError);
    assert.equal(error.kind, "conflict");
    assert.equal(error.status, 409);
    assert.match(error.message, /command id exists with another body/);
  });
});

Deno.test("operator client waits through queued, delivered and running to the result", async () => {
  await using stub = new StubDashboard();
  const client = new OperatorClient({ dashboardUrl: stub.url });
  const { id } = await client.enqueue({ agentId: "a", name: "echo hello" });
  const seen: string[] = [];
  const record = await client.waitForFinal(id, {
    initialIntervalMs: 5,
    onProgress: (r, elapsedMs) => {
      assert.ok(elapsedMs >= 0);
      seen.push(r.status);
    },
  });
  assert.deepEqual(seen, ["queued", "delivered", "running", "success"]);
  assert.equal(record.status, "success");
  assert.equal(record.result?.stdout, "hello\n");
  assert.equal(exitCodeOf(record), 0);
});

Deno.test("operator client rides out a dashboard answering 503 while waiting", async () => {
  await using stub = new StubDashboard({ lifecycle: ["running", "failed"], failFirst: 2 });
  const client = new OperatorClient({ dashboardUrl: stub.url });
  const { id } = await client.enqueue({ agentId: "a", name: "ls /nope" });
  stub.commands.get(id)!.status = "running";
  const record = await client.waitForFinal(id, { initialIntervalMs: 5 });
  assert.equal(record.status, "failed");
  assert.equal(stub.seen.filter((r) => r.method === "GET").length, 4);
});

Deno.test("operator client gives up waiting after the outage budget", async () => {
  await using stub = new StubDashboard({ failFirst: 1_000 });
  const client = new OperatorClient({ dashboardUrl: stub.url });
  const { id } = await client.enqueue({ agentId: "a", name: "echo x" });
  const error = await client.waitForFinal(id, { maxOutageMs: 600 }).then(
    () => assert.fail("no error"),
    (e) => e,
  );
  assert.ok(error instanceof OperatorError);
  assert.equal(error.kind, "server");
  assert.match(error.message, /HTTP 503: restarting .*still failing after 0\.6 s/);
});

Deno.test("operator client stops waiting when its signal aborts", async () => {
  await using stub = new StubDashboard({ lifecycle: ["queued"] });
  const client = new OperatorClient({ dashboardUrl: stub.url });
  const { id } = await client.enqueue({ agentId: "a", name: "echo x" });
  const controller = new AbortController();
  const waiting = client.waitForFinal(id, { signal: controller.signal, initialIntervalMs: 5 });
  setTimeout(() => controller.abort(new Error("enough")), 50);
  await assert.rejects(waiting, /enough/);
});

Deno.test("operator client words its failures for a user", async (t) => {
  await t.step("connection refused names the URL", async () => {
    const url = `http://127.0.0.1:${closedPort()}`;
    const client = new OperatorClient({ dashboardUrl: url });
    const error = await client.getCommand("x").then(() => assert.fail("no error"), (e) => e);
    assert.ok(error instanceof OperatorError);
    assert.equal(error.kind, "connection");
    assert.equal(error.exitCode, 1);
    // The port was free a moment ago; a test running beside this one may have taken it since
    // (and reset the connection): either way the message names the URL and what happened.
    assert.match(
      error.message,
      new RegExp(
        `cannot reach the dashboard at ${url}: (connection refused|the connection was reset)`,
      ),
    );
  });
  await t.step("a refused certificate says why, not 'is it running there?'", async () => {
    const client = new OperatorClient({
      dashboardUrl: "https://dash.example:5000",
      fetch: () =>
        Promise.reject(
          new TypeError("fetch failed", {
            cause: new Error("client error (Connect): invalid peer certificate: UnknownIssuer"),
          }),
        ),
    });
    const error = await client.getCommand("x").then(() => assert.fail("no error"), (e) => e);
    assert.ok(error instanceof OperatorError);
    assert.match(
      error.message,
      /^cannot reach the dashboard at https:\/\/dash\.example:5000: the TLS handshake failed: the dashboard's certificate is not issued by a CA this machine trusts .*DENO_CERT=\/path\/to\/ca\.pem$/,
    );
  });
  await using stub = new StubDashboard({ adminToken: TOKEN });
  await t.step("no admin token: one is needed, not 'the admin token' refused", async () => {
    const client = new OperatorClient({ dashboardUrl: stub.url });
    const error = await client.getCommand("x").then(() => assert.fail("no error"), (e) => e);
    assert.ok(error instanceof OperatorError);
    assert.equal(error.kind, "auth");
    assert.match(
      error.message,
      /^the dashboard refused a request without an admin token \(HTTP 401[^)]*\); no admin token is set and the dashboard is not in dev mode; set STATUS_ADMIN_TOKEN/,
    );
  });
  await t.step("a wrong admin token", async () => {
    const client = new OperatorClient({
      dashboardUrl: stub.url,
      adminToken: "wrong-token-0123456789",
    });
    const error = await client.listCommands().then(() => assert.fail("no error"), (e) => e);
    assert.equal(error.kind, "auth");
    assert.equal(error.status, 401);
    assert.match(
      error.message,
      /^the dashboard refused the admin token \(HTTP 401: admin token required\)/,
    );
    assert.doesNotMatch(error.message, /wrong-token/);
  });
  await t.step("no admin token on a dashboard outside dev mode", async () => {
    const client = new OperatorClient({ dashboardUrl: stub.url });
    const error = await client.getCommand("x").then(() => assert.fail("no error"), (e) => e);
    assert.equal(error.kind, "auth");
    assert.match(error.message, /no admin token is set/);
  });
  await t.step("an unknown command", async () => {
    const client = new OperatorClient({ dashboardUrl: stub.url, adminToken: TOKEN });
    const error = await client.getCommand("nope").then(() => assert.fail("no error"), (e) => e);
    assert.equal(error.kind, "not_found");
    assert.equal(error.message, "no command nope");
  });
  await t.step("a body that is not a command", async () => {
    await using other = {
      server: Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => Response.json({ hello: "world" }),
      ),
      async [Symbol.asyncDispose]() {
        await this.server.shutdown();
      },
    };
    const client = new OperatorClient({
      dashboardUrl: `http://127.0.0.1:${other.server.addr.port}`,
    });
    const error = await client.getCommand("x").then(() => assert.fail("no error"), (e) => e);
    assert.equal(error.kind, "invalid_answer");
    assert.match(error.message, /unexpected body at "id"/);
  });
  await t.step("a password in the URL is never shown", async () => {
    const url = `http://ops:hunter22@127.0.0.1:${closedPort()}`;
    const client = new OperatorClient({ dashboardUrl: url });
    const error = await client.getCommand("x").then(() => assert.fail("no error"), (e) => e);
    assert.match(error.message, /^cannot reach the dashboard at http:\/\/ops:\*\*\*@127/);
    assert.doesNotMatch(error.message, /hunter22/);
    assert.throws(
      () => new OperatorClient({ dashboardUrl: "ftp://ops:hunter22@x" }),
      /got "ftp:\/\/ops:\*\*\*@x\/"/,
    );
  });
  await t.step("a bad URL", () => {
    assert.throws(() => new OperatorClient({ dashboardUrl: "ftp://x" }), TypeError);
    // fetch sent them as Basic credentials: the dashboard refused every request, and the client
    // said "the dashboard refused the admin token".
    assert.throws(
      () =>
        new OperatorClient({ dashboardUrl: "http://ops:hunter22@x", adminToken: "t".repeat(20) }),
      (e: Error) =>
        e instanceof TypeError && /user name or password beside an admin token/.test(e.message) &&
        e.message.includes('"http://ops:***@x/"') && !e.message.includes("hunter22"),
    );
    assert.throws(() => new OperatorClient({ dashboardUrl: "not a url" }), /got "not a url"/);
  });
  await t.step("a timeout or retry count out of range", () => {
    // An infinite timeout passed, then every request threw AbortSignal.timeout's bare TypeError,
    // not an OperatorError; a negative or NaN retry count was taken as it was.
    for (const requestTimeoutMs of [0, -1, NaN, Infinity]) {
      assert.throws(
        () => new OperatorClient({ dashboardUrl: "http://x", requestTimeoutMs }),
        new TypeError(`requestTimeoutMs must be a finite number above 0, got ${requestTimeoutMs}`),
      );
    }
    for (const maxRateLimitRetries of [-1, 1.5, NaN]) {
      assert.throws(
        () => new OperatorClient({ dashboardUrl: "http://x", maxRateLimitRetries }),
        new TypeError(
          `maxRateLimitRetries must be a whole number of at least 0, got ${maxRateLimitRetries}`,
        ),
      );
    }
    assert.ok(new OperatorClient({ dashboardUrl: "http://x", maxRateLimitRetries: 0 }));
  });
});

Deno.test("checkHealth refuses a timeout out of range instead of reporting it unreachable", async () => {
  // "not reachable: Failed to execute 'AbortSignal.timeout': ..." for a dashboard that answers.
  await using stub = new StubDashboard();
  for (const timeoutMs of [0, -1, NaN, Infinity]) {
    await assert.rejects(
      checkHealth({ dashboardUrl: stub.url, timeoutMs }),
      new RangeError(`timeoutMs must be a finite number above 0, got ${timeoutMs}`),
    );
  }
  assert.deepEqual(stub.seen, []);
});

Deno.test("a request timeout beyond 24.8 days is kept, not fired at once", async () => {
  // AbortSignal.timeout fires a delay above 2^31 - 1 ms after 1 ms: every request of a client made
  // with requestTimeoutMs 30 days failed at once with "did not answer within 2592000 s", and
  // checkHealth with such a timeoutMs reported an answering dashboard unreachable.
  await using stub = new StubDashboard();
  const thirtyDaysMs = 30 * 86_400_000;
  const client = new OperatorClient({ dashboardUrl: stub.url, requestTimeoutMs: thirtyDaysMs });
  const answer = await client.enqueue({ agentId: "web-1", name: "echo hi", id: "c1" });
  assert.equal(answer.id, "c1");
  const report = await checkHealth({ dashboardUrl: stub.url, timeoutMs: thirtyDaysMs });
  const dashboard = report.checks.find((c) => c.name === "dashboard");
  assert.equal(dashboard?.outcome, "ok", JSON.stringify(report.checks));
});

Deno.test("operator client lists newest first with filters, bare or wrapped", async (t) => {
  for (const wrapList of [false, true]) {
    await t.step(wrapList ? "wrapped" : "bare", async () => {
      await using stub = new StubDashboard({ wrapList });
      const client = new OperatorClient({ dashboardUrl: stub.url });
      await client.enqueue({ agentId: "a", name: "echo 1", id: "c1" });
      await client.enqueue({ agentId: "b", name: "echo 2", id: "c2" });
      await client.enqueue({ agentId: "a", name: "echo 3", id: "c3" });
      assert.deepEqual((await client.listCommands()).map((c) => c.id), ["c3", "c2", "c1"]);
      const filtered = await client.listCommands({ agentId: "a", status: "queued", limit: 1 });
      assert.deepEqual(filtered.map((c) => c.id), ["c3"]);
      assert.equal(stub.seen.at(-1)?.path, "/api/v1/commands?agent_id=a&status=queued&limit=1");
    });
  }
});

Deno.test("operator client cancels queued and delivered commands, not final ones", async () => {
  await using stub = new StubDashboard();
  const client = new OperatorClient({ dashboardUrl: stub.url });
  await client.enqueue({ agentId: "a", name: "sleep 9", id: "q" });
  assert.equal((await client.cancel("q")).outcome, "cancelled");
  await client.enqueue({ agentId: "a", name: "sleep 9", id: "d" });
  stub.commands.get("d")!.status = "running";
  assert.equal((await client.cancel("d")).outcome, "requested");
  stub.commands.get("d")!.status = "success";
  const error = await client.cancel("d").then(() => assert.fail("no error"), (e) => e);
  assert.equal(error.kind, "conflict");
  const missing = await client.cancel("zz").then(() => assert.fail("no error"), (e) => e);
  assert.equal(missing.message, "no command zz");
});

Deno.test("exitCodeOf maps final statuses to shell-like exit codes", () => {
  const of = (status: string, exit_code?: number | null) =>
    exitCodeOf({ status, result: exit_code === undefined ? null : { exit_code } });
  assert.equal(of("success", 0), 0);
  assert.equal(of("failed", 3), 3);
  assert.equal(of("failed", null), 1);
  assert.equal(of("failed", 0), 1);
  // A code an exit status cannot carry (another agent's, Windows' 32-bit ones): a process exit
  // keeps its low 8 bits, so 256 would read as success and 300 as 44.
  for (const code of [256, 300, 512, -1, -1073741819, 2147483647]) {
    assert.equal(of("failed", code), 1, String(code));
  }
  assert.equal(of("failed", 255), 255);
  // A success with such a code is still a success (-1 would exit 255).
  for (const code of [-1, 256, 300]) assert.equal(of("success", code), 0, String(code));
  assert.equal(of("rejected"), 126);
  assert.equal(of("timeout", null), 124);
  assert.equal(of("killed", null), 137);
  for (const status of ["lost", "interrupted", "cancelled"]) assert.equal(of(status), 1);
  // Ended by a signal: 128 + its number, as status exec and a shell say.
  const bySignal = (signal: string) =>
    exitCodeOf({ status: "failed", result: { exit_code: null, signal } });
  assert.equal(bySignal("SIGSEGV"), 139);
  assert.equal(bySignal("SIGTERM"), 143);
  assert.equal(bySignal("SIGNOPE"), 1);
  assert.equal(bySignal("hasOwnProperty"), 1);
});

Deno.test("formatters render a record and a table", () => {
  const record: CommandRecord = {
    id: "cmd-001",
    agent_id: "test-agent",
    name: "echo Hello from dashboard",
    params: {},
    status: "success",
    attempt: 1,
    created_at: "2026-01-12T10:00:05.000Z",
    delivered_at: "2026-01-12T10:00:05.100Z",
    completed_at: "2026-01-12T10:00:05.124Z",
    result: {
      exit_code: 0,
      signal: null,
      duration_secs: 0.004,
      stdout: "Hello from dashboard\n",
      stderr: "",
      stdout_truncated_bytes: 10,
      stderr_truncated_bytes: 0,
    },
    error: null,
  };
  const lines = formatRecord(record);
  assert.ok(lines.includes("status:    success, exit code 0"));
  assert.ok(lines.includes("--- stdout ---"));
  assert.ok(lines.includes("Hello from dashboard"));
  assert.ok(lines.includes("stderr:    (empty)"));
  assert.ok(lines.some((l) => /10 bytes of stdout were dropped/.test(l)));
  const table = formatTable([record, { ...record, id: "cmd-000", status: "queued", result: null }]);
  assert.match(table[0], /^ID\s+AGENT\s+STATUS\s+EXIT\s+CREATED\s+COMMAND$/);
  assert.match(table[1], /^cmd-001\s+test-agent\s+success\s+0\s+2026-01-12T10:00:05Z\s+echo Hello/);
  assert.match(table[2], /^cmd-000\s+test-agent\s+queued\s+2026/);
});

Deno.test("checkHealth tells a dashboard whose store is down or full from one it cannot reach", async (t) => {
  const answering = (response: () => Response) => ({
    dashboardUrl: "http://dashboard.test",
    fetch: (() => Promise.resolve(response())) as typeof fetch,
  });
  const cases: Array<[string, () => Response, string]> = [
    [
      "a full store",
      () =>
        Response.json({
          status: "store_full",
          store: { status: "full", since: "2026-01-12T10:00:00.000Z", error: "disk full" },
        }, { status: 503 }),
      "answers (HTTP 503), but its store is full since 2026-01-12T10:00:00.000Z: disk full",
    ],
    [
      "a store that is down",
      () => Response.json({ status: "unavailable", store: { status: "down" } }, { status: 503 }),
      "answers (HTTP 503), but its store is down",
    ],
    [
      "another program's JSON",
      () => Response.json({ hello: 1 }),
      'answered HTTP 200 without "status": "ok"; is it a status dashboard?',
    ],
    [
      "a page",
      () => new Response("<html>Internal</html>", { status: 500 }),
      "answered HTTP 500, but not as a status dashboard (no JSON /health)",
    ],
  ];
  for (const [name, response, message] of cases) {
    await t.step(name, async () => {
      const report = await checkHealth(answering(response));
      assert.equal(report.ok, false);
      assert.deepEqual(report.checks, [{ name: "dashboard", outcome: "failed", message }]);
    });
  }
  await t.step("no answer before the deadline", async () => {
    const report = await checkHealth({
      dashboardUrl: "http://dashboard.test",
      timeoutMs: 2_500,
      fetch: (() =>
        Promise.reject(
          new DOMException("The operation was aborted due to timeout", "TimeoutError"),
        )) as typeof fetch,
    });
    assert.equal(report.checks[0].message, "not reachable: no answer within 2.5 s");
  });
});

/** An answer whose body never ends (a broken or hostile server): 64 KiB chunks, counted. */
function endlessAnswer(status = 200): { response: Response; chunks: () => number } {
  let chunks = 0;
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      chunks++;
      controller.enqueue(chunk);
    },
  });
  return {
    response: new Response(body, { status, headers: { "Content-Type": "application/json" } }),
    chunks: () => chunks,
  };
}

Deno.test("an answer that never ends is read only up to a bound, by the client and by checkHealth", async (t) => {
  await t.step("the operator client", async () => {
    const endless = endlessAnswer();
    const client = new OperatorClient({
      dashboardUrl: "http://dashboard.test",
      fetch: (() => Promise.resolve(endless.response)) as typeof fetch,
      maxAnswerBytes: 1024 * 1024,
    });
    const error = await client.getCommand("cmd-1").catch((e) => e);
    assert.ok(error instanceof OperatorError, String(error));
    assert.equal(error.kind, "invalid_answer");
    assert.match(
      error.message,
      /^the dashboard at http:\/\/dashboard\.test answered GET \/api\/v1\/commands\/cmd-1 with more than 1048576 bytes; the rest was not read/,
    );
    assert.ok(endless.chunks() <= 20, `${endless.chunks()} chunks read`);
  });
  await t.step("checkHealth", async () => {
    const endless = endlessAnswer();
    const report = await checkHealth({
      dashboardUrl: "http://dashboard.test",
      fetch: (() => Promise.resolve(endless.response)) as typeof fetch,
    });
    assert.equal(report.ok, false);
    assert.match(report.checks[0].message, /larger than 1048576 bytes; is it a status dashboard\?/);
    assert.ok(endless.chunks() <= 20, `${endless.chunks()} chunks read`);
  });
});

Deno.test("a 404 of a path the dashboard has no route for is not taken for an unknown command, agent or run", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  const real = new OperatorClient({ dashboardUrl: server.url });
  await real.enqueue({ agentId: "web-1", name: "echo hi", id: "c1" });
  // A path prefix the dashboard does not have (a typo, or a proxy's prefix given twice).
  const prefixed = new OperatorClient({ dashboardUrl: `${server.url}/status` });
  const noRoute = (method: string, path: string) =>
    new RegExp(
      `^the dashboard at ${server.url}/status has no ${method} ${path} \\(HTTP 404: no route ` +
        `for ${method} /status${path}\\); is DASHBOARD_URL \\(or --dashboard-url\\) the ` +
        "dashboard's base URL\\?$",
    );
  const failure = (promise: Promise<unknown>) =>
    promise.then(() => assert.fail("no error"), (e) => e as OperatorError);
  const cases: Array<[string, () => Promise<unknown>, string, string]> = [
    ["a command that exists", () => prefixed.getCommand("c1"), "GET", "/api/v1/commands/c1"],
    ["its cancel", () => prefixed.cancel("c1"), "POST", "/api/v1/commands/c1/cancel"],
    [
      "an enqueue",
      () => prefixed.enqueue({ agentId: "web-1", name: "echo hi" }),
      "POST",
      "/api/v1/agent/commands/enqueue",
    ],
    [
      "an agent's rotation",
      () => prefixed.rotateAgentToken("web-1"),
      "POST",
      "/api/v1/agents/web-1/rotate",
    ],
    ["an agent's removal", () => prefixed.removeAgent("web-1"), "DELETE", "/api/v1/agents/web-1"],
    ["a run", () => getRun(prefixed, "r1"), "GET", "/api/v1/runs/r1"],
    ["a run's cancel", () => cancelRun(prefixed, "r1"), "POST", "/api/v1/runs/r1/cancel"],
  ];
  for (const [what, call, method, path] of cases) {
    await t.step(what, async () => {
      const error = await failure(call());
      assert.ok(error instanceof OperatorError);
      assert.equal(error.kind, "not_found");
      assert.equal(error.status, 404);
      assert.match(error.message, noRoute(method, path));
    });
  }
  await t.step("a proxy's page for a 404", async () => {
    await using proxy = {
      server: Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response("<html>404 Not Found</html>", { status: 404 }),
      ),
      async [Symbol.asyncDispose]() {
        await this.server.shutdown();
      },
    };
    const url = `http://127.0.0.1:${proxy.server.addr.port}`;
    const client = new OperatorClient({ dashboardUrl: url });
    const command = await failure(client.getCommand("c1"));
    assert.equal(
      command.message,
      `the dashboard at ${url} has no GET /api/v1/commands/c1 (HTTP 404: <html>404 Not ` +
        "Found</html>); is DASHBOARD_URL (or --dashboard-url) the dashboard's base URL?",
    );
    const run = await failure(getRun(client, "r1"));
    assert.match(run.message, /has no GET \/api\/v1\/runs\/r1 /);
    const agent = await failure(client.rotateAgentToken("web-1"));
    assert.match(agent.message, /has no POST \/api\/v1\/agents\/web-1\/rotate /);
  });
  await t.step("the dashboard's own 404s still name what does not exist", async () => {
    assert.equal((await failure(real.getCommand("nope"))).message, "no command nope");
    assert.equal((await failure(getRun(real, "r9"))).message, "run r9 does not exist");
    assert.equal(
      (await failure(real.rotateAgentToken("web-9"))).message,
      'agent web-9 does not exist; add it with "status agents add web-9"',
    );
  });
});

Deno.test("checkHealth reads the dashboard's base URL as the operator client does", async (t) => {
  await using server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
  });
  for (const url of [`${server.url}/?x=1`, `${server.url}#top`, `${server.url}/?x=1#top`]) {
    await t.step(
      `${url}: the query and fragment are left out, as by every other command`,
      async () => {
        const report = await checkHealth({ dashboardUrl: url, agentId: "web-1" });
        assert.equal(report.url, server.url);
        assert.deepEqual(
          report.checks.map((check) => [check.name, check.outcome]),
          [["dashboard", "ok"], ["clock", "ok"], ["operator", "ok"], ["agent", "ok"]],
        );
        await new OperatorClient({ dashboardUrl: url }).listCommands();
      },
    );
  }
  const noRoute = "answered HTTP 404: it has no /health; is DASHBOARD_URL (or --dashboard-url) " +
    "the dashboard's base URL?";
  await t.step("a path prefix the dashboard does not have", async () => {
    const report = await checkHealth({ dashboardUrl: `${server.url}/status` });
    assert.equal(report.ok, false);
    assert.deepEqual(report.checks, [{ name: "dashboard", outcome: "failed", message: noRoute }]);
  });
  await t.step("a proxy's 404 page", async () => {
    await using proxy = {
      server: Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response("<html>404 Not Found</html>", { status: 404 }),
      ),
      async [Symbol.asyncDispose]() {
        await this.server.shutdown();
      },
    };
    const report = await checkHealth({
      dashboardUrl: `http://127.0.0.1:${proxy.server.addr.port}`,
    });
    assert.deepEqual(report.checks, [{ name: "dashboard", outcome: "failed", message: noRoute }]);
  });
});

Deno.test("the library refuses a dashboard URL with a control character or space inside, sending nothing", async (t) => {
  // The URL parser drops a line break or a tab without a word: "http://127.0.0.1\n:5000" was
  // taken as http://127.0.0.1:5000, another dashboard than the one written.
  const { checkHealth, runAgent } = await import("../../mod.ts");
  let sent = 0;
  const fetch = () => {
    sent++;
    return Promise.resolve(Response.json({}));
  };
  const cases: Array<[string, string]> = [
    ["http://127.0.0.1\n:5000", 'the control character "\\n"'],
    ["http://127.0.0.1:5000/\tstatus", 'the control character "\\t"'],
    ["http://127.0.0.1:5000/a b", "a space"],
  ];
  for (const [url, what] of cases) {
    const said = new RegExp(
      `^TypeError: dashboard ?U(?:RL|rl) ${
        JSON.stringify(url).replace(/[\\[\].?]/g, "\\$&")
      } cannot be taken: it holds ${what.replace(/\\/g, "\\\\")}`,
    );
    await t.step(`${JSON.stringify(url)}`, async () => {
      assert.throws(() => new OperatorClient({ dashboardUrl: url, fetch }), said);
      await assert.rejects(checkHealth({ dashboardUrl: url, fetch }), said);
      await assert.rejects(
        runAgent(
          { dashboardUrl: url, agentId: "a1", heartbeat: false, fetch },
          AbortSignal.abort(),
        ),
        said,
      );
    });
  }
  await t.step("white space around it is not inside it", () => {
    const client = new OperatorClient({ dashboardUrl: " http://127.0.0.1:5000\n", fetch });
    assert.equal(client.dashboardUrl, "http://127.0.0.1:5000");
  });
  assert.equal(sent, 0);
});

Deno.test("a dashboard URL the library refuses is shown without its password", async (t) => {
  const { runAgent } = await import("../../mod.ts");
  for (const url of ["http://ops:s3cret-pw@127.0.0.1:99999", "ftp://ops:s3cret-pw@127.0.0.1"]) {
    await t.step(url.replace("s3cret-pw", "***"), async () => {
      const refused = (error: Error) => {
        assert.match(error.message, /must be an http:\/\/ or https:\/\/ URL, got "\S+:\*\*\*@/);
        assert.doesNotMatch(error.message, /s3cret-pw/);
        return true;
      };
      assert.throws(() => new OperatorClient({ dashboardUrl: url }), refused);
      await assert.rejects(
        runAgent({ dashboardUrl: url, agentId: "a1", heartbeat: false }, AbortSignal.abort()),
        refused,
      );
    });
  }
});

Deno.test("operator client refuses a command whose status is not a status word", async () => {
  // A status is printed in many lines (cancel, result, --wait): a hostile dashboard's must not
  // forge one or drive the terminal.
  const client = new OperatorClient({
    dashboardUrl: "http://dashboard.test",
    fetch: (() =>
      Promise.resolve(Response.json({
        id: "cmd-1",
        name: "echo hi",
        status: "success\n\u001b]0;pwned\u0007",
      }))) as typeof fetch,
  });
  const error = await client.getCommand("cmd-1").catch((e) => e);
  assert.ok(error instanceof OperatorError, String(error));
  assert.equal(error.kind, "invalid_answer");
  assert.match(error.message, /unexpected body at "status": must be a status word/);
});

Deno.test("checkHealth accepts no credentials on the word of another program that answers every path", async (t) => {
  // Another web app at DASHBOARD_URL: a /health of its own, and a page (or some JSON) for every
  // other address. The checks passed before, and status health exited 0.
  const others: Array<[string, () => Response]> = [
    ["a page for every path", () => new Response("<!doctype html><p>app</p>")],
    ["the same JSON for every path", () => Response.json({ ok: true })],
  ];
  for (const [name, other] of others) {
    await t.step(name, async () => {
      const report = await checkHealth({
        dashboardUrl: "http://dashboard.test",
        adminToken: "admin-token-0123456789abcdef",
        agentId: "web-1",
        agentToken: "agent-token-0123456789abcdef",
        fetch: ((input: string) =>
          Promise.resolve(
            new URL(input).pathname === "/health" ? Response.json({ status: "ok" }) : other(),
          )) as typeof fetch,
      });
      assert.equal(report.ok, false);
      assert.deepEqual(report.checks.slice(2), [{
        name: "operator",
        outcome: "failed",
        message: 'answered /api/v1/commands with HTTP 200 but no list of commands ({"commands": ' +
          "[...]}); is it a status dashboard?",
      }, {
        name: "agent",
        outcome: "failed",
        message: 'answered /api/v1/agent/ping with HTTP 200 but not {"agent_id": "web-1", ...}; ' +
          "is it a status dashboard?",
      }]);
    });
  }
  await t.step("the dashboard's own answers still pass", async () => {
    await using server = await startServer({
      availableDescriptors: "plenty",
      db: ":memory:",
      port: 0,
      adminToken: "admin-token-0123456789abcdef",
    });
    const { token } = await new OperatorClient({
      dashboardUrl: server.url,
      adminToken: "admin-token-0123456789abcdef",
    }).addAgent("web-1");
    const report = await checkHealth({
      dashboardUrl: server.url,
      adminToken: "admin-token-0123456789abcdef",
      agentId: "web-1",
      agentToken: token,
    });
    assert.deepEqual(report.checks.slice(2), [
      { name: "operator", outcome: "ok", message: "admin token accepted" },
      { name: "agent", outcome: "ok", message: "web-1: token and signature accepted" },
    ]);
  });
});
