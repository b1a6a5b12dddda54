/**
 * Durability over real processes: `status serve` started with the exact permissions users pass,
 * stopped with SIGKILL or SIGTERM, and started again on the same `--db`.
 */
import { PERMS, runCli } from "../_cli.ts";
import { type ServeProcess, startServe } from "../e2e/helpers.ts";
import assert from "node:assert/strict";
import { P, reportBody } from "./_helpers.ts";

/** `status serve` on `db`, with a rate limit the test cannot reach. */
function serve(db: string, cwd: string): Promise<ServeProcess> {
  return startServe({ db, cwd, args: ["--rate-limit-per-minute", "100000"] });
}

/** How a `status serve` process ended, and what it logged. */
async function ended(serve: ServeProcess): Promise<{ code: number; stderr: string }> {
  const { code } = await serve.proc.exited();
  return { code, stderr: serve.proc.stderr.text };
}

async function request(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  agentId = "test-agent",
) {
  const response = await fetch(url + path, {
    method,
    headers: { "X-Agent-Id": agentId, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

Deno.test("queued commands and reported results survive SIGKILL and SIGTERM of the dashboard", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-durability-" });
  const db = `${dir}/state/status.db`;
  await Deno.mkdir(`${dir}/state`); // the dashboard creates its file, not its directory
  try {
    await t.step("first run: enqueue, deliver and report, then SIGKILL", async () => {
      await using server = await serve(db, dir);
      const url = server.url;
      for (const id of ["done", "queued-1", "queued-2"]) {
        const answer = await request(url, "POST", P.enqueue, {
          id,
          name: `echo ${id}`,
          params: {},
        });
        assert.equal(answer.status, 202);
      }
      const delivered = await request(url, "GET", P.wait("default", 5));
      assert.equal(delivered.body.id, "done");
      const report = await request(url, "POST", P.report, reportBody("done"));
      assert.deepEqual(report.body, { accepted: true });
      // Acknowledged just before the kill: must not be lost.
      const last = await request(url, "POST", P.enqueue, { id: "queued-3", name: "echo last" });
      assert.equal(last.status, 202);
      server.proc.kill("SIGKILL");
      const { code } = await ended(server);
      assert.notEqual(code, 0);
    });

    await t.step(
      "second run on the same --db: the queue and the result are still there",
      async () => {
        await using server = await serve(db, dir);
        const url = server.url;
        const done = await request(url, "GET", "/api/v1/commands/done");
        assert.equal(done.body.status, "success");
        assert.equal(done.body.result.stdout, "Hello from dashboard\n");
        const next = await request(url, "GET", P.wait("default", 5));
        assert.equal(next.body.id, "queued-1");
        assert.equal(next.body.attempt, 1);

        // An open wait is answered 204 by a graceful stop, and the process exits 0.
        const waiting = request(url, "GET", P.wait("default", 30), undefined, "other-agent");
        await new Promise((resolve) => setTimeout(resolve, 100));
        server.proc.kill("SIGTERM");
        assert.equal((await waiting).status, 204);
        const { code, stderr } = await ended(server);
        assert.equal(code, 0, stderr);
        assert.match(stderr, /"message":"dashboard stopped"/);
        assert.match(stderr, /"message":"dashboard listening","url":"http:\/\/127\.0\.0\.1:\d+"/);
      },
    );

    await t.step("third run: queued and delivered commands continue where they were", async () => {
      await using server = await serve(db, dir);
      const url = server.url;
      const delivered = await request(url, "GET", "/api/v1/commands/queued-1");
      assert.equal(delivered.body.status, "delivered", "its delivery lease still runs");
      const next = await request(url, "GET", P.wait("default", 5));
      assert.equal(next.body.id, "queued-2");
      const last = await request(url, "GET", P.wait("default", 5));
      assert.equal(last.body.id, "queued-3");
      server.proc.kill("SIGTERM");
      assert.equal((await ended(server)).code, 0);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status serve's dev-mode refusal of a non-loopback address comes before its port is looked at", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-serve-" });
  // Something else listens on the port asked for: the refusal is the settings', not the port's.
  const busy = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  try {
    const output = await runCli([
      "serve",
      "--bind",
      "0.0.0.0",
      "--port",
      String(busy.addr.port),
      "--db",
      `${dir}/status.db`,
    ], { perms: PERMS.serve, cwd: dir });
    assert.equal(output.code, 2, output.stderr);
    assert.match(output.stderr, /dev mode .* listens on loopback only/);
    assert.doesNotMatch(output.stderr, /already in use/);
    await assert.rejects(() => Deno.lstat(`${dir}/status.db`), Deno.errors.NotFound);
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status serve refuses to start in dev mode on a non-loopback address", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-serve-" });
  try {
    const output = await runCli(["serve", "--bind", "0.0.0.0", "--db", `${dir}/status.db`], {
      perms: PERMS.serve,
      cwd: dir,
    });
    const stderr = output.stderr;
    assert.equal(output.code, 2, stderr);
    assert.match(
      stderr,
      /dev mode .* listens on loopback only, but BIND from flag --bind is 0\.0\.0\.0/,
    );
    // No dashboard runs to take "status agents add <id>" over the API: it is added on the file.
    assert.match(
      stderr,
      new RegExp(`add an agent with "status agents add <id> --db ${dir}/status\\.db" and set`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
