/**
 * Printing a command as it runs (`status result --follow`, `status enqueue --wait`): output byte
 * for byte to the right stream (on a terminal, its control characters as escapes), gaps named, the rest of the final result after the live output,
 * and the elapsed indicator only on a terminal.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { StubDashboard } from "../_stub_dashboard.ts";
import { followAndPrint, type OutputWriter, processWriter } from "../../src/cli/live.ts";
import { memoryIo, streamIo } from "../../src/cli/io.ts";
import { printOutput } from "../../src/cli/enqueue.ts";
import { formatRecord } from "../../src/operator/format.ts";
import type { CommandRecord } from "../../src/operator/mod.ts";
import { OperatorClient, OperatorError } from "../../src/operator/mod.ts";
import { toBase64 } from "../../src/protocol/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";

const decoder = new TextDecoder();

function recordingWriter(isTerminal: boolean) {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const writer: OutputWriter = {
    stdout: (bytes) => void out.push(bytes.slice()),
    stderr: (bytes) => void err.push(bytes.slice()),
    isTerminal,
  };
  const text = (parts: Uint8Array[]) => parts.map((p) => decoder.decode(p)).join("");
  return { writer, stdout: () => text(out), stderr: () => text(err) };
}

async function dashboard(options: { ackTimeoutSecs?: number } = {}) {
  const store = openSqliteStore(":memory:");
  const server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    ...options,
  }); // dev mode
  const agentCall = async (path: string, body?: unknown) => {
    const response = await fetch(`${server.url}${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { "X-Agent-Id": "runner", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  return {
    client: new OperatorClient({ dashboardUrl: server.url }),
    agentCall,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await store.close();
    },
  };
}

function report(id: string, stdout: string, stderr: string, exitCode: number) {
  return {
    command_id: id,
    status: exitCode === 0 ? "success" : "failed",
    attempt: 1,
    result: {
      exit_code: exitCode,
      signal: null,
      duration_secs: 0.5,
      stdout,
      stderr,
      stdout_truncated_bytes: 0,
      stderr_truncated_bytes: 0,
    },
    error: null,
  };
}

Deno.test("followAndPrint prints live output as it comes, names gaps, then the rest of the result", async () => {
  await using d = await dashboard();
  const { id } = await d.client.enqueue({ agentId: "runner", name: "echo x" });
  const io = memoryIo();
  const rec = recordingWriter(false);
  const following = followAndPrint(io, rec.writer, d.client, id, { indicatorMs: 20 });

  assert.equal((await d.agentCall("/api/v1/agent/commands/wait/default?timeout=5")).status, 200);
  await d.agentCall("/api/v1/agent/commands/ack", { command_id: id, attempt: 1 });
  const chunk = (stream: string, offset: number, text: string) =>
    d.agentCall(`/api/v1/agent/commands/${id}/output`, {
      attempt: 1,
      stream,
      offset,
      data: toBase64(new TextEncoder().encode(text)),
    });
  await chunk("stdout", 0, "first\n");
  await chunk("stderr", 0, "warning\n");
  await chunk("stdout", 10, "after gap\n");
  await until(() => rec.stdout().includes("after gap"), "the live output is printed");
  // The final result has 4 more bytes than arrived live: they are printed at the end.
  await d.agentCall(
    "/api/v1/agent/commands/report",
    report(id, "first\nXXXXafter gap\ntail", "warning\n", 4),
  );
  const record = await following;
  assert.equal(record?.status, "failed");
  assert.equal(rec.stdout(), "first\nafter gap\ntail");
  assert.equal(rec.stderr(), "warning\n");
  assert.ok(io.stderr.includes("(4 bytes of stdout were dropped here)"), io.stderr.join("\n"));
  // The closing note is about what was printed (the live output), not the result's head and tail.
  assert.ok(
    io.stderr.some((line) =>
      line.startsWith(
        "(4 bytes of stdout did not arrive live and are missing from what was printed, where " +
          `the notes above stand; the result has them: status result ${id})`,
      )
    ),
    io.stderr.join("\n"),
  );
  assert.ok(!io.stderr.some((line) => /first and last 32 KiB are kept/.test(line)));
  assert.match(io.stderr.at(-1)!, new RegExp(`^${id} failed, exit code 4 \\(\\d+\\.\\d s\\)$`));
  assert.ok(!rec.stderr().includes("\x1b[2K"), "no indicator when not a terminal");
});

Deno.test("followAndPrint prints the output of the latest attempt; a late chunk of an earlier one is left out", async () => {
  await using d = await dashboard({ ackTimeoutSecs: 1 });
  const { id } = await d.client.enqueue({ agentId: "runner", name: "echo x" });
  const wait = (attempt: number) =>
    until(async () => {
      const waited = await d.agentCall("/api/v1/agent/commands/wait/default?timeout=1");
      return waited.status === 200 && waited.body.attempt === attempt;
    }, `attempt ${attempt} is delivered`);
  const chunk = (attempt: number, offset: number, text: string) =>
    d.agentCall(`/api/v1/agent/commands/${id}/output`, {
      attempt,
      stream: "stdout",
      offset,
      data: toBase64(new TextEncoder().encode(text)),
    });
  await wait(1);
  await chunk(1, 0, "one\n");
  // Attempt 1 is never acked: its delivery lease ends and the command is delivered again.
  await wait(2);
  await chunk(2, 0, "two\n");
  await chunk(1, 4, "late\n"); // the first agent, still there, sends more
  await chunk(2, 4, "more\n");
  await d.agentCall("/api/v1/agent/commands/report", {
    ...report(id, "two\nmore\n", "", 0),
    attempt: 2,
  });
  const io = memoryIo();
  const rec = recordingWriter(false);
  const record = await followAndPrint(io, rec.writer, d.client, id, { indicatorMs: 20 });
  assert.equal(record?.status, "success");
  // Old behaviour: "one\ntwo\nlate\nmore\n", with attempt 1 said to start again (and then 2) and
  // gaps named before "late" and "more".
  assert.equal(rec.stdout(), "one\ntwo\nmore\n");
  assert.deepEqual(io.stderr.filter((line) => /attempt|dropped/.test(line)), [
    `${id}: attempt 2 started; its output follows from the start`,
  ]);
});

Deno.test("followAndPrint: bytes missing live from a result cut too are not said to be in the result", async () => {
  await using d = await dashboard();
  const { id } = await d.client.enqueue({ agentId: "runner", name: "seq 1 30000" });
  const io = memoryIo();
  const rec = recordingWriter(false);
  const following = followAndPrint(io, rec.writer, d.client, id, { indicatorMs: 20 });
  assert.equal((await d.agentCall("/api/v1/agent/commands/wait/default?timeout=5")).status, 200);
  await d.agentCall("/api/v1/agent/commands/ack", { command_id: id, attempt: 1 });
  const chunk = (offset: number, text: string) =>
    d.agentCall(`/api/v1/agent/commands/${id}/output`, {
      attempt: 1,
      stream: "stdout",
      offset,
      data: toBase64(new TextEncoder().encode(text)),
    });
  await chunk(0, "head\n");
  await chunk(100, "tail\n");
  await until(() => rec.stdout().includes("tail"), "the live output is printed");
  // The agent cut the result as the dashboard cut the live output: the result has no more.
  const cut = report(id, "head\n[status: 95 bytes dropped here]\ntail\n", "", 0);
  cut.result.stdout_truncated_bytes = 95;
  await d.agentCall("/api/v1/agent/commands/report", cut);
  await following;
  assert.equal(rec.stdout(), "head\ntail\n");
  const note = io.stderr.find((line) => line.startsWith("(95 bytes of stdout are missing"));
  assert.ok(note, io.stderr.join("\n"));
  assert.match(note, /the result, cut too, keeps only its first and last 32 KiB\)$/);
  assert.ok(!io.stderr.some((line) => line.includes("status result")), io.stderr.join("\n"));
});

Deno.test("followAndPrint says once that the dashboard is out of reach, and that the command goes on when it gives up", async () => {
  let calls = 0;
  const client = new OperatorClient({
    dashboardUrl: "http://127.0.0.1:9",
    fetch: () => {
      calls++;
      return Promise.reject(new TypeError("fetch failed"));
    },
  });
  const io = memoryIo();
  const { writer } = recordingWriter(false);
  await assert.rejects(
    () => followAndPrint(io, writer, client, "c1", { maxOutageMs: 600 }),
    /cannot reach the dashboard/,
  );
  assert.ok(calls >= 2, "it tried again");
  const lost = io.stderr.filter((line) => line.startsWith("lost the dashboard ("));
  assert.equal(lost.length, 1, io.stderr.join("\n"));
  assert.match(
    lost[0],
    /trying again until it has been out of reach for 1 s \(the command goes on\)$/,
  );
  assert.equal(
    io.stderr.at(-1),
    "stopped following c1: the dashboard stayed out of reach; the command goes on (see it with: " +
      "status result c1)",
  );
});

Deno.test("followAndPrint shows a one-line elapsed indicator on a terminal while nothing is printed", async () => {
  await using d = await dashboard();
  const { id } = await d.client.enqueue({ agentId: "runner", name: "echo x" });
  const io = memoryIo();
  const rec = recordingWriter(true);
  const following = followAndPrint(io, rec.writer, d.client, id, { indicatorMs: 20 });
  await until(() => rec.stderr().includes("queued"), "the indicator shows");
  assert.equal((await d.agentCall("/api/v1/agent/commands/wait/default?timeout=5")).status, 200);
  await d.agentCall("/api/v1/agent/commands/report", report(id, "done\n", "", 0));
  await following;
  const stderr = rec.stderr();
  assert.match(stderr, new RegExp(`\r\x1b\\[2K… ${id} queued \\d+\\.\\d s`));
  assert.ok(stderr.endsWith("\r\x1b[2K"), "the indicator is cleared at the end");
  assert.equal(rec.stdout(), "done\n");
});

Deno.test("a status the dashboard sent that is not a status word is refused, never shown on the terminal", async () => {
  // A status as a hostile dashboard (or anyone on the path to an http:// one) could send it: it
  // writes the operator's clipboard (OSC 52) and sets the window's title; the elapsed indicator
  // writes the status past the terminal's escaping.
  const hostile = "running\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\u202e";
  await using stub = new StubDashboard();
  stub.override = (seen) => {
    if (seen.method !== "GET" || seen.path !== "/api/v1/commands/c1") return undefined;
    return Response.json({ ...finished, status: hostile, result: null });
  };
  const io = memoryIo();
  const rec = recordingWriter(true);
  const client = new OperatorClient({ dashboardUrl: stub.url });
  const error = await followAndPrint(io, rec.writer, client, "c1", {
    indicatorMs: 20,
    timeoutSecs: 2,
  }).catch((e) => e);
  assert.ok(error instanceof OperatorError, String(error));
  assert.equal(error.kind, "invalid_answer");
  assert.match(error.message, /at "status": must be a status word/);
  assert.ok(!rec.stderr().includes("\x1b]"), "no OSC sequence reaches the terminal");
  assert.ok(!io.stderr.some((line) => line.includes("\x1b]")), io.stderr.join("\n"));
});

/** A standard stream that records what is written, a terminal or not. */
function recordingStream(terminal: boolean) {
  const parts: Uint8Array[] = [];
  return {
    isTerminal: () => terminal,
    writeSync(bytes: Uint8Array) {
      parts.push(bytes.slice());
      return bytes.length;
    },
    bytes: () => new Uint8Array(parts.flatMap((p) => [...p])),
    text: () => parts.map((p) => decoder.decode(p)).join(""),
  };
}

