/**
 * `surviveConnectionFailures`: a dashboard process lives through connection failures that surface
 * outside any request, and still dies of bugs.
 */
import assert from "node:assert/strict";

const survive = new URL("../../src/cli/survive.ts", import.meta.url).href;
const errors = new URL("../../src/store/errors.ts", import.meta.url).href;

/** Runs a script with the guard installed; returns its exit code and output. */
async function withGuard(failure: string): Promise<{ code: number; stdout: string }> {
  const script = `
    import { surviveConnectionFailures } from ${JSON.stringify(survive)};
    import { StoreUnavailableError } from ${JSON.stringify(errors)};
    using _guard = surviveConnectionFailures();
    ${failure}
    await new Promise((resolve) => setTimeout(resolve, 20));
    console.log("still running");
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
}

Deno.test("a dropped connection rejected outside any request does not end the process", async () => {
  const { code, stdout } = await withGuard(
    `Promise.reject(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));`,
  );
  assert.equal(code, 0);
  assert.match(stdout, /still running/);
});

Deno.test("an unavailable store thrown from a timer does not end the process", async () => {
  const { code, stdout } = await withGuard(
    `setTimeout(() => { throw new StoreUnavailableError("database down"); }, 0);`,
  );
  assert.equal(code, 0);
  assert.match(stdout, /still running/);
});

Deno.test("a PostgreSQL shutdown (57P01) rejected by the driver does not end the process", async () => {
  const { code } = await withGuard(
    `Promise.reject(Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }));`,
  );
  assert.equal(code, 0);
});

Deno.test("any other unhandled rejection still ends the process", async () => {
  const { code, stdout } = await withGuard(`Promise.reject(new TypeError("a bug"));`);
  assert.notEqual(code, 0);
  assert.doesNotMatch(stdout, /still running/);
});
