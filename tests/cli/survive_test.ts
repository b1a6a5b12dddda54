/**
 * `surviveConnectionFailures`: a dashboard process lives through connection failures that surface
 * outside any request, and still dies of bugs.
 */
import assert from "node:assert/strict";

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
