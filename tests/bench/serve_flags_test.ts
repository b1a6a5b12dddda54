/**
 * The dashboard is measured with the V8 flags users start it with: the bench takes them from
 * `deno.json`'s `serve` task, and the other ways to start a dashboard carry the same ones.
 */
import assert from "node:assert/strict";
import { ROOT, serveV8Flags } from "../../bench/_dashboard.ts";

const denoJson = Deno.readTextFileSync(`${ROOT}/deno.json`);
const tasks = (JSON.parse(denoJson) as { tasks: Record<string, string> }).tasks;

Deno.test("the bench starts the dashboard with the serve task's V8 flags", () => {
  assert.deepEqual(serveV8Flags(denoJson), [
    "--v8-flags=--max-semi-space-size=1,--heap-growing-percent=35",
  ]);
  assert.deepEqual(serveV8Flags(JSON.stringify({ tasks: { serve: "deno run main.ts" } })), []);
});

Deno.test("status up and the compiled binary get the same V8 flags as status serve", () => {
  for (const task of ["start", "compile"]) {
    assert.deepEqual(
      tasks[task].match(/--v8-flags=\S+/g),
      serveV8Flags(denoJson),
      `deno task ${task}`,
    );
  }
});

Deno.test("the README tells those who start status serve themselves to add the flags", () => {
  const readme = Deno.readTextFileSync(`${ROOT}/README.md`);
  for (const flag of serveV8Flags(denoJson)) assert.ok(readme.includes(flag), flag);
});