Deno.test("followAndPrint shows escape sequences of a command's output as escapes on a terminal, and writes them as they are elsewhere", async (t) => {
  // An OSC 52 (writes the terminal's clipboard), a title, a colour, a lone carriage return (hides
  // what came before it on the line), a bidi override, a byte that is not UTF-8 and a character
  // cut between two chunks; CRLF, tab and newline are text.
  const encoder = new TextEncoder();
  const first = new Uint8Array([
    ...encoder.encode("\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[31mred\x1b[0m\tok\r\n"),
    ...encoder.encode("rm -rf /\rls\u202eexe.pdf \xff\n"),
    0xff,
    0xe2,
    0x82,
  ]);
  const second = new Uint8Array([0xac, ...encoder.encode(" end\n")]);
  const run = async (terminal: boolean) => {
    await using d = await dashboard();
    const { id } = await d.client.enqueue({ agentId: "runner", name: "echo x" });
    const stdout = recordingStream(terminal);
    const stderr = recordingStream(terminal);
    const writer = processWriter({ stdout, stderr }, "xterm-256color");
    const following = followAndPrint(memoryIo(), writer, d.client, id, { indicatorMs: 20 });
    assert.equal((await d.agentCall("/api/v1/agent/commands/wait/default?timeout=5")).status, 200);
    await d.agentCall("/api/v1/agent/commands/ack", { command_id: id, attempt: 1 });
    let offset = 0;
    for (const data of [first, second]) {
      for (const stream of ["stdout", "stderr"]) {
        const answer = await d.agentCall(`/api/v1/agent/commands/${id}/output`, {
          attempt: 1,
          stream,
          offset,
          data: toBase64(data),
        });
        assert.equal(answer.status, 200);
      }
      offset += data.length;
    }
    await until(() => stdout.text().includes(" end"), "the live output is printed");
    if (terminal) {
      // The indicator, the CLI's own control sequence, shows on the terminal as it is.
      await until(() => stderr.text().includes("\r\x1b[2K…"), "the indicator is shown");
    }
    await d.agentCall("/api/v1/agent/commands/report", {
      ...report(id, "", "", 0),
      result: {
        ...report(id, "", "", 0).result,
        stdout: toBase64(new Uint8Array([...first, ...second])),
        stdout_encoding: "base64",
      },
    });
    assert.equal((await following)?.status, "success");
    return { stdout, stderr };
  };

  await t.step("on a terminal, as text that cannot drive it", async () => {
    const { stdout, stderr } = await run(true);
    const shown = "\\u001b]52;c;cm0gLXJmIH4=\\u0007\\u001b]0;pwned\\u0007\\u001b[31mred" +
      "\\u001b[0m\tok\r\nrm -rf /\\u000dls\\u202eexe.pdf \u00ff\n\ufffd€ end\n";
    assert.equal(stdout.text(), shown);
    // Less the indicator: what it cleared, and its lines (each cleared before output).
    const err = stderr.text().split("\r\x1b[2K").filter((part) => !part.startsWith("… ")).join("");
    assert.equal(err, shown);
  });

  await t.step("elsewhere (a pipe, a file), byte for byte", async () => {
    const { stdout, stderr } = await run(false);
    const all = new Uint8Array([...first, ...second]);
    assert.deepEqual(stdout.bytes(), all);
    assert.deepEqual(stderr.bytes(), all);
  });
});

