/**
 * Two real `status serve` instances on one PostgreSQL database: wake-up, cancel, idempotent
 * enqueue and replay protection work across them.
 */
import assert from "node:assert/strict";
import { signedHeaders } from "../../src/protocol/mod.ts";
import { AGENT_SCOPES } from "../../src/store/mod.ts";
import { openPostgresStore } from "../../src/store/postgres.ts";
import { pgIgnore, testDatabase, testSocket } from "../_pg.ts";
import { startAgent, startServe, tempDir, waitForFinal } from "./helpers.ts";
import { PERMS, runCli } from "../_cli.ts";

const ADMIN = "admin-token-0123456789abcdef";
const TOKEN = "agent-token-a1-0123456789abcdefghijklmnopq";
const admin = { Authorization: `Bearer ${ADMIN}` };

async function enqueue(url: string, body: Record<string, unknown>) {
  const response = await fetch(`${url}/api/v1/agent/commands/enqueue`, {
    method: "POST",
    headers: { ...admin, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

function signed(method: string, path: string, body = "") {
  return {
    ...signedHeaders({ agentId: "a1", token: TOKEN, method, pathAndQuery: path, body }),
    ...(body ? { "Content-Type": "application/json" } : {}),
  };
}

Deno.test({
  name: "two dashboards on one PostgreSQL database serve one fleet",
  ignore: pgIgnore(),
  async fn(t) {
    await using db = await testDatabase();
    {
      await using store = await openPostgresStore(db.url);
      await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now: Date.now() });
    }
    const env = { STATUS_ADMIN_TOKEN: ADMIN };
    const serve = () => startServe({ db: db.url, perms: PERMS.serve, env });
    await using a = await serve();
    await using b = await serve();

    await t.step("a wait on A is answered by an enqueue on B", async () => {
      const path = "/api/v1/agent/commands/wait/default?timeout=20";
      const waiting = fetch(`${a.url}${path}`, { headers: signed("GET", path) });
      // The wait is open on A before B enqueues (A logs nothing per wait above debug: poll /health).
      await pollUntil(async () => (await (await fetch(`${a.url}/health`)).json()).waiting === 1);
      const answer = await enqueue(b.url, { id: "w1", agent_id: "a1", name: "echo hi" });
      assert.equal(answer.status, 202, JSON.stringify(answer.body));
      const response = await waiting;
      assert.equal(response.status, 200);
      const delivered = await response.json();
      assert.equal(delivered.id, "w1");
    });

    await t.step("the same signed request replayed to the other instance is refused", async () => {
      const body = JSON.stringify({ command_id: "w1", attempt: 1 });
      const headers = signed("POST", "/api/v1/agent/commands/ack", body);
      const first = await fetch(`${a.url}/api/v1/agent/commands/ack`, {
        method: "POST",
        headers,
        body,
      });
      assert.equal(first.status, 200, await first.text());
      const replay = await fetch(`${b.url}/api/v1/agent/commands/ack`, {
        method: "POST",
        headers,
        body,
      });
      assert.equal(replay.status, 409);
      assert.match((await replay.json()).error, /replay/);
    });

    await t.step("an enqueue on A then the same on B make one command", async () => {
      const body = { id: "d1", agent_id: "a1", name: "echo once", params: { priority: "low" } };
      const first = await enqueue(a.url, body);
      const second = await enqueue(b.url, body);
      assert.equal(first.status, 202);
      assert.equal(first.body.duplicate ?? false, false);
      assert.equal(second.body.duplicate, true, JSON.stringify(second.body));
      const conflicting = await enqueue(b.url, { ...body, name: "echo other" });
      assert.equal(conflicting.status, 409);
      const list = await (await fetch(`${b.url}/api/v1/commands?agent_id=a1`, { headers: admin }))
        .json();
      assert.equal(list.commands.filter((c: { id: string }) => c.id === "d1").length, 1);
      const cancelled = await fetch(`${a.url}/api/v1/commands/d1/cancel`, {
        method: "POST",
        headers: admin,
      });
      assert.equal(cancelled.status, 200);
    });

    await t.step("an event stream on B follows a command delivered and reported on A", async () => {
      const answer = await enqueue(a.url, { id: "e1", agent_id: "a1", name: "echo events" });
      assert.equal(answer.status, 202);
      const stream = await fetch(`${b.url}/api/v1/commands/e1/events`, { headers: admin });
      assert.equal(stream.status, 200);
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      // Before the stream's own re-read at its 15 s keep-alive: the changes must come through
      // LISTEN/NOTIFY.
      const deadline = Date.now() + 10_000;
      const readUntil = async (pattern: RegExp) => {
        while (!pattern.test(text)) {
          const left = deadline - Date.now();
          let timer: ReturnType<typeof setTimeout> | undefined;
          const { value, done } = await Promise.race([
            reader.read(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`no ${pattern} within 10 s: ${text}`)),
                Math.max(0, left),
              );
            }),
          ]).finally(() => clearTimeout(timer));
          if (done) throw new Error(`stream ended before ${pattern}: ${text}`);
          text += value;
        }
      };
      await readUntil(/"status":"queued"/);
      // Delivered, acked and reported on A: B hears of each change through the database.
      const path = "/api/v1/agent/commands/wait/default?timeout=5";
      const waited = await fetch(`${a.url}${path}`, { headers: signed("GET", path) });
      assert.equal((await waited.json()).id, "e1");
      await readUntil(/"status":"delivered"/);
      const report = JSON.stringify({
        command_id: "e1",
        status: "success",
        attempt: 1,
        result: {
          exit_code: 0,
          signal: null,
          duration_secs: 0.01,
          stdout: "events\n",
          stderr: "",
          stdout_truncated_bytes: 0,
          stderr_truncated_bytes: 0,
        },
        error: null,
        started_at: new Date().toISOString(),
        completed_at: new Date().toISOString(),
      });
      const reported = await fetch(`${a.url}/api/v1/agent/commands/report`, {
        method: "POST",
        headers: signed("POST", "/api/v1/agent/commands/report", report),
        body: report,
      });
      assert.equal(reported.status, 200, await reported.text());
      await readUntil(/event: end/);
      await reader.cancel();
    });

    await t.step("a cancel on B stops a command running under an agent on A", async () => {
      await using state = tempDir();
      await using agent = startAgent({
        url: a.url,
        agentId: "a1",
        stateDir: state.path,
        args: ["--agent-token", TOKEN, "--polling-timeout-secs", "20"],
      });
      const answer = await enqueue(b.url, { id: "s1", agent_id: "a1", name: "sleep 60" });
      assert.equal(answer.status, 202);
      await pollUntil(async () => {
        const command = await (await fetch(`${b.url}/api/v1/commands/s1`, { headers: admin }))
          .json();
        return command.status === "running";
      });
      // The agent's cancel-wait is open on A: B's cancel must reach it through the database.
      await pollUntil(async () =>
        (await (await fetch(`${a.url}/health`)).json()).cancel_waiting === 1
      );
      const cancel = await fetch(`${b.url}/api/v1/commands/s1/cancel`, {
        method: "POST",
        headers: admin,
      });
      assert.equal(cancel.status, 202, await cancel.text());
      const final = await waitForFinal(b.url, "s1", 20_000, admin);
      assert.equal(final.status, "cancelled", JSON.stringify(final));
      agent.kill("SIGTERM");
      await agent.exited();
    });

    await t.step("a token rotated on B ends the wait held on A with the old one", async () => {
      const path = "/api/v1/agent/commands/wait/default?timeout=20";
      const waiting = fetch(`${a.url}${path}`, { headers: signed("GET", path) });
      await pollUntil(async () => (await (await fetch(`${a.url}/health`)).json()).waiting === 1);
      const rotated = await fetch(`${b.url}/api/v1/agents/a1/rotate`, {
        method: "POST",
        headers: admin,
      });
      assert.equal(rotated.status, 200, await rotated.text());
      // Before the wait's own timeout: B's rotation reaches A through the database.
      const ended = await Promise.race([
        waiting,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000)),
      ]);
      assert.ok(ended !== null, "the wait on A was not ended by the rotation on B");
      assert.equal(ended.status, 204);
      await ended.body?.cancel();
      const answer = await enqueue(b.url, { id: "r1", agent_id: "a1", name: "echo secret" });
      assert.equal(answer.status, 202);
      assert.equal(
        (await (await fetch(`${b.url}/api/v1/commands/r1`, { headers: admin })).json())
          .status,
        "queued",
      );
    });
  },
});

