import assert from "node:assert/strict";
import { DashboardClient, MAX_ANSWER_BYTES } from "../../src/agent/client.ts";
import type { DeliveredCommand, ReportRequest } from "../../src/protocol/mod.ts";
import { ResultReporter } from "../../src/agent/result_reporter.ts";
import { FakeClock } from "../../src/clock.ts";
import { captureLogs, memoryAgentState } from "./_helpers.ts";

/** A body of `total` bytes in 1 MiB chunks that counts how many were read. */
function countedBody(total: number): { body: ReadableStream<Uint8Array>; pulled: () => number } {
  const chunk = new Uint8Array(1 << 20).fill(0x61); // "a"
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= total) return controller.close();
      pulled += chunk.length;
      controller.enqueue(chunk);
    },
  });
  return { body, pulled: () => pulled };
}

function clientAnswering(response: () => Response): DashboardClient {
  return new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    fetch: () => Promise.resolve(response()),
  });
}

const HUGE = 64 * 1024 * 1024;
const signal = new AbortController().signal;

Deno.test("the agent reads no more than a bounded part of a huge answer", async (t) => {
  await t.step(
    "a wait answered 200 with 64 MiB is invalid, read only up to the limit",
    async () => {
      const { body, pulled } = countedBody(HUGE);
      const client = clientAnswering(() => new Response(body, { status: 200 }));
      const outcome = await client.wait("default", 30, signal);
      assert.equal(outcome.kind, "invalid");
      assert.match((outcome as { message: string }).message, /larger than 4 MiB/);
      assert.ok(pulled() <= MAX_ANSWER_BYTES + (2 << 20), `read ${pulled()} bytes`);
    },
  );

  await t.step("a 500 with 64 MiB of error page is a server failure, its message cut", async () => {
    const { body, pulled } = countedBody(HUGE);
    const client = clientAnswering(() => new Response(body, { status: 500 }));
    const outcome = await client.wait("default", 30, signal);
    assert.equal(outcome.kind, "server");
    assert.ok((outcome as { message: string }).message.length <= 200);
    assert.ok(pulled() <= 2 << 20, `read ${pulled()} bytes`);
  });

  await t.step(
    "a report answered 200 with 64 MiB is accepted, the answer left unread",
    async () => {
      const { body, pulled } = countedBody(HUGE);
      const client = clientAnswering(() => new Response(body, { status: 200 }));
      const report: ReportRequest = { command_id: "cmd-1", status: "success" };
      const outcome = await client.report(report, signal);
      assert.deepEqual(outcome, { kind: "accepted", duplicate: false });
      assert.ok(pulled() <= MAX_ANSWER_BYTES + (2 << 20), `read ${pulled()} bytes`);
    },
  );

  await t.step("a cancel-wait answered 200 with 64 MiB is invalid", async () => {
    const { body, pulled } = countedBody(HUGE);
    const client = clientAnswering(() => new Response(body, { status: 200 }));
    const outcome = await client.cancelWait("cmd-1", 30, signal);
    assert.equal(outcome.kind, "invalid");
    assert.ok(pulled() <= MAX_ANSWER_BYTES + (2 << 20), `read ${pulled()} bytes`);
  });
});

Deno.test("answers within the limit are read as before", async () => {
  const command = { id: "cmd-1", name: "echo " + "x".repeat(1000), params: {}, attempt: 1 };
  const client = clientAnswering(() => Response.json(command));
  const outcome = await client.wait("default", 30, signal);
  assert.equal(outcome.kind, "command");
  assert.equal((outcome as { command: { name: string } }).command.name, command.name);
  const failing = clientAnswering(() => Response.json({ error: "no such agent" }, { status: 400 }));
  const refused = await failing.wait("default", 30, signal);
  assert.deepEqual(refused, { kind: "refused", status: 400, message: "no such agent" });
});

Deno.test("a wait answer of the wrong shape is told by its first field at fault, in one line", async () => {
  for (
    const [answer, reason] of [
      [{ id: 5, name: "echo a", attempt: 1 }, /: field "id": must be a string, not a number$/],
      [{ id: "c1", name: "echo a", attempt: "1" }, /: field "attempt": must be a (whole )?number/],
      [
        { id: 5, name: "echo a", params: { timeout_secs: 0 } },
        /: field "id": must be a string, not a number$/,
      ],
    ] as const
  ) {
    const outcome = await clientAnswering(() => Response.json(answer)).wait("default", 30, signal);
    assert.equal(outcome.kind, "invalid");
    const message = (outcome as { message: string }).message;
    assert.match(message, /^wait answer is neither a command nor a Stacker envelope/);
    assert.match(message, reason);
    assert.ok(!message.includes("\n"), message);
  }
});

