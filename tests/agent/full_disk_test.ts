/**
 * A full state directory, on a real small file system (a 256 KiB tmpfs mounted for the test, so
 * it needs root with the right to mount): the agent never exits, reports what it has over the
 * network even when it cannot write it down (and says so), refuses new commands while it cannot
 * journal them (no ack: the dashboard delivers them again), and recovers by itself when space
 * returns. A journal that ends in a line torn by a crash, and cannot be compacted on a full disk,
 * loses no line written after it; an accepted result leaves no older outbox file behind.
 */
import assert from "node:assert/strict";
import { createExecutor, Journal, openAgentState, Outbox, runAgent } from "../../src/agent/mod.ts";
import { command, StubDashboard } from "../_stub_dashboard.ts";
import { removeAndWaitForSpace } from "../_disk.ts";
import { captureLogs, eventually } from "./_helpers.ts";

function mountTmpfs(dir: string, size: string): boolean {
  try {
    const out = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.code === 0;
  } catch {
    return false;
  }
}

function unmount(dir: string): void {
  const umount = (args: string[]) =>
    new Deno.Command("umount", { args, stdout: "null", stderr: "null" }).outputSync().success;
  // Busy for a moment when another test's spawn forked while a file here was open (the child
  // holds it until its exec): detached then, and gone once the last user lets go.
  if (!umount([dir])) umount(["-l", dir]);
}

/**
 * Fills the file system holding `dir` with one file, then the free room left in the last page of
 * the journal with blank lines (which loading skips): no write to the state directory fits any
 * more. Returns the filler's path.
 */
function fill(dir: string, journal: string): string {
  const path = `${dir}/filler`;
  const full = (write: () => void) => {
    try {
      for (;;) write();
    } catch (error) {
      assert.match((error as Error).message, /No space left/);
    }
  };
  {
    using file = Deno.openSync(path, { write: true, create: true });
    const chunk = new Uint8Array(4096);
    full(() => file.writeSync(chunk));
    full(() => file.writeSync(chunk.subarray(0, 64)));
  }
  using log = Deno.openSync(journal, { append: true });
  full(() => log.writeSync(new TextEncoder().encode("\n")));
  return path;
}

