/**
 * Who may read what, over a real socket: every `GET` route the dashboard has (its route table,
 * so a route added later is checked too) asked without the admin token, with a wrong one, an
 * agent's token, an agent's signed request, the session of a console user who logged out, and
 * the admin token in the query string instead of the header.
 */
import assert from "node:assert/strict";
import { toBase64 } from "../../src/protocol/mod.ts";
import { AGENT_SCOPES } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, agentHeaders, FakeClock, P, T0, TOKEN, TOKEN2 } from "./_helpers.ts";
import { adminServer, agentCall, enqueue } from "./_streams.ts";

const SECRET = "secret-output-of-a1";

/** What an answer that may not end sends first (its body is then closed). */
async function firstBytes(answer: Response): Promise<string> {
  const reader = answer.body!.getReader();
  const { value } = await reader.read();
  await reader.cancel();
  return new TextDecoder().decode(value);
}

/** Logs in to the console, then out; returns the session's `Cookie` header. */
async function loggedOutSession(url: string): Promise<string> {
  const form = await fetch(`${url}/login`);
  const loginCookie = form.headers.getSetCookie()[0].split(";")[0];
  const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())?.[1] ?? "";
  const login = await fetch(`${url}/login`, {
    method: "POST",
    redirect: "manual",
    headers: { Cookie: loginCookie, "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: ADMIN_TOKEN, csrf, next: "/" }),
  });
  assert.equal(login.status, 303);
  await login.body?.cancel();
  const session = login.headers.getSetCookie()[0].split(";")[0];
  const page = await fetch(`${url}/`, { headers: { Cookie: session } });
  assert.equal(page.status, 200);
  const pageCsrf = /name="csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? "";
  const logout = await fetch(`${url}/logout`, {
    method: "POST",
    redirect: "manual",
    headers: { Cookie: session, "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ csrf: pageCsrf }),
  });
  assert.equal(logout.status, 303);
  await logout.body?.cancel();
  return session;
}

Deno.test("no GET route gives a command, its output or a run to anyone but the admin token", async () => {
  const clock = new FakeClock(T0);
  await using fixture = await adminServer({ clock });
  const { server, store } = fixture;
  await store.addAgent({ id: "a2", token: TOKEN2, scopes: AGENT_SCOPES, now: clock.now() });
  // a1 runs a command whose output is the secret; a run of a1 is open.
  await enqueue(server, "c1");
  assert.equal((await (await agentCall(server, clock.now(), P.wait())).json()).id, "c1");
  const acked = await agentCall(server, clock.now(), P.ack, { command_id: "c1", attempt: 1 });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();
  const stored = await agentCall(server, clock.now(), "/api/v1/agent/commands/c1/output", {
    attempt: 1,
    stream: "stdout",
    offset: 0,
    data: toBase64(new TextEncoder().encode(`${SECRET}\n`)),
  });
  assert.equal(stored.status, 200);
  await stored.body?.cancel();
  const run = await fetch(`${server.url}/api/v1/runs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id: "r1", name: `echo ${SECRET}`, target: { agents: ["a1"] } }),
  });
  assert.equal(run.status, 201);
  await run.body?.cancel();
  const session = await loggedOutSession(server.url);
  const secrets = [SECRET, toBase64(new TextEncoder().encode(`${SECRET}\n`)).slice(0, 16), "r1:a1"];

  /** How each visitor asks for a path. */
  const visitors: Record<string, (path: string) => { path: string; headers: HeadersInit }> = {
    "no token": (path) => ({ path, headers: {} }),
    "a wrong token": (path) => ({
      path,
      headers: { Authorization: "Bearer wrong-0123456789abcdef" },
    }),
    "an agent's token": (path) => ({ path, headers: { Authorization: `Bearer ${TOKEN}` } }),
    "a1 signed": (path) => ({
      path,
      headers: agentHeaders({ path, bodyText: "", now: clock.now() }),
    }),
    "a2 signed": (path) => ({
      path,
      headers: agentHeaders({ path, bodyText: "", now: clock.now(), agentId: "a2", token: TOKEN2 }),
    }),
    "a logged-out session": (path) => ({ path, headers: { Cookie: session } }),
    "the token in the query": (path) => ({
      path: `${path}${path.includes("?") ? "&" : "?"}token=${ADMIN_TOKEN}&access_token=` +
        `${ADMIN_TOKEN}&authorization=Bearer%20${ADMIN_TOKEN}`,
      headers: {},
    }),
  };
  const PUBLIC = new Set(["/health", "/login", "/static/console.js", "/static/console.css"]);
  const gets = server.dashboard.routes.filter((route) => route.method === "GET");
  assert.ok(gets.length >= 20, `${gets.length} GET routes`);
  for (const route of gets) {
    const base = route.path
      .replace(":deployment_hash", "default")
      .replace("/runs/:id", "/runs/r1")
      .replace(":id", "c1") + (route.path.includes("/agent/commands/") ? "?timeout=1" : "");
    for (const [who, visit] of Object.entries(visitors)) {
      const { path, headers } = visit(base);
      const answer = await fetch(`${server.url}${path}`, { headers, redirect: "manual" });
      // An event stream does not end: its first events are read, and it is closed.
      const text = answer.headers.get("Content-Type")?.startsWith("text/event-stream")
        ? await firstBytes(answer)
        : await answer.text();
      const shown = `GET ${base} with ${who}: ${answer.status} ${text.slice(0, 120)}`;
      const ownWait = who === "a1 signed" && route.path.startsWith("/api/v1/agent/commands/wait/");
      if (!ownWait) { for (const secret of secrets) assert.ok(!text.includes(secret), shown); }
      if (route.path.startsWith("/api/v1/agent/")) {
        // An agent's own routes: an agent signs for itself, and sees nothing of another's.
        if (who === "a1 signed") assert.ok(answer.status < 300, shown);
        else if (who === "a2 signed") {
          assert.ok([200, 204, 404].includes(answer.status), shown);
        } else assert.equal(answer.status, 401, shown);
      } else if (route.path.startsWith("/api/") || route.path === "/metrics") {
        assert.equal(answer.status, 401, shown);
      } else if (PUBLIC.has(route.path) || route.path === "/favicon.ico") {
        assert.ok(answer.status === 200 || answer.status === 204, shown);
      } else if (route.path.endsWith("/") && route.path !== "/") {
        assert.equal(answer.status, 308, shown); // to the path without it, then as below
      } else {
        assert.equal(answer.status, 303, shown);
        assert.match(answer.headers.get("Location") ?? "", /^\/login\?next=/, shown);
      }
    }
  }
});