Deno.test("a delivered id longer than 1024 characters makes the wait answer invalid", async () => {
  const id = "i".repeat(1025);
  for (
    const answer of [
      { id, name: "echo a", attempt: 1 },
      { item: { command_id: id, type: "echo a" }, meta: null },
    ]
  ) {
    const outcome = await clientAnswering(() => Response.json(answer)).wait("default", 30, signal);
    assert.equal(outcome.kind, "invalid");
    assert.match(
      (outcome as { message: string }).message,
      /field "id": must be at most 1024 characters/,
    );
  }
  const longest = { id: "i".repeat(1024), name: "echo a", attempt: 1 };
  const outcome = await clientAnswering(() => Response.json(longest)).wait("default", 30, signal);
  assert.equal(outcome.kind, "command");
});

Deno.test("an answer whose body breaks off is a network failure, not an unexpected answer", async () => {
  const breaking = (error: Error) => () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"id":"c1","na'));
          controller.error(error);
        },
      }),
      { status: 200 },
    );
  const reset = new TypeError("error reading a body from connection");
  const late = new DOMException("Signal timed out.", "TimeoutError");
  for (
    const [error, message] of [
      [reset, /^the answer broke off: error reading a body from connection$/],
      [late, /^the answer did not arrive whole before the request's deadline$/],
    ] as const
  ) {
    const wait = await clientAnswering(breaking(error)).wait("default", 30, signal);
    assert.equal(wait.kind, "network");
    assert.match((wait as { message: string }).message, message);
    const cancelWait = await clientAnswering(breaking(error)).cancelWait("c1", 30, signal);
    assert.equal(cancelWait.kind, "network");
  }
});

Deno.test("an error answer that echoes the request's signature does not carry it into the message", async () => {
  const sent: string[] = [];
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    agentToken: "0123456789abcdef0123456789abcdef",
    fetch: (_url, init) => {
      const signature = new Headers(init?.headers).get("X-Agent-Signature")!;
      sent.push(signature);
      const status = new Headers(init?.headers).has("Content-Type") ? 409 : 401;
      return Promise.resolve(
        Response.json({ error: `refused signature ${signature}` }, { status }),
      );
    },
  });
  const wait = await client.wait("default", 30, signal);
  const ack = await client.ack("cmd-1", 1, signal);
  assert.equal(wait.kind, "auth");
  assert.equal(ack.kind, "stale");
  for (const outcome of [wait, ack]) {
    const message = (outcome as { message: string }).message;
    assert.equal(message, "refused signature [redacted]");
  }
  assert.equal(sent.length, 2);
});

Deno.test("an error answer that echoes the request's Authorization does not carry the token into the message", async () => {
  // A proxy's or a debugging server's error page that quotes the request it got: without the
  // CLI's log set-up (a library user's runAgent), nothing else keeps the token out of the log.
  const token = "0123456789abcdef0123456789abcdef";
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    agentToken: token,
    fetch: (_url, init) => {
      const authorization = new Headers(init?.headers).get("Authorization");
      return Promise.resolve(
        new Response(`bad gateway for a request with Authorization: ${authorization}`, {
          status: 502,
        }),
      );
    },
  });
  for (
    const outcome of [
      await client.wait("default", 30, signal),
      await client.report({
        command_id: "cmd-1",
        status: "success",
        result: null,
        error: null,
      } as ReportRequest, signal),
    ]
  ) {
    const message = (outcome as { message: string }).message;
    assert.equal(message, "bad gateway for a request with Authorization: Bearer [redacted]");
  }
  // Nor its first part, where the message is cut.
  const cut = await new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    agentToken: token,
    fetch: () =>
      Promise.resolve(new Response(`${"x".repeat(190)} Bearer ${token}`, { status: 502 })),
  }).wait("default", 30, signal);
  assert.ok(!(cut as { message: string }).message.includes(token.slice(0, 2)), "no part of it");
  // Nor a redirect that puts it in its Location.
  const redirected = await new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    agentToken: token,
    fetch: () =>
      Promise.resolve(
        new Response(null, { status: 302, headers: { Location: `/login?token=${token}` } }),
      ),
  }).wait("default", 30, signal);
  assert.equal(redirected.kind, "redirect");
  assert.match((redirected as { message: string }).message, /"\/login\?token=\[redacted\]"/);
});

