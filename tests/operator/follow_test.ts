/**
 * Following a command's event stream: a broken or silent connection is opened again with
 * Last-Event-ID, and nothing is missed or repeated.
 */
import assert from "node:assert/strict";
import { until } from "../_until.ts";
import {
  followCommand,
  OperatorClient,
  OperatorError,
  parseServerSentEvents,
} from "../../src/operator/mod.ts";
import { toBase64 } from "../../src/protocol/mod.ts";
import { makeDashboard, P, reportBody, type TestDashboard } from "../server/_helpers.ts";

const encoder = new TextEncoder();

async function running(d: TestDashboard, id: string) {
  await d.admin("POST", P.enqueue, { id, name: "echo hi", agent_id: "a1" });
  await d.agent({ path: P.wait() });
  await d.agent({ path: P.ack, body: { command_id: id, attempt: 1 } });
}

function chunk(d: TestDashboard, id: string, offset: number, text: string) {
  return d.agent({
    path: `/api/v1/agent/commands/${id}/output`,
    body: { attempt: 1, stream: "stdout", offset, data: toBase64(encoder.encode(text)) },
  });
}

/** A body that passes `events` whole events of `body` on, then ends (a dropped connection). */
function cutAfter(body: ReadableStream<Uint8Array>, events: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let seen = 0;
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done || seen >= events) {
        await reader.cancel();
        controller.close();
        return;
      }
      controller.enqueue(value);
      seen += (new TextDecoder().decode(value).match(/\n\n/g) ?? []).length;
    },
    cancel: () => reader.cancel(),
  });
}

Deno.test("followCommand resumes a broken or silent stream with Last-Event-ID, missing and repeating nothing", async () => {
  await using d = await makeDashboard({ realClock: true });
  await running(d, "f1");
  await chunk(d, "f1", 0, "one\n");
  await chunk(d, "f1", 4, "two\n");

  let connections = 0;
  const lastEventIds: Array<string | null> = [];
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    adminToken: "admin-token-0123456789abcdef",
    fetch: async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      const response = await d.dashboard.app.request(url, init);
      if (!url.endsWith("/events")) return response;
      connections++;
      lastEventIds.push(new Headers(init?.headers).get("Last-Event-ID"));
      if (connections === 1) {
        // retry line, status, first output: then the connection drops.
        return new Response(cutAfter(response.body!, 3), { headers: response.headers });
      }
      if (connections === 2) {
        // A connection that stays open and silent.
        await response.body?.cancel();
        return new Response(new ReadableStream(), { headers: response.headers });
      }
      return response;
    },
  });
  const seen: Array<[number, string]> = [];
  let reconnects = 0;
  const following = followCommand(client, "f1", {
    idleTimeoutMs: 200,
    onOutput: (c) => seen.push([c.offset, new TextDecoder().decode(c.data)]),
    onReconnect: () => reconnects++,
  });
  await until(() => seen.length >= 1, "the first output is followed");
  await chunk(d, "f1", 8, "three\n");
  await d.agent({ path: P.report, body: reportBody("f1") });
  const { record, live } = await following;
  assert.equal(live, true);
  assert.equal(record.status, "success");
  assert.deepEqual(seen, [[0, "one\n"], [4, "two\n"], [8, "three\n"]]);
  assert.ok(connections >= 3, `connections: ${connections}`);
  assert.equal(lastEventIds[0], null);
  assert.match(String(lastEventIds[1]), /^\d+:running\.1\.0$/, "resumed after the first output");
  assert.ok(reconnects >= 1);
});

Deno.test("followCommand falls back to polling against a dashboard without event streams", async () => {
  await using d = await makeDashboard({ realClock: true });
  await running(d, "p1");
  await d.agent({ path: P.report, body: reportBody("p1") });
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    adminToken: "admin-token-0123456789abcdef",
    fetch: async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.endsWith("/events")) {
        return new Response(JSON.stringify({ error: "not found" }), { status: 404 });
      }
      return await d.dashboard.app.request(url, init);
    },
  });
  const { record, live } = await followCommand(client, "p1");
  assert.equal(live, false);
  assert.equal(record.status, "success");
  await assert.rejects(() => followCommand(client, "nope"), /no command nope/);
});