Deno.test("a terminal whose TERM is dumb gets no elapsed indicator, and a command's escapes still as text", () => {
  // An editor's shell buffer (TERM=dumb) printed the indicator's "\r\x1b[2K" as it is.
  const stdout = recordingStream(true);
  const stderr = recordingStream(true);
  const dumb = processWriter({ stdout, stderr }, "dumb");
  assert.equal(dumb.isTerminal, false);
  dumb.stdout(new TextEncoder().encode("\x1b[31mred\n"));
  assert.equal(stdout.text(), "\\u001b[31mred\n");
  for (const term of ["xterm-256color", ""]) {
    assert.equal(processWriter({ stdout, stderr }, term).isTerminal, true, term);
  }
  assert.equal(
    processWriter({ stdout, stderr: recordingStream(false) }, "xterm").isTerminal,
    false,
  );
});

Deno.test("followAndPrint goes on to the command's end when the reader of its stdout goes away (| head -1)", async () => {
  await using d = await dashboard();
  const { id } = await d.client.enqueue({ agentId: "runner", name: "echo x" });
  let tries = 0;
  const stdout = {
    isTerminal: () => false,
    writeSync(): number {
      tries++;
      throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
    },
  };
  const stderr = recordingStream(false);
  const io = memoryIo();
  const following = followAndPrint(io, processWriter({ stdout, stderr }), d.client, id);
  assert.equal((await d.agentCall("/api/v1/agent/commands/wait/default?timeout=5")).status, 200);
  await d.agentCall("/api/v1/agent/commands/ack", { command_id: id, attempt: 1 });
  for (const [stream, text] of [["stdout", "one\n"], ["stderr", "warning\n"]]) {
    await d.agentCall(`/api/v1/agent/commands/${id}/output`, {
      attempt: 1,
      stream,
      offset: 0,
      data: toBase64(new TextEncoder().encode(text)),
    });
  }
  await until(() => stderr.text() === "warning\n", "stderr is still written");
  await d.agentCall("/api/v1/agent/commands/report", report(id, "one\ntwo\n", "warning\n", 3));
  const record = await following;
  assert.equal(record?.status, "failed");
  assert.equal(record?.result?.exit_code, 3);
  assert.equal(tries, 1, "a stream whose reader went away is left alone");
  assert.equal(stderr.text(), "warning\n");
  assert.match(io.stderr.at(-1)!, new RegExp(`^${id} failed, exit code 3 `));
});