Deno.test("a wait of 30 days is not given up as it starts", async () => {
  // AbortSignal.timeout fires a delay beyond 2^31 - 1 ms at once: every wait failed in 1 ms with
  // "no answer within 2592010 s".
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    fetch: async (_url, init) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      init?.signal?.throwIfAborted();
      return new Response(null, { status: 204 });
    },
  });
  assert.deepEqual(await client.wait("default", 30 * 86_400, signal), { kind: "empty" });
});

Deno.test("a 200 wait answer without a body, or of null, is no command, as a 204 is", async () => {
  // A Stacker-style dashboard (or a proxy) may answer an empty poll 200 with no body: that used to
  // be logged as an error ("not usable JSON") and backed off.
  for (const body of [null, "", " \r\n", "null", " null\n"]) {
    const outcome = await clientAnswering(() => new Response(body, { status: 200 }))
      .wait("default", 30, signal);
    assert.deepEqual(outcome, { kind: "empty" }, JSON.stringify(body));
  }
  const broken = await clientAnswering(() => new Response("{", { status: 200 }))
    .wait("default", 30, signal);
  assert.equal(broken.kind, "invalid");
});

Deno.test("a Stacker next_poll_secs below a second is a second, as a Retry-After is", async () => {
  // `{"item": null, "meta": {"next_poll_secs": 0.01}}` answered at once made the agent poll a
  // hundred times a second.
  const empty = (nextPollSecs: number | null) =>
    clientAnswering(() => Response.json({ item: null, meta: { next_poll_secs: nextPollSecs } }))
      .wait("default", 30, signal);
  assert.deepEqual(await empty(0.01), { kind: "empty", nextPollSecs: 1 });
  assert.deepEqual(await empty(0.999), { kind: "empty", nextPollSecs: 1 });
  assert.deepEqual(await empty(2.5), { kind: "empty", nextPollSecs: 2.5 });
  // No hint (0 or null): the loop's own floor of a second after the wait was sent applies.
  assert.deepEqual(await empty(0), { kind: "empty", nextPollSecs: undefined });
  assert.deepEqual(await empty(null), { kind: "empty", nextPollSecs: undefined });
});

Deno.test("a report answered 101 (no verdict on it) stays in the outbox and is sent again", async () => {
  using logs = captureLogs();
  // A raw socket: a Response cannot be made with status 101. Every request is answered with a
  // switch to another protocol, which a broken proxy or a hostile dashboard may send.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    for (let answered = 0; answered < 2; answered++) {
      using conn = await listener.accept();
      await conn.read(new Uint8Array(64 * 1024));
      await conn.write(
        new TextEncoder().encode(
          "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        ),
      );
    }
  })();
  const client = new DashboardClient({
    dashboardUrl: `http://127.0.0.1:${listener.addr.port}`,
    agentId: "agent-1",
  });
  const report: ReportRequest = { command_id: "cmd-1", status: "success" };
  const outcome = await client.report(report, signal);
  assert.equal(outcome.kind, "server");
  using state = memoryAgentState();
  state.outbox.put(report);
  const reporter = new ResultReporter({
    client,
    state,
    clock: new FakeClock(),
    retryDelayMs: 1,
    signal,
    stopNow: signal,
  });
  const failure = await reporter.drain();
  await served;
  assert.equal(failure?.kind, "server");
  assert.equal(state.outbox.size, 1, "the result is kept");
  assert.ok(!logs.has(/refused the report for good/));
});

