import assert from "node:assert/strict";
import { join } from "node:path";
import { Journal, openAgentState, Outbox, summarizeReport } from "../../src/agent/mod.ts";
import type { ReportRequest } from "../../src/protocol/mod.ts";
import { LOCK_RELEASE_WAIT_MS, STATE_LOCK_FILE, STATE_OWNER_FILE } from "../../src/agent/state.ts";
import { INSTANCE_ID_FILE, stateInstanceId } from "../../src/agent/instance.ts";
import { MAX_OUTBOX_FILE_BYTES } from "../../src/agent/outbox.ts";
import { captureLogs, FakeExecutor } from "./_helpers.ts";
import { runAgent } from "../../src/agent/mod.ts";
import { command, StubDashboard } from "../_stub_dashboard.ts";
import { smallDisk } from "../_disk.ts";

function report(id: string, stdout = "hello\n"): ReportRequest {
  return {
    command_id: id,
    status: "success",
    attempt: 1,
    result: {
      exit_code: 0,
      signal: null,
      duration_secs: 0.01,
      stdout,
      stderr: "",
      stdout_truncated_bytes: 0,
      stderr_truncated_bytes: 0,
    },
    error: null,
    started_at: "2026-01-12T10:00:00.000Z",
    completed_at: "2026-01-12T10:00:00.010Z",
  };
}

