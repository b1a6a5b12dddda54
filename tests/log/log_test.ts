import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { auditLogger, closeLogging, logger, setupLogging } from "../../src/log/mod.ts";
import { redactString, redactUrl } from "../../src/log/redact.ts";
import { rotatingFileSink } from "../../src/log/file_sink.ts";
import { removeAndWaitForSpace, smallDisk } from "../_disk.ts";

const TOKEN = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0";

function capture(format: "text" | "json"): string[] {
  const lines: string[] = [];
  setupLogging({ format, level: "debug", secrets: [TOKEN], write: (l) => lines.push(l) });
  return lines;
}

function logEverywhere(): void {
  const log = logger("test");
  log.info("Agent daemon starting", { agent_token: TOKEN, agentId: "a1" });
  log.info(`token in the message ${TOKEN}`);
  log.info("header dump {headers}", { headers: { Authorization: `Bearer ${TOKEN}` } });
  log.warn("nested", { request: { signature: "c2lnbmF0dXJl", url: `http://x/?t=${TOKEN}` } });
  log.error("failed", { error: new Error(`bad token ${TOKEN}`) });
  auditLogger().info("auth failure", { token: TOKEN, agent_id: "a1" });
}

/** A plain info record of `message`, as a sink is given it. */
/** The end of this turn of the event loop, when the log file gets the turn's lines. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

const record = (message: string) =>
  ({
    category: ["status"],
    level: "info",
    message: [message],
    rawMessage: message,
    properties: {},
    timestamp: 0,
  }) as const;

Deno.test("a configured token never appears in a log line", async (t) => {
  for (const format of ["text", "json"] as const) {
    await t.step(format, () => {
      const lines = capture(format);
      try {
        logEverywhere();
      } finally {
        closeLogging();
      }
      assert.equal(lines.length, 6);
      for (const line of lines) {
        assert.ok(!line.includes(TOKEN), `token leaked in: ${line}`);
        assert.ok(!line.includes("c2lnbmF0dXJl"), `signature leaked in: ${line}`);
      }
      assert.ok(lines.some((l) => l.includes("[redacted]")));
    });
  }
});

Deno.test("text lines read like `2026-01-12T10:00:00Z INFO Agent daemon starting`", () => {
  const lines = capture("text");
  try {
    logger("agent").info("Agent daemon starting", { command_id: "cmd-1" });
    auditLogger().warn("replay detected");
  } finally {
    closeLogging();
  }
  assert.match(
    lines[0],
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO Agent daemon starting command_id=cmd-1$/,
  );
  assert.match(lines[1], /^\S+Z WARN replay detected audit=true$/);
});

Deno.test("a text record is one line: line breaks and control characters are escaped", () => {
  const lines = capture("text");
  try {
    const forged = "x\n2026-01-12T10:00:00Z ERROR forged\r\u001b[2J\u2028y";
    logger("t").info("output {text}", { text: forged, where: forged, plain: "a\u0085b" });
    logger("t").warn(`failed: ${forged}`);
  } finally {
    closeLogging();
  }
  assert.equal(lines.length, 2);
  for (const line of lines) {
    assert.doesNotMatch(line, /[\p{Cc}\u2028]/u, line);
  }
  assert.ok(lines[0].includes("output x\\n2026-01-12T10:00:00Z ERROR forged\\r\\u001b[2J\\u2028y"));
  assert.ok(lines[0].includes(' plain="a\\u0085b"'), lines[0]);
  assert.match(lines[1], /^\S+Z WARN failed: x\\n/);
});

Deno.test("a text record shows bidirectional formatting characters as escapes, never obeys them", () => {
  const lines = capture("text");
  try {
    // An agent's id, labels or error as a hostile one could send them: an override turns the
    // rest of the line around on a terminal ("ok" for "ko", an id that reads as another).
    const hostile = "web-1\u202e1-bew";
    logger("t").info("agent {agentId} refused", {
      agentId: hostile,
      labels: [hostile],
      [`key\u2066`]: { role: "db\u200f" },
    });
  } finally {
    closeLogging();
  }
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines[0], /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/, lines[0]);
  assert.ok(lines[0].includes("agent web-1\\u202e1-bew refused"), lines[0]);
  assert.ok(lines[0].includes(' agentId="web-1\\u202e1-bew"'), lines[0]);
  assert.ok(lines[0].includes(' labels="[\\"web-1\\u202e1-bew\\"]"'), lines[0]);
  assert.ok(lines[0].includes(' key\\u2066="{\\"role\\":\\"db\\u200f\\"}"'), lines[0]);
});

Deno.test("json lines carry time, level, category, message and properties", () => {
  const lines = capture("json");
  try {
    logger("agent", "poll").info("command received from dashboard", {
      command_id: "cmd-1",
      command_name: "echo hi",
    });
  } finally {
    closeLogging();
  }
  const record = JSON.parse(lines[0]);
  assert.equal(record.level, "info");
  assert.equal(record.category, "status.agent.poll");
  assert.equal(record.message, "command received from dashboard");
  assert.equal(record.command_id, "cmd-1");
  assert.equal(record.command_name, "echo hi");
  assert.ok(!Number.isNaN(Date.parse(record.time)));
});

Deno.test("a json line holds no character a terminal or a line reader obeys, and reads back as sent", () => {
  const lines = capture("json");
  // What JSON may carry raw: DEL, C1 controls (U+009B is a terminal's CSI, U+0085 a line break
  // to many readers), line and paragraph separators, bidirectional overrides.
  const hostile = "a\u007fb\u0085c\u009b2Jd\u2028e\u2029f\u202eg";
  try {
    logger("t").info("agent {agentId} refused", {
      agentId: hostile,
      labels: { [hostile]: [hostile] },
    });
  } finally {
    closeLogging();
  }
  assert.equal(lines.length, 1);
  assert.doesNotMatch(
    lines[0],
    /[\p{Cc}\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u,
    lines[0],
  );
  const record = JSON.parse(lines[0]);
  assert.equal(record.message, `agent ${hostile} refused`);
  assert.equal(record.agentId, hostile);
  assert.deepEqual(record.labels, { [hostile]: [hostile] });
});

Deno.test("the level filter drops lower levels", () => {
  const lines: string[] = [];
  setupLogging({ format: "text", level: "warning", write: (l) => lines.push(l) });
  try {
    logger("x").info("hidden");
    logger("x").debug("hidden");
    logger("x").warn("shown");
  } finally {
    closeLogging();
  }
  assert.equal(lines.length, 1);
  assert.match(lines[0], /WARN shown/);
});

Deno.test("a log file gets the lines of a turn at its end, a warning at once, and closes cleanly", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-log-" });
  const read = () => Deno.readTextFileSync(`${dir}/status.log`);
  try {
    setupLogging({ format: "json", level: "info", file: `${dir}/status.log` });
    try {
      logger("agent").info("Agent daemon starting");
      logger("agent").info("second line");
      assert.equal(read(), "", "written at the end of the turn");
      await turn();
      assert.match(
        read(),
        /"message":"Agent daemon starting"[^\n]*\n[^\n]*"message":"second line"/,
      );
      logger("agent").info("before the warning");
      logger("agent").warning("a warning");
      assert.match(read(), /before the warning[^\n]*\n[^\n]*a warning/, "with the lines before it");
      logger("agent").info("left for the close");
    } finally {
      closeLogging();
    }
    assert.match(read(), /left for the close/);
    closeLogging();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a log file is its owner's only, and never written through a symlink", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-log-" });
  const path = `${dir}/status.log`;
  try {
    await t.step("a new log file is created 0600", () => {
      setupLogging({ format: "json", level: "info", file: path });
      closeLogging();
      assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
      Deno.removeSync(path);
    });
    await t.step("a symlink in its place is refused; its target is untouched", () => {
      // Where others may write (/tmp), a local user could point it at a root-owned file.
      const target = `${dir}/victim`;
      Deno.writeTextFileSync(target, "precious\n");
      Deno.symlinkSync(target, path);
      assert.throws(
        () => setupLogging({ format: "json", level: "info", file: path }),
        /status\.log is a symlink; refusing to write through it/,
      );
      closeLogging();
      assert.equal(Deno.readTextFileSync(target), "precious\n");
      Deno.removeSync(path);
    });
    await t.step({
      name: "another user's file in its place is refused",
      ignore: Deno.uid() !== 0,
      fn: () => {
        Deno.writeTextFileSync(path, "", { mode: 0o666 });
        Deno.chownSync(path, 65534, 65534);
        assert.throws(
          () => setupLogging({ format: "json", level: "info", file: path }),
          /status\.log belongs to uid 65534, not to this user \(uid 0\); refusing/,
        );
        closeLogging();
        Deno.removeSync(path);
      },
    });
    await t.step("it rotates by size, a symlink left at a rotated name replaced", async () => {
      const target = `${dir}/victim`;
      Deno.symlinkSync(target, `${path}.1`);
      const sink = rotatingFileSink(path, {
        maxSize: 10,
        maxFiles: 2,
        formatter: (record) => `${record.rawMessage}\n`,
      });
      try {
        for (const message of ["first", "second", "third"]) {
          sink(record(message));
          await turn();
        }
      } finally {
        sink[Symbol.dispose]();
      }
      assert.equal(Deno.readTextFileSync(path), "third\n");
      assert.equal(Deno.readTextFileSync(`${path}.1`), "second\n");
      assert.equal(Deno.readTextFileSync(`${path}.2`), "first\n");
      assert.equal(Deno.lstatSync(`${path}.1`).isSymlink, false);
      assert.equal(Deno.readTextFileSync(target), "precious\n");
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a log file moved or cut by logrotate: lines go on into the file at its path", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-log-" });
  const path = `${dir}/status.log`;
  const sink = () =>
    rotatingFileSink(path, {
      maxSize: 30,
      maxFiles: 2,
      formatter: (record) => `${record.rawMessage}\n`,
    });
  try {
    await t.step("moved away (create), then reopened (postrotate's SIGHUP)", async () => {
      const log = sink();
      try {
        log(record("before"));
        Deno.renameSync(path, `${path}.rotated`);
        log(record("waiting"));
        // What waited goes to the file it was written for; what follows, to a new file.
        log.reopen();
        log(record("after"));
        await turn();
      } finally {
        log[Symbol.dispose]();
      }
      assert.equal(Deno.readTextFileSync(`${path}.rotated`), "before\nwaiting\n");
      assert.equal(Deno.readTextFileSync(path), "after\n");
      assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
      Deno.removeSync(path);
    });
    await t.step("cut to nothing (copytruncate): not rotated again before it is full", async () => {
      const log = sink();
      try {
        log(record("x".repeat(24)));
        await turn();
        Deno.truncateSync(path, 0);
        log(record("short one"));
        await turn();
        log(record("another"));
        await turn();
      } finally {
        log[Symbol.dispose]();
      }
      // 10 + 8 bytes fit in 30: the file cut holds them, and nothing was rotated.
      assert.equal(Deno.readTextFileSync(path), "short one\nanother\n");
      assert.throws(() => Deno.statSync(`${path}.1`), Deno.errors.NotFound);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("messages fill their placeholders as LogTape does, plain keys or not", async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    [
      "command enqueued {commandId} for {agentId}",
      { commandId: "c1", agentId: "a1" },
      "command enqueued c1 for a1",
    ],
    ["{n} at the start, {missing} unset", { n: 3 }, "3 at the start, undefined unset"],
    [
      "an object {o} and an error {e}",
      { o: { a: [1] }, e: new Error("boom") },
      'an object {"a":[1]} and an error {"name":"Error","message":"boom"}',
    ],
    ["escaped {{braces}} and {x}", { x: "y" }, "escaped {braces} and y"],
    ["a path {user.name}", { user: { name: "ann" } }, "a path ann"],
    ["spaced { x }", { x: 1 }, "spaced 1"],
    ["unmatched { brace", {}, "unmatched { brace"],
    ["a secret {t}", { t: `x ${TOKEN}` }, "a secret x [redacted]"],
    [
      "a url {u}",
      { u: "https://ops:hunter2@dash.example:5000/x" },
      "a url https://ops:***@dash.example:5000/x",
    ],
  ];
  for (const format of ["json", "text"] as const) {
    await t.step(format, () => {
      const lines = capture(format);
      try {
        // Twice: the second line of a template comes from the cut kept of the first.
        for (const [template, props] of [...cases, ...cases]) logger("t").info(template, props);
      } finally {
        closeLogging();
      }
      const messages = lines.map((line) =>
        format === "json" ? JSON.parse(line).message : line.replace(/^\S+ INFO /, "")
      );
      cases.forEach(([template, , expected], i) => {
        for (const message of [messages[i], messages[i + cases.length]]) {
          assert.ok(message.startsWith(expected), `${template}: ${message}`);
        }
      });
    });
  }
});

Deno.test("a placeholder named like a secret is redacted in the message as in the property", async (t) => {
  for (const format of ["json", "text"] as const) {
    await t.step(format, () => {
      const lines = capture(format);
      try {
        logger("t").info("login with {token} and {password}", {
          token: "plain-token-1",
          password: "hunter2-pw",
        });
        // A path LogTape fills itself: redacted by its last name.
        logger("t").info("header {req.authorization} of {req.agent}", {
          req: { authorization: "Bearer plain-token-2", agent: "a1" },
        });
      } finally {
        closeLogging();
      }
      assert.equal(lines.length, 2);
      for (const secret of ["plain-token-1", "hunter2-pw", "plain-token-2"]) {
        assert.ok(lines.every((line) => !line.includes(secret)), `${secret} in ${lines}`);
      }
      assert.match(lines[0], /login with \[redacted\] and \[redacted\]/);
      assert.match(lines[1], /header \[redacted\] of a1/);
    });
  }
});

Deno.test("deep, circular, big-integer, date and URL values: a valid line, nothing secret", async (t) => {
  for (const format of ["json", "text"] as const) {
    await t.step(format, () => {
      const lines = capture(format);
      const circular: Record<string, unknown> = { a: { b: { c: {} } } };
      (circular.a as { b: { c: Record<string, unknown> } }).b.c.loop = circular;
      try {
        logger("t").info("deep", { deep: { a: { b: { c: { d: { token: "deep-secret-1" } } } } } });
        logger("t").info("circular", { circular });
        logger("t").info("big {n}", { n: 12345678901234567890n });
        logger("t").info("at {at} on {url}", {
          at: new Date(0),
          url: new URL("https://ops:hunter2@dash.example/x"),
        });
      } finally {
        closeLogging();
      }
      assert.equal(lines.length, 4, "no record is lost");
      assert.ok(
        lines.every((line) => !line.includes("deep-secret-1") && !line.includes("hunter2")),
      );
      assert.match(lines[2], /big 12345678901234567890/);
      assert.match(lines[3], /at 1970-01-01T00:00:00.000Z on https:\/\/ops:\*\*\*@dash.example\/x/);
      if (format === "json") {
        const records = lines.map((line) => JSON.parse(line));
        assert.equal(records[0].deep.a.b.c, "[too deep]");
        assert.equal(records[2].n, "12345678901234567890");
        assert.equal(records[3].at, "1970-01-01T00:00:00.000Z");
      }
    });
  }
});

Deno.test("json lines keep their four fields first; a property of the same name wins", () => {
  const lines = capture("json");
  try {
    logger("t").info("m {a}", { a: 1, level: "mine", token: "x", __proto__x: 2 });
  } finally {
    closeLogging();
  }
  assert.deepEqual(Object.keys(JSON.parse(lines[0])), [
    "time",
    "level",
    "category",
    "message",
    "a",
    "token",
    "__proto__x",
  ]);
  assert.equal(JSON.parse(lines[0]).level, "mine");
  assert.equal(JSON.parse(lines[0]).token, "[redacted]");
});

Deno.test({
  name: "a line cut short by a full disk is taken back, the next line whole and saying it",
  // A real full file system: a tmpfs mounted for the test (root with the right to mount).
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await using disk = await smallDisk(64);
    if (disk === null) {
      console.log("skipped: cannot mount a tmpfs here");
      return;
    }
    const dir = disk.dir;
    const path = `${dir}/status.log`;
    const sink = rotatingFileSink(path, {
      maxSize: 1024 * 1024,
      maxFiles: 1,
      formatter: (record) => `${record.message.join("")}\n`,
    });
    try {
      sink(record("first"));
      await turn();
      // The disk fills up; only the rest of the log's last page is free.
      {
        using filler = Deno.openSync(`${dir}/filler`, { write: true, create: true });
        assert.throws(() => {
          for (;;) filler.writeSync(new Uint8Array(4096));
        }, /No space left/);
      }
      // Longer than that rest: part of it is written before the disk says it is full.
      sink(record("x".repeat(6000)));
      await turn();
      await removeAndWaitForSpace(`${dir}/filler`);
      sink(record("after"));
    } finally {
      sink[Symbol.dispose]();
      const text = Deno.readTextFileSync(path);
      // The line lost is said, by the next one written.
      assert.equal(
        text,
        "first\n1 log lines before this one could not be written to this file: " +
          "No space left on device (os error 28)\nafter\n",
      );
    }
  },
});

Deno.test("a log file that may not be rotated says so in itself at start", async (t) => {
  // With the daemon's documented --allow-write=status.pid,status.log, renaming status.log to
  // status.log.1 was refused, silently, at every rotation: the file grew without bound.
  const dir = Deno.makeTempDirSync({ prefix: "status-log-rotate-" });
  const path = `${dir}/status.log`;
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const firstLine = async (access: string) => {
    const { code } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-env",
        "--allow-net=127.0.0.1:9",
        `--allow-read=${access}`,
        `--allow-write=${access}`,
        main,
        "health",
        "--dashboard-url",
        "http://127.0.0.1:9",
      ],
      env: { LOG_FILE: path, LOG_FORMAT: "json", NO_COLOR: "1" },
      stdout: "null",
      stderr: "null",
    }).output();
    assert.equal(code, 1, "the dashboard is not there");
    const line = JSON.parse(Deno.readTextFileSync(path).split("\n")[0]);
    Deno.removeSync(path);
    return line;
  };
  try {
    await t.step("the file alone granted: a warning names the rotated files", async () => {
      const line = await firstLine(path);
      assert.equal(line.level, "warning");
      assert.match(
        line.message,
        /cannot be rotated: renaming it to .*status\.log\.1 … .*status\.log\.5 is not permitted, so it grows without bound/,
      );
    });
    await t.step("its folder granted: no warning", async () => {
      const line = await firstLine(dir);
      assert.doesNotMatch(line.message, /rotated/);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a URL's password is hidden whole in a log line, with @ / ? # : unencoded in it", () => {
  const lines = capture("json");
  try {
    const log = logger("test");
    log.error("cannot reach postgres://status:123/s3cr3t@db:5432/status now");
    log.error("failed: {error}", {
      error: new Error("database postgres://status:p@ss:w/rd#s3cr3t@db/status is down"),
    });
  } finally {
    closeLogging();
  }
  assert.equal(lines.length, 2);
  for (const line of lines) {
    assert.doesNotMatch(line, /s3cr3t|123\/|ss:w/, line);
    assert.match(line, /postgres:\/\/status:\*\*\*@db/, line);
  }
});

Deno.test("a URL whose port, path and query hold an @ is shown whole, not read as a password", async (t) => {
  await t.step("one URL shown", () => {
    for (const url of ["http://h:8080/p?u=a@b", "https://dash:5000/api/v1/x#who@where"]) {
      assert.equal(redactUrl(url), url);
      assert.equal(redactString(`GET ${url} failed`), `GET ${url} failed`);
    }
  });
  await t.step("a URL with a password within it still loses it", () => {
    assert.equal(
      redactUrl("http://h:8080/p?next=https://ops:s3cr3t@dash/"),
      "http://h:8080/p?next=https://ops:***@dash/",
    );
    assert.equal(
      redactString("to http://h:8080/p?next=https://ops:s3cr3t@dash/ now"),
      "to http://h:8080/p?next=https://ops:***@dash/ now",
    );
  });
  await t.step("a password with / or ? is still hidden whole", () => {
    for (
      const [url, shown] of [
        ["postgres://status:123/se@db/status", "postgres://status:***@db/status"],
        ["postgres://status:123?se@db/status", "postgres://status:***@db/status"],
        ["postgres://status:99999/a?b@db/status", "postgres://status:***@db/status"],
      ]
    ) {
      assert.equal(redactUrl(url), shown);
      assert.equal(redactString(url), shown);
    }
  });
});
