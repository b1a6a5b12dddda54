import assert from "node:assert/strict";
import { readTextFileBounded } from "../src/read_bounded.ts";

Deno.test("readTextFileBounded reads up to its bound and no further", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-bounded-" });
  try {
    const file = `${dir}/f`;
    await t.step("exactly the bound: its text", () => {
      Deno.writeTextFileSync(file, "é".repeat(50_000)); // 100,000 bytes, over several reads
      assert.equal(readTextFileBounded(file, 100_000), "é".repeat(50_000));
    });
    await t.step("one byte more: undefined", () => {
      assert.equal(readTextFileBounded(file, 99_999), undefined);
    });
    await t.step("a device that never ends: undefined", () => {
      assert.equal(readTextFileBounded("/dev/zero", 1024 * 1024), undefined);
    });
    await t.step("a missing file: NotFound", () => {
      assert.throws(() => readTextFileBounded(`${dir}/none`, 10), Deno.errors.NotFound);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
