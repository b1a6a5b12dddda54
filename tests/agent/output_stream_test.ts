/**
 * The agent's live output stream: at least once a second, at once at 16 KiB, one chunk at a
 * time with byte offsets, retried with the same offset, bounded memory with a visible gap.
 */
import assert from "node:assert/strict";
import type { OutputChunkRequest } from "../../src/protocol/mod.ts";
import { fromBase64 } from "../../src/protocol/mod.ts";
import { type ChunkOutcome, OutputStreamer } from "../../src/agent/output_stream.ts";
import { FakeClock } from "../../src/clock.ts";

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));
const bytes = (text: string) => new TextEncoder().encode(text);

function recorder(outcomes: ChunkOutcome[] = []) {
  const sent: Array<OutputChunkRequest & { text: string }> = [];
  return {
    sent,
    send(chunk: OutputChunkRequest): Promise<ChunkOutcome> {
      sent.push({ ...chunk, text: new TextDecoder().decode(fromBase64(chunk.data)) });
      return Promise.resolve(outcomes.shift() ?? "sent");
    },
  };
}

Deno.test("output streamer sends the first output at once, then at most once a second", async () => {
  const clock = new FakeClock(0);
  const sink = recorder();
  const streamer = new OutputStreamer({ attempt: 2, send: sink.send, clock });
  streamer.push("stdout", bytes("line 1\n"));
  await settle();
  assert.deepEqual(sink.sent.map((c) => [c.attempt, c.stream, c.offset, c.text]), [
    [2, "stdout", 0, "line 1\n"],
  ]);
  streamer.push("stdout", bytes("line 2\n"));
  streamer.push("stderr", bytes("warn\n"));
  await clock.advanceAsync(500);
  assert.equal(sink.sent.length, 1, "not before a second has passed");
  await clock.advanceAsync(500);
  // The streams take turns, one request a second while little is waiting.
  assert.deepEqual(sink.sent.slice(1).map((c) => [c.stream, c.offset, c.text]), [
    ["stderr", 0, "warn\n"],
  ]);
  await clock.advanceAsync(1000);
  assert.deepEqual(sink.sent.slice(2).map((c) => [c.stream, c.offset, c.text]), [
    ["stdout", 7, "line 2\n"],
  ]);
  await streamer.finish(1000);
  assert.equal(sink.sent.length, 3);
});

Deno.test("output streamer keeps sending once a second after the wall clock is set back", async () => {
  // The wait was the interval minus the time since the last send: an hour set back made it an
  // hour, and no live output came meanwhile.
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  const clock = new SteppedClock(0);
  const sink = recorder(["sent", "sent", "retry"]);
  const streamer = new OutputStreamer({ attempt: 1, send: sink.send, clock });
  streamer.push("stdout", bytes("line 1\n"));
  await settle();
  clock.offsetMs -= 3_600_000;
  streamer.push("stdout", bytes("line 2\n"));
  await clock.advanceAsync(1000);
  assert.deepEqual(sink.sent.map((c) => c.text), ["line 1\n", "line 2\n"]);
  // And after a failed send: its retry comes within the pause under way and the longest (10 s).
  streamer.push("stdout", bytes("line 3\n"));
  await clock.advanceAsync(1000);
  assert.equal(sink.sent.length, 3, "the failed send");
  clock.offsetMs -= 3_600_000;
  await clock.advanceAsync(12_000);
  assert.deepEqual(sink.sent.slice(3).map((c) => c.text), ["line 3\n"]);
  await streamer.finish(1000);
});

Deno.test("output streamer sends at once when 16 KiB are waiting", async () => {
  const clock = new FakeClock(0);
  const sink = recorder();
  const streamer = new OutputStreamer({ attempt: 1, send: sink.send, clock });
  streamer.push("stdout", bytes("x"));
  await settle();
  streamer.push("stdout", new Uint8Array(16 * 1024));
  await clock.advanceAsync(100); // the shortest spacing, far below the second
  assert.equal(sink.sent.length, 2);
  assert.equal(sink.sent[1].offset, 1);
  assert.equal(fromBase64(sink.sent[1].data).length, 16 * 1024);
  await streamer.finish(1000);
});