async function pollUntil(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

Deno.test({
  name: "status agents add, list, rotate and remove work on PostgreSQL (--db)",
  ignore: pgIgnore(),
  async fn() {
    await using db = await testDatabase();
    const viaEnv = { perms: PERMS.serve, env: { DB: db.url } };
    const added = await runCli(["agents", "add", "web-1", "--db", db.url], viaEnv);
    assert.equal(added.code, 0, added.stderr);
    const token = /AGENT_TOKEN=(\S+)/.exec(added.stdout)?.[1];
    assert.ok(token, added.stdout);
    const again = await runCli(["agents", "add", "web-1", "--db", db.url], viaEnv);
    assert.equal(again.code, 1, "a second add of one id fails");
    const listed = await runCli(["agents", "list", "--db", db.url], { perms: PERMS.serve });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^web-1 /m);
    assert.doesNotMatch(listed.stdout, new RegExp(token));
    const rotated = await runCli(["agents", "rotate", "web-1", "--db", db.url], viaEnv);
    assert.equal(rotated.code, 0, rotated.stderr);
    await using store = await openPostgresStore(db.url);
    const stored = await store.getAgent("web-1");
    assert.equal(stored?.token, /AGENT_TOKEN=(\S+)/.exec(rotated.stdout)?.[1]);
    assert.notEqual(stored?.token, token);
    assert.equal((await runCli(["agents", "remove", "web-1", "--db", db.url], viaEnv)).code, 0);
    assert.equal(await store.getAgent("web-1"), null);

    const unreachable = await runCli(["agents", "list", "--db", "postgres://u:pw@127.0.0.1:1/x"], {
      perms: PERMS.serve,
    });
    assert.equal(unreachable.code, 2);
    assert.match(unreachable.stderr, /not reachable/);
    assert.doesNotMatch(unreachable.stderr, /:pw@/);
  },
});

