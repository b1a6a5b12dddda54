import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { BATCH_FLUSH_LENGTH, LineBatcher } from "../../src/log/batch.ts";

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

Deno.test("the lines of one turn are written together at its end", async () => {
  const writes: string[] = [];
  const batch = new LineBatcher((text) => writes.push(text));
  batch.add("one");
  batch.add("two");
  assert.deepEqual(writes, [], "nothing written during the turn");
  assert.equal(batch.pending, 2);
  await nextTurn();
  assert.deepEqual(writes, ["one\ntwo\n"]);
  batch.add("three");
  await nextTurn();
  assert.deepEqual(writes, ["one\ntwo\n", "three\n"]);
});

Deno.test("a line written at once takes the lines before it along, in order", () => {
  const writes: string[] = [];
  const batch = new LineBatcher((text) => writes.push(text));
  batch.add("info 1");
  batch.add("warning", true);
  assert.deepEqual(writes, ["info 1\nwarning\n"]);
  assert.equal(batch.pending, 0);
});

Deno.test("a batch that grows past its bound is written at once", () => {
  const writes: string[] = [];
  const batch = new LineBatcher((text) => writes.push(text));
  const line = "x".repeat(1023);
  for (let i = 0; i < BATCH_FLUSH_LENGTH / 1024; i++) batch.add(line);
  assert.equal(writes.length, 1);
  assert.equal(writes[0].length, BATCH_FLUSH_LENGTH);
  assert.equal(batch.pending, 0);
});

Deno.test("a write that fails drops its lines and does not stop the program", async () => {
  let fail = true;
  const writes: string[] = [];
  const batch = new LineBatcher((text) => {
    if (fail) throw new Error("ENOSPC");
    writes.push(text);
  });
  batch.add("lost");
  await nextTurn();
  fail = false;
  batch.add("kept");
  batch.flush();
  assert.deepEqual(writes, ["kept\n"]);
});

async function runChild(how: string): Promise<{ code: number; lines: string[] }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", new URL("./_stderr_child.ts", import.meta.url).pathname, how],
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stderr);
  return { code: output.code, lines: text.split("\n").filter((line) => line !== "") };
}

Deno.test("a log file gets every line, in order, however the program ends", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-log-end-" });
  try {
    for (const how of ["close", "end", "throw", "exit"]) {
      await t.step(how, async () => {
        const file = `${dir}/${how}.log`;
        const output = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--quiet",
            `--allow-read=${dir}`,
            `--allow-write=${dir}`,
            new URL("./_stderr_child.ts", import.meta.url).pathname,
            how,
            file,
          ],
          stdout: "null",
          stderr: "null",
        }).output();
        assert.equal(output.code, how === "throw" ? 1 : 0);
        const lines = Deno.readTextFileSync(file).split("\n").filter((line) => line !== "");
        assert.deepEqual(
          lines.map((line) => JSON.parse(line).message),
          ["first", "second", "third, a warning", "fourth"],
        );
      });
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("standard error gets every line, in order, however the program ends", async (t) => {
  for (const how of ["close", "end", "throw"]) {
    await t.step(how, async () => {
      const { code, lines } = await runChild(how);
      assert.equal(code, how === "throw" ? 1 : 0);
      assert.deepEqual(
        lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line).message),
        ["first", "second", "third, a warning", "fourth"],
      );
    });
  }
  await t.step("the CLI's own lines keep their place among the log lines", async () => {
    const { code, lines } = await runChild("cli");
    assert.equal(code, 0);
    assert.deepEqual(
      lines.map((line) => JSON.parse(line).message),
      ["first", "the CLI's own line", "second"],
    );
  });
  await t.step("many lines in one turn", async () => {
    const { code, lines } = await runChild("busy");
    assert.equal(code, 0);
    assert.equal(lines.length, 5000);
    assert.deepEqual(lines.map((line) => JSON.parse(line).i), [...Array(5000).keys()]);
  });
});
