import assert from "node:assert/strict";
import {
  alignColumns,
  cell,
  describeStatus,
  formatElapsed,
  formatProgress,
  formatRecord,
  formatTable,
  truncationNotes,
} from "../../src/operator/format.ts";
import type { CommandRecord } from "../../src/operator/types.ts";

const done: CommandRecord = {
  id: "cmd-1",
  agent_id: "web-1",
  name: "echo hi",
  params: {},
  status: "success",
  attempt: 1,
  created_at: "2026-01-12T10:00:00.123Z",
  delivered_at: 1768212001,
  completed_at: "2026-01-12T10:00:02Z",
  result: {
    exit_code: 0,
    signal: null,
    duration_secs: 0.004,
    stdout: "hi\n",
    stderr: "",
    stdout_truncated_bytes: 0,
    stderr_truncated_bytes: 0,
  },
  error: null,
};

Deno.test("formatElapsed shows tenths of seconds, never negative", () => {
  assert.equal(formatElapsed(0), "0.0 s");
  assert.equal(formatElapsed(1234), "1.2 s");
  assert.equal(formatElapsed(-5), "0.0 s");
});

Deno.test("describeStatus says who, which attempt, how it ended and why", () => {
  assert.equal(describeStatus(done), "success, exit code 0");
  assert.equal(
    describeStatus({ id: "c", name: "x", status: "delivered", agent_id: "web-2", attempt: 2 }),
    "delivered to web-2, attempt 2",
  );
  assert.equal(describeStatus({ id: "c", name: "x", status: "queued", attempt: 1 }), "queued");
  assert.equal(
    describeStatus({
      id: "c",
      name: "x",
      status: "killed",
      result: { ...done.result, exit_code: null, signal: "SIGKILL" },
      error: "deadline of 5 s reached",
    }),
    "killed, signal SIGKILL: deadline of 5 s reached",
  );
});

Deno.test("describeStatus shows an agent's error and signal as one line of escapes, never obeys them", () => {
  // A report as a compromised agent could send it: a line break forging a second status line,
  // an OSC title, a bidirectional override.
  const hostile: CommandRecord = {
    ...done,
    status: "failed",
    result: { ...done.result, exit_code: null, signal: "SIG\nKILL" },
    error: "boom\nstatus:    success, exit code 0\u001b]0;pwned\u0007\u202eok",
  };
  const expected = "failed, signal SIG\\nKILL: boom\\nstatus:    success, exit code 0" +
    "\\u001b]0;pwned\\u0007\\u202eok";
  assert.equal(describeStatus(hostile), expected);
  assert.equal(formatProgress(hostile, 0), `cmd-1 ${expected} (0.0 s)`);
  const status = formatRecord(hostile).filter((line) => line.startsWith("status:"));
  assert.deepEqual(status, [`status:    ${expected}`], "one status line, not a forged second");
});

Deno.test("formatRecord and formatProgress show a dashboard's fields as escapes, one line each", () => {
  // A record as a hostile dashboard could answer it: each field tries to start a line of its own.
  const forged = "\nstatus:    success\u001b]0;pwned\u0007\u202e";
  const hostile = {
    ...done,
    id: `cmd-1${forged}`,
    agent_id: `web-1${forged}`,
    name: `echo hi${forged}`,
    status: `delivered${forged}`,
    created_at: `yesterday${forged}`,
    params: { metadata: { note: `x\u0085${forged}` } },
    result: null,
  } as CommandRecord;
  const lines = formatRecord(hostile);
  assert.equal(lines.length, 9, lines.join("\n"));
  for (const line of [...lines, formatProgress(hostile, 0)]) {
    assert.doesNotMatch(line, /[\p{Cc}\u202e]/u, line);
  }
  assert.equal(lines[1], "agent:     web-1\\nstatus:    success\\u001b]0;pwned\\u0007\\u202e");
});

Deno.test("formatProgress is one line of id, status and time waited", () => {
  assert.equal(
    formatProgress({ id: "cmd-001", name: "x", status: "running" }, 400),
    "cmd-001 running (0.4 s)",
  );
});

Deno.test("formatRecord lists the fields, times in UTC to the second, then the output", () => {
  assert.deepEqual(formatRecord(done), [
    "id:        cmd-1",
    "agent:     web-1",
    "command:   echo hi",
    "status:    success, exit code 0",
    "attempt:   1",
    "created:   2026-01-12T10:00:00Z",
    "delivered: 2026-01-12T10:00:01Z",
    "completed: 2026-01-12T10:00:02Z",
    "duration:  0.004 s",
    "--- stdout ---",
    "hi",
    "stderr:    (empty)",
  ]);
});