Deno.test({
  name: "status agents on a Unix socket's database: works with the serve task's permissions, and " +
    "says which are missing without them",
  ignore: pgIgnore(),
  async fn() {
    const socket = await testSocket();
    if (socket === null) return; // a server of STATUS_TEST_DATABASE_URL's: its socket is unknown
    await using db = await testDatabase();
    const name = new URL(db.url).pathname.slice(1);
    const url = `postgres://status@/${name}?host=${socket.dir}&port=${socket.port}`;
    const added = await runCli(["agents", "add", "web-1", "--db", url], { perms: PERMS.serve });
    assert.equal(added.code, 0, added.stderr);
    const path = `${socket.dir}/.s.PGSQL.${socket.port}`;
    for (
      const [perms, missing] of [
        [["--allow-net", "--allow-env", "--allow-read"], "--allow-write"],
        [["--allow-net", "--allow-env", `--allow-read=${path}`], "--allow-write"],
        [["--allow-net", "--allow-env"], "--allow-read and --allow-write"],
      ] as const
    ) {
      const listed = await runCli(["agents", "list", "--db", url], { perms });
      assert.equal(listed.code, 2, listed.stderr);
      assert.match(
        listed.stderr,
        new RegExp(
          `permission denied by Deno to connect to the Unix socket ${
            path.replaceAll(".", "\\.")
          }: ` +
            `run with ${missing} \\(for that path, or unrestricted`,
        ),
      );
      assert.doesNotMatch(listed.stderr, /Uncaught/);
    }
    const listed = await runCli(["agents", "list", "--db", url], {
      perms: ["--allow-net", "--allow-env", `--allow-read=${path}`, `--allow-write=${path}`],
    });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^web-1 /m);
  },
});