Deno.test("followCommand keeps a connection that goes on sending keep-alives", async () => {
  let connections = 0;
  const end = JSON.stringify({
    id: "k1",
    name: "echo hi",
    status: "success",
    result: { exit_code: 0 },
  });
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: () => {
      connections++;
      let ticks = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          if (++ticks < 8) controller.enqueue(encoder.encode(": keep-alive\n\n"));
          else {
            controller.enqueue(encoder.encode(`id: 0:x\nevent: end\ndata: ${end}\n\n`));
            controller.close();
          }
        },
      });
      return Promise.resolve(
        new Response(body, { headers: { "Content-Type": "text/event-stream" } }),
      );
    },
  });
  const { record } = await followCommand(client, "k1", { idleTimeoutMs: 150 });
  assert.equal(record.status, "success");
  assert.equal(connections, 1, "400 ms of keep-alives 50 ms apart never looked idle");
});

Deno.test("followCommand gives up on a stream that keeps closing without an end", async () => {
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: () =>
      Promise.resolve(
        new Response(": nothing\n\n", { headers: { "Content-Type": "text/event-stream" } }),
      ),
  });
  await assert.rejects(
    () => followCommand(client, "c1", { maxOutageMs: 300 }),
    /kept closing/,
  );
});

Deno.test("followCommand refuses an end event that is not a command", async () => {
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: () =>
      Promise.resolve(
        new Response('id: 1:x\nevent: end\ndata: {"id":"c1"}\n\n', {
          headers: { "Content-Type": "text/event-stream" },
        }),
      ),
  });
  await assert.rejects(() => followCommand(client, "c1"), /not a command/);
});

Deno.test("followCommand opens the stream again after a 429's Retry-After instead of failing", async () => {
  const end = JSON.stringify({ id: "r1", name: "echo hi", status: "success", result: null });
  const opened: number[] = [];
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: () => {
      opened.push(performance.now());
      return Promise.resolve(
        opened.length === 1
          ? Response.json({ error: "rate limit exceeded; retry in 1 s" }, {
            status: 429,
            headers: { "Retry-After": "1" },
          })
          : new Response(`id: 0:x\nevent: end\ndata: ${end}\n\n`, {
            headers: { "Content-Type": "text/event-stream" },
          }),
      );
    },
  });
  let reconnects = 0;
  const { record } = await followCommand(client, "r1", { onReconnect: () => reconnects++ });
  assert.equal(record.status, "success");
  assert.equal(opened.length, 2);
  assert.ok(opened[1] - opened[0] >= 900, `opened again after ${opened[1] - opened[0]} ms`);
  assert.equal(reconnects, 1);
});

Deno.test("followCommand and waitForFinal refuse durations a timer cannot wait, sending nothing", async (t) => {
  // An idleTimeoutMs of NaN, Infinity or 0 fired after 1 ms: the stream was opened again and
  // again, with a TimeoutOverflowWarning on stderr each time; a NaN maxOutageMs threw
  // AbortSignal.timeout's bare TypeError.
  let requests = 0;
  const client = new OperatorClient({
    dashboardUrl: "http://127.0.0.1:9",
    fetch: () => {
      requests++;
      return Promise.resolve(new Response(null, { status: 500 }));
    },
  });
  const range = (name: string, min: number, value: number) =>
    new RangeError(
      `${name} must be a number of milliseconds from ${min} to 2147483647, got ${value}`,
    );
  for (const idleTimeoutMs of [0, NaN, Infinity, 2 ** 31]) {
    await t.step(`followCommand idleTimeoutMs ${idleTimeoutMs}`, () =>
      assert.rejects(
        followCommand(client, "c1", { idleTimeoutMs }),
        range("idleTimeoutMs", 1, idleTimeoutMs),
      ));
  }
  await t.step("followCommand maxOutageMs -1", () =>
    assert.rejects(
      followCommand(client, "c1", { maxOutageMs: -1 }),
      range("maxOutageMs", 0, -1),
    ));
  for (
    const [name, min, options] of [
      ["initialIntervalMs", 1, { initialIntervalMs: 0 }],
      ["maxIntervalMs", 1, { maxIntervalMs: Infinity }],
      ["maxOutageMs", 0, { maxOutageMs: NaN }],
    ] as const
  ) {
    await t.step(`waitForFinal ${name}`, () =>
      assert.rejects(
        client.waitForFinal("c1", options),
        range(name, min, Object.values(options)[0]),
      ));
  }
  assert.equal(requests, 0);
});