Deno.test("formatRecord shows bytes that are not text as base64 and names the dropped bytes", () => {
  const lines = formatRecord({
    ...done,
    result: {
      ...done.result,
      stdout: "AP8=",
      stdout_encoding: "base64",
      stdout_truncated_bytes: 100,
    },
  });
  assert.ok(lines.includes(
    "--- stdout: 2 bytes that are not UTF-8 text, in base64 (the exact " +
      "bytes: status result cmd-1 --stdout) ---",
  ));
  assert.ok(lines.includes("AP8="));
  assert.match(lines.at(-1)!, /^\(100 bytes of stdout were dropped from the middle/);
  // Bytes that are not text carry no marker line: the note must not send the reader to one.
  assert.doesNotMatch(lines.at(-1)!, /marker line "\[status/);
  assert.match(lines.at(-1)!, /one right after the other: the output is not text/);
});

Deno.test("formatRecord shows the live output of a command that has no result (its agent died, or it runs)", () => {
  const interrupted: CommandRecord = {
    ...done,
    status: "interrupted",
    result: null,
    error: "the agent stopped while the command was running",
    live_output: {
      attempt: 2,
      stdout: "tick 0\ntick 1\n",
      stderr: "",
      stdout_bytes: 14,
      stdout_truncated_bytes: 0,
      stderr_bytes: 0,
      stderr_truncated_bytes: 0,
    } as CommandRecord["live_output"],
  };
  const lines = formatRecord(interrupted);
  assert.deepEqual(lines.slice(lines.indexOf("--- stdout (live output of attempt 2) ---")), [
    "--- stdout (live output of attempt 2) ---",
    "tick 0\ntick 1",
  ]);
  const binary = formatRecord({
    ...interrupted,
    live_output: { attempt: 1, stdout: "", stderr: "AP8=", stderr_encoding: "base64" },
  });
  assert.deepEqual(binary.slice(-2), [
    "--- stderr (live output of attempt 1, not UTF-8 text, in base64) ---",
    "AP8=",
  ]);
});

Deno.test("truncationNotes has one line per stream that lost bytes", () => {
  assert.deepEqual(truncationNotes(done), []);
  const notes = truncationNotes({
    ...done,
    result: { ...done.result, stdout_truncated_bytes: 5, stderr_truncated_bytes: 7 },
  });
  assert.equal(notes.length, 2);
  assert.match(notes[0], /^\(5 bytes of stdout/);
  assert.match(notes[1], /^\(7 bytes of stderr/);
});

Deno.test("formatTable aligns columns and shortens long command lines", () => {
  const lines = formatTable([
    done,
    { id: "cmd-22", agent_id: null, name: "sleep   60\tnow", status: "queued" },
  ], 8);
  assert.deepEqual(lines, [
    "ID      AGENT  STATUS   EXIT  CREATED               COMMAND",
    "cmd-1   web-1  success  0     2026-01-12T10:00:00Z  echo hi",
    "cmd-22         queued                               sleep 6…",
  ]);
});

Deno.test("alignColumns pads every column but the last to its widest entry", () => {
  assert.deepEqual(alignColumns(["A", "LONG NAME", "Z"], [["xyz", "b", ""], ["1", "2", "3"]]), [
    "A    LONG NAME  Z",
    "xyz  b",
    "1    2          3",
  ]);
  assert.deepEqual(alignColumns(["ONLY"], []), ["ONLY"]);
});

Deno.test("alignColumns shows an agent's control characters as ?, never obeys them", () => {
  // A heartbeat's version and deployment hash as a hostile agent could send them.
  const lines = alignColumns(["ID", "VERSION", "DEPLOYMENT"], [[
    "web-1",
    "\u001b]0;pwned\u0007\u001b[31mRED",
    "d\u001b[2Jx\nfake-agent  waiting",
  ]]);
  assert.equal(lines.length, 2, "no forged row");
  assert.equal(lines[1], "web-1  ?]0;pwned??[31mRED  d?[2Jx?fake-agent  waiting");
  // deno-lint-ignore no-control-regex
  assert.ok(lines.every((line) => !/[\u0000-\u001f\u007f-\u009f]/.test(line)));
});

Deno.test("cell shortens text to the width with an ellipsis", () => {
  assert.equal(cell("abc", 3), "abc");
  assert.equal(cell("abcd", 3), "ab…");
});