Deno.test("an ack's answer gives its lease's end when it says one; any other 2xx is still an ack", async () => {
  const at = "2026-12-03T10:00:00.000Z";
  const answers: Array<[() => Response, number | undefined]> = [
    [() => Response.json({ acked: true, lease_expires_at: at }), Date.parse(at)],
    [
      () =>
        Response.json({ acked: true, lease_expires_at: at }, {
          headers: { Date: "Thu, 03 Dec 2026 09:59:00 GMT" },
        }),
      Date.parse(at),
    ],
    [() => Response.json({ acked: true }), undefined],
    [() => Response.json({ acked: true, lease_expires_at: "soon" }), undefined],
    [() => Response.json({ acked: true, lease_expires_at: 42 }), undefined],
    [() => new Response("ok", { status: 200 }), undefined],
    [() => new Response(null, { status: 204 }), undefined],
  ];
  for (const [answer, lease] of answers) {
    const outcome = await clientAnswering(answer).ack("cmd-1", 1, signal);
    const date = answer().headers.get("Date");
    assert.deepEqual(
      outcome,
      lease === undefined ? { kind: "acked" } : {
        kind: "acked",
        leaseExpiresAt: lease,
        ...(date ? { answeredAt: Date.parse(date) } : {}),
      },
    );
  }
  // A body far larger than any answer is not read whole.
  const { body, pulled } = countedBody(HUGE);
  const outcome = await clientAnswering(() => new Response(body, { status: 200 })).ack(
    "c",
    1,
    signal,
  );
  assert.deepEqual(outcome, { kind: "acked" });
  assert.ok(pulled() <= MAX_ANSWER_BYTES + 2 * (1 << 20), `${pulled()} bytes read`);
});

Deno.test("a Retry-After date is read against the answer's Date: a dashboard clock hours off waits what it said", async () => {
  const agentNow = Date.parse("2026-12-03T10:00:00Z");
  for (const offsetHours of [3, -3, 0]) {
    const dashboardNow = agentNow + offsetHours * 3_600_000;
    const client = new DashboardClient({
      dashboardUrl: "http://dashboard.invalid",
      agentId: "agent-1",
      now: () => agentNow,
      fetch: () =>
        Promise.resolve(
          Response.json({ error: "busy" }, {
            status: 503,
            headers: {
              Date: new Date(dashboardNow).toUTCString(),
              "Retry-After": new Date(dashboardNow + 30_000).toUTCString(),
            },
          }),
        ),
    });
    const outcome = await client.wait("default", 30, signal);
    assert.equal(outcome.kind, "throttled", `${offsetHours} h`);
    assert.equal(
      outcome.kind === "throttled" ? outcome.retryAfterMs : undefined,
      30_000,
      `dashboard clock ${offsetHours} h off`,
    );
  }
  // Without a Date that reads as a time, the agent's own clock is all there is.
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    now: () => agentNow,
    fetch: () =>
      Promise.resolve(
        new Response("busy", {
          status: 429,
          headers: { Date: "yesterday", "Retry-After": new Date(agentNow + 20_000).toUTCString() },
        }),
      ),
  });
  const outcome = await client.wait("default", 30, signal);
  assert.equal(outcome.kind === "throttled" ? outcome.retryAfterMs : undefined, 20_000);
});

Deno.test("params keys the agent does not use are not held against a delivered command", async () => {
  // Another dashboard's (a Stacker one's priority is a number; a serializer of options writes
  // null): refused, the command was an unusable answer, never acked nor run.
  const params = {
    priority: 5,
    ttl_secs: 0,
    metadata: null,
    deployment_hash: "",
    timeout_secs: null,
    custom: { kept: true },
  };
  for (
    const answer of [
      { id: "c1", name: "echo a", params },
      { item: { command_id: "c1", type: "echo a", parameters: params } },
    ]
  ) {
    const outcome = await clientAnswering(() => Response.json(answer)).wait("default", 30, signal);
    assert.equal(outcome.kind, "command", JSON.stringify(outcome));
    const command = (outcome as { command: DeliveredCommand }).command;
    assert.equal(command.params.timeout_secs, undefined, "null is no deadline of its own");
    assert.equal(command.params.priority, undefined);
    assert.equal(command.params.metadata, undefined);
    assert.deepEqual(command.params.custom, { kept: true });
  }
  // The one it uses is still checked: such a command is not run, but answered (rejected).
  const outcome = await clientAnswering(() =>
    Response.json({ id: "c1", name: "echo a", params: { timeout_secs: -1 } })
  ).wait("default", 30, signal);
  assert.equal(outcome.kind, "unrunnable");
});

