/**
 * A command's event stream resumed with hostile `Last-Event-ID` values, over a real socket: each
 * is answered as docs/protocol.md §10 says (an id of another form starts from the beginning in the
 * header, and is a 400 in `?last_event_id=`), never with a 500, and one beyond the last chunk
 * neither loops nor replays.
 */
import assert from "node:assert/strict";
import { parseEventId } from "../../src/server/events.ts";
import { FakeClock, P, T0 } from "./_helpers.ts";
import { closeQuietly, rawConnect, readAll, send } from "./_sockets.ts";
import { adminServer, agentCall, enqueue } from "./_streams.ts";
import { ADMIN_TOKEN } from "./_helpers.ts";

/**
 * What a stream sent: the status line and each event's name and id. Read until the last chunk's
 * event has come (a loaded machine may take seconds), or, with `quietMs`, for that long after the
 * answer's head (to see that nothing more comes).
 */
async function openWith(
  port: number,
  how: { header?: string; query?: string },
  quietMs?: number,
): Promise<{ status: string; events: string[]; closed: boolean }> {
  const conn = await rawConnect({ port });
  try {
    const query = how.query === undefined ? "" : `?last_event_id=${encodeURIComponent(how.query)}`;
    const header = how.header === undefined ? "" : `Last-Event-ID: ${how.header}\r\n`;
    await send(
      conn,
      `GET /api/v1/commands/c1/events${query} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `Authorization: Bearer ${ADMIN_TOKEN}\r\n${header}\r\n`,
    );
    // A stream does not end: read until what is awaited has come.
    let got = await readAll(
      conn,
      10_000,
      (text) =>
        quietMs === undefined ? text.includes("id: 3:running.1.0\n") : text.includes("\r\n\r\n"),
    );
    if (quietMs !== undefined && !got.closed) {
      const more = await readAll(conn, quietMs);
      got = { text: got.text + more.text, closed: more.closed };
    }
    const events = [...got.text.matchAll(/^id: (.*)\nevent: (\w+)$/gm)].map((m) =>
      `${m[2]} ${m[1]}`
    );
    return { status: got.text.slice(0, 12), events, closed: got.closed };
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("hostile Last-Event-ID values are answered as the protocol says, in the header or the query", async (t) => {
  const clock = new FakeClock(T0);
  await using fixture = await adminServer({ clock });
  const { server } = fixture;
  await enqueue(server, "c1");
  assert.equal((await (await agentCall(server, clock.now(), P.wait())).json()).id, "c1");
  const acked = await agentCall(server, clock.now(), P.ack, { command_id: "c1", attempt: 1 });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();
  for (let i = 0; i < 3; i++) {
    const stored = await agentCall(server, clock.now(), "/api/v1/agent/commands/c1/output", {
      attempt: 1,
      stream: "stdout",
      offset: i * 3,
      data: btoa("ab\n"),
    });
    assert.equal(stored.status, 200);
    await stored.body?.cancel();
  }
  const everything = [
    "status 0:running.1.0",
    "output 1:running.1.0",
    "output 2:running.1.0",
    "output 3:running.1.0",
  ];

  const hostile = [
    "x".repeat(10_000),
    `${"9".repeat(10_000)}:`,
    "-1:",
    "abc",
    "18446744073709551616:", // 2^64
    "1e9:",
    "1.5:",
    "0x10:",
    ":",
    "2:running.99999999999999999999.0",
    "2:running.1.0, 1:", // the header sent twice, as node joins it
    "2:running.1.0\u0000",
  ];

  await t.step("an id of another form in the header: everything from the beginning", async () => {
    for (const value of hostile) {
      if (/[^\x20-\x7e]/.test(value)) continue; // no header has it
      const got = await openWith(server.port, { header: value });
      const shown = JSON.stringify(value.slice(0, 40));
      assert.equal(got.status, "HTTP/1.1 200", shown);
      assert.deepEqual(got.events, everything, shown);
    }
  });

  await t.step("an id of another form in ?last_event_id is a 400 naming it", async () => {
    // The query is the client's own: the whole stream under it would read as what came after.
    for (const value of [...hostile, " 2:running.1.0", "2:running.1.0 ", "2"]) {
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          `GET /api/v1/commands/c1/events?last_event_id=${encodeURIComponent(value)} ` +
            `HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`,
        );
        const got = await readAll(conn, 5000, (text) => /\}$/.test(text));
        const shown = JSON.stringify(value.slice(0, 40));
        assert.match(got.text, /^HTTP\/1\.1 400 /, shown);
        assert.match(
          got.text,
          /"error":"query \\"last_event_id\\": must be the id of an event of this stream /,
          shown,
        );
      } finally {
        closeQuietly(conn);
      }
    }
    // Empty, as a client that has seen no event yet may send it: from the beginning.
    assert.deepEqual((await openWith(server.port, { query: "" })).events, everything);
  });

  await t.step("?last_event_id given twice is a 400 naming it; no stream is opened", async () => {
    const conn = await rawConnect(server);
    try {
      await send(
        conn,
        `GET /api/v1/commands/c1/events?last_event_id=2:running.1.0&last_event_id=0: HTTP/1.1\r\n` +
          `Host: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`,
      );
      const got = await readAll(conn, 5000, (text) => /\}$/.test(text));
      assert.match(got.text, /^HTTP\/1\.1 400 /);
      assert.match(
        got.text,
        /"error":"query \\"last_event_id\\": is given 2 times; a stream resumes from one"/,
      );
    } finally {
      closeQuietly(conn);
    }
  });

  await t.step("a parameter near last_event_id is a 400 naming it, not a replay", async () => {
    for (const name of ["lastEventId", "last-event-id", "event_id"]) {
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          `GET /api/v1/commands/c1/events?${name}=2:running.1.0 HTTP/1.1\r\n` +
            `Host: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`,
        );
        const got = await readAll(conn, 5000, (text) => /\}$/.test(text));
        assert.match(got.text, /^HTTP\/1\.1 400 /, name);
        assert.ok(
          got.text.includes(
            `"error":"query \\"${name}\\": is not a parameter of this stream (did you mean ` +
              `\\"last_event_id\\"?); the parameter is last_event_id"`,
          ),
          got.text,
        );
      } finally {
        closeQuietly(conn);
      }
    }
  });

  await t.step("a well-formed id resumes after its chunk", async () => {
    for (const how of [{ header: "2:running.1.0" }, { query: "2:running.1.0" }]) {
      assert.deepEqual((await openWith(server.port, how)).events, ["output 3:running.1.0"]);
    }
    // Of the form a command already final sends (no status yet): the status comes again.
    for (const how of [{ header: "3:" }, { query: "3:" }]) {
      assert.deepEqual((await openWith(server.port, how)).events, ["status 3:running.1.0"]);
    }
  });

  await t.step(
    "an id beyond the last chunk waits for newer chunks, and loops on nothing",
    async () => {
      let reads = 0;
      const listOutput = fixture.store.listOutput.bind(fixture.store);
      fixture.store.listOutput = (...args) => {
        reads++;
        return listOutput(...args);
      };
      try {
        const got = await openWith(server.port, { header: "999999999999999:running.1.0" }, 500);
        assert.equal(got.status, "HTTP/1.1 200");
        assert.deepEqual(got.events, [], "nothing is replayed");
        assert.ok(!got.closed);
        assert.ok(reads <= 2, `the store was read ${reads} times in half a second`);
      } finally {
        fixture.store.listOutput = listOutput;
      }
    },
  );

  await t.step(
    "a head of 1 MB is refused by the head limit, and the dashboard goes on",
    async () => {
      const conn = await rawConnect(server);
      try {
        await send(
          conn,
          `GET /api/v1/commands/c1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            `Last-Event-ID: ${"1".repeat(1 << 20)}\r\n\r\n`,
        ).catch(() => 0); // the dashboard may close before it has all
        const got = await readAll(conn, 5000);
        assert.match(got.text, /^HTTP\/1\.1 431 /);
      } finally {
        closeQuietly(conn);
      }
      assert.deepEqual((await openWith(server.port, {})).events, everything);
    },
  );
});

Deno.test("parseEventId takes only <seq>:<status key> within their bounds", () => {
  assert.deepEqual(parseEventId("12:running.2.1"), { seq: 12, statusKey: "running.2.1" });
  assert.deepEqual(parseEventId("7:"), { seq: 7, statusKey: "" });
  // White space is no part of an id the stream sends: `?last_event_id=%207:` is another form.
  const spaced = [" 7: ", "7: ", "\u00a07:", "7:\n", "\ufeff7:", "7:running.2.1 "];
  for (
    const value of ["9".repeat(16) + ":", "-1:", "1e9:", "1.5:", "", null, undefined, ...spaced]
  ) {
    assert.deepEqual(parseEventId(value), { seq: 0, statusKey: "" }, String(value));
  }
});