const mnt = Deno.makeTempDirSync({ prefix: "status-full-disk-" });
const mounted = mountTmpfs(mnt, "256k");
if (!mounted) {
  Deno.removeSync(mnt);
  console.log("full disk test skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
}
let unmounted = !mounted;
/** Unmounts the test's file system, once; also when a filter left out the test that uses it. */
function unmountMnt(): void {
  if (unmounted) return;
  unmounted = true;
  unmount(mnt);
  Deno.removeSync(mnt, { recursive: true });
}
globalThis.addEventListener("unload", unmountMnt);

Deno.test({
  name: "a full state directory neither stops the agent nor loses a result, and heals",
  ignore: !mounted,
  fn: async (t) => {
    using logs = captureLogs();
    const dir = `${mnt}/state`;
    await using stub = new StubDashboard();
    const stop = new AbortController();
    const state = openAgentState({ dir });
    const executor = createExecutor({
      stateDir: dir,
      allowedPrograms: ["echo", "sleep"],
      cgroups: false, // beside other test threads (README, "As a library")
    });
    let ended = false;
    const done = runAgent({
      dashboardUrl: stub.url,
      agentId: "agent-1",
      pollingTimeoutSecs: 1,
      pollingBackoffSecs: 1,
      heartbeat: false,
      executor,
      state,
    }, stop.signal).finally(() => ended = true);
    let filler: string | undefined;
    try {
      await t.step("a result that cannot be written is still reported", async () => {
        stub.enqueue(command("cmd-1", "sleep 1"));
        await stub.until(() => stub.acks.length === 1, 10_000, "the ack");
        filler = fill(mnt, `${dir}/journal.jsonl`);
        await stub.until(() => stub.reports.length === 1, 10_000, "the report");
        assert.equal(stub.reports[0].status, "success");
        assert.ok(logs.has(/could not be written to the outbox; it is kept in memory/));
        assert.ok(logs.has(/journal could not be written; the change is kept in memory/));
      });

      await t.step(
        "a new command is neither acknowledged nor run while it cannot be journaled",
        async () => {
          stub.enqueue(command("cmd-2", "echo two"));
          await eventually(() => logs.has(/cannot journal the command/), 10_000, "the refusal");
          assert.equal(stub.acks.length, 1, "cmd-2 was not acknowledged");
          assert.equal(stub.reports.length, 1, "cmd-2 was not run");
          const waits = stub.seen.filter((s) => s.kind === "wait").length;
          // It keeps trying to write, not to take commands.
          await eventually(
            () =>
              logs.records.filter((r) => /still cannot be written/.test(String(r.message)))
                .length >= 2,
            10_000,
            "two retries",
          );
          assert.equal(stub.seen.filter((s) => s.kind === "wait").length, waits);
          assert.equal(ended, false, "the agent is still running");
        },
      );

      await t.step(
        "when space returns it heals by itself and takes the command again",
        async () => {
          await removeAndWaitForSpace(filler!);
          filler = undefined;
          await eventually(() => logs.has(/can be written again/), 10_000, "the recovery");
          // The dashboard delivers the unacknowledged command again.
          stub.enqueue({ ...command("cmd-2", "echo two"), attempt: 2 });
          await stub.until(() => stub.reports.length === 2, 10_000, "the second report");
          assert.equal(stub.reports[1].command_id, "cmd-2");
          assert.equal(stub.reports[1].status, "success");
          // What waited in memory is on disk now.
          assert.ok(state.journal.saved);
          const journal = Deno.readTextFileSync(`${dir}/journal.jsonl`);
          assert.match(journal, /"cmd-1"/);
          assert.match(journal, /"cmd-2"/);
          for (const line of journal.split("\n").filter((l) => l !== "")) JSON.parse(line);
        },
      );
    } finally {
      stop.abort();
      const summary = await done;
      assert.equal(summary.commandsRun, 2);
      state[Symbol.dispose]();
      await executor.close?.();
      unmountMnt();
    }
  },
});

Deno.test({
  name: "a journal ending in a torn line that cannot be compacted on a full disk loses no new line",
  ignore: !mounted,
  fn: async () => {
    const disk = Deno.makeTempDirSync({ prefix: "status-full-torn-" });
    assert.ok(mountTmpfs(disk, "64k"));
    try {
      const path = `${disk}/journal.jsonl`;
      {
        using journal = Journal.open({ dir: disk });
        journal.start({ id: "cmd-1", name: "echo one", attempt: 1 });
      }
      // A crash tore the next line; the disk then filled up (the journal's last page keeps room).
      Deno.writeTextFileSync(path, '{"op":"start","id":"cmd-2","na', { append: true });
      const filler = `${disk}/filler`;
      {
        using file = Deno.openSync(filler, { write: true, create: true });
        assert.throws(() => {
          for (;;) file.writeSync(new Uint8Array(4096));
        }, /No space left/);
      }
      {
        // The snapshot that would drop the torn line cannot be written: the log is appended to.
        using journal = Journal.open({ dir: disk });
        assert.deepEqual(journal.entries().map((e) => e.id), ["cmd-1"]);
        journal.start({ id: "cmd-3", name: "echo three", attempt: 1 });
      }
      await removeAndWaitForSpace(filler);
      using reopened = Journal.open({ dir: disk });
      assert.deepEqual(reopened.entries().map((e) => e.id), ["cmd-1", "cmd-3"]);
    } finally {
      unmount(disk);
      Deno.removeSync(disk, { recursive: true });
    }
  },
});

Deno.test({
  name: "an accepted result whose replacement could not be written leaves no older file behind",
  ignore: !mounted,
  fn: async () => {
    const disk = Deno.makeTempDirSync({ prefix: "status-full-outbox-" });
    assert.ok(mountTmpfs(disk, "64k"));
    try {
      const outbox = Outbox.open({ dir: disk });
      const first = { command_id: "cmd-1", status: "interrupted" as const, attempt: 1 };
      assert.equal(outbox.put(first), true);
      const filler = `${disk}/filler`;
      {
        using file = Deno.openSync(filler, { write: true, create: true });
        assert.throws(() => {
          for (;;) file.writeSync(new Uint8Array(4096));
        }, /No space left/);
      }
      // Delivered again: the known result goes out with the new attempt, from memory.
      assert.equal(outbox.put({ ...first, attempt: 2 }), false);
      outbox.remove("cmd-1"); // accepted
      await removeAndWaitForSpace(filler);
      assert.deepEqual(Outbox.open({ dir: disk }).pending(), []);
    } finally {
      unmount(disk);
      Deno.removeSync(disk, { recursive: true });
    }
  },
});

Deno.test({
  name: "who owns a state directory is recorded once space returns, before a result is kept",
  ignore: !mounted,
  fn: async () => {
    const disk = Deno.makeTempDirSync({ prefix: "status-full-owner-" });
    assert.ok(mountTmpfs(disk, "64k"));
    const web1 = { agentId: "web-1", dashboardUrl: "http://dash-a:5000" };
    try {
      const dir = `${disk}/state`;
      Deno.mkdirSync(dir, { mode: 0o700 });
      const filler = `${disk}/filler`;
      {
        using file = Deno.openSync(filler, { write: true, create: true });
        assert.throws(() => {
          for (;;) file.writeSync(new Uint8Array(4096));
        }, /No space left/);
      }
      {
        using state = openAgentState({ dir, owner: web1 });
        assert.equal(state.retry?.(), false, "still full");
        await removeAndWaitForSpace(filler);
        assert.equal(state.retry?.(), true);
        state.outbox.put({ command_id: "cmd-1", status: "interrupted", attempt: 1 });
      }
      // web-1's result is not taken for web-2's.
      assert.throws(
        () => openAgentState({ dir, owner: { ...web1, agentId: "web-2" } }),
        { name: "StateOwnerError" },
      );
    } finally {
      unmount(disk);
      Deno.removeSync(disk, { recursive: true });
    }
  },
});
