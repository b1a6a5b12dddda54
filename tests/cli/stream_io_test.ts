import assert from "node:assert/strict";
import { streamIo } from "../../src/cli/io.ts";
import { printOutput } from "../../src/cli/enqueue.ts";
import { formatRecord } from "../../src/operator/format.ts";
import type { CommandRecord } from "../../src/operator/mod.ts";

const decoder = new TextDecoder();

/** A standard stream that records what is written, a terminal or not. */
function recordingStream(terminal: boolean) {
  const parts: Uint8Array[] = [];
  return {
    isTerminal: () => terminal,
    writeSync(bytes: Uint8Array) {
      parts.push(bytes.slice());
      return bytes.length;
    },
    text: () => parts.map((p) => decoder.decode(p)).join(""),
  };
}

// An OSC 52 (writes the terminal's clipboard), a title, a colour and a lone carriage return.
const HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[31mred\x1b[0m hidden\rshown";
const SHOWN =
  "\\u001b]52;c;cm0gLXJmIH4=\\u0007\\u001b]0;pwned\\u0007\\u001b[31mred\\u001b[0m hidden\\u000dshown";

const record: CommandRecord = {
  id: "c1",
  agent_id: "web-1",
  name: "cat motd",
  status: "success",
  result: {
    exit_code: 0,
    signal: null,
    duration_secs: 0.01,
    stdout: `${HOSTILE}\n`,
    stderr: `${HOSTILE}\n`,
    stdout_truncated_bytes: 0,
    stderr_truncated_bytes: 0,
  },
} as CommandRecord;

Deno.test("status result and status exec show a command's escape sequences as escapes on a terminal, and write them as they are elsewhere", async (t) => {
  await t.step("on terminals", () => {
    const stdout = recordingStream(true);
    const stderr = recordingStream(true);
    const io = streamIo({ stdout, stderr });
    for (const line of formatRecord(record)) io.out(line);
    printOutput(io, record);
    assert.ok(!stdout.text().includes("\x1b"), stdout.text());
    assert.ok(!stderr.text().includes("\x1b"), stderr.text());
    assert.ok(stdout.text().includes(`--- stdout ---\n${SHOWN}\n`), stdout.text());
    assert.ok(stdout.text().endsWith(`${SHOWN}\n`), "printOutput's stdout");
    assert.equal(stderr.text(), `${SHOWN}\n`);
  });
  await t.step("to pipes and files: byte for byte", () => {
    const stdout = recordingStream(false);
    const stderr = recordingStream(false);
    const io = streamIo({ stdout, stderr });
    printOutput(io, record);
    assert.equal(stdout.text(), `${HOSTILE}\n`);
    assert.equal(stderr.text(), `${HOSTILE}\n`);
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
