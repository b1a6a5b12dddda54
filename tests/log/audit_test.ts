/**
 * The audit trail of operator actions: every one says who did it (the client's address) and what,
 * over the operator API and in the console, and nothing secret.
 */
import assert from "node:assert/strict";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import {
  ADMIN_TOKEN,
  agentHeaders,
  makeDashboard,
  P,
  reportBody,
  type TestDashboard,
} from "../server/_helpers.ts";

const REMOTE = "192.0.2.7";

/** A request from {@link REMOTE}, as the HTTP server hands it over. */
async function from(
  t: TestDashboard,
  method: string,
  path: string,
  init: { body?: unknown; headers?: Record<string, string>; form?: Record<string, string> } = {},
): Promise<Response> {
  const headers = new Headers(init.headers);
  let body: string | undefined;
  if (init.form) {
    headers.set("Content-Type", "application/x-www-form-urlencoded");
    body = new URLSearchParams(init.form).toString();
  } else if (init.body !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(init.body);
  }
  const response = await t.dashboard.app.fetch(
    new Request(`http://localhost${path}`, { method, headers, body }),
    { remoteAddr: { transport: "tcp", hostname: REMOTE, port: 50_000 } },
  );
  return response;
}

/** A request signed by agent `a1` (as another process of it with `instance`), from {@link REMOTE}. */
function fromAgent(
  t: TestDashboard,
  path: string,
  body?: unknown,
  instance = "instance-a",
): Promise<Response> {
  const bodyText = body === undefined ? "" : JSON.stringify(body);
  const headers = agentHeaders({
    path,
    body,
    bodyText,
    now: t.clock.now(),
    headers: { "X-Agent-Instance": instance },
  });
  return Promise.resolve(t.dashboard.app.fetch(
    new Request(`http://localhost${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers,
      body: body === undefined ? undefined : bodyText,
    }),
    { remoteAddr: { transport: "tcp", hostname: REMOTE, port: 50_000 } },
  ));
}

function auditLines(lines: string[]): Array<Record<string, unknown>> {
  return lines.map((line) => JSON.parse(line)).filter((r) => r.category === "status.audit");
}

Deno.test("operator API actions are audited with the client's address", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard();
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
    const calls: Array<[string, string, unknown, number]> = [
      ["POST", "/api/v1/agents", { id: "web-9" }, 201],
      ["POST", "/api/v1/agents/web-9/rotate", undefined, 200],
      ["DELETE", "/api/v1/agents/web-9", undefined, 200],
      ["POST", "/api/v1/agent/commands/enqueue", {
        id: "audit-1",
        name: "echo hi",
        agent_id: "a1",
        params: {},
      }, 202],
      ["POST", "/api/v1/commands/audit-1/cancel", undefined, 200],
      ["POST", "/api/v1/runs", { id: "run-a", name: "echo hi", target: { agents: ["a1"] } }, 201],
      ["POST", "/api/v1/runs/run-a/cancel", undefined, 200],
    ];
    for (const [method, path, body, status] of calls) {
      const response = await from(t, method, path, { body, headers: admin });
      assert.equal(response.status, status, `${method} ${path}: ${await response.text()}`);
    }
    // The enqueue line of a command that wakes a wait comes a turn later.
    await new Promise((resolve) => setTimeout(resolve, 0));
  } finally {
    closeLogging();
  }
  const audit = auditLines(lines);
  for (
    const message of [
      /agent web-9 added/,
      /agent web-9 token rotated/,
      /agent web-9 removed/,
      /command enqueued audit-1 for a1/,
      /command cancel audit-1: cancelled/,
      /run run-a created/,
      /run run-a cancelled/,
    ]
  ) {
    const record = audit.find((r) => message.test(String(r.message)));
    assert.ok(record, `an audit line ${message} in ${JSON.stringify(audit)}`);
    assert.equal(record.remote, REMOTE, String(record.message));
  }
  assert.ok(lines.every((line) => !line.includes(ADMIN_TOKEN)));
});

Deno.test("an agent's removal is audited with how many of its commands it ended", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard();
    const admin = { Authorization: `Bearer ${ADMIN_TOKEN}` };
    for (const id of ["gone-1", "gone-2"]) {
      const enqueued = await from(t, "POST", "/api/v1/agent/commands/enqueue", {
        body: { id, name: "echo hi", agent_id: "a2" },
        headers: admin,
      });
      assert.equal(enqueued.status, 202);
      await enqueued.body?.cancel();
    }
    const removed = await from(t, "DELETE", "/api/v1/agents/a2", { headers: admin });
    assert.equal(removed.status, 200);
    await removed.body?.cancel();
  } finally {
    closeLogging();
  }
  const record = auditLines(lines).find((r) => /agent a2 removed/.test(String(r.message)));
  assert.ok(record, JSON.stringify(lines));
  assert.equal(record.message, "agent a2 removed over the operator API; 2 of its commands ended");
  assert.equal(record.commandsEnded, 2);
  assert.equal(record.remote, REMOTE);
});

Deno.test("an agent's report and a second process of an agent are audited with its address", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard();
    const enqueued = await t.admin("POST", P.enqueue, {
      id: "rep-1",
      name: "echo hi",
      agent_id: "a1",
    });
    assert.equal(enqueued.status, 202);
    await enqueued.body?.cancel();
    const delivered = await fromAgent(t, P.wait());
    assert.equal(delivered.status, 200);
    await delivered.body?.cancel();
    const second = await fromAgent(t, P.wait(), undefined, "instance-b");
    assert.equal(second.status, 409);
    await second.body?.cancel();
    const acked = await fromAgent(t, P.ack, { command_id: "rep-1", attempt: 1 });
    assert.equal(acked.status, 200, await acked.clone().text());
    await acked.body?.cancel();
    const reported = await fromAgent(t, P.report, reportBody("rep-1"));
    assert.equal(reported.status, 200, await reported.clone().text());
    await reported.body?.cancel();
  } finally {
    closeLogging();
  }
  const audit = auditLines(lines);
  for (const message of [/^command reported rep-1 success$/, /^second agent process refused/]) {
    const record = audit.find((r) => message.test(String(r.message)));
    assert.ok(record, `an audit line ${message} in ${JSON.stringify(audit)}`);
    assert.equal(record.remote, REMOTE, String(record.message));
  }
});

Deno.test("console login, actions and logout are audited with the client's address", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard();
    let cookies = "";
    const browse = async (method: string, path: string, form?: Record<string, string>) => {
      const response = await from(t, method, path, {
        form,
        headers: cookies ? { Cookie: cookies } : {},
      });
      const set = response.headers.getSetCookie().map((line) => line.split(";")[0]);
      const jar = new Map<string, string>(
        cookies ? cookies.split("; ").map((c) => c.split("=") as [string, string]) : [],
      );
      for (const pair of set) {
        const [name, value] = pair.split("=");
        if (value) jar.set(name, value);
        else jar.delete(name);
      }
      cookies = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
      return response;
    };
    const csrfOf = (html: string) => /name="csrf" value="([^"]*)"/.exec(html)![1];
    const loginForm = await (await browse("GET", "/login")).text();
    const login = await browse("POST", "/login", {
      csrf: csrfOf(loginForm),
      token: ADMIN_TOKEN,
      next: "/",
    });
    assert.equal(login.status, 303);
    const csrf = csrfOf(await (await browse("GET", "/enqueue")).text());
    const enqueued = await browse("POST", "/enqueue", { csrf, agent: "a1", name: "echo hi" });
    assert.equal(enqueued.status, 303, await enqueued.text());
    const path = enqueued.headers.get("Location")!;
    const cancelled = await browse("POST", `${path}/cancel`, { csrf });
    assert.equal(cancelled.status, 303, await cancelled.text());
    // A form with another token: refused, and audited as refused.
    const forged = await browse("POST", "/enqueue", {
      csrf: "x".repeat(43),
      agent: "a1",
      name: "id",
    });
    assert.equal(forged.status, 403, await forged.text());
    const out = await browse("POST", "/logout", { csrf });
    assert.equal(out.status, 303);
  } finally {
    closeLogging();
  }
  const audit = auditLines(lines);
  for (
    const message of [
      /^console login$/,
      /^console enqueue /,
      /^console cancel /,
      /^console form refused: CSRF token missing or wrong$/,
      /^console logout$/,
    ]
  ) {
    const record = audit.find((r) => message.test(String(r.message)));
    assert.ok(record, `an audit line ${message} in ${JSON.stringify(audit)}`);
    assert.equal(record.remote, REMOTE, String(record.message));
  }
  assert.ok(lines.every((line) => !line.includes(ADMIN_TOKEN)));
});

Deno.test("a refusal's audit line names its event once: a replay, a rate limit", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard({ rateLimitPerMinute: 2 });
    const ping = (requestId: string) => {
      const path = "/api/v1/agent/ping";
      const headers = agentHeaders({ path, bodyText: "", now: t.clock.now(), requestId });
      return t.dashboard.app.fetch(
        new Request(`http://localhost${path}`, { headers }),
        { remoteAddr: { transport: "tcp", hostname: REMOTE, port: 50_000 } },
      );
    };
    const statuses = [];
    for (const id of ["r-1", "r-1", "r-2"]) {
      const response = await ping(id);
      statuses.push(response.status);
      await response.body?.cancel();
    }
    assert.deepEqual(statuses, [200, 409, 429]);
  } finally {
    closeLogging();
  }
  const messages = auditLines(lines).map((r) => String(r.message));
  assert.ok(
    messages.includes("replay detected: this X-Request-Id was already used"),
    JSON.stringify(messages),
  );
  assert.ok(
    messages.some((m) => /^rate limit exceeded; retry in \d+ s$/.test(m)),
    String(messages),
  );
});