Deno.test("journal survives a re-open with every state change", () => {
  const dir = Deno.makeTempDirSync();
  try {
    {
      using journal = Journal.open({ dir });
      journal.start({ id: "a", name: "echo a", attempt: 1 });
      journal.start({ id: "b", name: "echo b", attempt: 2 });
      journal.start({ id: "c", name: "echo c", attempt: 1 });
      journal.complete("b", report("b"));
      journal.start({ id: "d", name: "echo d", attempt: 1 });
      journal.complete("d", report("d"));
      journal.accept("d");
      journal.forget("c");
    }
    using journal = Journal.open({ dir });
    assert.equal(journal.size, 3);
    assert.equal(journal.get("a")?.state, "running");
    assert.equal(journal.get("b")?.state, "done");
    assert.equal(journal.get("b")?.attempt, 2);
    assert.equal(journal.get("b")?.status, "success");
    assert.equal(journal.get("c"), undefined);
    assert.equal(journal.get("d")?.state, "accepted");
    assert.ok(journal.get("d")?.accepted_at);
    assert.throws(() => journal.start({ id: "a", name: "echo a", attempt: 1 }), /already/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("journal ignores a line torn by a crash and keeps appending cleanly", () => {
  const dir = Deno.makeTempDirSync();
  try {
    {
      using journal = Journal.open({ dir });
      journal.start({ id: "a", name: "echo a", attempt: 1 });
    }
    // A crash in the middle of the second append.
    Deno.writeTextFileSync(join(dir, "journal.jsonl"), '{"op":"start","id":"b","na', {
      append: true,
    });
    {
      using journal = Journal.open({ dir });
      assert.equal(journal.size, 1);
      journal.start({ id: "c", name: "echo c", attempt: 1 });
    }
    using journal = Journal.open({ dir });
    assert.deepEqual(journal.entries().map((e) => e.id), ["a", "c"]);
    const text = Deno.readTextFileSync(join(dir, "journal.jsonl"));
    assert.ok(text.endsWith("\n"));
    for (const line of text.trim().split("\n")) JSON.parse(line);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a journal with hundreds of megabytes of damage opens, keeping the changes around it", () => {
  // A crash can leave a region of zeros in a file (XFS, ext4 with delayed allocation); a hand edit
  // can leave anything. 600 MiB without a newline is one line longer than any string V8 makes: the
  // journal could not be read at all, and the agent did not start. (A sparse file: no disk used.)
  const dir = Deno.makeTempDirSync({ prefix: "status-huge-journal-" });
  const path = join(dir, "journal.jsonl");
  try {
    {
      using journal = Journal.open({ dir });
      journal.start({ id: "before", name: "echo a", attempt: 1 });
    }
    {
      using file = Deno.openSync(path, { write: true });
      file.truncateSync(Deno.statSync(path).size + 600 * 1024 * 1024);
    }
    const after = { op: "start", id: "after", name: "echo b", attempt: 1, at: "2026-01-12T10:00Z" };
    Deno.writeTextFileSync(path, "\n" + JSON.stringify(after) + "\n", { append: true });
    {
      using journal = Journal.open({ dir });
      assert.deepEqual(journal.entries().map((e) => e.id), ["before", "after"]);
    }
    assert.ok(Deno.statSync(path).size < 4096, "compacted to what it holds");
    using journal = Journal.open({ dir });
    assert.deepEqual(journal.entries().map((e) => e.id), ["before", "after"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a journal of many damaged lines warns of the first ones and counts the rest", () => {
  // One warning per line made millions of log lines (and minutes) out of a damaged journal.
  const dir = Deno.makeTempDirSync({ prefix: "status-damaged-journal-" });
  try {
    {
      using journal = Journal.open({ dir });
      journal.start({ id: "a", name: "echo a", attempt: 1 });
    }
    Deno.writeTextFileSync(join(dir, "journal.jsonl"), "garbage\n".repeat(5000), { append: true });
    using logs = captureLogs();
    using journal = Journal.open({ dir });
    assert.deepEqual(journal.entries().map((e) => e.id), ["a"]);
    const skipped = logs.records.filter((r) => /^journal line/.test(String(r.message)));
    assert.ok(skipped.length <= 11, `${skipped.length} warnings`);
    assert.equal(skipped.at(-1)?.skipped, 5000);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("damaged journal lines are kept beside the journal, named in a warning", async (t) => {
  // The snapshot that drops an unreadable line rewrote the log: the line was lost without a trace.
  await t.step("a damaged line is kept, with the journal as it was", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-kept-damage-" });
    const path = join(dir, "journal.jsonl");
    try {
      {
        using journal = Journal.open({ dir });
        journal.start({ id: "a", name: "echo a", attempt: 1 });
      }
      Deno.writeTextFileSync(path, '{"op":"start","id":"b",\u0000\u0000\n', { append: true });
      const before = Deno.readTextFileSync(path);
      using logs = captureLogs();
      {
        using journal = Journal.open({ dir });
        assert.deepEqual(journal.entries().map((e) => e.id), ["a"]);
      }
      const kept = [...Deno.readDirSync(dir)].map((e) => e.name)
        .filter((name) => name.startsWith("journal.jsonl.damaged-"));
      assert.equal(kept.length, 1);
      assert.equal(Deno.readTextFileSync(join(dir, kept[0])), before);
      assert.ok(!Deno.readTextFileSync(path).includes('"b"'), "the journal is rewritten");
      const warning = logs.records.find((r) => r.kept !== undefined);
      assert.equal(warning?.kept, join(dir, kept[0]));
      // Opened again, the journal is clean: nothing more is kept.
      using _again = Journal.open({ dir });
      assert.equal(
        [...Deno.readDirSync(dir)].filter((e) => e.name.includes(".damaged-")).length,
        1,
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
  await t.step("a last line torn by a crash is not damage", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-kept-damage-" });
    try {
      {
        using journal = Journal.open({ dir });
        journal.start({ id: "a", name: "echo a", attempt: 1 });
      }
      Deno.writeTextFileSync(join(dir, "journal.jsonl"), '{"op":"start","id":"b","na', {
        append: true,
      });
      using _journal = Journal.open({ dir });
      assert.deepEqual(
        [...Deno.readDirSync(dir)].filter((e) => e.name.includes(".damaged-")).map((e) => e.name),
        [],
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
});

/**
 * Makes a directory immutable (`chattr +i`: nothing can be created, linked or renamed in it, while
 * its files can still be appended to), or mutable again; `false` where that is not allowed.
 */
function immutable(dir: string, on: boolean): boolean {
  try {
    return new Deno.Command("chattr", {
      args: [on ? "+i" : "-i", dir],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

/** Whether {@link immutable} works here (root, on a file system with the attribute). */
function canMakeImmutable(): boolean {
  const dir = Deno.makeTempDirSync({ prefix: "status-chattr-probe-" });
  try {
    return immutable(dir, true) && immutable(dir, false);
  } finally {
    Deno.removeSync(dir);
  }
}

/** A start line as the journal writes it. */
function startLine(id: string): string {
  return JSON.stringify({ op: "start", id, name: "echo a", attempt: 1, at: "2026-01-12T10:00Z" }) +
    "\n";
}

Deno.test("a journal holding more changes than it ever writes is set aside unread", async (t) => {
  // A log of millions of valid lines was read whole into memory at start, however large.
  await t.step("set aside, named in an error; a new journal is started", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-oversized-journal-" });
    const path = join(dir, "journal.jsonl");
    try {
      const text = Array.from({ length: 200 }, (_, i) => startLine(`c${i}`)).join("");
      Deno.writeTextFileSync(path, text, { mode: 0o600 });
      using logs = captureLogs();
      using journal = Journal.open({ dir, maxBytes: 8192 });
      assert.equal(journal.size, 0);
      const kept = [...Deno.readDirSync(dir)].map((e) => e.name)
        .filter((name) => name.startsWith("journal.jsonl.oversized-"));
      assert.equal(kept.length, 1);
      assert.equal(Deno.readTextFileSync(join(dir, kept[0])), text);
      const error = logs.records.find((r) => r.level === "error");
      assert.equal(error?.kept, join(dir, kept[0]));
      assert.match(String(error?.message), /more than 8192 bytes of changes.*runs again/);
      journal.start({ id: "new", name: "echo new", attempt: 1 });
      assert.deepEqual(Journal.open({ dir }).entries().map((e) => e.id), ["new"]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
  await t.step("damage does not count: only the changes read", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-oversized-journal-" });
    const path = join(dir, "journal.jsonl");
    try {
      Deno.writeTextFileSync(
        path,
        startLine("a") + "garbage\n".repeat(10_000) + startLine("b"),
        { mode: 0o600 },
      );
      using journal = Journal.open({ dir, maxBytes: 8192 });
      assert.deepEqual(journal.entries().map((e) => e.id), ["a", "b"]);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
  await t.step({
    name: "one that cannot be moved aside stops the start, saying what to do",
    ignore: !canMakeImmutable(),
    fn: () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-oversized-journal-" });
      const path = join(dir, "journal.jsonl");
      try {
        Deno.writeTextFileSync(path, startLine("a").repeat(200), { mode: 0o600 });
        assert.ok(immutable(dir, true));
        assert.throws(
          () => Journal.open({ dir, maxBytes: 8192 }),
          new RegExp(
            `^Error: ${path} holds more than 8192 bytes .* cannot be moved aside .*move it away`,
          ),
        );
      } finally {
        immutable(dir, false);
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
  await t.step("a bad limit is refused", () => {
    assert.throws(
      () => Journal.open({ maxBytes: 0 }),
      /maxBytes must be a positive integer, got 0/,
    );
  });
});

Deno.test({
  name:
    "damaged lines that cannot be kept aside: said once, and the journal stays within its limit",
  // Root's chattr: a directory nothing can be linked, copied or renamed into, whose journal can
  // still be appended to.
  ignore: !canMakeImmutable(),
  fn: async (t) => {
    const damaged = (dir: string) => {
      Deno.writeTextFileSync(join(dir, "journal.jsonl"), startLine("a") + "\u0000damage\n", {
        mode: 0o600,
      });
    };
    await t.step("each compaction warned again; now once", () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-unkept-damage-" });
      try {
        damaged(dir);
        assert.ok(immutable(dir, true));
        using logs = captureLogs();
        {
          using journal = Journal.open({ dir });
          for (let n = 0; n < 3000; n++) journal.spawned("a", { pid: 1000 + n });
        }
        const told = logs.records.filter((r) =>
          /cannot be kept aside/.test(String(r.message)) && r.level === "warning"
        );
        assert.equal(told.length, 1);
        immutable(dir, false);
        using journal = Journal.open({ dir });
        assert.equal(journal.get("a")?.process?.pid, 3999);
        assert.ok(logs.has(/those lines included, is kept in/), "kept aside once it could be");
      } finally {
        immutable(dir, false);
        Deno.removeSync(dir, { recursive: true });
      }
    });
    await t.step("past the limit a change is refused as on a full disk, until room is made", () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-unkept-damage-" });
      const path = join(dir, "journal.jsonl");
      try {
        damaged(dir);
        assert.ok(immutable(dir, true));
        using logs = captureLogs();
        const maxBytes = 64 * 1024;
        let pid = 1000;
        {
          using journal = Journal.open({ dir, maxBytes });
          for (let n = 0; n < 5000 && journal.saved; n++) journal.spawned("a", { pid: ++pid });
          assert.ok(!journal.saved, "changes wait in memory at the limit");
          assert.ok(Deno.statSync(path).size <= maxBytes, `${Deno.statSync(path).size} bytes`);
          assert.throws(
            () => journal.start({ id: "b", name: "echo b", attempt: 1 }),
            (error: Error) =>
              error.name === "StateWriteError" &&
              /would hold more than 65536 bytes, the most it may/.test(error.message),
          );
          assert.equal(journal.retry(), false, "no room yet");
          assert.ok(Deno.statSync(path).size <= maxBytes, `${Deno.statSync(path).size} bytes`);
          const told = logs.records.filter((r) => /cannot be kept aside/.test(String(r.message)));
          assert.equal(told.filter((r) => r.level === "warning").length, 1);
          immutable(dir, false);
          assert.equal(journal.retry(), true, "a snapshot made room");
          assert.ok(Deno.statSync(path).size < 1024);
          journal.start({ id: "b", name: "echo b", attempt: 1 });
        }
        using reopened = Journal.open({ dir, maxBytes });
        assert.deepEqual(reopened.entries().map((e) => e.id), ["a", "b"]);
        assert.equal(reopened.get("a")?.process?.pid, pid);
      } finally {
        immutable(dir, false);
        Deno.removeSync(dir, { recursive: true });
      }
    });
  },
});

/**
 * Waits until the file system's clock has moved on: a file's change time is kept to the kernel's
 * tick (a few ms), and copies set aside within one tick cannot be told newer or older.
 */
function nextTick(): void {
  const until = Date.now() + 12;
  while (Date.now() < until) {
    // a few ms, once per copy
  }
}

Deno.test("copies set aside are kept five at most, the older removed with a warning", async (t) => {
  // Every damaged journal and unreadable outbox file was kept for good: they piled up unseen.
  await t.step("journal copies", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-copies-" });
    const path = join(dir, "journal.jsonl");
    try {
      using logs = captureLogs();
      for (let n = 0; n < 7; n++) {
        Deno.writeTextFileSync(path, `${startLine("a")}damage ${n}\n`, { mode: 0o600 });
        Journal.open({ dir }).close();
        nextTick();
      }
      const kept = [...Deno.readDirSync(dir)].map((e) => e.name)
        .filter((name) => name.startsWith("journal.jsonl.damaged-"));
      const damage = kept.map((name) => Deno.readTextFileSync(join(dir, name)).split("\n")[1]);
      assert.deepEqual(damage.sort(), [2, 3, 4, 5, 6].map((n) => `damage ${n}`));
      const removed = logs.records.filter((r) =>
        /older copies of the journal/.test(String(r.message))
      )
        .flatMap((r) => r.removed as string[]);
      assert.equal(removed.length, 2);
      assert.ok(removed.every((file) => file.startsWith(`${path}.damaged-`)), String(removed));
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
  await t.step("outbox files set aside", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-copies-" });
    const box = join(dir, "outbox");
    try {
      Deno.mkdirSync(box, { mode: 0o700 });
      using logs = captureLogs();
      for (let n = 0; n < 7; n++) {
        Deno.writeTextFileSync(join(box, "bad.json"), `damage ${n}`);
        Outbox.open({ dir });
        nextTick();
      }
      const texts = [...Deno.readDirSync(box)].map((e) => Deno.readTextFileSync(join(box, e.name)));
      assert.deepEqual(texts.sort(), [2, 3, 4, 5, 6].map((n) => `damage ${n}`));
      const removed = logs.records.filter((r) =>
        /older outbox files set aside/.test(String(r.message))
      )
        .flatMap((r) => r.removed as string[]);
      assert.equal(removed.length, 2);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
});

Deno.test("the change that makes the journal compact its log is in the snapshot", async (t) => {
  // The log is rewritten as a snapshot once it holds 1,000 lines (and more than twice the
  // entries): the change written as line 1,001 must be in that snapshot, or a restart forgets it
  // (a start forgotten is a command that runs twice when it is delivered again).
  const cases: [string, (journal: Journal) => void, (journal: Journal) => void][] = [
    ["start", () => {}, (j) => j.start({ id: "t", name: "echo t", attempt: 1 })],
    [
      "done",
      (j) => j.start({ id: "t", name: "echo t", attempt: 1 }),
      (j) => j.complete("t", report("t")),
    ],
    ["accepted", (j) => {
      j.start({ id: "t", name: "echo t", attempt: 1 });
      j.complete("t", report("t"));
    }, (j) => j.accept("t")],
    ["forget", (j) => j.start({ id: "t", name: "echo t", attempt: 1 }), (j) => j.forget("t")],
  ];
  for (const [op, prepare, change] of cases) {
    await t.step(op, () => {
      const dir = Deno.makeTempDirSync();
      const path = join(dir, "journal.jsonl");
      const lines = () => Deno.readTextFileSync(path).split("\n").filter((l) => l !== "").length;
      try {
        let expected;
        {
          using journal = Journal.open({ dir });
          journal.start({ id: "pad", name: "sleep 9", attempt: 1 });
          prepare(journal);
          for (let n = lines(); n < 1000; n++) journal.spawned("pad", { pid: 1000 + n });
          assert.equal(lines(), 1000);
          change(journal);
          assert.ok(lines() <= journal.size, "the log was compacted");
          expected = journal.entries();
        }
        using reopened = Journal.open({ dir });
        assert.deepEqual(reopened.entries(), expected);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
});

Deno.test("journal removes the temporary file of a compaction a crash interrupted", () => {
  const dir = Deno.makeTempDirSync();
  try {
    {
      using journal = Journal.open({ dir });
      journal.start({ id: "a", name: "echo a", attempt: 1 });
    }
    // Killed while writing the snapshot, before its rename over the log.
    const leftover = join(dir, "journal.jsonl.1f2e3d4c.tmp");
    Deno.writeTextFileSync(leftover, '{"op":"entry","entry":{"id":"a"');
    Deno.writeTextFileSync(join(dir, "notes.tmp"), "not the journal's");
    using journal = Journal.open({ dir });
    assert.deepEqual(journal.entries().map((e) => e.id), ["a"]);
    assert.throws(() => Deno.statSync(leftover), Deno.errors.NotFound);
    assert.ok(Deno.statSync(join(dir, "notes.tmp")).isFile);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("journal skips lines that are JSON but no journal change, instead of failing to open", () => {
  const dir = Deno.makeTempDirSync();
  try {
    {
      using journal = Journal.open({ dir });
      journal.start({ id: "a", name: "echo a", attempt: 1 });
    }
    // A damaged disk or a hand edit: each line parses, none is a change the journal wrote.
    const damaged = [
      { op: "done", id: "x" },
      { op: "entry", entry: null },
      { op: "entry", entry: { id: "y" } },
      { op: "start" },
      { op: "start", id: "z", name: 5, attempt: "1", at: null },
      { op: "accepted", id: 7 },
      { op: "spawned", id: "a" },
      { op: "spawned", id: "a", process: {} },
      { op: "exited", id: "a", exit: {} },
      // A summary the outbox would not take (no command_id): a restart put it there and failed.
      { op: "done", id: "a", status: "success", summary: {}, at: "2026-01-01T00:00:00Z" },
      {
        op: "entry",
        entry: { id: "w", name: "x", attempt: 1, state: "done", started_at: "t", summary: {} },
      },
      { op: "no-such-op", id: "a" },
      ["op"],
      42,
    ];
    Deno.writeTextFileSync(
      join(dir, "journal.jsonl"),
      damaged.map((line) => JSON.stringify(line) + "\n").join(""),
      { append: true },
    );
    {
      using journal = Journal.open({ dir });
      assert.deepEqual(journal.entries().map((e) => e.id), ["a"]);
      assert.equal(journal.get("a")?.state, "running");
      assert.equal(journal.get("a")?.process, undefined);
      journal.complete("a", report("a"));
    }
    using journal = Journal.open({ dir });
    assert.equal(journal.get("a")?.state, "done");
    assert.equal(journal.size, 1);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("journal keeps only summaries: output dropped, byte counts kept", () => {
  const summary = summarizeReport(report("a", "héllo\n"));
  assert.equal(summary.result?.stdout, "");
  assert.equal(summary.result?.stdout_truncated_bytes, 7);
  using journal = Journal.open({});
  journal.start({ id: "a", name: "echo héllo", attempt: 1 });
  journal.complete("a", report("a", "héllo\n"));
  assert.equal(journal.get("a")?.summary?.result?.stdout, "");
  assert.equal(journal.durable, false);
});

Deno.test("a summary counts the bytes of base64 output, not its base64 characters", () => {
  // Sent when a dashboard lost a result it had accepted, or the outbox file was lost: its counts
  // are then what the dashboard keeps of output that every byte is delivered or counted of.
  const bytes = new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0x41]); // not UTF-8
  const full = report("a", btoa(String.fromCharCode(...bytes)));
  full.result = {
    ...full.result!,
    stdout_encoding: "base64",
    stdout_truncated_bytes: 10,
    stderr: "AAE=",
    stderr_encoding: "base64",
  };
  const summary = summarizeReport(full);
  assert.equal(summary.result?.stdout, "");
  assert.equal(summary.result?.stdout_truncated_bytes, 10 + 5);
  assert.equal(summary.result?.stderr, "");
  assert.equal(summary.result?.stderr_truncated_bytes, 2);
});

Deno.test("journal pruning", async (t) => {
  await t.step("drops accepted entries after the retention, never unaccepted ones", () => {
    const dir = Deno.makeTempDirSync();
    let now = Date.parse("2026-01-01T00:00:00Z");
    const day = 24 * 3600 * 1000;
    try {
      {
        using journal = Journal.open({ dir, now: () => now, retentionMs: 7 * day });
        for (const id of ["old", "unaccepted", "running"]) {
          journal.start({ id, name: "echo", attempt: 1 });
        }
        journal.complete("old", report("old"));
        journal.accept("old");
        journal.complete("unaccepted", report("unaccepted"));
        now += 3 * day;
        journal.start({ id: "recent", name: "echo", attempt: 1 });
        journal.complete("recent", report("recent"));
        journal.accept("recent");
        now += 5 * day; // "old" was accepted 8 days ago, "recent" 5 days ago
        assert.equal(journal.prune(), 1);
        assert.deepEqual(journal.entries().map((e) => e.id).sort(), [
          "recent",
          "running",
          "unaccepted",
        ]);
      }
      using reopened = Journal.open({ dir, now: () => now, retentionMs: 7 * day });
      assert.equal(reopened.size, 3);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });

  await t.step("bounds the entries to maxEntries, oldest accepted first", () => {
    let now = 1_000_000;
    using journal = Journal.open({ maxEntries: 10, now: () => now });
    journal.start({ id: "keep-running", name: "sleep 1", attempt: 1 });
    for (let i = 0; i < 30; i++) {
      const id = `c${i}`;
      journal.start({ id, name: "echo", attempt: 1 });
      journal.complete(id, report(id));
      now += 1000;
      journal.accept(id);
    }
    assert.ok(journal.size <= 10, `size ${journal.size}`);
    assert.ok(journal.get("keep-running"));
    assert.ok(journal.get("c29"), "the newest entry is kept");
    assert.equal(journal.get("c0"), undefined);
  });

  await t.step("rejects nonsense limits", () => {
    assert.throws(() => Journal.open({ maxEntries: 0 }), RangeError);
  });
});

Deno.test("outbox survives a re-open and keeps the oldest report first", () => {
  const dir = Deno.makeTempDirSync();
  let now = Date.parse("2026-01-01T00:00:00Z");
  try {
    {
      const outbox = Outbox.open({ dir, now: () => now++ });
      outbox.put(report("first"));
      outbox.put(report("second"));
      outbox.put(report("third"));
      outbox.put({ ...report("first"), attempt: 2 }); // replaces, keeps its place
      outbox.remove("second");
    }
    const outbox = Outbox.open({ dir });
    assert.deepEqual(outbox.pending().map((r) => r.command_id), ["first", "third"]);
    assert.equal(outbox.get("first")?.attempt, 2);
    assert.equal(outbox.get("first")?.result?.stdout, "hello\n");
    assert.equal(outbox.durable, true);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("outbox drops an interrupted temporary file and sets aside a corrupt one", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Outbox.open({ dir }).put(report("kept"));
    const box = join(dir, "outbox");
    Deno.writeTextFileSync(join(box, "abc.json.1234.tmp"), '{"report":{"comm');
    Deno.writeTextFileSync(join(box, "bad.json"), "not json");
    const outbox = Outbox.open({ dir });
    assert.deepEqual(outbox.pending().map((r) => r.command_id), ["kept"]);
    const names = [...Deno.readDirSync(box)].map((e) => e.name).sort();
    assert.equal(names.length, 2);
    assert.ok(names.includes("bad.json.corrupt"));
    assert.ok(!names.some((n) => n.endsWith(".tmp")));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an outbox file larger than any report is set aside unread", () => {
  // It was read whole into memory at start: a damaged or planted file of gigabytes stopped the agent.
  const dir = Deno.makeTempDirSync({ prefix: "status-huge-outbox-" });
  try {
    Outbox.open({ dir }).put(report("kept"));
    const box = join(dir, "outbox");
    const huge = { report: report("huge", "x".repeat(MAX_OUTBOX_FILE_BYTES)), queued_at: "" };
    Deno.writeTextFileSync(join(box, "huge.json"), JSON.stringify(huge));
    using logs = captureLogs();
    const outbox = Outbox.open({ dir });
    assert.deepEqual(outbox.pending().map((r) => r.command_id), ["kept"]);
    assert.ok(Deno.statSync(join(box, "huge.json.corrupt")).isFile);
    assert.ok(logs.records.some((r) => /more than 16777216 bytes/.test(String(r.error))));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an outbox file set aside again does not replace the one set aside before", () => {
  // The second damaged file of one name was renamed over the first one's .corrupt: lost unseen.
  const dir = Deno.makeTempDirSync({ prefix: "status-corrupt-again-" });
  try {
    const box = join(dir, "outbox");
    Deno.mkdirSync(box, { mode: 0o700 });
    Deno.writeTextFileSync(join(box, "bad.json"), "first damage");
    Outbox.open({ dir });
    Deno.writeTextFileSync(join(box, "bad.json"), "second damage");
    using logs = captureLogs();
    Outbox.open({ dir });
    const aside = [...Deno.readDirSync(box)].map((e) => e.name).filter((n) => n !== "bad.json");
    assert.equal(aside.length, 2);
    const texts = aside.map((name) => Deno.readTextFileSync(join(box, name))).sort();
    assert.deepEqual(texts, ["first damage", "second damage"]);
    const said = logs.records.find((r) => r.message === "outbox file is unreadable; moved aside");
    assert.ok(String(said?.to).startsWith(join(box, "bad.json.corrupt.")), String(said?.to));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an outbox file under another name is renamed, so that its accepted result goes", () => {
  // Copied in or renamed by hand: removed by its own name only, it was sent after every restart.
  const dir = Deno.makeTempDirSync();
  try {
    let own: string;
    {
      const outbox = Outbox.open({ dir });
      outbox.put(report("a"));
      outbox.put(report("b"));
      own = [...Deno.readDirSync(join(dir, "outbox"))].map((e) => e.name).sort()[0];
    }
    const outboxDir = join(dir, "outbox");
    const text = Deno.readTextFileSync(join(outboxDir, own));
    const which = JSON.parse(text).report.command_id;
    Deno.renameSync(join(outboxDir, own), join(outboxDir, "restored.json"));
    // And a second copy of the other one's.
    const other = [...Deno.readDirSync(outboxDir)].find((e) => e.name !== "restored.json")!;
    Deno.copyFileSync(join(outboxDir, other.name), join(outboxDir, "copy.json"));
    {
      const outbox = Outbox.open({ dir });
      assert.deepEqual(outbox.pending().map((r) => r.command_id).sort(), ["a", "b"]);
      outbox.remove(which);
      outbox.remove(which === "a" ? "b" : "a");
    }
    assert.equal(Outbox.open({ dir }).size, 0, "nothing is sent again");
    assert.deepEqual([...Deno.readDirSync(outboxDir)].map((e) => e.name), ["copy.json.duplicate"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an outbox in memory works the same but is not durable", () => {
  const outbox = Outbox.open({});
  outbox.put(report("a"));
  assert.equal(outbox.size, 1);
  assert.equal(outbox.durable, false);
  outbox.remove("a");
  assert.deepEqual(outbox.pending(), []);
});

Deno.test("agent state", async (t) => {
  await t.step("is created with mode 0700 on disk when permitted", () => {
    const parent = Deno.makeTempDirSync();
    const dir = join(parent, "state");
    try {
      using state = openAgentState({ dir });
      assert.equal(state.durable, true);
      assert.equal(state.notice, undefined);
      assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
      state.journal.start({ id: "x", name: "echo", attempt: 1 });
      state.outbox.put(report("x"));
      assert.ok(Deno.statSync(join(dir, "journal.jsonl")).isFile);
    } finally {
      Deno.removeSync(parent, { recursive: true });
    }
  });

  await t.step("falls back to memory, naming the flags, when not permitted", () => {
    const parent = Deno.makeTempDirSync();
    const dir = join(parent, "state");
    try {
      using state = openAgentState({ dir, canUse: () => false });
      assert.equal(state.durable, false);
      assert.match(state.notice!, /in memory only/);
      assert.ok(state.notice!.includes(`--allow-read=${dir} --allow-write=${dir}`));
      state.journal.start({ id: "x", name: "echo", attempt: 1 });
      state.outbox.put(report("x"));
      assert.throws(() => Deno.statSync(dir), Deno.errors.NotFound);
    } finally {
      Deno.removeSync(parent, { recursive: true });
    }
  });
});

Deno.test("a state directory others may write, or another user's, is refused", async (t) => {
  // STATE_DIR=/tmp/agent-state made first by another user: they would read every command and
  // result, and could write a journal that a restarted agent (root) acts on.
  await t.step("every user may write in it", () => {
    const dir = Deno.makeTempDirSync({ prefix: "status-state-" });
    try {
      Deno.chmodSync(dir, 0o1777);
      assert.throws(() => openAgentState({ dir }), {
        message: `the state directory ${dir} cannot be used: every user may write in it ` +
          "(mode 1777) (another user could read or change the journal and the outbox); give " +
          "the agent a directory of its own",
      });
      assert.throws(() => Deno.statSync(join(dir, "journal.jsonl")), Deno.errors.NotFound);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
  await t.step({
    name: "another user's",
    ignore: Deno.uid() !== 0,
    fn: () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-state-" });
      try {
        Deno.chownSync(dir, 65534, 65534);
        assert.throws(() => openAgentState({ dir }), {
          message: new RegExp(
            `^the state directory ${dir} cannot be used: ${dir} belongs to ` +
              "uid 65534, not to this user \\(uid 0\\)",
          ),
        });
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
  await t.step({
    name: "a symlink to another user's directory",
    ignore: Deno.uid() !== 0,
    fn: () => {
      const parent = Deno.makeTempDirSync({ prefix: "status-state-" });
      const theirs = join(parent, "theirs");
      const link = join(parent, "state");
      try {
        Deno.mkdirSync(theirs, { mode: 0o700 });
        Deno.symlinkSync(theirs, link);
        Deno.chownSync(theirs, 65534, 65534);
        assert.throws(
          () => openAgentState({ dir: link }),
          /cannot be used: .* belongs to uid 65534/,
        );
      } finally {
        Deno.removeSync(parent, { recursive: true });
      }
    },
  });
});

Deno.test("a journal, owner file or outbox that every user may write is refused", async (t) => {
  // The agent makes them 0600 and 0700; changed by hand in a directory others may enter (0755),
  // another user could plant a result in them for the agent to report as its own.
  const owner = { agentId: "web-1", dashboardUrl: "http://d" };
  const cases: [string, number, RegExp][] = [
    ["journal.jsonl", 0o666, /journal\.jsonl may be written by every user \(mode 0666\)/],
    [STATE_OWNER_FILE, 0o646, /owner\.json may be written by every user \(mode 0646\)/],
    [
      "outbox",
      0o777,
      /the outbox .*outbox cannot be used: every user may write in it \(mode 0777\)/,
    ],
  ];
  for (const [name, mode, message] of cases) {
    await t.step(name, () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-open-" });
      try {
        Deno.chmodSync(dir, 0o755);
        openAgentState({ dir, owner })[Symbol.dispose]();
        Deno.chmodSync(join(dir, name), mode);
        assert.throws(() => openAgentState({ dir, owner }), { message });
        Deno.chmodSync(join(dir, name), name === "outbox" ? 0o700 : 0o600);
        openAgentState({ dir, owner })[Symbol.dispose]();
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
});

Deno.test({
  name: "a state directory on tmpfs is used, with a warning that a reboot empties it",
  // A tmpfs mounted for the test (root with the right to mount; /dev/shm needs --allow-all).
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await using disk = await smallDisk(1024);
    if (disk === null) {
      console.log("skipped: cannot mount a tmpfs here");
      return;
    }
    using logs = captureLogs();
    openAgentState({ dir: `${disk.dir}/state` })[Symbol.dispose]();
    assert.ok(
      logs.has(/is on tmpfs, which a restart of the machine empties: a command running then/),
      logs.messages().join("\n"),
    );
  },
});

Deno.test("a state directory the agent cannot create its lock in is refused naming STATE_DIR", () => {
  // The error was the system call's alone: "Read-only file system (os error 30): open '.../agent.lock'".
  const dir = Deno.makeTempDirSync({ prefix: "status-lock-" });
  try {
    Deno.mkdirSync(`${dir}/agent.lock`);
    assert.throws(() => openAgentState({ dir }), {
      message: new RegExp(
        `^cannot use the state directory ${dir}: .*agent\\.lock.* \\(make it writable for ` +
          "this user, or set STATE_DIR to another directory\\)$",
      ),
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a symlink in place of the lock or the journal is refused; what it names is untouched", async (t) => {
  // Whoever may write in the state directory could point them at a file the agent (root) would
  // empty and write its pid into, or append journal lines to.
  for (const name of [STATE_LOCK_FILE, "journal.jsonl"]) {
    await t.step(name, () => {
      const parent = Deno.makeTempDirSync({ prefix: "status-state-" });
      const dir = join(parent, "state");
      const victim = join(parent, "victim");
      try {
        Deno.mkdirSync(dir, { mode: 0o700 });
        // Empty: the journal has nothing to compact away, so it would append to it.
        Deno.writeTextFileSync(victim, name === STATE_LOCK_FILE ? "precious\n" : "");
        Deno.symlinkSync(victim, join(dir, name));
        assert.throws(() => openAgentState({ dir }), {
          message: new RegExp(
            `^cannot (use|open the journal and outbox in) the state directory ${dir}: ` +
              `.*${name.replace(".", "\\.")} is a symlink; refusing to (read or )?write through it`,
          ),
        });
        assert.equal(
          Deno.readTextFileSync(victim),
          name === STATE_LOCK_FILE ? "precious\n" : "",
        );
      } finally {
        Deno.removeSync(parent, { recursive: true });
      }
    });
  }
});

Deno.test("a named pipe in place of a state file is refused at once, not waited on", async (t) => {
  // Opening a named pipe to read it waits until something writes to it: the agent hung at start
  // without a word. Here a writer stands ready, so that a reader that opens it gets its text
  // instead of hanging the test.
  const cases: [string, (dir: string) => unknown][] = [
    ["journal.jsonl", (dir) => openAgentState({ dir })],
    [
      STATE_OWNER_FILE,
      (dir) => openAgentState({ dir, owner: { agentId: "web-1", dashboardUrl: "http://d" } }),
    ],
    [INSTANCE_ID_FILE, (dir) => stateInstanceId(dir)],
  ];
  for (const [name, open] of cases) {
    await t.step(name, async () => {
      const dir = Deno.makeTempDirSync({ prefix: "status-fifo-" });
      const fifo = join(dir, name);
      const made = await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
      assert.ok(made.success);
      const writer = new Deno.Command("sh", {
        args: ["-c", 'printf "%s\n" "$1" > "$2"', "sh", "not state", fifo],
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        assert.throws(() => open(dir), {
          message: new RegExp(
            `${fifo.replaceAll(".", "\\.")} is a named pipe, not a regular file; refusing to ` +
              "read it",
          ),
        });
        assert.ok(Deno.lstatSync(fifo).isFifo, "left where it was");
      } finally {
        writer.kill("SIGKILL");
        await writer.status;
        Deno.removeSync(dir, { recursive: true });
      }
    });
  }
});

Deno.test("a directory in the state directory under the space probe's old name does not block the agent", () => {
  // Once a write failed (a full disk), the agent takes no command until this probe succeeds: under
  // its fixed name, a directory there failed it for ever.
  const dir = Deno.makeTempDirSync({ prefix: "status-probe-" });
  try {
    using state = openAgentState({ dir });
    Deno.mkdirSync(join(dir, "space-probe.tmp"));
    assert.equal(state.retry?.(), true);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith("space-probe")),
      ["space-probe.tmp"],
      "the probe leaves nothing behind",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a state directory that cannot be created is refused, saying what to do", () => {
  // Beneath a file here; a read-only file system or a parent of another user's says the same.
  const file = Deno.makeTempFileSync({ prefix: "status-not-a-dir-" });
  try {
    assert.throws(() => openAgentState({ dir: join(file, "state") }), {
      message: `cannot create the state directory ${join(file, "state")}: a part of the path ` +
        "above it is not a directory (create it for this user, or set STATE_DIR to another " +
        "directory)",
    });
  } finally {
    Deno.removeSync(file);
  }
});

Deno.test("what a crash left of the state directory's small writes is removed on open", () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-leftovers-" });
  try {
    const leftovers = [
      "owner.json.1f2e3d4c.tmp",
      "instance-id.0a1b2c3d.tmp",
      "space-probe.5e6f7a8b.tmp",
      "space-probe.5e6f7a8b.tmp.9c0d1e2f.tmp",
    ];
    const kept = ["notes.tmp", "owner.json.bak", "space-probe.tmp"];
    for (const name of [...leftovers, ...kept]) Deno.writeTextFileSync(join(dir, name), "x");
    openAgentState({ dir })[Symbol.dispose]();
    const names = new Set([...Deno.readDirSync(dir)].map((e) => e.name));
    for (const name of leftovers) assert.ok(!names.has(name), `${name} removed`);
    for (const name of kept) assert.ok(names.has(name), `${name} kept`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("two agents cannot share one state directory", () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-lock-" });
  try {
    const first = openAgentState({ dir });
    try {
      assert.throws(() => openAgentState({ dir }), {
        message: new RegExp(
          `^another agent \\(pid ${Deno.pid}\\) is using the state directory ${dir}; `,
        ),
      });
    } finally {
      first[Symbol.dispose]();
    }
    // Released on close: the next agent may take it.
    const second = openAgentState({ dir });
    assert.equal(second.durable, true);
    second[Symbol.dispose]();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a lock file holding anything but a pid is not read whole nor shown", () => {
  // Read whole and quoted in the error: megabytes, and control characters, went to the terminal.
  const dir = Deno.makeTempDirSync({ prefix: "status-lock-" });
  try {
    const first = openAgentState({ dir });
    try {
      Deno.writeTextFileSync(join(dir, STATE_LOCK_FILE), "\u001b[2J" + "x".repeat(1024 * 1024));
      assert.throws(() => openAgentState({ dir }), (error: Error) => {
        assert.equal(
          error.message,
          `another agent is using the state directory ${dir}; give each agent its own ` +
            "STATE_DIR (--state-dir)",
        );
        return true;
      });
    } finally {
      first[Symbol.dispose]();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a second agent is refused when the lock file was removed while the first ran", () => {
  // The lock was on agent.lock alone: once it was removed (a clean-up, a hand), a second agent
  // made a new one, locked it, and shared the journal and the outbox with the first.
  const dir = Deno.makeTempDirSync({ prefix: "status-lock-" });
  try {
    const first = openAgentState({ dir });
    try {
      Deno.removeSync(join(dir, STATE_LOCK_FILE));
      assert.throws(() => openAgentState({ dir }), {
        message: new RegExp(
          `^another agent is using the state directory ${dir} \\(its agent\\.lock was removed`,
        ),
      });
    } finally {
      first[Symbol.dispose]();
    }
    const second = openAgentState({ dir });
    assert.equal(second.durable, true);
    second[Symbol.dispose]();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a lock held a moment longer by another process (a spawn's copy) is waited for", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-lock-" });
  try {
    // Stands in for a child between its spawn and the start of its program: it holds the lock
    // for a moment after the agent that took it has let go. A tenth of the wait: a busy machine
    // may be slow to run the holder's timer.
    const HOLD_MS = LOCK_RELEASE_WAIT_MS / 10;
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const f = Deno.openSync(${JSON.stringify(`${dir}/${STATE_LOCK_FILE}`)}, ` +
        `{ read: true, write: true, create: true }); f.lockSync(true); console.log("held"); ` +
        `setTimeout(() => f.close(), ${HOLD_MS});`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    assert.equal(first.value?.trim(), "held");
    const state = openAgentState({ dir });
    assert.equal(state.durable, true);
    state[Symbol.dispose]();
    await reader.cancel();
    await holder.status;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a state directory holding another agent id's or dashboard's results is refused", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-owner-" });
  const web1 = { agentId: "web-1", dashboardUrl: "http://dash-a:5000" };
  try {
    {
      using state = openAgentState({ dir, owner: web1 });
      state.journal.start({ id: "cmd-1", name: "echo hi", attempt: 1 });
      state.outbox.put(report("cmd-1"));
      state.journal.complete("cmd-1", report("cmd-1"));
    }
    await t.step("the same owner, spelled with a trailing slash, opens it", () => {
      using state = openAgentState({
        dir,
        owner: { ...web1, dashboardUrl: "http://dash-a:5000/" },
      });
      assert.equal(state.outbox.size, 1);
    });
    for (
      const [what, owner] of [
        ["another agent id", { ...web1, agentId: "web-2" }],
        ["another dashboard", { ...web1, dashboardUrl: "http://dash-b:5000" }],
      ] as const
    ) {
      await t.step(`${what}: refused, nothing sent, nothing lost`, () => {
        assert.throws(() => openAgentState({ dir, owner }), {
          name: "StateOwnerError",
          message: new RegExp(
            `^the state directory ${dir} holds 1 result\\(s\\) not yet delivered of agent ` +
              `"web-1" of the dashboard http://dash-a:5000; .*another STATE_DIR`,
          ),
        });
        // The lock was released and the old owner's results are intact.
        using state = openAgentState({ dir, owner: web1 });
        assert.equal(state.outbox.get("cmd-1")?.command_id, "cmd-1");
        assert.equal(state.journal.get("cmd-1")?.state, "done");
      });
    }
    await t.step("a damaged owner file: refused, saying how to name this agent the owner", () => {
      const path = join(dir, STATE_OWNER_FILE);
      const kept = Deno.readTextFileSync(path);
      try {
        Deno.writeTextFileSync(path, '{"agent_id":"web-1","dashb');
        const wanted = JSON.stringify({ agent_id: "web-1", dashboard_url: "http://dash-a:5000" });
        assert.throws(() => openAgentState({ dir, owner: web1 }), {
          name: "StateOwnerError",
          message: new RegExp(
            `not yet delivered of an agent ${path} does not name \\(it is damaged\\); .*If they ` +
              `are this agent's, put ${wanted.replace(/[{}.]/g, "\\$&")} in ${path} and start it ` +
              "again, or give it another STATE_DIR",
          ),
        });
        Deno.writeTextFileSync(path, wanted);
        using state = openAgentState({ dir, owner: web1 });
        assert.equal(state.outbox.get("cmd-1")?.command_id, "cmd-1");
      } finally {
        Deno.writeTextFileSync(path, kept);
      }
    });
    await t.step("taken over once everything was delivered; old ids no longer count as run", () => {
      {
        using state = openAgentState({ dir, owner: web1 });
        state.journal.accept("cmd-1");
        state.outbox.remove("cmd-1");
      }
      const web2 = { ...web1, agentId: "web-2" };
      {
        using state = openAgentState({ dir, owner: web2 });
        assert.equal(state.journal.get("cmd-1"), undefined);
        assert.equal(state.outbox.size, 0);
      }
      // And it is web-2's now.
      {
        using state = openAgentState({ dir, owner: web2 });
        state.outbox.put(report("cmd-2"));
      }
      assert.throws(() => openAgentState({ dir, owner: web1 }), {
        name: "StateOwnerError",
        message: /of agent "web-2" of the dashboard/,
      });
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a result kept in memory because the disk was full is written at the stop, or said lost", async (t) => {
  for (const spaceReturns of [true, false]) {
    await t.step(
      spaceReturns ? "space returned: written down" : "still full: said lost",
      async () => {
        const dir = Deno.makeTempDirSync({ prefix: "status-stop-unsaved-" });
        try {
          using logs = captureLogs();
          await using stub = new StubDashboard();
          // The dashboard is away: the result waits in the outbox.
          stub.override = (seen) =>
            seen.kind === "report" ? new Response("busy", { status: 503 }) : undefined;
          const state = openAgentState({ dir });
          // The outbox cannot be written (a file stands in its place): the result is kept in memory.
          Deno.removeSync(join(dir, "outbox"), { recursive: true });
          Deno.writeTextFileSync(join(dir, "outbox"), "");
          const stop = new AbortController();
          const done = runAgent({
            dashboardUrl: stub.url,
            agentId: "agent-1",
            pollingTimeoutSecs: 1,
            pollingBackoffSecs: 0.05,
            pollingBackoffMaxSecs: 0.1,
            heartbeat: false,
            executor: new FakeExecutor(),
            state,
          }, stop.signal);
          stub.enqueue(command("cmd-1", "echo hi"));
          await stub.until(() => stub.seen.some((s) => s.kind === "report"), 20_000, "the report");
          assert.equal(state.outbox.unsaved, 1);
          if (spaceReturns) Deno.removeSync(join(dir, "outbox"));
          stop.abort();
          const summary = await done;
          state[Symbol.dispose]();
          assert.equal(summary.reportsPending, 1);
          const lost = logs.records.find((r) => /are lost with this stop/.test(String(r.message)));
          if (spaceReturns) {
            assert.equal(lost, undefined);
            assert.ok(logs.has(/stay in the outbox and are sent after a restart/));
            assert.deepEqual(Outbox.open({ dir }).pending().map((r) => r.command_id), ["cmd-1"]);
          } else {
            assert.equal(lost?.lost, 1);
            assert.ok(!logs.has(/stay in the outbox and are sent after a restart/));
          }
        } finally {
          Deno.removeSync(dir, { recursive: true });
        }
      },
    );
  }
});
