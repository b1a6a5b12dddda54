/**
 * The journal on a device that is full (`/dev/full`, which answers every write with ENOSPC, put
 * in place of the journal file: fault injection that needs no mount): a start is refused with
 * {@link StateWriteError} and nothing of it is kept, other changes wait in memory, and all of
 * them are written, whole lines only, once the file can be written again. The outbox keeps a
 * result it cannot write in memory. Deno opens `/dev` only under `--allow-all`, so this file runs
 * itself in a child `deno test --allow-all`. (`full_disk_test.ts` does the same end to end on a
 * real full tmpfs where one can be mounted.)
 */
import assert from "node:assert/strict";
import { Journal } from "../../src/agent/journal.ts";
import { Outbox } from "../../src/agent/outbox.ts";
import { StateWriteError } from "../../src/agent/fs.ts";
import { runsHereOrUnderAllowAll } from "../exec/helpers.ts";

const here = runsHereOrUnderAllowAll(import.meta.filename!);

Deno.test({
  name: "a full journal refuses starts, keeps other changes in memory and heals",
  ignore: !here,
  fn: () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-journal-full-" });
    const path = `${dir}/journal.jsonl`;
    try {
      using full = Journal.open({ dir });
      full.start({ id: "cmd-1", name: "echo one", attempt: 1 });
      // Closed, the journal opens its file again at the next write: by then the disk is full
      // (the journal file is a device that is always full).
      full.close();
      const before = Deno.readTextFileSync(path);
      Deno.renameSync(path, `${path}.saved`);
      Deno.symlinkSync("/dev/full", path);
      full.complete("cmd-1", { command_id: "cmd-1", status: "success", attempt: 1 });
      assert.equal(full.get("cmd-1")?.state, "done", "kept in memory");
      assert.equal(full.saved, false);
      assert.throws(
        () => full.start({ id: "cmd-2", name: "echo two", attempt: 1 }),
        StateWriteError,
      );
      assert.equal(full.get("cmd-2"), undefined, "a start that was not written did not happen");
      assert.equal(full.retry(), false);
      // Space returns.
      Deno.removeSync(path);
      Deno.renameSync(`${path}.saved`, path);
      assert.equal(full.retry(), true);
      assert.equal(full.saved, true);
      full.start({ id: "cmd-2", name: "echo two", attempt: 1 });
      full.close();
      const text = Deno.readTextFileSync(path);
      assert.ok(text.startsWith(before));
      for (const line of text.split("\n").filter((l) => l !== "")) JSON.parse(line);
      using reopened = Journal.open({ dir });
      assert.equal(reopened.get("cmd-1")?.state, "done");
      assert.equal(reopened.get("cmd-2")?.state, "running");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the outbox keeps a result it cannot write in memory and writes it once it can",
  ignore: !here,
  fn: () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-outbox-full-" });
    try {
      const outbox = Outbox.open({ dir });
      // The outbox directory cannot be written (a file stands in its place).
      Deno.removeSync(`${dir}/outbox`, { recursive: true });
      Deno.writeTextFileSync(`${dir}/outbox`, "");
      const report = { command_id: "cmd-1", status: "success" as const, attempt: 1 };
      assert.equal(outbox.put(report), false);
      assert.deepEqual(outbox.get("cmd-1"), report, "sent from memory");
      assert.equal(outbox.unsaved, 1);
      assert.equal(outbox.retry(), false);
      Deno.removeSync(`${dir}/outbox`);
      assert.equal(outbox.retry(), true);
      assert.equal(outbox.unsaved, 0);
      assert.deepEqual(Outbox.open({ dir }).pending(), [report], "on disk now");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
