import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { HttpError } from "../../src/server/http_error.ts";
import { jsonProblem, readBody, readIncoming } from "../../src/server/body.ts";
import { Buffer } from "node:buffer";
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** A POST whose body arrives in the given chunks (no Content-Length). */
function streamed(chunks: string[]): Request {
  const encoder = new TextEncoder();
  return new Request("http://dashboard/", {
    method: "POST",
    body: ReadableStream.from(chunks.map((chunk) => encoder.encode(chunk))),
  });
}

Deno.test("readBody keeps a body within the limit, with its size and digests", async () => {
  const body = await readBody(streamed(['{"a":', "1}"]), {
    limit: 100,
    hardLimit: 1000,
    hmacKey: "k",
  });
  assert.equal(new TextDecoder().decode(body.bytes!), '{"a":1}');
  assert.equal(body.size, 7);
  assert.equal(body.sha256Hex, sha256('{"a":1}'));
  assert.equal(body.hmacBase64, createHmac("sha256", "k").update('{"a":1}').digest("base64"));
});

Deno.test("readBody of a request without a body gives the empty body's digest", async () => {
  const body = await readBody(new Request("http://dashboard/"), { limit: 10, hardLimit: 10 });
  assert.deepEqual(body, { bytes: new Uint8Array(0), size: 0, sha256Hex: sha256("") });
});

Deno.test("readBody between the limit and the hard limit keeps only the hash", async () => {
  const text = "x".repeat(50);
  const body = await readBody(streamed([text.slice(0, 20), text.slice(20)]), {
    limit: 10,
    hardLimit: 100,
  });
  assert.equal(body.bytes, null);
  assert.equal(body.size, 50);
  assert.equal(body.sha256Hex, sha256(text));
});

Deno.test("readBody answers 413 beyond the hard limit, declared or streamed", async (t) => {
  const isTooLarge = (error: unknown) =>
    error instanceof HttpError && error.status === 413 &&
    /request body is larger than 10 bytes/.test(error.message);
  await t.step("declared by Content-Length: nothing is read", async () => {
    const request = new Request("http://dashboard/", {
      method: "POST",
      body: "y".repeat(200),
      headers: { "Content-Length": "200" },
    });
    await assert.rejects(readBody(request, { limit: 10, hardLimit: 100 }), isTooLarge);
  });
  await t.step("streamed past it", async () => {
    const request = streamed(["z".repeat(60), "z".repeat(60)]);
    await assert.rejects(readBody(request, { limit: 10, hardLimit: 100 }), isTooLarge);
  });
});

Deno.test("readBody answers 400 when the body cannot be read to its end", async (t) => {
  // Streamed (no Content-Length), and read whole (a declared length within the limit).
  for (const headers of [{}, { "Content-Length": "5" }] as Record<string, string>[]) {
    await t.step(JSON.stringify(headers), async () => {
      const request = new Request("http://dashboard/", {
        method: "POST",
        headers,
        body: new ReadableStream<Uint8Array>({
          pull(controller) {
            controller.error(new Error("connection reset"));
          },
        }),
      });
      await assert.rejects(
        readBody(request, { limit: 10, hardLimit: 100 }),
        (error) =>
          error instanceof HttpError && error.status === 400 &&
          /could not be read to its end: connection reset/.test(error.message),
      );
    });
  }
});

Deno.test("jsonProblem counts the nesting of arrays and objects, not scalars", () => {
  const tooDeep = { kind: "too_deep" };
  assert.equal(jsonProblem(1, 0), null);
  assert.deepEqual(jsonProblem({}, 0), tooDeep);
  assert.equal(jsonProblem({ a: [1, { b: 2 }] }, 3), null);
  assert.deepEqual(jsonProblem({ a: [1, { b: 2 }] }, 2), tooDeep);
  let deep: unknown = null;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.deepEqual(
    jsonProblem(deep, 64),
    tooDeep,
    "no recursion: a deep body cannot blow the stack",
  );
});

Deno.test("jsonProblem finds a number that is not finite, with its path", () => {
  assert.deepEqual(jsonProblem(JSON.parse("1e400"), 64), { kind: "non_finite", path: [] });
  assert.deepEqual(
    jsonProblem(JSON.parse('{"params":{"a":[1,{"b":-1e400}]},"c":1}'), 64),
    { kind: "non_finite", path: ["params", "a", 1, "b"] },
  );
  assert.equal(jsonProblem(JSON.parse('{"a":[1.7976931348623157e308,-5e-324]}'), 64), null);
});

