/**
 * `surviveConnectionFailures`: a dashboard process lives through connection failures that surface
 * outside any request, and still dies of bugs.
 */
import assert from "node:assert/strict";
import { PERMS, runCli, spawnCli } from "../_cli.ts";

const survive = new URL("../../src/cli/survive.ts", import.meta.url).href;
const errors = new URL("../../src/store/errors.ts", import.meta.url).href;

/** Runs a script in a new process: its exit code and output. */
async function evalScript(script: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Runs a script with the guard installed; returns its exit code and output. The script says
 * "still running" `waitMs` after the failure, if it still is.
 */
function withGuard(
  failure: string,
  waitMs = 20,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return evalScript(`
    import { surviveConnectionFailures } from ${JSON.stringify(survive)};
    import { StoreUnavailableError } from ${JSON.stringify(errors)};
    // Never disposed, as in the dashboard: a busy machine may run the timer below before the
    // rejection is looked at, and the guard must still be there then.
    const _guard = surviveConnectionFailures();
    ${failure}
    await new Promise((resolve) => setTimeout(resolve, ${waitMs}));
    console.log("still running");
  `);
}

Deno.test("a dropped connection rejected outside any request does not end the process", async () => {
  const { code, stdout, stderr } = await withGuard(
    `Promise.reject(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));`,
  );
  assert.equal(code, 0, stderr);
  assert.match(stdout, /still running/);
});

Deno.test("an unavailable store thrown from a timer does not end the process", async () => {
  const { code, stdout, stderr } = await withGuard(
    `setTimeout(() => { throw new StoreUnavailableError("database down"); }, 0);`,
  );
  assert.equal(code, 0, stderr);
  assert.match(stdout, /still running/);
});

Deno.test("a PostgreSQL shutdown (57P01) rejected by the driver does not end the process", async () => {
  const { code, stderr } = await withGuard(
    `Promise.reject(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }));`,
  );
  assert.equal(code, 0, stderr);
});

Deno.test("any other unhandled rejection still ends the process", async () => {
  // Long enough that a busy machine's pause cannot let the timer run before the rejection is
  // seen (the process ends at once then; the wait costs nothing).
  const { code, stdout } = await withGuard(`Promise.reject(new TypeError("a bug"));`, 5000);
  assert.notEqual(code, 0);
  assert.doesNotMatch(stdout, /still running/);
});

Deno.test("what libraries print with console goes to the log, not to standard output", async () => {
  const script = `
    import { consoleIntoLog } from ${JSON.stringify(survive)};
    import { setupLogging } from ${
    JSON.stringify(new URL("../../src/log/mod.ts", import.meta.url).href)
  };
    setupLogging({ format: "json", level: "debug" });
    {
      using _console = consoleIntoLog();
      console.info("The user aborted a request.");
      console.error(new Error("boom"));
    }
    console.log("restored");
  `;
  const { code, stdout, stderr } = await evalScript(script);
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "restored\n");
  const records = stderr.trim().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(records.map((r) => [r.level, r.category]), [
    ["info", "status.server.library"],
    ["error", "status.server.library"],
  ]);
  assert.match(records[0].message, /The user aborted a request\./);
  assert.match(records[1].message, /Error: boom/);
});

Deno.test({
  name: "a file-size limit (ulimit -f) fails the dashboard's writes instead of killing it",
  // prlimit sets the limit for the child alone (util-linux; Linux only).
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // Deno writes its own cache (files larger than the limit) when it first loads the program:
    // that is done here, without the limit.
    assert.equal((await runCli(["--version"], { perms: PERMS.serve })).code, 0);
    const dir = Deno.makeTempDirSync({ prefix: "status-fsize-" });
    try {
      // 1 MiB: less than the store's reserve file, so the first start crosses it already.
      await using serve = spawnCli(["serve", "--db", `${dir}/status.db`, "--port", "0"], {
        perms: PERMS.serve,
        prefix: ["prlimit", "--fsize=1048576"],
      });
      const url = (await serve.stdout.waitFor(/listening on (http:\S+)/)).match![1];
      const enqueue = (id: string) =>
        fetch(`${url}/api/v1/agent/commands/enqueue`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-Agent-Id": "a1" },
          body: JSON.stringify({
            id,
            name: "echo hi",
            params: { metadata: { pad: "p".repeat(8000) } },
          }),
        });
      const created = await enqueue("first");
      assert.equal(created.status, 202);
      await created.body?.cancel();
      let refused: Response | undefined;
      for (let i = 0; i < 1000 && !refused; i++) {
        const response = await enqueue(`c${i}`);
        if (response.status === 202) await response.body?.cancel();
        else refused = response;
      }
      assert.ok(refused, "the database never reached the limit");
      // A disk I/O error (EFBIG): the store failed, which retrying later may mend.
      assert.equal(refused.status, 503, await refused.clone().text());
      assert.equal(refused.headers.get("Retry-After"), "30");
      assert.match((await refused.json()).error, /the dashboard's store failed/);
      // /health tells it (a monitor watches it), and goes on telling it: reads change nothing.
      for (let i = 0; i < 2; i++) {
        const health = await fetch(`${url}/health`);
        assert.equal(health.status, 503);
        const body = await health.json();
        assert.equal(body.status, "store_failing");
        assert.match(body.store.error, /failed: a disk I\/O error .*ulimit -f/);
      }
      await serve.waitForLog(/^the store failed: .*status\.db failed: a disk I\/O error/);
      // Still running, and what it has is still read.
      const first = await fetch(`${url}/api/v1/commands/first`);
      assert.equal(first.status, 200);
      assert.equal((await first.json()).status, "queued");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