Deno.test("a command that cannot be run as delivered is named for its report; an answer that cannot name one is invalid", async (t) => {
  // A timeout_secs of 0 made the whole answer unusable: never acked nor answered, the command was
  // delivered again and again until the dashboard marked it lost.
  for (
    const [what, answer, expected] of [
      [
        "timeout_secs 0",
        { id: "c1", name: "echo a", params: { timeout_secs: 0 }, attempt: 2 },
        { commandId: "c1", attempt: 2, name: "echo a" },
      ],
      [
        "a name that is not text",
        { id: "c1", name: ["echo", "a"], params: null },
        { commandId: "c1", attempt: 1, name: "" },
      ],
      [
        "a Stacker item with timeout_secs -1",
        { item: { command_id: "s1", type: "echo a", parameters: { timeout_secs: -1 } } },
        { commandId: "s1", attempt: 1, name: "echo a" },
      ],
      [
        "a Stacker item whose type is not text",
        { item: { command_id: "s1", type: 7, attempt: 3 }, meta: null },
        { commandId: "s1", attempt: 3, name: "" },
      ],
    ] as const
  ) {
    await t.step(what, async () => {
      const outcome = await clientAnswering(() => Response.json(answer)).wait(
        "default",
        30,
        signal,
      );
      assert.equal(outcome.kind, "unrunnable", JSON.stringify(outcome));
      const { kind: _, message, ...named } = outcome as typeof expected & {
        kind: string;
        message: string;
      };
      assert.deepEqual(named, expected);
      assert.match(message, /^field "(params\.timeout_secs|name|type|item\.type)": /);
    });
  }
  for (
    const [what, answer] of [
      ["an attempt of 0", { id: "c1", name: "echo a", params: { timeout_secs: 0 }, attempt: 0 }],
      ["an id too long", { id: "i".repeat(1025), name: 5 }],
      [
        "a Stacker meta at fault",
        { item: { command_id: "s1", type: "echo a" }, meta: { next_poll_secs: -1 } },
      ],
    ] as const
  ) {
    await t.step(`${what}: invalid`, async () => {
      const outcome = await clientAnswering(() => Response.json(answer)).wait(
        "default",
        30,
        signal,
      );
      assert.equal(outcome.kind, "invalid", JSON.stringify(outcome));
    });
  }
});

Deno.test("a report's 404 is a refusal only when the dashboard says so in its JSON error body", async (t) => {
  // Any 404 dropped the result: a proxy's page while the dashboard was redeployed too.
  const report: ReportRequest = { command_id: "cmd-1", status: "success" };
  await t.step("the dashboard's unknown command: refused", async () => {
    const client = clientAnswering(() =>
      Response.json({ error: "command cmd-1 does not exist" }, { status: 404 })
    );
    assert.deepEqual(await client.report(report, signal), {
      kind: "refused",
      status: 404,
      message: "command cmd-1 does not exist",
    });
  });
  for (
    const [what, answer, reason] of [
      [
        "a proxy's HTML page",
        () =>
          new Response("<html><body><h1>404 Not Found</h1>nginx</body></html>", {
            status: 404,
            headers: { "Content-Type": "text/html" },
          }),
        /not its JSON error body.*<h1>404 Not Found<\/h1>/,
      ],
      ["an empty answer", () => new Response(null, { status: 404 }), /not its JSON error body/],
      [
        "JSON without an error",
        () => Response.json({ message: "not found" }, { status: 404 }),
        /not its JSON error body/,
      ],
      [
        "the dashboard's own no route (a wrong path prefix)",
        () =>
          Response.json({ error: "no route for POST /x/api/v1/agent/commands/report" }, {
            status: 404,
          }),
        /no such route: a wrong path in DASHBOARD_URL\?\): no route for POST/,
      ],
    ] as const
  ) {
    await t.step(`${what}: kept to be sent again`, async () => {
      const outcome = await clientAnswering(answer).report(report, signal);
      assert.equal(outcome.kind, "server", JSON.stringify(outcome));
      assert.equal((outcome as { status: number }).status, 404);
      assert.match((outcome as { message: string }).message, reason);
    });
  }
  await t.step("an ack's and an output chunk's 404 are read the same way", async () => {
    // An ack's read as "no ack endpoint", and an output chunk's stopped live output for good.
    const chunk = { attempt: 1, stream: "stdout" as const, offset: 0, data: "aGkK" };
    const html = () => new Response("<h1>404 Not Found</h1>", { status: 404 });
    const noRoute = () =>
      Response.json({ error: "no route for POST /x/api/v1/agent/commands/ack" }, { status: 404 });
    const unknown = () => Response.json({ error: "command cmd-1 not found" }, { status: 404 });
    for (const answer of [html, noRoute]) {
      const acked = await clientAnswering(answer).ack("cmd-1", 1, signal);
      assert.equal(acked.kind, "server", JSON.stringify(acked));
      const sent = await clientAnswering(answer).output("cmd-1", chunk, signal);
      assert.equal(sent.kind, "server", JSON.stringify(sent));
    }
    assert.deepEqual(await clientAnswering(unknown).ack("cmd-1", 1, signal), {
      kind: "unsupported",
      message: "command cmd-1 not found",
    });
    const refused = await clientAnswering(unknown).output("cmd-1", chunk, signal);
    assert.equal(refused.kind, "refused");
  });
  await t.step("a wait's 404 is read as before", async () => {
    const html = () => new Response("<h1>404 Not Found</h1>", { status: 404 });
    const waited = await clientAnswering(html).wait("default", 30, signal);
    assert.equal(waited.kind, "refused");
  });
});