Deno.test("followCommand gives up on a dashboard that takes the connection and never answers", async () => {
  let connections = 0;
  const reconnects: string[] = [];
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    // Never answers: only the request's signal ends the wait.
    fetch: (_input, init) =>
      new Promise((_resolve, reject) => {
        connections++;
        init?.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
      }),
  });
  await assert.rejects(
    () =>
      followCommand(client, "c1", {
        idleTimeoutMs: 100,
        maxOutageMs: 600,
        onReconnect: (error) => reconnects.push((error as Error).message),
      }),
    /^OperatorError: the dashboard at http:\/\/localhost did not answer the event stream request within 0\.\d+ s$/,
  );
  assert.ok(connections >= 2, `connections: ${connections}`);
  assert.equal(
    reconnects[0],
    "the dashboard at http://localhost did not answer the event stream request within 0.1 s",
  );
});

Deno.test("a dashboard that never answers is given up after the outage, not an idle timeout per try", async () => {
  const heads: string[] = [];
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
      }),
  });
  const failure = await followCommand(client, "c1", {
    idleTimeoutMs: 400,
    maxOutageMs: 1000,
    onReconnect: (error) => heads.push((error as Error).message),
  }).catch((error: Error) => error);
  // The first try waits the idle timeout, and the outage counts from its start; a later try
  // waits only what is left of it, so the last one is cut short: the second try (after 0.25 s)
  // waits the 0.35 s left, and no third one is made. (With an idle timeout as long as the
  // outage, the second try ended right at its end, and which try was last depended on how the
  // timers fell.)
  assert.match(heads[0], /within 0\.4 s$/);
  assert.equal(heads.length, 1);
  assert.match(String(failure), /did not answer the event stream request within 0\.[0-3]\d* s$/);
});

Deno.test("a dashboard that never answers is given up once the outage has passed since the first request, not an idle timeout later", async () => {
  let connections = 0;
  const heads: string[] = [];
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: (_input, init) =>
      new Promise((_resolve, reject) => {
        connections++;
        init?.signal?.addEventListener("abort", () => reject(init.signal!.reason), { once: true });
      }),
  });
  // The CLI's 45 s idle timeout and 60 s outage took 105 s to give up on a dashboard that took
  // the connection and never answered: the first request waited the whole idle timeout before
  // the outage began to count.
  const failure = await followCommand(client, "c1", {
    idleTimeoutMs: 400,
    maxOutageMs: 300,
    onReconnect: (error) => heads.push((error as Error).message),
  }).catch((error: Error) => error);
  assert.match(String(failure), /did not answer the event stream request within 0\.3 s$/);
  assert.equal(connections, 1);
  assert.deepEqual(heads, [], "no try is made with nothing left of the outage");
});

Deno.test("followCommand fails with the error of a handler that throws, instead of taking it for a broken connection", async (t) => {
  // A writer whose reader went away, a full disk: the output cannot be handed on. Taken for a
  // broken connection, the stream was opened again after the chunk and the chunk was lost.
  for (const handler of ["onOutput", "onStatus"] as const) {
    await t.step(handler, async () => {
      await using d = await makeDashboard({ realClock: true });
      await running(d, "h1");
      await chunk(d, "h1", 0, "one\n");
      let connections = 0;
      const client = new OperatorClient({
        dashboardUrl: "http://localhost",
        adminToken: "admin-token-0123456789abcdef",
        fetch: (input, init) => {
          if (String(input instanceof Request ? input.url : input).endsWith("/events")) {
            connections++;
          }
          return Promise.resolve(d.dashboard.app.request(input as string, init));
        },
      });
      const full = new Error("no space left on device");
      let reconnects = 0;
      // Taken for a broken connection, following would go on as long as the command runs.
      const stop = new AbortController();
      const following = followCommand(client, "h1", {
        signal: stop.signal,
        [handler]: () => {
          throw full;
        },
        onReconnect: () => {
          reconnects++;
          stop.abort(new Error("opened the stream again"));
        },
      });
      await assert.rejects(following, (error) => error === full);
      assert.equal(reconnects, 0);
      assert.equal(connections, 1);
    });
  }
});

