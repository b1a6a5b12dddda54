/**
 * A program calling the library from plain JavaScript, or with values it did not check: bad
 * arguments to what `mod.ts` exports are refused with a TypeError or RangeError whose message
 * names the argument and quotes the value, not an error from deep inside (`x.trim is not a
 * function`).
 */
import assert from "node:assert/strict";
import * as status from "../mod.ts";

/**
 * What every server here is started with: without it a server started in this process counts the
 * free descriptors by opening them up to its connection limit (20,128 by default: every one this
 * process may have, for a moment), and a test file in another thread of the parallel run fails to
 * open a file or load a module meanwhile.
 */
const PLENTY = { availableDescriptors: "plenty" as const };

/** Asserts `fn` throws (or rejects with) a `type` whose message matches `message`. */
async function refuses(
  fn: () => unknown,
  type: typeof TypeError | typeof RangeError,
  message: RegExp,
): Promise<void> {
  await assert.rejects(async () => await fn(), (error: Error) => {
    assert.ok(error instanceof type, `${error?.name}: ${error?.message}`);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("startServer refuses options that are not an object and a db that is not a string", async () => {
  await refuses(
    () => status.startServer(null as never),
    TypeError,
    /^startServer's options must be an object, got null$/,
  );
  for (const [db, shown] of [[42, "42"], [{ path: "x.db" }, '{"path":"x.db"}']] as const) {
    await refuses(
      () => status.startServer({ ...PLENTY, port: 0, db: db as never }),
      TypeError,
      new RegExp(
        `^db must be a SQLite file path or a postgres:// URL, got ${RegExp.escape(shown)}$`,
      ),
    );
  }
});

Deno.test("runCommand and CommandRunner refuse a command line, options or policy of the wrong kind", async () => {
  const policy = status.createPolicy({ allowedPrograms: ["echo"] });
  await refuses(
    () => status.runCommand(null as never, { policy }),
    TypeError,
    /^the command line must be a string, got null$/,
  );
  await refuses(
    () => status.runCommand(["echo", "hi"] as never, { policy }),
    TypeError,
    /^the command line must be a string, got \["echo","hi"\]$/,
  );
  await refuses(
    () => status.runCommand("echo hi", null as never),
    TypeError,
    /^options must be an object with a policy, got null$/,
  );
  for (
    const [bad, shown] of [
      [undefined, "undefined"],
      [{ allowedPrograms: "echo" }, '{"allowedPrograms":"echo"}'],
      [
        { allowedPrograms: [1], allowedPathPrefixes: [] },
        '{"allowedPrograms":[1],"allowedPathPrefixes":[]}',
      ],
    ] as const
  ) {
    await refuses(
      () => status.runCommand("echo hi", { policy: bad as never }),
      TypeError,
      new RegExp(
        `^policy must be an ExecPolicy \\(arrays of strings allowedPrograms and ` +
          `allowedPathPrefixes: use createPolicy or defaultPolicy\\), got ${RegExp.escape(shown)}$`,
      ),
    );
  }
  const runner = new status.CommandRunner({ policy });
  await refuses(
    () => runner.run("echo hi", null as never),
    TypeError,
    /^the command's options must be an object, got null$/,
  );
  assert.equal((await runner.run("echo hi")).stdout, "hi\n");
});

Deno.test("createPolicy refuses input and lists that are not strings, quoting them", async () => {
  await refuses(
    () => status.createPolicy(null as never),
    TypeError,
    /^createPolicy's input must be an object, got null$/,
  );
  await refuses(
    () => status.createPolicy({ allowedPrograms: ["echo", 1] as never }),
    TypeError,
    /^allowedPrograms must be an array of strings or a comma-separated string, got \["echo",1\]$/,
  );
  await refuses(
    () => status.createPolicy({ extraPrograms: [null] as never }),
    TypeError,
    /^extraPrograms must be an array of strings or a comma-separated string, got \[null\]$/,
  );
  await refuses(
    () => status.createPolicy({ allowedPathPrefixes: { path: "/tmp" } as never }),
    TypeError,
    /^allowedPathPrefixes must be an array of strings or a comma-separated string, got \{"path":"\/tmp"\}$/,
  );
  await refuses(
    () => status.createPolicy({ protectedPaths: [7] as never }),
    TypeError,
    /^Protected path "7" must be an absolute path without "\.\."$/,
  );
  assert.deepEqual(status.createPolicy({ allowedPrograms: "echo, ls" }).allowedPrograms, [
    "echo",
    "ls",
  ]);
});

Deno.test("checkHealth refuses a dashboard URL that is not http(s), as OperatorClient does, sending nothing", async () => {
  let sent = 0;
  const fetch = (() => {
    sent++;
    return Promise.reject(new Error("sent"));
  }) as typeof globalThis.fetch;
  await refuses(
    () => status.checkHealth(null as never),
    TypeError,
    /^checkHealth's options must be an object, got null$/,
  );
  for (
    const [url, shown] of [
      ["nope", '"nope"'],
      [42, '"42"'],
      ["ftp://ops:secret@x/", '"ftp://ops:***@x/"'],
    ] as const
  ) {
    await refuses(
      () => status.checkHealth({ dashboardUrl: url as never, fetch } as never),
      TypeError,
      new RegExp(`^dashboard URL must be an http:// or https:// URL, got ${RegExp.escape(shown)}$`),
    );
    assert.throws(
      () => new status.OperatorClient({ dashboardUrl: url as never }),
      {
        name: "TypeError",
        message: `dashboard URL must be an http:// or https:// URL, got ${shown}`,
      },
    );
  }
  assert.equal(sent, 0);
});

Deno.test("runAgent refuses options that are not an object and a signal that is not an AbortSignal, before polling", async () => {
  await using server = await status.startServer({ ...PLENTY, port: 0, db: ":memory:" });
  const options = { dashboardUrl: server.url, agentId: "web-1", heartbeat: false };
  await refuses(
    () => status.runAgent(null as never, new AbortController().signal),
    TypeError,
    /^runAgent's options must be an object, got null$/,
  );
  for (const signal of [undefined, null, "stop"]) {
    await refuses(
      () => status.runAgent(options, signal as never),
      TypeError,
      new RegExp(
        `^runAgent's signal must be an AbortSignal \\(abort it to stop the agent\\), got ${signal}$`,
      ),
    );
  }
  const agents = await new status.OperatorClient({ dashboardUrl: server.url }).listAgents();
  assert.deepEqual(agents, [], "no agent polled");
});

Deno.test("OperatorClient and followCommand refuse arguments of the wrong kind, sending nothing", async () => {
  assert.throws(() => new status.OperatorClient(undefined as never), {
    name: "TypeError",
    message: "OperatorClient's options must be an object with a dashboardUrl, got undefined",
  });
  let sent = 0;
  const client = new status.OperatorClient({
    dashboardUrl: "http://127.0.0.1:9",
    fetch: () => {
      sent++;
      return Promise.reject(new Error("sent"));
    },
  } as never);
  await refuses(
    () => status.followCommand({ dashboardUrl: "http://127.0.0.1:9" } as never, "c1"),
    TypeError,
    /^followCommand's client must be an OperatorClient, got \[object Object\]$/,
  );
  for (const [id, shown] of [["", '""'], [42, "42"], [undefined, "undefined"]] as const) {
    await refuses(
      () => status.followCommand(client, id as never),
      TypeError,
      new RegExp(`^followCommand's id must be a command id, got ${shown}$`),
    );
  }
  await refuses(
    () => status.followCommand(client, "c1", null as never),
    TypeError,
    /^followCommand's options must be an object, got null$/,
  );
  assert.equal(sent, 0);
});

Deno.test("runCommand refuses a signal that is not an AbortSignal, or a handler that is not a function, before it starts anything", async () => {
  const policy = status.createPolicy({ allowedPrograms: ["sleep"] });
  let spawned = 0;
  for (
    const [options, message] of [
      [{ signal: {} }, "signal must be an AbortSignal, got {}"],
      [{ signal: "stop" }, 'signal must be an AbortSignal, got "stop"'],
      [{ onOutput: "log" }, 'onOutput must be a function, got "log"'],
      [{ onExit: 1 }, "onExit must be a function, got 1"],
    ] as const
  ) {
    await refuses(
      () =>
        status.runCommand("sleep 30", { policy, onSpawn: () => spawned++, ...options } as never),
      TypeError,
      new RegExp(`^${RegExp.escape(message)}$`),
    );
  }
  assert.equal(spawned, 0, "no process was started (one was left running)");
});

Deno.test("CommandRunner refuses a sandbox that is not a Sandbox, and Sandbox.create options that are not an object", async () => {
  const policy = status.createPolicy({ allowedPrograms: ["echo"] });
  await refuses(
    () => status.runCommand("echo hi", { policy, sandbox: { user: "nobody" } as never }),
    TypeError,
    /^sandbox must be a Sandbox \(Sandbox\.create\), got \{"user":"nobody"\}$/,
  );
  await refuses(
    () => status.Sandbox.create(null as never),
    TypeError,
    /^Sandbox\.create's options must be an object, got null$/,
  );
});

Deno.test('the signing helpers refuse missing parts, which they signed as "undefined", and never quote a token', async () => {
  const parts = {
    method: "GET",
    pathAndQuery: "/api/v1/agent/commands/wait/default?timeout=30",
    timestamp: "1768212000",
    requestId: "5f0c1a9e-0000-4000-8000-000000000000",
    body: "",
  };
  const token = "an-agent-token-of-at-least-32-characters";
  const { requestId: _, ...noRequestId } = parts;
  await refuses(
    () => status.canonicalStringV2(noRequestId as never),
    TypeError,
    /^requestId must be a string, got undefined$/,
  );
  await refuses(
    () => status.signV2(token, { ...parts, body: { a: 1 } } as never),
    TypeError,
    /^body must be a string or a Uint8Array, got \{"a":1\}$/,
  );
  await refuses(
    () => status.signV2(42 as never, parts),
    TypeError,
    /^token must be a non-empty string, got number$/,
  );
  await refuses(() => status.signV2("", parts), TypeError, /^token must be a non-empty string/);
  await refuses(
    () => status.signedHeaders({ token, method: "GET", pathAndQuery: "/" } as never),
    TypeError,
    /^agentId must be a non-empty string, got undefined$/,
  );
  await refuses(
    () => status.signedHeaders({ agentId: "web-1", token, method: "GET" } as never),
    TypeError,
    /^pathAndQuery must be a string, got undefined$/,
  );
  // Dev mode: no token, only X-Agent-Id.
  const headers = status.signedHeaders({ agentId: "web-1", method: "GET", pathAndQuery: "/" });
  assert.equal(headers["X-Agent-Id"], "web-1");
  assert.equal(headers["X-Agent-Signature"], undefined);
});

Deno.test("the exported wire constants cannot be changed by an importer", () => {
  // PRIORITIES.reverse() in a program embedding a dashboard turned the store's critical commands
  // into low ones (it maps a stored rank back through PRIORITIES).
  for (
    const [name, value] of Object.entries({
      COMMAND_STATUSES: status.COMMAND_STATUSES,
      HEADER: status.HEADER,
      LIVE_PATHS: status.LIVE_PATHS,
      OUTPUT_ENCODINGS: status.OUTPUT_ENCODINGS,
      PATHS: status.PATHS,
      PRIORITIES: status.PRIORITIES,
      REPORT_STATUSES: status.REPORT_STATUSES,
      RUN_PATHS: status.RUN_PATHS,
    })
  ) {
    assert.ok(Object.isFrozen(value), `${name} is frozen`);
  }
  assert.throws(() => (status.PRIORITIES as unknown as string[]).reverse(), TypeError);
  assert.deepEqual(status.PRIORITIES, ["critical", "high", "normal", "low"]);
});

Deno.test("startServer refuses a tls that is not a { cert, key } pair of PEM texts, instead of failing every handshake", async () => {
  for (
    const [tls, shown] of [
      ["cert.pem", "string"],
      [true, "boolean"],
      [{}, "{ cert: undefined, key: undefined }"],
      // The key's text is a secret: never quoted.
      [{ cert: 1, key: "-----BEGIN PRIVATE KEY-----\nsecret" }, "{ cert: number, key: string }"],
    ] as const
  ) {
    await refuses(
      () => status.startServer({ ...PLENTY, port: 0, db: ":memory:", tls: tls as never }),
      TypeError,
      new RegExp(
        "^tls must be \\{ cert, key \\}: the PEM certificate and private key \\(their contents, " +
          `not paths\\), got ${RegExp.escape(shown)}$`,
      ),
    );
  }
});

Deno.test("startServer refuses a hostname that is not a non-empty string", async () => {
  for (const [hostname, shown] of [[42, "42"], ["", '""'], [" ", '" "']] as const) {
    await refuses(
      () => status.startServer({ ...PLENTY, port: 0, db: ":memory:", hostname: hostname as never }),
      TypeError,
      new RegExp(
        `^hostname must be an address to listen on, such as "127\\.0\\.0\\.1", got ${shown}$`,
      ),
    );
  }
});

Deno.test("runAgent refuses a stateDir that is not a directory path, writing nothing", async () => {
  // "" kept the journal in the working directory, 42 made a directory "42" there.
  await using server = await status.startServer({ ...PLENTY, port: 0, db: ":memory:" });
  for (const [stateDir, shown] of [["", '""'], [" ", '" "'], [42, "42"]] as const) {
    await refuses(
      () =>
        status.runAgent(
          { dashboardUrl: server.url, agentId: "web-1", heartbeat: false, stateDir } as never,
          new AbortController().signal,
        ),
      TypeError,
      new RegExp(
        "^stateDir must be a directory path \\(or left out to keep the journal and outbox in " +
          `memory\\), got ${RegExp.escape(shown)}$`,
      ),
    );
  }
  for (const name of ["42", "journal.jsonl", "instance-id"]) {
    assert.throws(() => Deno.statSync(name), Deno.errors.NotFound, name);
  }
});

Deno.test("OperatorClient refuses a command id that is not one before it goes into a path, sending nothing", async () => {
  let sent = 0;
  const client = new status.OperatorClient({
    dashboardUrl: "http://127.0.0.1:9",
    fetch: () => {
      sent++;
      return Promise.reject(new Error("sent"));
    },
  } as never);
  // "." would be dropped from the path: cancel(".") a POST to /api/v1/commands/cancel.
  for (
    const [id, shown] of [[".", '"."'], ["..", '".."'], ["a/b", '"a/b"'], ["", '""'], [42, "42"]]
  ) {
    const message = new RegExp(
      `^command id must be 1–193 characters of A-Z a-z 0-9 \\. _ : -, not only dots, got ${
        RegExp.escape(shown as string)
      }$`,
    );
    await refuses(() => client.getCommand(id as never), TypeError, message);
    await refuses(() => client.cancel(id as never), TypeError, message);
    await refuses(() => client.waitForFinal(id as never), TypeError, message);
    await refuses(() => client.openEvents(id as never), TypeError, message);
    await refuses(
      () => status.followCommand(client, id as never),
      TypeError,
      new RegExp(
        `^followCommand's id must be a command id, got ${RegExp.escape(shown as string)}$`,
      ),
    );
  }
  await refuses(
    () => client.enqueue(null as never),
    TypeError,
    /^enqueue's options must be an object, got null$/,
  );
  assert.equal(sent, 0);
});

Deno.test("startServer and runAgent refuse a metrics address that is not PORT or HOST:PORT, naming the option, before anything is made", async () => {
  // A number failed as "value.trim is not a function"; an agent's malformed metricsPort was
  // found only once its state directory had been made.
  for (const [value, type, shown] of [[9100, TypeError, "9100"], ["", RangeError, '""']] as const) {
    await refuses(
      () => status.startServer({ ...PLENTY, port: 0, db: ":memory:", metricsBind: value as never }),
      type,
      new RegExp(`^metricsBind must be (a string, )?PORT or HOST:PORT, got ${shown}$`),
    );
  }
  await using server = await status.startServer({ ...PLENTY, port: 0, db: ":memory:" });
  const dir = await Deno.makeTempDir({ prefix: "status-library-" });
  try {
    for (
      const [value, type, shown] of [[9100, TypeError, "9100"], [
        "x:y",
        RangeError,
        '"x:y"',
      ]] as const
    ) {
      await refuses(
        () =>
          status.runAgent(
            {
              dashboardUrl: server.url,
              agentId: "web-1",
              heartbeat: false,
              stateDir: `${dir}/state`,
              metricsPort: value as never,
            },
            new AbortController().signal,
          ),
        type,
        new RegExp(`^metricsPort must be (a string, )?PORT or HOST:PORT, got ${shown}$`),
      );
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no state directory was made");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runAgent refuses exec settings that would refuse every command before it makes its state directory", async () => {
  // The state directory (its lock, its journal) was made first, and left behind by the refusal.
  const dir = await Deno.makeTempDir({ prefix: "status-library-" });
  try {
    const cases: Array<[string, Record<string, unknown>, typeof TypeError, RegExp]> = [
      [
        "a variable a program loads code from",
        { commandEnv: ["LD_PRELOAD=/tmp/x.so"] },
        TypeError,
        /^Extra environment variable "LD_PRELOAD" is never given to commands/,
      ],
      [
        "an allowlist entry that is no program",
        { allowedPrograms: ["../x"] },
        TypeError,
        /^Allowed program "\.\.\/x" must be/,
      ],
      [
        "a deadline out of range",
        { defaultTimeoutSecs: -1 },
        RangeError,
        /^defaultTimeoutSecs must be a positive number of seconds, got -1$/,
      ],
      [
        "an unknown command user",
        { user: "no-such-user-of-status" },
        TypeError,
        /^COMMAND_USER "no-such-user-of-status" is not a user of this machine/,
      ],
      [
        "a process limit out of range",
        { maxProcesses: -3 },
        RangeError,
        /^COMMAND_MAX_PROCESSES must be a whole number/,
      ],
      [
        "a memory limit out of range",
        { maxMemory: 5 },
        RangeError,
        /^COMMAND_MAX_MEMORY must be 0 \(no limit\) or a whole number of bytes/,
      ],
    ];
    for (const [what, exec, type, message] of cases) {
      await refuses(
        () =>
          status.runAgent(
            {
              dashboardUrl: "http://127.0.0.1:9",
              agentId: "web-1",
              heartbeat: false,
              stateDir: `${dir}/state/agent`,
              exec: exec as never,
            },
            new AbortController().signal,
          ),
        type,
        message,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], `no state directory was made (${what})`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runAgent refuses an instanceId the dashboard would refuse, before polling", async () => {
  // It was sent as X-Agent-Instance unchecked: "a b" made every wait a 400, "a\nb" failed inside
  // fetch, and "" was sent as no instance at all.
  // A request sent stops the agent (else an agent that took the id would poll until the end).
  let sent = 0;
  const stop = new AbortController();
  const fetch = () => {
    sent++;
    stop.abort();
    return Promise.reject(new Error("sent"));
  };
  for (
    const [instanceId, shown] of [
      ["", '""'],
      ["a b", '"a b"'],
      ["a\nb", '"a\\nb"'],
      ["x".repeat(129), `"${"x".repeat(129)}"`],
      [42, "42"],
    ] as const
  ) {
    await refuses(
      () =>
        status.runAgent(
          {
            dashboardUrl: "http://127.0.0.1:9",
            agentId: "web-1",
            heartbeat: false,
            instanceId,
            fetch,
          } as never,
          stop.signal,
        ),
      TypeError,
      new RegExp(
        `^instanceId must be 1–128 characters of A-Z a-z 0-9 \\. _ : -, got ${
          RegExp.escape(shown)
        }$`,
      ),
    );
  }
  assert.equal(sent, 0, "no request was sent");
});

Deno.test("startServer refuses a limit out of range or a bad admin token before it makes the store's file, naming the option", async () => {
  // They were checked once the store was open: each refusal left a new status.db behind, and
  // consoleSessionTtlSecs was called "ttlSecs".
  const dir = await Deno.makeTempDir({ prefix: "status-library-" });
  try {
    for (
      const [option, value, message] of [
        ["ackTimeoutSecs", -1, /^ackTimeoutSecs must be a whole number from 1 to \d+, got -1$/],
        ["maxAttempts", 0, /^maxAttempts must be a whole number from 1 to 100, got 0$/],
        [
          "consoleSessionTtlSecs",
          5,
          /^consoleSessionTtlSecs must be a whole number from 60 to 2592000, got 5$/,
        ],
        ["adminToken", "short", /^adminToken must be 16 to 1024 printable ASCII characters/],
      ] as const
    ) {
      await refuses(
        () => status.startServer({ ...PLENTY, port: 0, db: `${dir}/status.db`, [option]: value }),
        RangeError,
        message,
      );
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no store file was made");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a misspelt option name is refused, naming it and the option it likely meant, before anything starts", async () => {
  // An option name the library does not know was taken as no option at all: `prot: 0` listened
  // on port 5000, `timoutSecs` ran with the default deadline, `dashboardURL` polled nowhere.
  const policy = status.createPolicy({ allowedPrograms: ["echo"] });
  let sent = 0;
  const fetch = () => {
    sent++;
    return Promise.reject(new Error("sent"));
  };
  const client = new status.OperatorClient({ dashboardUrl: "http://127.0.0.1:9", fetch } as never);
  const cases: Array<[string, () => unknown, string, string]> = [
    [
      "startServer",
      () => status.startServer({ ...PLENTY, db: ":memory:", prot: 0 } as never),
      "prot",
      "port",
    ],
    [
      "runAgent",
      () =>
        status.runAgent(
          { dashboardURL: "http://127.0.0.1:9", agentId: "web-1", fetch } as never,
          new AbortController().signal,
        ),
      "dashboardURL",
      "dashboardUrl",
    ],
    [
      "runAgent's exec",
      () =>
        status.runAgent(
          {
            dashboardUrl: "http://127.0.0.1:9",
            agentId: "web-1",
            fetch,
            exec: { cgroup: false },
          } as never,
          new AbortController().signal,
        ),
      "cgroup",
      "cgroups",
    ],
    [
      "runCommand",
      () => status.runCommand("echo hi", { policy, timoutSecs: 1 } as never),
      "timoutSecs",
      "timeoutSecs",
    ],
    [
      "CommandRunner",
      () => new status.CommandRunner({ policy, timeoutSecs: 1 } as never),
      "timeoutSecs",
      "maxTimeoutSecs",
    ],
    [
      "CommandRunner's run",
      () => new status.CommandRunner({ policy }).run("echo hi", { cwd: "/tmp" } as never),
      "cwd",
      "",
    ],
    [
      "createPolicy",
      () => status.createPolicy({ alowedPrograms: ["echo"] } as never),
      "alowedPrograms",
      "allowedPrograms",
    ],
    ["Sandbox.create", () => status.Sandbox.create({ usr: "nobody" } as never), "usr", "user"],
    [
      "OperatorClient",
      () => new status.OperatorClient({ dashboardUrl: "http://x", admin_token: "t" } as never),
      "admin_token",
      "adminToken",
    ],
    ["enqueue", () => client.enqueue({ agentId: "web-1", nme: "echo hi" } as never), "nme", "name"],
    ["listCommands", () => client.listCommands({ agent: "web-1" } as never), "agent", "agentId"],
    [
      "addAgent",
      () => client.addAgent("web-2", { scope: ["commands:wait"] } as never),
      "scope",
      "scopes",
    ],
    ["waitForFinal", () => client.waitForFinal("c1", { timeoutMs: 5 } as never), "timeoutMs", ""],
    [
      "followCommand",
      () => status.followCommand(client, "c1", { onStatsu: () => {} } as never),
      "onStatsu",
      "onStatus",
    ],
    [
      "checkHealth",
      () => status.checkHealth({ dashboardUrl: "http://127.0.0.1:9", fetch, timeout: 5 } as never),
      "timeout",
      "timeoutMs",
    ],
    [
      "waitForRun",
      () => status.waitForRun(client, "r1", { interval: 5 } as never),
      "interval",
      "intervalMs",
    ],
    ["listRuns", () => status.listRuns(client, { opne: true } as never), "opne", "open"],
  ];
  for (const [what, call, key, meant] of cases) {
    const hint = meant === "" ? "" : ` \\(did you mean "${meant}"\\?\\)`;
    await refuses(
      call,
      TypeError,
      new RegExp(`^${RegExp.escape(what)} has no option "${key}"${hint}$`),
    );
  }
  assert.equal(sent, 0, "no request was sent");
});

Deno.test("a flag that is not a boolean, or a signal that is not an AbortSignal, is refused naming it", async () => {
  // "false" is truthy: acceptV1Signatures: "false" accepted v1 signatures, liveOutput: "false"
  // streamed; a signal of the wrong kind failed inside AbortSignal.any once the request began.
  let sent = 0;
  const fetch = () => {
    sent++;
    return Promise.reject(new Error("sent"));
  };
  const agent = { dashboardUrl: "http://127.0.0.1:9", agentId: "web-1", fetch };
  const client = new status.OperatorClient({ dashboardUrl: "http://127.0.0.1:9", fetch } as never);
  const cases: Array<[() => unknown, string]> = [
    [
      () =>
        status.startServer(
          { ...PLENTY, port: 0, db: ":memory:", acceptV1Signatures: "false" } as never,
        ),
      'acceptV1Signatures must be true or false, got "false"',
    ],
    [
      () =>
        status.startServer(
          { ...PLENTY, port: 0, db: ":memory:", waitRequireSignature: 1 } as never,
        ),
      "waitRequireSignature must be true or false, got 1",
    ],
    [
      () =>
        status.runAgent({ ...agent, liveOutput: "false" } as never, new AbortController().signal),
      'liveOutput must be true or false, got "false"',
    ],
    [
      () => status.runAgent({ ...agent, heartbeat: "no" } as never, new AbortController().signal),
      'heartbeat must be true or false, got "no"',
    ],
    [
      () =>
        status.runAgent(
          { ...agent, exec: { cgroups: "no" } } as never,
          new AbortController().signal,
        ),
      'exec.cgroups must be true or false, got "no"',
    ],
    [
      () => status.runAgent({ ...agent, stopNow: "now" } as never, new AbortController().signal),
      "stopNow must be an AbortSignal (abort it to stop at once), got now",
    ],
    [
      () => status.Sandbox.create({ cgroups: "yes" } as never),
      'cgroups must be true or false, got "yes"',
    ],
    [
      () => client.enqueue({ agentId: "web-1", name: "echo hi", signal: 5 } as never),
      "signal must be an AbortSignal, got 5",
    ],
    [
      () => client.addAgent("web-2", { signal: {} } as never),
      "signal must be an AbortSignal, got {}",
    ],
    [
      () => client.waitForFinal("c1", { onProgress: 5 } as never),
      "onProgress must be a function, got 5",
    ],
    [
      () => client.waitForFinal("c1", null as never),
      "waitForFinal's options must be an object, got null",
    ],
  ];
  for (const [call, message] of cases) {
    await refuses(call, TypeError, new RegExp(`^${RegExp.escape(message)}$`));
  }
  assert.equal(sent, 0, "no request was sent");
});

Deno.test('an empty or malformed token is refused, never quoted, not taken as "no token"', async () => {
  // startServer's adminToken "" ran the dashboard in dev mode, its operator API open; runAgent's
  // agentToken "" sent every request unsigned (logged as signed), and a short one was refused by
  // the dashboard on every request.
  let sent = 0;
  const fetch = () => {
    sent++;
    return Promise.reject(new Error("sent"));
  };
  await refuses(
    () => status.startServer({ ...PLENTY, port: 0, db: ":memory:", adminToken: "" }),
    RangeError,
    /^adminToken must be 16 to 1024 printable ASCII characters, without spaces$/,
  );
  for (
    const [agentToken, shown] of [["", "0 characters"], ["hunter2", "7 characters"], [
      42,
      "number",
    ]] as const
  ) {
    await refuses(
      () =>
        status.runAgent(
          { dashboardUrl: "http://127.0.0.1:9", agentId: "web-1", agentToken, fetch } as never,
          new AbortController().signal,
        ),
      TypeError,
      new RegExp(
        "^agentToken must be 16 to 1024 printable ASCII characters, without spaces \\(leave it " +
          `out for a dashboard in dev mode\\), got ${shown}$`,
      ),
    );
  }
  assert.equal(sent, 0, "no request was sent");
});

Deno.test("an option given as null is refused, not taken for a missing one", async () => {
  // `port: null` listened on port 5000, `pollingTimeoutSecs: null` took 30, without a word.
  let sent = 0;
  const fetch = () => {
    sent++;
    return Promise.reject(new Error("sent"));
  };
  const message = (name: string) =>
    new RegExp(`^${name} must be left out \\(undefined\\) for its default, not null$`);
  await refuses(
    () => status.startServer({ ...PLENTY, db: ":memory:", port: null } as never),
    TypeError,
    message("port"),
  );
  await refuses(
    () => status.startServer({ ...PLENTY, port: 0, db: ":memory:", ackTimeoutSecs: null } as never),
    TypeError,
    message("ackTimeoutSecs"),
  );
  await refuses(
    () =>
      status.runAgent(
        {
          dashboardUrl: "http://127.0.0.1:9",
          agentId: "web-1",
          fetch,
          pollingTimeoutSecs: null,
        } as never,
        new AbortController().signal,
      ),
    TypeError,
    message("pollingTimeoutSecs"),
  );
  assert.throws(
    () => new status.OperatorClient({ dashboardUrl: "http://x", requestTimeoutMs: null } as never),
    {
      name: "TypeError",
      message: "requestTimeoutMs must be left out (undefined) for its default, not null",
    },
  );
  assert.equal(sent, 0, "no request was sent");
});

Deno.test("runCommand and CommandRunner refuse a cwd that is not a directory path, starting nothing", async () => {
  // Each command was run and failed as `working directory "42" does not exist`.
  const policy = status.createPolicy({ allowedPrograms: ["echo"] });
  for (const [cwd, shown] of [[42, "42"], ["", '""'], [" ", '" "']] as const) {
    const message = new RegExp(
      `^cwd must be a directory path \\(or left out for the caller's\\), got ${
        RegExp.escape(shown)
      }$`,
    );
    await refuses(
      () => status.runCommand("echo hi", { policy, cwd: cwd as never }),
      TypeError,
      message,
    );
    await refuses(
      () => new status.CommandRunner({ policy, cwd: cwd as never }),
      TypeError,
      message,
    );
  }
});

Deno.test("startServer refuses a db of only spaces, and OperatorClient an adminToken that is not a string", async () => {
  // db " " made a SQLite file named " " in the working directory; adminToken 42 went out as
  // "Bearer 42".
  await refuses(
    () => status.startServer({ ...PLENTY, port: 0, db: "  " }),
    TypeError,
    /^db must be a SQLite file path or a postgres:\/\/ URL, got " {2}"$/,
  );
  assert.throws(() => Deno.statSync("  "), Deno.errors.NotFound);
  assert.throws(
    () => new status.OperatorClient({ dashboardUrl: "http://x", adminToken: 42 as never }),
    { name: "TypeError", message: "adminToken must be a string, got number" },
  );
});