Deno.test("readBody reads a body of a declared length within the limit whole, same digests", async () => {
  const request = new Request("http://dashboard/", {
    method: "POST",
    body: '{"a":1}',
    headers: { "Content-Length": "7" },
  });
  const body = await readBody(request, { limit: 100, hardLimit: 1000, hmacKey: "k" });
  assert.equal(new TextDecoder().decode(body.bytes!), '{"a":1}');
  assert.equal(body.size, 7);
  assert.equal(body.sha256Hex, sha256('{"a":1}'));
  assert.equal(body.hmacBase64, createHmac("sha256", "k").update('{"a":1}').digest("base64"));
  const empty = await readBody(
    new Request("http://dashboard/", { method: "POST", headers: { "Content-Length": "0" } }),
    { limit: 100, hardLimit: 1000 },
  );
  assert.deepEqual(empty.bytes, new Uint8Array(0));
  assert.equal(empty.size, 0);
  assert.equal(empty.sha256Hex, sha256(""));
});

Deno.test("readBody holds a body read whole to the limits whatever its Content-Length said", async () => {
  // In process a Content-Length can understate the body (node:http's parser holds it to it).
  const understated = (text: string) =>
    new Request("http://dashboard/", {
      method: "POST",
      body: text,
      headers: { "Content-Length": "5" },
    });
  const between = await readBody(understated("x".repeat(50)), { limit: 10, hardLimit: 100 });
  assert.equal(between.bytes, null);
  assert.equal(between.size, 50);
  assert.equal(between.sha256Hex, sha256("x".repeat(50)));
  await assert.rejects(
    readBody(understated("x".repeat(200)), { limit: 10, hardLimit: 100 }),
    (error) => error instanceof HttpError && error.status === 413,
  );
});

/** A stand-in for `node:http`'s `IncomingMessage`: a readable stream of the given chunks. */
function incoming(chunks: string[], fail?: Error): IncomingMessage {
  let next = 0;
  return new Readable({
    read() {
      if (next < chunks.length) this.push(Buffer.from(chunks[next++]));
      else if (fail) this.destroy(fail);
      else this.push(null);
    },
  }) as unknown as IncomingMessage;
}

Deno.test("readIncoming reads a node:http body as readBody reads a web one", async (t) => {
  await t.step("within the limit: bytes and digests", async () => {
    const body = await readIncoming(incoming(['{"a":', "1}"]), null, {
      limit: 100,
      hardLimit: 1000,
      hmacKey: "k",
    });
    assert.equal(new TextDecoder().decode(body.bytes!), '{"a":1}');
    assert.equal(body.sha256Hex, sha256('{"a":1}'));
    assert.equal(body.hmacBase64, createHmac("sha256", "k").update('{"a":1}').digest("base64"));
  });
  await t.step("between the limit and the hard limit: only the digests", async () => {
    const text = "x".repeat(50);
    const body = await readIncoming(incoming([text.slice(0, 5), text.slice(5)]), null, {
      limit: 10,
      hardLimit: 100,
      hmacKey: "k",
    });
    assert.equal(body.bytes, null);
    assert.equal(body.size, 50);
    assert.equal(body.sha256Hex, sha256(text));
    assert.equal(body.hmacBase64, createHmac("sha256", "k").update(text).digest("base64"));
  });
  await t.step("declared beyond the hard limit: 413, nothing read", async () => {
    const stream = incoming(["y".repeat(200)]);
    await assert.rejects(
      readIncoming(stream, "200", { limit: 10, hardLimit: 100 }),
      (error) => error instanceof HttpError && error.status === 413,
    );
    assert.equal(stream.readableFlowing, null, "the body was not touched");
  });
  await t.step("streamed past the hard limit: 413, reading stops", async () => {
    const stream = incoming(["z".repeat(60), "z".repeat(60), "z".repeat(60)]);
    await assert.rejects(
      readIncoming(stream, null, { limit: 10, hardLimit: 100 }),
      (error) => error instanceof HttpError && error.status === 413,
    );
    assert.equal(stream.readableFlowing, false, "paused");
    assert.equal(stream.listenerCount("data"), 0);
  });
  await t.step("cut short: 400", async () => {
    await assert.rejects(
      readIncoming(incoming(["{"], new Error("aborted")), null, { limit: 10, hardLimit: 100 }),
      (error) =>
        error instanceof HttpError && error.status === 400 &&
        /could not be read to its end: aborted/.test(error.message),
    );
  });
});