Deno.test("followCommand refuses output whose data is not base64, instead of skipping it", async () => {
  await using d = await makeDashboard({ realClock: true });
  await running(d, "b1");
  await chunk(d, "b1", 0, "one\n");
  await d.agent({ path: P.report, body: reportBody("b1") });
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    adminToken: "admin-token-0123456789abcdef",
    fetch: async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      const response = await d.dashboard.app.request(url, init);
      if (!url.endsWith("/events")) return response;
      // A dashboard (or a proxy) that mangles the chunk's bytes.
      const text = (await response.text()).replace(/"data":"[^"]*"/, `"data":"not base64!"`);
      return new Response(text, { headers: response.headers });
    },
  });
  const seen: string[] = [];
  await assert.rejects(
    followCommand(client, "b1", { onOutput: (c) => seen.push(new TextDecoder().decode(c.data)) }),
    (error) =>
      error instanceof OperatorError && error.kind === "invalid_answer" &&
      /the event stream of b1 sent output at offset 0 of stdout whose data is not base64/.test(
        error.message,
      ),
  );
  assert.deepEqual(seen, []);
});

Deno.test("parseServerSentEvents refuses an event larger than its bound instead of holding it all", async (t) => {
  const body = (...parts: string[]) => ReadableStream.from(parts.map((p) => encoder.encode(p)));
  const refused = (error: unknown) =>
    error instanceof OperatorError && error.kind === "invalid_answer" &&
    error.message === "the event stream sent an event of more than 1000 characters";
  const parse = (stream: ReadableStream<Uint8Array>) =>
    Array.fromAsync(parseServerSentEvents(stream, { maxEventChars: 1000 }));

  await t.step("a line that never ends", async () => {
    await assert.rejects(parse(body("data: ", "x".repeat(600), "x".repeat(600))), refused);
  });
  await t.step("many lines of one event", async () => {
    await assert.rejects(parse(body(...Array(30).fill(`data: ${"x".repeat(50)}\n`))), refused);
  });
  await t.step("many events, each within the bound, are all taken", async () => {
    const events = await parse(body(...Array(30).fill(`event: e\ndata: ${"x".repeat(500)}\n\n`)));
    assert.equal(events.length, 30);
  });
});

Deno.test("parseServerSentEvents reads lines however the stream cuts them", async (t) => {
  const body = (...parts: string[]) => ReadableStream.from(parts.map((p) => encoder.encode(p)));
  const parse = (stream: ReadableStream<Uint8Array>) =>
    Array.fromAsync(parseServerSentEvents(stream));

  await t.step(
    "a CRLF cut between two reads ends one line, not two (no early empty event)",
    async () => {
      const events = await parse(body("data: a\r", "\ndata: b\r", "\n\r", "\n"));
      assert.deepEqual(events, [{ id: undefined, event: "message", data: "a\nb" }]);
    },
  );
  await t.step(
    "a lone CR at the end of a read, and at the end of the stream, ends a line",
    async () => {
      const events = await parse(body("data: a\r", "data: b\r", "\r"));
      assert.deepEqual(events, [{ id: undefined, event: "message", data: "a\nb" }]);
    },
  );
  await t.step("a long line in one-character pieces, and line ends inside a piece", async () => {
    const line = `data: ${"y".repeat(5000)}`;
    const events = await parse(body(...line, "\n\nid: 7\nevent: e\ndata: z\n\n"));
    assert.deepEqual(events, [
      { id: undefined, event: "message", data: "y".repeat(5000) },
      { id: "7", event: "e", data: "z" },
    ]);
  });
  await t.step("a multi-byte character cut between reads", async () => {
    const bytes = encoder.encode("data: é€\n\n");
    const stream = ReadableStream.from([...bytes].map((b) => new Uint8Array([b])));
    assert.deepEqual(await parse(stream), [{ id: undefined, event: "message", data: "é€" }]);
  });
});

Deno.test("followCommand waits between streams that break before their first event, and gives up after the outage", async () => {
  await using d = await makeDashboard({ realClock: true });
  await running(d, "r1");
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    adminToken: "admin-token-0123456789abcdef",
    fetch: async (input, init) => {
      const url = String(input instanceof Request ? input.url : input);
      const response = await d.dashboard.app.request(url, init);
      if (!url.endsWith("/events")) return response;
      await response.body?.cancel();
      // The head arrives, then the connection is reset (a proxy in trouble).
      const broken = new ReadableStream<Uint8Array>({
        pull: (controller) => controller.error(new TypeError("connection reset")),
      });
      return new Response(broken, { headers: response.headers });
    },
  });
  let reconnects = 0;
  // Without a pause, following asked again without end, as fast as the loop runs.
  const stop = new AbortController();
  const following = followCommand(client, "r1", {
    signal: stop.signal,
    maxOutageMs: 1000,
    onReconnect: () => {
      if (++reconnects >= 50) stop.abort(new Error("asked again without pause"));
    },
  });
  await assert.rejects(
    following,
    (error) =>
      error instanceof OperatorError && error.kind === "connection" &&
      error.message === "the event stream of r1 kept closing for 1 s",
  );
  assert.ok(reconnects < 50, `reconnects: ${reconnects}`);
});