// An OSC 52 (writes the terminal's clipboard), a title, a colour and a lone carriage return.
const RESULT_HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[31mred\x1b[0m hidden\rshown";
const RESULT_SHOWN =
  "\\u001b]52;c;cm0gLXJmIH4=\\u0007\\u001b]0;pwned\\u0007\\u001b[31mred\\u001b[0m hidden\\u000dshown";

const finished: CommandRecord = {
  id: "c1",
  agent_id: "web-1",
  name: "cat motd",
  status: "success",
  result: {
    exit_code: 0,
    signal: null,
    duration_secs: 0.01,
    stdout: `${RESULT_HOSTILE}\n`,
    stderr: `${RESULT_HOSTILE}\n`,
    stdout_truncated_bytes: 0,
    stderr_truncated_bytes: 0,
  },
} as CommandRecord;

Deno.test("status result and status exec show a command's escape sequences as escapes on a terminal, and write them as they are elsewhere", async (t) => {
  await t.step("on terminals", () => {
    const stdout = recordingStream(true);
    const stderr = recordingStream(true);
    const io = streamIo({ stdout, stderr });
    for (const line of formatRecord(finished)) io.out(line);
    printOutput(io, finished);
    assert.ok(!stdout.text().includes("\x1b"), stdout.text());
    assert.ok(!stderr.text().includes("\x1b"), stderr.text());
    assert.ok(stdout.text().includes(`--- stdout ---\n${RESULT_SHOWN}\n`), stdout.text());
    assert.ok(stdout.text().endsWith(`${RESULT_SHOWN}\n`), "printOutput's stdout");
    assert.equal(stderr.text(), `${RESULT_SHOWN}\n`);
  });
  await t.step("to pipes and files: byte for byte", () => {
    const stdout = recordingStream(false);
    const stderr = recordingStream(false);
    const io = streamIo({ stdout, stderr });
    printOutput(io, finished);
    assert.equal(stdout.text(), `${RESULT_HOSTILE}\n`);
    assert.equal(stderr.text(), `${RESULT_HOSTILE}\n`);
  });
  await t.step("to pipes and files: stderr that is not UTF-8 byte for byte too", () => {
    // \xff is no UTF-8: the agent sends such output as base64 (docs/protocol.md §5).
    const bytes = new Uint8Array([0xff, 0x78, 0x1b, 0x5b, 0x33, 0x31, 0x6d]);
    const binary = {
      ...finished,
      result: {
        ...finished.result!,
        stdout: btoa(String.fromCharCode(...bytes)),
        stdout_encoding: "base64",
        stderr: btoa(String.fromCharCode(...bytes)),
        stderr_encoding: "base64",
      },
    } as CommandRecord;
    const stdout = recordingStream(false);
    const stderr = recordingStream(false);
    printOutput(streamIo({ stdout, stderr }), binary);
    assert.deepEqual(stdout.bytes(), bytes);
    // Then a line break, so that what is said after it starts a line of its own.
    assert.deepEqual(stderr.bytes(), new Uint8Array([...bytes, 0x0a]));
  });
  await t.step("a stream that cannot say whether it is a terminal: as it is", () => {
    const stdout = {
      ...recordingStream(false),
      isTerminal(): boolean {
        throw new Error("not known");
      },
    };
    const io = streamIo({ stdout, stderr: recordingStream(false) });
    io.out("\x1b[31mred");
    assert.equal(stdout.text(), "\x1b[31mred\n");
  });
});

Deno.test("a terminal that hung up (EIO) is a reader gone away: the line is dropped, not thrown", () => {
  let tries = 0;
  const gone = {
    isTerminal: () => true,
    writeSync(): number {
      tries++;
      throw Object.assign(new Error("Input/output error (os error 5)"), { code: "EIO" });
    },
  };
  const stdout = recordingStream(false);
  const io = streamIo({ stdout, stderr: gone });
  io.err("status up: agent stopped; stopping the dashboard");
  io.err("status up: stopped");
  io.out("still written");
  assert.equal(tries, 1, "a stream whose terminal hung up is left alone");
  assert.equal(stdout.text(), "still written\n");
  // Any other failure is still said: a full disk under a file given as standard output.
  const full = {
    isTerminal: () => false,
    writeSync(): number {
      throw Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
    },
  };
  assert.throws(
    () => streamIo({ stdout: full, stderr: gone }).out("x"),
    /^Error: cannot write to standard output: No space left on device \(os error 28\)$/,
  );
});