Deno.test("output streamer sends a failed chunk again with the same offset", async () => {
  const clock = new FakeClock(0);
  const sink = recorder(["retry", "retry", "sent"]);
  const streamer = new OutputStreamer({ attempt: 1, send: sink.send, clock });
  streamer.push("stdout", bytes("abc"));
  await settle();
  streamer.push("stdout", bytes("def"));
  for (let i = 0; i < 10 && sink.sent.length < 3; i++) await clock.advanceAsync(5000);
  assert.deepEqual(sink.sent.slice(0, 3).map((c) => [c.offset, c.text]), [
    [0, "abc"],
    [0, "abcdef"],
    [0, "abcdef"],
  ]);
  await streamer.finish(1000);
  assert.equal(sink.sent.length, 3, "nothing is sent twice once delivered");
});

Deno.test("output streamer keeps memory bounded: the oldest waiting bytes go, the offset shows the gap", async () => {
  const clock = new FakeClock(0);
  const sink = recorder(["retry"]);
  const streamer = new OutputStreamer({
    attempt: 1,
    send: sink.send,
    clock,
    maxPendingBytes: 10,
    maxChunkBytes: 100,
  });
  streamer.push("stdout", bytes("0123")); // sent, fails: stays waiting
  await settle();
  streamer.push("stdout", bytes("456789ABCDEF")); // 16 waiting: the oldest 6 are dropped
  assert.deepEqual(streamer.droppedBytes, { stdout: 6, stderr: 0 });
  await clock.advanceAsync(10_000); // the retry after the back-off
  await streamer.finish(1000);
  const last = sink.sent.at(-1)!;
  assert.deepEqual([last.offset, last.text], [6, "6789ABCDEF"]);
});

Deno.test("output streamer stops for good when the dashboard has no live output", async () => {
  const clock = new FakeClock(0);
  const sink = recorder(["stop"]);
  const streamer = new OutputStreamer({ attempt: 1, send: sink.send, clock });
  streamer.push("stdout", bytes("a"));
  await settle();
  streamer.push("stdout", bytes("b"));
  await streamer.finish(1000);
  assert.equal(sink.sent.length, 1);
});

Deno.test("output streamer waits out its back-off after a failure, however much output arrives", async () => {
  const clock = new FakeClock(0);
  const sink = recorder(["retry"]);
  const streamer = new OutputStreamer({ attempt: 1, send: sink.send, clock });
  streamer.push("stdout", bytes("a"));
  await settle();
  assert.equal(sink.sent.length, 1);
  for (let i = 0; i < 5; i++) {
    streamer.push("stdout", new Uint8Array(20 * 1024)); // above the 16 KiB threshold each time
    await clock.advanceAsync(100);
  }
  assert.equal(sink.sent.length, 1, "no request during the back-off (2 s after one failure)");
  await clock.advanceAsync(1500); // 2 s after the failure
  assert.equal(sink.sent.length, 2);
  assert.equal(sink.sent[1].offset, 0, "the failed bytes go again first");
  const finished = streamer.finish(1000);
  await clock.advanceAsync(1000); // what is left goes within the finish time
  await finished;
});

Deno.test("output streamer waits as long as a throttled chunk's Retry-After says, past its own back-off", async () => {
  // A dashboard on a full disk answers 507 with Retry-After: 30; live output came back every 2-10 s.
  const clock = new FakeClock(0);
  const sink = recorder([{ retryAfterMs: 30_000 }]);
  const streamer = new OutputStreamer({ attempt: 1, send: sink.send, clock });
  streamer.push("stdout", bytes("a"));
  await settle();
  assert.equal(sink.sent.length, 1);
  for (let i = 0; i < 29; i++) {
    streamer.push("stdout", new Uint8Array(20 * 1024));
    await clock.advanceAsync(1000);
  }
  assert.equal(sink.sent.length, 1, "no request in the 30 s the dashboard asked for");
  await clock.advanceAsync(1000);
  assert.equal(sink.sent.length, 2);
  assert.equal(sink.sent[1].offset, 0, "the throttled bytes go again first");
  const finished = streamer.finish(1000);
  await clock.advanceAsync(1000);
  await finished;
});
