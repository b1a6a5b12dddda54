import assert from "node:assert/strict";
import { captureStream, OutputCapture } from "../../src/exec/mod.ts";

const encoder = new TextEncoder();

function bytes(length: number, seed = 0): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = 0x21 + ((i * 7 + seed) % 90);
  return out;
}

function decode(data: Uint8Array): string {
  return new TextDecoder("utf-8", { ignoreBOM: true }).decode(data);
}

Deno.test("capture keeps everything below the limit and exactly head and tail above it", async (t) => {
  for (const total of [0, 1, 6, 7, 8, 13, 14, 15, 100, 1000]) {
    for (const chunk of [1, 2, 3, 5, 8, 64]) {
      await t.step(`${total} bytes in chunks of ${chunk}`, () => {
        const data = bytes(total, chunk);
        const capture = new OutputCapture({ headBytes: 7, tailBytes: 6 });
        for (let i = 0; i < total; i += chunk) capture.push(data.subarray(i, i + chunk));
        const result = capture.result();
        assert.equal(result.totalBytes, total);
        if (total <= 13) {
          assert.equal(result.text, decode(data));
          assert.equal(result.truncatedBytes, 0);
        } else {
          assert.equal(
            result.text,
            decode(data.subarray(0, 7)) + `\n[status: ${total - 13} bytes dropped here]\n` +
              decode(data.subarray(total - 6)),
          );
          assert.equal(result.truncatedBytes, total - 13);
        }
        assert.equal(result.encoding, "utf-8");
      });
    }
  }
});

Deno.test("capture copies pushed bytes so the caller may reuse its buffer", () => {
  const capture = new OutputCapture({ headBytes: 2, tailBytes: 2 });
  const buffer = encoder.encode("abcd");
  capture.push(buffer);
  buffer.fill(0x7a);
  capture.push(encoder.encode("ef"));
  assert.deepEqual(capture.result(), {
    text: "ab\n[status: 2 bytes dropped here]\nef",
    encoding: "utf-8",
    totalBytes: 6,
    truncatedBytes: 2,
  });
});

Deno.test("capture keeps every byte: NUL as text, anything not UTF-8 as base64", async (t) => {
  const base64 = (data: Uint8Array) => btoa(String.fromCharCode(...data));
  await t.step("NUL bytes stay in the text (a tar header is not cut at its first field)", () => {
    const header = new Uint8Array(512);
    header.set(encoder.encode("etc/shadow"));
    header.set(encoder.encode("ustar"), 257);
    const capture = new OutputCapture();
    capture.push(header);
    const result = capture.result();
    assert.equal(result.encoding, "utf-8");
    assert.equal(result.text.length, 512);
    assert.deepEqual(encoder.encode(result.text), header);
    assert.equal(result.truncatedBytes, 0);
  });
  await t.step("invalid UTF-8: base64 of the exact bytes", () => {
    const data = new Uint8Array([0x61, 0xff, 0xfe, 0x00, 0x62]);
    const capture = new OutputCapture();
    capture.push(data);
    assert.deepEqual(capture.result(), {
      text: base64(data),
      encoding: "base64",
      totalBytes: 5,
      truncatedBytes: 0,
    });
  });
  await t.step("invalid UTF-8 beyond the limit: head and tail in base64, the rest counted", () => {
    const data = new Uint8Array(20).map((_, i) => 0xf8 + (i % 8));
    const capture = new OutputCapture({ headBytes: 4, tailBytes: 3 });
    capture.push(data);
    const result = capture.result();
    assert.equal(result.encoding, "base64");
    assert.equal(
      result.text,
      base64(new Uint8Array([...data.subarray(0, 4), ...data.subarray(17)])),
    );
    assert.equal(result.truncatedBytes, 13);
  });
  await t.step("a character split between chunks stays whole", () => {
    const capture = new OutputCapture();
    const euro = encoder.encode("€");
    capture.push(euro.subarray(0, 1));
    capture.push(euro.subarray(1));
    assert.equal(capture.result().text, "€");
  });
  await t.step("a character cut at the seam is dropped whole, counted, and marked", () => {
    const capture = new OutputCapture({ headBytes: 4, tailBytes: 4 });
    capture.push(encoder.encode("ab€" + "x".repeat(10) + "€cd"));
    const { text, truncatedBytes, encoding } = capture.result();
    assert.equal(encoding, "utf-8");
    assert.equal(truncatedBytes, 20 - 8 + 2 + 2, "the cut bytes of both euro signs count");
    assert.equal(text, "ab\n[status: 16 bytes dropped here]\ncd");
  });
  await t.step("a marker after a line break needs no extra one", () => {
    const capture = new OutputCapture({ headBytes: 6, tailBytes: 6 });
    capture.push(encoder.encode("line1\nfile_wrong_name_1234\nline3\n"));
    assert.equal(capture.result().text, "line1\n[status: 21 bytes dropped here]\nline3\n");
  });
  await t.step("a byte-order mark is kept", () => {
    const capture = new OutputCapture();
    capture.push(new Uint8Array([0xef, 0xbb, 0xbf, 0x41]));
    assert.equal(capture.result().text, "\uFEFFA");
  });
});

Deno.test("capture rejects sizes that are not non-negative integers", () => {
  assert.throws(() => new OutputCapture({ headBytes: -1 }), RangeError);
  assert.throws(() => new OutputCapture({ tailBytes: 1.5 }), RangeError);
});

Deno.test("captureStream reads byte streams and plain streams, and stops on demand", async (t) => {
  await t.step("plain stream", async () => {
    const reading = captureStream(
      ReadableStream.from([encoder.encode("he"), encoder.encode("llo")]),
    );
    await reading.done;
    assert.equal(reading.capture.result().text, "hello");
  });
  await t.step("byte stream", async () => {
    const chunks = [encoder.encode("by"), encoder.encode("tes")];
    const stream = new ReadableStream({
      type: "bytes",
      pull(controller) {
        const next = chunks.shift();
        if (next) {
          controller.enqueue(next);
        } else {
          // A byte source closing under a pending BYOB read must answer it with 0 bytes.
          controller.close();
          controller.byobRequest?.respond(0);
        }
      },
    });
    const reading = captureStream(stream);
    await reading.done;
    assert.equal(reading.capture.result().text, "bytes");
  });
  await t.step("stop cancels a stream that never ends", async () => {
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode("partial"));
      },
      cancel() {
        cancelled = true;
      },
    });
    const reading = captureStream(stream);
    await new Promise((resolve) => setTimeout(resolve, 10));
    await reading.stop();
    assert.equal(cancelled, true);
    assert.equal(reading.capture.result().text, "partial");
  });
});
