/**
 * Durability over real processes: `status serve` started with the exact permissions users pass,
 * stopped with SIGKILL or SIGTERM, and started again on the same `--db`.
 */
import { PERMS } from "../e2e/helpers.ts";
import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import { P, reportBody } from "./_helpers.ts";

const MAIN = fromFileUrl(import.meta.resolve("../../main.ts"));
const CONFIG = fromFileUrl(import.meta.resolve("../../deno.json"));

/** The environment a child `deno` needs to find its cache, and nothing else. */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = { LOG_FORMAT: "json", NO_COLOR: "1" };
  for (const name of ["HOME", "DENO_DIR", "PATH", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** A `status serve` child process. */
class ServeProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stderr: Promise<string>;
  #stdout = "";
  #drain?: Promise<void>;
  url = "";

  constructor(db: string, cwd: string) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--config",
        CONFIG,
        ...PERMS.serve,
        MAIN,
        "serve",
        "--port",
        "0",
        "--db",
        db,
        "--rate-limit-per-minute",
        "100000",
      ],
      cwd,
      env: childEnv(),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Reads stdout until `listening on <url>`. */
  async started(): Promise<string> {
    const reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const deadline = AbortSignal.timeout(20_000);
    while (!/listening on (\S+)/.test(this.#stdout)) {
      if (deadline.aborted) throw new Error(`serve did not start: ${this.#stdout}`);
      const { done, value } = await reader.read();
      if (done) {
        throw new Error(`serve exited before listening:\n${this.#stdout}\n${await this.#stderr}`);
      }
      this.#stdout += value;
    }
    this.url = /listening on (\S+)/.exec(this.#stdout)![1];
    this.#drain = (async () => {
      for (let r = await reader.read(); !r.done; r = await reader.read()) this.#stdout += r.value;
    })();
    return this.url;
  }

  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  async ended(): Promise<{ code: number; stderr: string }> {
    const status = await this.#child.status;
    await this.#drain;
    return { code: status.code, stderr: await this.#stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
    await this.ended();
  }
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
      await using serve = new ServeProcess(db, dir);
      const url = await serve.started();
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
      serve.kill("SIGKILL");
      const { code } = await serve.ended();
      assert.notEqual(code, 0);
    });

    await t.step(
      "second run on the same --db: the queue and the result are still there",
      async () => {
        await using serve = new ServeProcess(db, dir);
        const url = await serve.started();
        const done = await request(url, "GET", "/api/v1/commands/done");
        assert.equal(done.body.status, "success");
        assert.equal(done.body.result.stdout, "Hello from dashboard\n");
        const next = await request(url, "GET", P.wait("default", 5));
        assert.equal(next.body.id, "queued-1");
        assert.equal(next.body.attempt, 1);

        // An open wait is answered 204 by a graceful stop, and the process exits 0.
        const waiting = request(url, "GET", P.wait("default", 30), undefined, "other-agent");
        await new Promise((resolve) => setTimeout(resolve, 100));
        serve.kill("SIGTERM");
        assert.equal((await waiting).status, 204);
        const { code, stderr } = await serve.ended();
        assert.equal(code, 0, stderr);
        assert.match(stderr, /"message":"dashboard stopped"/);
        assert.match(stderr, /"message":"dashboard listening","url":"http:\/\/127\.0\.0\.1:\d+"/);
      },
    );

    await t.step("third run: queued and delivered commands continue where they were", async () => {
      await using serve = new ServeProcess(db, dir);
      const url = await serve.started();
      const delivered = await request(url, "GET", "/api/v1/commands/queued-1");
      assert.equal(delivered.body.status, "delivered", "its delivery lease still runs");
      const next = await request(url, "GET", P.wait("default", 5));
      assert.equal(next.body.id, "queued-2");
      const last = await request(url, "GET", P.wait("default", 5));
      assert.equal(last.body.id, "queued-3");
      serve.kill("SIGTERM");
      assert.equal((await serve.ended()).code, 0);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("status serve refuses to start in dev mode on a non-loopback address", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-serve-" });
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--config",
        CONFIG,
        ...PERMS.serve,
        MAIN,
        "serve",
        "--bind",
        "0.0.0.0",
        "--db",
        `${dir}/status.db`,
      ],
      cwd: dir,
      clearEnv: true,
      env: childEnv(),
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 2, stderr);
    assert.match(stderr, /dev mode .* listens on loopback only, but --bind is 0\.0\.0\.0/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
