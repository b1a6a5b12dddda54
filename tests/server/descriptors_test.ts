/**
 * The count of free descriptors behind the connection limit: read from `/proc/self` where the
 * process may (`--allow-all`), which takes no descriptor from anyone, and otherwise counted by
 * opening files; both give the same figure.
 */
import assert from "node:assert/strict";

const LISTENER = new URL("../../src/http_listener.ts", import.meta.url).href;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
const hasPrlimit = (() => {
  try {
    return new Deno.Command("prlimit", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

async function countUnder(nofile: number, permissions: string[]): Promise<number> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(
    script,
    `import { availableDescriptors } from "${LISTENER}";\n` +
      `console.log(JSON.stringify(availableDescriptors(100000)));`,
  );
  const out = await new Deno.Command("prlimit", {
    args: [
      `--nofile=${nofile}:${nofile}`,
      Deno.execPath(),
      "run",
      "--config",
      CONFIG,
      ...permissions,
      script,
    ],
    stdin: "null",
  }).output().finally(() => Deno.remove(script));
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text);
}

Deno.test({
  name:
    "free descriptors are read from /proc under --allow-all and counted by opening otherwise, alike",
  ignore: !hasPrlimit,
  fn: async () => {
    const fromProc = await countUnder(400, ["-A"]);
    const counted = await countUnder(400, ["--allow-read"]);
    for (const figure of [fromProc, counted]) {
      assert.ok(figure > 300 && figure < 400, `${figure} of 400`);
    }
    // The runtime's own descriptors differ by a few between the two permission sets.
    assert.ok(Math.abs(fromProc - counted) <= 10, `${fromProc} against ${counted}`);
  },
});