Deno.test("followCommand refuses an output or end event it cannot read, instead of resuming after it", async (t) => {
  const cases: Array<[string, RegExp, string, RegExp]> = [
    [
      "output that is not JSON",
      /^data: (\{"stream".*)$/m,
      "data: {not json",
      /sent an output event that is not JSON: "\{not json"$/,
    ],
    [
      "output that is null",
      /^data: (\{"stream".*)$/m,
      "data: null",
      /sent an output event that is not a chunk of output .*: "null"$/,
    ],
    [
      "output without its offset",
      /"offset":0,/,
      "",
      /sent an output event that is not a chunk of output /,
    ],
    [
      "output at a negative offset",
      /"offset":0,/,
      `"offset":-4,`,
      /sent an output event that is not a chunk of output /,
    ],
    [
      "an end that is not JSON",
      /^(event: end\ndata: ).*$/m,
      "event: end\ndata: {cut",
      /sent an end event that is not JSON: "\{cut"$/,
    ],
  ];
  for (const [name, pattern, replacement, message] of cases) {
    await t.step(name, async () => {
      await using d = await makeDashboard({ realClock: true });
      await running(d, "j1");
      await chunk(d, "j1", 0, "one\n");
      await d.agent({ path: P.report, body: reportBody("j1") });
      const client = new OperatorClient({
        dashboardUrl: "http://localhost",
        adminToken: "admin-token-0123456789abcdef",
        fetch: async (input, init) => {
          const url = String(input instanceof Request ? input.url : input);
          const response = await d.dashboard.app.request(url, init);
          if (!url.endsWith("/events")) return response;
          const text = await response.text();
          assert.match(text, pattern);
          return new Response(text.replace(pattern, replacement), { headers: response.headers });
        },
      });
      // Resumed after the event, following would go on (or end) without it.
      const stop = new AbortController();
      await assert.rejects(
        followCommand(client, "j1", {
          signal: stop.signal,
          maxOutageMs: 0,
          onReconnect: () => stop.abort(new Error("opened the stream again")),
        }),
        (error) =>
          error instanceof OperatorError && error.kind === "invalid_answer" &&
          message.test(error.message),
      );
    });
  }
});

Deno.test("followCommand waits a second after a 429 whose Retry-After is 0, not asking without pause", async () => {
  // A proxy's "Retry-After: 0" opened the stream again at once, as fast as the answers came.
  const end = JSON.stringify({ id: "r1", name: "echo hi", status: "success", result: null });
  const opened: number[] = [];
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: () => {
      opened.push(performance.now());
      return Promise.resolve(
        opened.length <= 2
          ? Response.json({ error: "too many event streams" }, {
            status: 429,
            headers: { "Retry-After": "0" },
          })
          : new Response(`id: 0:x\nevent: end\ndata: ${end}\n\n`, {
            headers: { "Content-Type": "text/event-stream" },
          }),
      );
    },
  });
  const { record } = await followCommand(client, "r1");
  assert.equal(record.status, "success");
  assert.equal(opened.length, 3);
  for (const i of [1, 2]) {
    assert.ok(
      opened[i] - opened[i - 1] >= 900,
      `opened again after ${opened[i] - opened[i - 1]} ms`,
    );
  }
});

Deno.test("followCommand takes no end event of a command that is not final for its result", async () => {
  // Printed as the result, it exited 1 after "c1 running" without a word of what went wrong.
  const running = JSON.stringify({ id: "c1", name: "sleep 9", status: "running", result: null });
  const client = new OperatorClient({
    dashboardUrl: "http://localhost",
    fetch: () =>
      Promise.resolve(
        new Response(`id: 1:\nevent: end\ndata: ${running}\n\n`, {
          headers: { "Content-Type": "text/event-stream" },
        }),
      ),
  });
  await assert.rejects(
    () => followCommand(client, "c1"),
    (error: unknown) =>
      error instanceof OperatorError && error.kind === "invalid_answer" &&
      error.message ===
        'the event stream of c1 ended with the command "running", which is not a final status',
  );
});