Deno.test("a 2xx that is not the dashboard's does not take a report, ack, output chunk or heartbeat", async (t) => {
  // Any 2xx was taken as accepted: a proxy's or captive portal's page answered 200 in the
  // dashboard's place made the agent drop the result from its outbox.
  const report: ReportRequest = { command_id: "cmd-1", status: "success" };
  const chunk = { attempt: 1, stream: "stdout" as const, offset: 0, data: "aGkK" };
  const page = "<!DOCTYPE html><html><body><h1>Welcome to the guest Wi-Fi</h1></body></html>";
  for (
    const [what, answer, reason] of [
      [
        "an HTML page",
        () => new Response(page, { headers: { "Content-Type": "text/html; charset=utf-8" } }),
        /^200 answer that is not the dashboard's, an HTML page \(Content-Type "text\/html; charset=utf-8"\).*: <!DOCTYPE html><html><body><h1>Welcome/,
      ],
      [
        "a page without its type",
        () => new Response(` \n${page}`, { headers: { "Content-Type": "text/plain" } }),
        /an HTML page \(Content-Type "text\/plain"\)/,
      ],
      [
        "a 202 of XHTML",
        () =>
          new Response("<html/>", {
            status: 202,
            headers: { "Content-Type": "application/xhtml+xml" },
          }),
        /^202 answer that is not the dashboard's, an HTML page/,
      ],
      [
        "JSON about another command",
        () => Response.json({ accepted: true, command_id: "cmd-2" }),
        /JSON about another command \("cmd-2"\)/,
      ],
    ] as const
  ) {
    await t.step(`${what}: kept to be sent again`, async () => {
      for (
        const outcome of [
          await clientAnswering(answer).report(report, signal),
          await clientAnswering(answer).ack("cmd-1", 1, signal),
          await clientAnswering(answer).output("cmd-1", chunk, signal),
        ]
      ) {
        assert.equal(outcome.kind, "server", JSON.stringify(outcome));
        assert.match((outcome as { message: string }).message, reason);
      }
    });
  }
  await t.step("JSON that says it did not take it", async () => {
    const no = (took: string) => () => Response.json({ [took]: false });
    const reported = await clientAnswering(no("accepted")).report(report, signal);
    assert.match(
      (reported as { message: string }).message,
      /^200 answer that is not the dashboard's, JSON that says "accepted": false/,
    );
    assert.equal((await clientAnswering(no("acked")).ack("cmd-1", 1, signal)).kind, "server");
    assert.equal(
      (await clientAnswering(no("stored")).output("cmd-1", chunk, signal)).kind,
      "server",
    );
    assert.equal((await clientAnswering(no("recorded")).heartbeat({}, signal)).kind, "server");
    const html = () => new Response(page, { headers: { "Content-Type": "text/html" } });
    assert.equal((await clientAnswering(html).heartbeat({}, signal)).kind, "server");
  });
  await t.step("what a dashboard may answer is still taken", async () => {
    for (
      const answer of [
        () => Response.json({ accepted: true }),
        () => Response.json({ accepted: true, command_id: "cmd-1" }),
        () => Response.json({ status: "ok" }),
        () => new Response(null, { status: 204 }),
        () => new Response("", { status: 200, headers: { "Content-Type": "text/html" } }),
        () => new Response("OK", { status: 200 }),
        // A dashboard that writes its JSON without saying so (a PHP one's text/html).
        () => new Response('{"accepted":true}', { headers: { "Content-Type": "text/html" } }),
      ]
    ) {
      const outcome = await clientAnswering(answer).report(report, signal);
      assert.deepEqual(outcome, { kind: "accepted", duplicate: false });
    }
    const duplicate = await clientAnswering(() =>
      Response.json({ accepted: true, duplicate: true })
    )
      .report(report, signal);
    assert.deepEqual(duplicate, { kind: "accepted", duplicate: true });
  });
  await t.step("a page larger than any answer is told by its type, not read whole", async () => {
    const { body, pulled } = countedBody(HUGE);
    const outcome = await clientAnswering(() =>
      new Response(body, { headers: { "Content-Type": "text/html" } })
    ).report(report, signal);
    assert.equal(outcome.kind, "server", JSON.stringify(outcome));
    assert.match((outcome as { message: string }).message, /in its place\?$/);
    assert.ok(pulled() <= MAX_ANSWER_BYTES + 2 * (1 << 20), `${pulled()} bytes read`);
  });
  await t.step("the answer's echo of the token is not carried into the message", async () => {
    const client = new DashboardClient({
      dashboardUrl: "http://dashboard.invalid",
      agentId: "agent-1",
      agentToken: "s3cret-token-value",
      fetch: () =>
        Promise.resolve(
          new Response("<html>Sign in again (token s3cret-token-value)</html>", {
            headers: { "Content-Type": "text/html" },
          }),
        ),
    });
    const outcome = await client.report(report, signal);
    assert.equal(outcome.kind, "server");
    assert.ok(!(outcome as { message: string }).message.includes("s3cret"));
    assert.match((outcome as { message: string }).message, /\[redacted\]/);
  });
});

