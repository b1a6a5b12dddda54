import assert from "node:assert/strict";
import { run } from "./_run.ts";

Deno.test("status up refuses an empty --data-dir instead of writing into /", async (t) => {
  for (const value of ["", "  "]) {
    await t.step(JSON.stringify(value), async () => {
      const result = await run(["up", "--port", "0", "--data-dir", value]);
      assert.equal(result.code, 2);
      assert.match(result.stderr.join("\n"), /--data-dir.*must be a directory path/);
      assert.deepEqual(result.stdout, []);
    });
  }
});
