/**
 * `deno task compile` builds the single binary. `deno compile` downloads its runtime base, which
 * the machines this runs on cannot reach, so the base here is this Deno itself (`DENORT_BIN`): the
 * binary it makes is not the program, but everything the task does before and after taking the
 * base (the module graph, the npm packages, the embedded files) runs as it would with `denort`.
 */
import assert from "node:assert/strict";
import { cpSync } from "node:fs";
import denoJson from "../../deno.json" with { type: "json" };

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const denoLock = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.lock`));

/** The compile task's arguments after `deno`, its output put in `output`. */
function compileArgs(output: string): string[] {
  const words = denoJson.tasks.compile.split(/\s+/);
  assert.equal(words[0], "deno");
  const at = words.indexOf("--output");
  assert.ok(at > 0, "the compile task names its --output");
  words[at + 1] = output;
  return words.slice(1);
}

Deno.test("the compile task's --exclude names the bintrees its lock resolves", () => {
  // tdigest's dependency ships 2 MB of test data that makes deno compile overflow its stack.
  const bintrees = Object.keys(denoLock.npm).filter((name) => name.startsWith("bintrees@"));
  assert.equal(bintrees.length, 1, "one bintrees in deno.lock");
  assert.ok(
    compileArgs("status").join(" ").includes(
      `--exclude node_modules/.deno/${bintrees[0]}/node_modules/bintrees/test`,
    ),
    `the compile task excludes the test data of ${bintrees[0]}`,
  );
});

Deno.test("deno task compile builds the binary (with this Deno as its base)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "status-compile-" });
  try {
    for (const name of ["deno.json", "deno.lock", "main.ts", "mod.ts", "src"]) {
      cpSync(`${ROOT}/${name}`, `${dir}/${name}`, { recursive: true });
    }
    const out = await new Deno.Command(Deno.execPath(), {
      args: compileArgs("status"),
      cwd: dir,
      env: { DENORT_BIN: Deno.execPath(), NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr.slice(-2000));
    assert.ok((await Deno.stat(`${dir}/status`)).isFile, "./status was written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