Deno.test("a report a firewall answers with its page is kept, and the reports after it are still sent", async () => {
  // One report's content answered 200 with a block page: without the skip, it would hold every
  // later report and wait behind it.
  using _logs = captureLogs();
  const sent: string[] = [];
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.invalid",
    agentId: "agent-1",
    fetch: async (_input, init) => {
      const id = JSON.parse(String(init?.body)).command_id;
      sent.push(id);
      return await Promise.resolve(
        id === "cmd-1"
          ? new Response("<html>Request blocked</html>", {
            headers: { "Content-Type": "text/html" },
          })
          : Response.json({ accepted: true }),
      );
    },
  });
  using state = memoryAgentState();
  state.outbox.put({ command_id: "cmd-1", status: "success" });
  state.outbox.put({ command_id: "cmd-2", status: "success" });
  const reporter = new ResultReporter({
    client,
    state,
    clock: new FakeClock(),
    retryDelayMs: 1,
    signal,
    stopNow: signal,
  });
  assert.equal(await reporter.drain(), undefined);
  assert.deepEqual(sent, ["cmd-1", "cmd-2"]);
  assert.deepEqual(state.outbox.pending().map((r) => r.command_id), ["cmd-1"]);
});

Deno.test("a report's 4xx is a refusal only with the dashboard's JSON error body; a 413 is read as before", async (t) => {
  // A static site at a wrong DASHBOARD_URL answers a POST "405 Not Allowed", a proxy its own
  // "400 Bad Request" page: each dropped the result for good, as the dashboard's refusal would.
  const report: ReportRequest = { command_id: "cmd-1", status: "success" };
  const nginx405 = "<html><head><title>405 Not Allowed</title></head><body>nginx</body></html>";
  for (
    const [what, answer] of [
      [
        "a static site's 405",
        () => new Response(nginx405, { status: 405, headers: { "Content-Type": "text/html" } }),
      ],
      ["a proxy's plain 400", () => new Response("Bad Request", { status: 400 })],
      ["an empty 410", () => new Response(null, { status: 410 })],
    ] as const
  ) {
    await t.step(`${what}: kept to be sent again`, async () => {
      const outcome = await clientAnswering(answer).report(report, signal);
      assert.equal(outcome.kind, "server", JSON.stringify(outcome));
      assert.match(
        (outcome as { message: string }).message,
        /^4\d\d without the dashboard's word on the request \(not its JSON error body/,
      );
    });
  }
  await t.step("the dashboard's own refusals, and a 413 of any body, are refusals", async () => {
    for (
      const answer of [
        () =>
          Response.json({ error: "attempt 3 of command cmd-1 was never delivered" }, {
            status: 409,
          }),
        () => Response.json({ error: 'field "status": must be one of ...' }, { status: 400 }),
        () => new Response("<html>413 Request Entity Too Large</html>", { status: 413 }),
      ]
    ) {
      const outcome = await clientAnswering(answer).report(report, signal);
      assert.equal(outcome.kind, "refused", JSON.stringify(outcome));
    }
  });
});
