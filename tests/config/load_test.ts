import assert from "node:assert/strict";
import { loadSettings, missingSettingError, parseEnvFile } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { MAX_EXTRA_ENV_BYTES } from "../../src/exec/env.ts";

/** The temporary directories made here, removed when the tests end (not every test removes its own). */
const made: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const dir of made) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Removed by its test, or made unreadable by it.
    }
  }
});

function tempDir(files: Record<string, string> = {}): string {
  const dir = Deno.makeTempDirSync({ prefix: "status-config-" });
  made.push(dir);
  for (const [name, text] of Object.entries(files)) Deno.writeTextFileSync(`${dir}/${name}`, text);
  return dir;
}

Deno.test("settings precedence: flags > environment > .env > config.json > defaults", async (t) => {
  const dir = tempDir({
    ".env": "POLLING_TIMEOUT_SECS=20\nPOLLING_BACKOFF_SECS=7\nCOMMAND_TIMEOUT_SECS=100\n",
    "config.json": JSON.stringify({
      polling_timeout_secs: 10,
      polling_backoff_secs: 9,
      command_timeout_secs: 50,
      metrics_interval_secs: 11,
    }),
  });
  try {
    const loaded = loadSettings({
      roles: ["agent"],
      cwd: dir,
      flags: { pollingTimeoutSecs: "40" },
      env: { POLLING_TIMEOUT_SECS: "35", POLLING_BACKOFF_SECS: "6" },
    });
    const s = loaded.settings;
    await t.step("a flag beats the environment", () => {
      assert.equal(s.pollingTimeoutSecs, 40);
      assert.equal(loaded.sources.pollingTimeoutSecs, "flag --polling-timeout-secs");
    });
    await t.step("the environment beats .env", () => {
      assert.equal(s.pollingBackoffSecs, 6);
      assert.equal(loaded.sources.pollingBackoffSecs, "the environment");
    });
    await t.step(".env beats config.json", () => {
      assert.equal(s.commandTimeoutSecs, 100);
      assert.equal(loaded.sources.commandTimeoutSecs, ".env");
    });
    await t.step("config.json beats the default", () => {
      assert.equal(s.metricsIntervalSecs, 11);
      assert.equal(loaded.sources.metricsIntervalSecs, "config.json");
    });
    await t.step("defaults fill the rest", () => {
      assert.equal(s.dashboardUrl, "http://localhost:5000");
      assert.equal(s.shutdownGraceSecs, 30);
      assert.deepEqual(s.allowedPathPrefixes, ["/tmp", "/var/tmp"]);
      assert.equal(loaded.sources.dashboardUrl, "default");
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("validation errors name the setting, its source and the bad value", async (t) => {
  const cases: Array<[string, Parameters<typeof loadSettings>[0], string]> = [
    [
      ".env",
      { roles: ["agent"], env: {}, cwd: tempDir({ ".env": "POLLING_TIMEOUT_SECS=abc\n" }) },
      'POLLING_TIMEOUT_SECS from .env must be a whole number of seconds from 1 to 31536000 (a year), got "abc"',
    ],
    [
      "environment",
      { roles: ["agent"], env: { DASHBOARD_URL: "ftp://x" }, cwd: tempDir() },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "ftp://x"',
    ],
    [
      "a URL without its scheme",
      { roles: ["operator"], env: { DASHBOARD_URL: "127.0.0.1:5000" }, cwd: tempDir() },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "127.0.0.1:5000": it has no scheme; give it as "http://127.0.0.1:5000" (or https://)',
    ],
    [
      "a port above 65535, which makes an http:// URL that does not parse",
      {
        roles: ["operator"],
        env: { DASHBOARD_URL: "http://dash.example:50000000" },
        cwd: tempDir(),
      },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "http://dash.example:50000000": its port 50000000 is above 65535',
    ],
    [
      "a host name and port without the scheme (a URL of the scheme localhost:)",
      { roles: ["agent"], env: {}, cwd: tempDir(), flags: { dashboardUrl: "localhost:5000/" } },
      'DASHBOARD_URL from flag --dashboard-url must be an http:// or https:// URL, got "localhost:5000/": it has no scheme; give it as "http://localhost:5000/" (or https://)',
    ],
    [
      "a path with the shell's ~, which nothing expands in .env",
      { roles: ["agent"], env: {}, cwd: tempDir({ ".env": "STATE_DIR=~/status-state\n" }) },
      'STATE_DIR from .env must be a directory path, got "~/status-state": a leading ~ is not expanded here (only a shell expands it, and not after = or in quotes); give the path in full, e.g. "/home/you/...", or "./~..." for a name that starts with ~',
    ],
    [
      "a path with the shell's ~ in config.json",
      { roles: ["server"], env: {}, cwd: tempDir({ "config.json": '{"db": "~"}' }) },
      'DB from config.json must be a file path or a postgres:// URL, got "~": a leading ~ is not expanded here (only a shell expands it, and not after = or in quotes); give the path in full, e.g. "/home/you/...", or "./~..." for a name that starts with ~',
    ],
    [
      "a dashboard URL copied from an API path",
      {
        roles: ["operator"],
        env: { DASHBOARD_URL: "http://127.0.0.1:5000/api/v1/commands" },
        cwd: tempDir(),
      },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "http://127.0.0.1:5000/api/v1/commands": its path holds "/api/v1/commands", which status adds to the dashboard\'s base URL itself; give the base URL: "http://127.0.0.1:5000"',
    ],
    [
      "a dashboard URL ending in /api behind a proxy's prefix",
      {
        roles: ["agent"],
        env: { DASHBOARD_URL: "https://ops.example/status/api/" },
        cwd: tempDir(),
      },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "https://ops.example/status/api/": its path holds "/api/", which status adds to the dashboard\'s base URL itself; give the base URL: "https://ops.example/status"',
    ],
    [
      "a URL's password is not shown",
      { roles: ["agent"], env: { DASHBOARD_URL: "ftp://ops:hunter22@x" }, cwd: tempDir() },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "ftp://ops:***@x"',
    ],
    [
      "a user name or password in the dashboard's URL",
      { roles: ["operator"], env: { DASHBOARD_URL: "https://ops:hunter22@x" }, cwd: tempDir() },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "https://ops:***@x": a user name or password in it would be sent in the Authorization header the token needs, and every request refused; leave them out',
    ],
    [
      "a user name alone",
      { roles: ["agent"], env: { DASHBOARD_URL: "http://ops@x:5000" }, cwd: tempDir() },
      'DASHBOARD_URL from the environment must be an http:// or https:// URL, got "http://ops@x:5000": a user name or password in it would be sent in the Authorization header the token needs, and every request refused; leave them out',
    ],
    [
      "flag",
      { roles: ["agent"], env: {}, cwd: tempDir(), flags: { commandTimeoutSecs: "0" } },
      'COMMAND_TIMEOUT_SECS from flag --command-timeout-secs must be a whole number of seconds from 1 to 31536000 (a year), got "0"',
    ],
    [
      "config.json",
      {
        roles: ["agent"],
        env: {},
        cwd: tempDir({ "config.json": '{"polling_backoff_secs": -1}' }),
      },
      "POLLING_BACKOFF_SECS from config.json must be a whole number of seconds from 1 to 31536000 (a year), got -1",
    ],
    [
      "config.json number beyond a double",
      {
        roles: ["agent"],
        env: {},
        cwd: tempDir({ "config.json": '{"polling_timeout_secs": 1e400}' }),
      },
      "POLLING_TIMEOUT_SECS from config.json must be a whole number of seconds from 1 to 31536000 (a year), got Infinity (a number beyond the range of a double)",
    ],
    [
      "agent id",
      { roles: ["agent"], env: { AGENT_ID: "bad id!" }, cwd: tempDir() },
      'AGENT_ID from the environment must be 1–128 characters of A-Z a-z 0-9 . _ : -, not only dots, got "bad id!"',
    ],
    [
      "boolean",
      { roles: ["server"], env: { WAIT_REQUIRE_SIGNATURE: "maybe" }, cwd: tempDir() },
      'WAIT_REQUIRE_SIGNATURE from the environment must be true or false (or yes/no, on/off, 1/0), got "maybe"',
    ],
    [
      "port",
      { roles: ["server"], env: {}, cwd: tempDir(), flags: { port: "70000" } },
      'PORT from flag --port must be a port number from 0 to 65535, got "70000"',
    ],
    [
      "log level",
      { roles: ["log"], env: { LOG_LEVEL: "loud" }, cwd: tempDir() },
      'LOG_LEVEL from the environment must be one of "trace", "debug", "info", "warning", "error", "fatal", got "loud"',
    ],
    [
      "path prefix",
      { roles: ["exec"], env: { ALLOWED_PATH_PREFIXES: "/tmp,relative" }, cwd: tempDir() },
      'ALLOWED_PATH_PREFIXES from the environment must be a comma-separated list of absolute paths, got "/tmp,relative": "relative" must be an absolute path',
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, () => {
      try {
        assert.throws(() => loadSettings(options), (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.message, message);
          return true;
        });
      } finally {
        Deno.removeSync(options.cwd!, { recursive: true });
      }
    });
  }
});

Deno.test("a dashboard URL with a proxy's path prefix loads as it is", () => {
  for (
    const url of [
      "https://ops.example/status",
      "https://ops.example/apis/",
      "https://ops.example/api/fleet/",
      "http://h:5000/",
    ]
  ) {
    const { settings } = loadSettings({
      roles: ["operator"],
      env: { DASHBOARD_URL: url },
      cwd: tempDir(),
    });
    assert.equal(settings.dashboardUrl, url);
  }
});

Deno.test("a dashboard URL whose query, fragment or spaces would be dropped or mangled, whose port is 0 or whose IPv6 address has no brackets is refused", async (t) => {
  const cases: Array<[string, string, string]> = [
    [
      "a query",
      "http://h:5000/?token=x",
      'its query "?token=x" would never be sent (status adds its own path and query to the base URL); give the base URL without it: "http://h:5000/"',
    ],
    [
      "an empty query",
      "https://ops.example/status?",
      'its query "?" would never be sent (status adds its own path and query to the base URL); give the base URL without it: "https://ops.example/status"',
    ],
    [
      "a fragment",
      "http://h:5000/#console",
      'its fragment "#console" would never be sent (status adds its own path and query to the base URL); give the base URL without it: "http://h:5000/"',
    ],
    [
      "a space in the path",
      "http://h:5000/status panel",
      "it holds a space, which no URL does; leave it out (or write it as %20 in a path)",
    ],
    [
      "port 0 (PORT=0 picks a free port; nothing listens on 0)",
      "http://127.0.0.1:0",
      'port 0 is no port anything listens on; give the port the server listens on (a dashboard started with PORT=0 prints it: "listening on http://...")',
    ],
    [
      "an IPv6 address without its brackets",
      "http://::1:5000",
      'an IPv6 address goes in brackets, with the port after them: "http://[::1]:5000"',
    ],
    [
      "a control character",
      "http://h:5000\u0000",
      'it holds the control character "\\u0000"; leave it out',
    ],
  ];
  for (const [name, url, why] of cases) {
    await t.step(name, () => {
      assert.throws(
        () =>
          loadSettings({
            roles: ["operator"],
            env: {},
            cwd: tempDir({ "config.json": JSON.stringify({ dashboard_url: url }) }),
          }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(
            error.message,
            `DASHBOARD_URL from config.json must be an http:// or https:// URL, got ${
              JSON.stringify(url)
            }: ${why}`,
          );
          return true;
        },
      );
    });
  }
  await t.step("spaces around it are still trimmed", () => {
    const { settings } = loadSettings({
      roles: ["operator"],
      env: { DASHBOARD_URL: " http://h:5000/status " },
      cwd: tempDir(),
    });
    assert.equal(settings.dashboardUrl, "http://h:5000/status");
  });
});

Deno.test("a secret's bad value is not repeated in the error, but where a good one comes from is", () => {
  const cwd = tempDir();
  try {
    assert.throws(
      () => loadSettings({ roles: ["agent"], env: { AGENT_TOKEN: "short-secret" }, cwd }),
      (error: Error) => {
        assert.equal(
          error.message,
          "AGENT_TOKEN from the environment must be a token of 16 to 1024 printable ASCII " +
            'characters, without spaces, got a value of 12 characters; give the token "status ' +
            'agents add <id>" printed for this agent (or a new one from "status agents rotate <id>")',
        );
        return true;
      },
    );
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a secret in config.json that is not a string is told so, not its length", () => {
  // A token of 20 digits was "a value of 20 characters", which a token of 16 to 1024 may be.
  const cwd = tempDir({ "config.json": '{"agent_token": 12345678901234567890}' });
  try {
    assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), {
      message:
        "AGENT_TOKEN from config.json must be a token of 16 to 1024 printable ASCII characters, without spaces, " +
        'got a JSON number, not a string; give the token "status agents add <id>" printed for ' +
        'this agent (or a new one from "status agents rotate <id>")',
    });
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a config.json written for the original Status Panel agent loads", () => {
  const cwd = tempDir({
    "config.json": JSON.stringify({
      domain: "example.com",
      subdomains: { app: "app.example.com" },
      apps_info: "nginx-1.25,postgres-16",
      reqdata: { email: "ops@example.com" },
      ssl: "letsencrypt",
      dashboard_url: "https://dash.example.com",
    }),
  });
  try {
    const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
    assert.equal(loaded.settings.dashboardUrl, "https://dash.example.com");
    assert.deepEqual(loaded.ignoredKeys.sort(), [
      "apps_info",
      "domain",
      "reqdata",
      "ssl",
      "subdomains",
    ]);
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("absent default files are not an error, absent named files are", async (t) => {
  const cwd = tempDir();
  try {
    await t.step("no ./.env and no ./config.json", () => {
      const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
      assert.deepEqual(loaded.files, []);
      assert.equal(loaded.settings.pollingTimeoutSecs, 30);
    });
    await t.step("--config naming a missing file", () => {
      assert.throws(
        () => loadSettings({ roles: ["agent"], env: {}, cwd, configPath: `${cwd}/nope.json` }),
        { name: "ConfigError", message: `${cwd}/nope.json does not exist (given by --config)` },
      );
    });
    await t.step("a ./config.json or ./.env that is a symlink leading nowhere", () => {
      // It was skipped as absent: an agent started without the token it names, in dev mode.
      for (const name of ["config.json", ".env"]) {
        Deno.symlinkSync(`${cwd}/missing/${name}`, `${cwd}/${name}`);
        try {
          assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), {
            name: "ConfigError",
            message: `${cwd}/${name} is a symlink to ${cwd}/missing/${name}, which does not exist`,
          });
        } finally {
          Deno.removeSync(`${cwd}/${name}`);
        }
      }
    });
    await t.step("--env-file naming a missing file", () => {
      assert.throws(
        () => loadSettings({ roles: ["agent"], env: {}, cwd, envFilePath: `${cwd}/nope.env` }),
        { name: "ConfigError", message: `${cwd}/nope.env does not exist (given by --env-file)` },
      );
    });
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test({
  name: "a .env or config.json another user put in a directory every user may write is refused",
  // Only root can give a file to another user.
  ignore: Deno.uid() !== 0,
}, async (t) => {
  // Run from /tmp, a .env that any local user had left there sent the operator's admin token
  // to that user's server (its DASHBOARD_URL), and set an agent's ALLOWED_PROGRAMS.
  const cwd = tempDir();
  Deno.chmodSync(cwd, 0o1777);
  try {
    for (
      const [name, text] of [
        [".env", "DASHBOARD_URL=http://attacker.example:5000\n"],
        ["config.json", '{"dashboard_url": "http://attacker.example:5000"}'],
      ]
    ) {
      await t.step(`${name}, read by default and named`, () => {
        const path = `${cwd}/${name}`;
        Deno.writeTextFileSync(path, text);
        Deno.chownSync(path, 65534, 65534);
        const named = name === ".env" ? { envFilePath: path } : { configPath: path };
        for (const [label, options] of [[name, {}], [path, named]] as const) {
          assert.throws(
            () => loadSettings({ roles: ["operator"], env: {}, cwd, ...options }),
            {
              name: "ConfigError",
              message: `${label} is not read: ${path} belongs to uid 65534, not to this user ` +
                `(uid 0), in ${cwd}, where every user may write (another user may have put it ` +
                "there to choose the dashboard that gets this user's tokens, or what commands " +
                "may run); remove it, or keep the settings files in a directory of your own",
            },
          );
        }
        // This user's own file there is read, and so is another user's in a directory of its own.
        Deno.chownSync(path, 0, 0);
        assert.equal(
          loadSettings({ roles: ["operator"], env: {}, cwd }).settings.dashboardUrl,
          "http://attacker.example:5000",
        );
        Deno.chownSync(path, 65534, 65534);
        Deno.chmodSync(cwd, 0o755);
        try {
          assert.equal(
            loadSettings({ roles: ["operator"], env: {}, cwd }).settings.dashboardUrl,
            "http://attacker.example:5000",
          );
        } finally {
          Deno.chmodSync(cwd, 0o1777);
          Deno.removeSync(path);
        }
      });
    }
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("broken files get a clear error", async (t) => {
  await t.step("config.json that is not JSON", () => {
    const cwd = tempDir({ "config.json": "{ nope" });
    try {
      assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), (e: Error) => {
        assert.match(e.message, /^config\.json is not valid JSON: /);
        return true;
      });
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
  await t.step("config.json's JSON error says where, not what the file holds there", () => {
    // JSON.parse's message quoted the text around the fault: the first ten characters of a token
    // left unquoted ('..."t_token": abcSECRETt"... is not valid JSON').
    const cases: [string, string][] = [
      [
        '{"agent_id": "web-1", "agent_token": abcSECRETtoken123456789}',
        "an unexpected character at line 1, column 38 (a value that is not JSON: quote text)",
      ],
      [
        '{\n  "agent_id": "web-1",\n  "agent_token": SECRETtoken123456789\n}',
        "an unexpected character at line 3, column 18 (a value that is not JSON: quote text)",
      ],
      [
        '{"agent_id": "web-1", "x": S}',
        "an unexpected character at line 1, column 28 (a value that is not JSON: quote text)",
      ],
      ['{"agent_id" "web-1"}', "Expected ':' after property name at line 1, column 13"],
    ];
    for (const [text, why] of cases) {
      const cwd = tempDir({ "config.json": text });
      try {
        assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), (e: Error) => {
          assert.equal(e.message, `config.json is not valid JSON: ${why}`);
          assert.ok(!e.message.includes("SECRET"));
          return true;
        });
      } finally {
        Deno.removeSync(cwd, { recursive: true });
      }
    }
  });
  await t.step("config.json with what JSON does not allow says what and where", () => {
    const cases: [string, string][] = [
      ["", "config.json is empty; write {} in it for no settings, or remove it"],
      [" \r\n", "config.json is empty; write {} in it for no settings, or remove it"],
      // It was said to hold NAME=value lines, as a .env does.
      [
        "# the agent's settings\n",
        "config.json holds only comments, which JSON does not allow; write {} in it",
      ],
      [
        '{\n  // the dashboard\n  "dashboard_url": "http://127.0.0.1:5000"\n}\n',
        "config.json line 2 has a comment, which JSON does not allow; remove it",
      ],
      [
        '{\n  "agent_id": "a//b", /* id */\n  "dashboard_url": "http://x"\n}',
        "config.json line 2 has a comment, which JSON does not allow; remove it",
      ],
      [
        '{\r\n  "agent_id": "web-1",\r\n  "allowed_programs": ["ls", "df",]\r\n}',
        "config.json line 3 has a comma after the last entry, which JSON does not allow; remove it",
      ],
      [
        '{\n  "agent_id": "web-1,}",\n  "deployment_hash": "x",\n\n}\n',
        "config.json line 3 has a comma after the last entry, which JSON does not allow; remove it",
      ],
      // A .env or YAML file saved as config.json: JSON.parse said 'Unexpected token 'A',
      // "AGENT_ID=w"... is not valid JSON'.
      [
        "# the agent\nAGENT_ID=web-1\r\nexport DASHBOARD_URL=http://127.0.0.1:5000\n",
        "config.json holds NAME=value lines, as a .env file does, not JSON; give it with " +
        '--env-file, or write it as JSON: {"agent_id": "web-1", ...}',
      ],
      [
        "agent_id: web-1\ndashboard_url: http://127.0.0.1:5000\n",
        'config.json holds "key: value" lines, as YAML does, not JSON; write it as JSON: ' +
        '{"agent_id": "web-1", ...}',
      ],
    ];
    for (const [text, message] of cases) {
      const cwd = tempDir({ "config.json": text });
      try {
        assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), { message });
      } finally {
        Deno.removeSync(cwd, { recursive: true });
      }
    }
  });
  await t.step("config.json holding an array", () => {
    const cwd = tempDir({ "config.json": "[1]" });
    try {
      assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), {
        message: "config.json must hold a JSON object",
      });
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
  await t.step(".env with a line that is not NAME=value", () => {
    assert.throws(() => parseEnvFile("A=1\nthis is not a setting\n", ".env"), {
      message: '.env line 2 must be NAME=value, got "this…" (the rest is not shown)',
    });
  });
  await t.step(".env's refused line is shown without what may be a secret", () => {
    // The whole line was quoted: a token pasted alone, or after a colon, was printed.
    const token = "kq3VxT9pZr8LmN2bWc7YdF4hJs6Gt1Ae";
    for (
      const [line, shown] of [
        [token, `a line of ${token.length} characters without "=" (not shown: it may be a secret)`],
        [`AGENT_TOKEN: ${token}`, '"AGENT_TOKEN:…" (the rest is not shown)'],
        [`export AGENT_TOKEN ${token}`, '"export…" (the rest is not shown)'],
      ]
    ) {
      assert.throws(() => parseEnvFile(`A=1\n${line}\n`, ".env"), (error: Error) => {
        assert.equal(error.message, `.env line 2 must be NAME=value, got ${shown}`);
        assert.ok(!error.message.includes(token.slice(0, 8)));
        return true;
      });
    }
  });
  await t.step(".env with an unclosed quote names the line it opens on and what to do", () => {
    assert.throws(() => parseEnvFile("# c\nA=1\nB='open\nC=3\n", ".env"), {
      message: ".env line 3 opens a ' quote in the value of B that no later line closes; " +
        "end the value with ' (or remove the opening ')",
    });
  });
  await t.step(".env with comments, export and quotes parses", () => {
    assert.deepEqual(parseEnvFile("# c\nexport A=1\nB='x y'\n\nC=\"multi\nline\"\n", ".env"), {
      A: "1",
      B: "x y",
      C: "multi\nline",
    });
  });
});

Deno.test("lists from the environment and arrays from config.json", () => {
  const cwd = tempDir({
    "config.json": JSON.stringify({ allowed_programs: ["echo", "/usr/bin/uptime"] }),
  });
  try {
    const fromJson = loadSettings({ roles: ["exec"], env: {}, cwd });
    assert.deepEqual(fromJson.settings.allowedPrograms, ["echo", "/usr/bin/uptime"]);
    const fromEnv = loadSettings({
      roles: ["exec"],
      env: { ALLOWED_PROGRAMS: "echo, ls ,," },
      cwd,
    });
    assert.deepEqual(fromEnv.settings.allowedPrograms, ["echo", "ls"]);
    // Spaces around an array's items are trimmed as the environment's are: "/tmp " matched no
    // path, " A=1" was refused as no NAME=value.
    const spaced = loadSettings({
      roles: ["exec"],
      env: {},
      cwd: tempDir({
        "config.json": JSON.stringify({
          allowed_programs: [" echo", "ls "],
          allowed_path_prefixes: ["/tmp ", " /var/tmp"],
          command_env: [" A=1 "],
        }),
      }),
    });
    assert.deepEqual(spaced.settings.allowedPrograms, ["echo", "ls"]);
    assert.deepEqual(spaced.settings.allowedPathPrefixes, ["/tmp", "/var/tmp"]);
    assert.deepEqual(spaced.settings.commandEnv, ["A=1"]);
    // An item of spaces only is still refused, as an empty one is.
    assert.throws(
      () =>
        loadSettings({
          roles: ["exec"],
          env: {},
          cwd: tempDir({ "config.json": JSON.stringify({ allowed_programs: ["echo", "  "] }) }),
        }),
      /ALLOWED_PROGRAMS from config\.json must be a comma-separated list of program names or absolute paths, got \["echo"," {2}"\]$/,
    );
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a program or path prefix the exec policy would refuse is refused at load, naming the setting and its source", async (t) => {
  // The policy refused them only as the agent built its executor: 'Allowed program "echo ls" must
  // be ...', naming neither ALLOWED_PROGRAMS nor where it came from.
  const cases: Array<[Record<string, string>, string]> = [
    [
      { ALLOWED_PROGRAMS: "echo ls" },
      'ALLOWED_PROGRAMS from the environment must be a comma-separated list of program names or absolute paths, got "echo ls": "echo ls" must be a bare name (A-Z a-z 0-9 . _ + -) or an absolute path; separate programs with commas',
    ],
    [
      { ALLOWED_PROGRAMS: "echo,./ls" },
      'ALLOWED_PROGRAMS from the environment must be a comma-separated list of program names or absolute paths, got "echo,./ls": "./ls" must be a bare name (A-Z a-z 0-9 . _ + -) or an absolute path',
    ],
    [
      { ALLOWED_PROGRAMS: "/usr/bin/../sbin/reboot" },
      'ALLOWED_PROGRAMS from the environment must be a comma-separated list of program names or absolute paths, got "/usr/bin/../sbin/reboot": "/usr/bin/../sbin/reboot" has a ".." segment',
    ],
    [
      { ALLOWED_PATH_PREFIXES: "/tmp /var/tmp" },
      'ALLOWED_PATH_PREFIXES from the environment must be a comma-separated list of absolute paths, got "/tmp /var/tmp": "/tmp /var/tmp" holds a space before a /; separate prefixes with commas',
    ],
    [
      { ALLOWED_PATH_PREFIXES: "/tmp/../etc" },
      'ALLOWED_PATH_PREFIXES from the environment must be a comma-separated list of absolute paths, got "/tmp/../etc": "/tmp/../etc" has a ".." segment',
    ],
  ];
  for (const [env, message] of cases) {
    await t.step(JSON.stringify(env), () => {
      assert.throws(
        () => loadSettings({ roles: ["exec"], env, cwd: tempDir() }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.message, message);
          return true;
        },
      );
    });
  }
  await t.step("a space inside a name of a directory is still taken", () => {
    const { settings } = loadSettings({
      roles: ["exec"],
      env: { ALLOWED_PATH_PREFIXES: "/srv/my files,/tmp" },
      cwd: tempDir(),
    });
    assert.deepEqual(settings.allowedPathPrefixes, ["/srv/my files", "/tmp"]);
  });
});

Deno.test("without read permission the default files are skipped with a notice", () => {
  const cwd = tempDir({ ".env": "POLLING_TIMEOUT_SECS=abc\n" });
  try {
    const loaded = loadSettings({ roles: ["agent"], env: {}, cwd, canRead: () => false });
    assert.equal(loaded.settings.pollingTimeoutSecs, 30);
    assert.deepEqual(loaded.notices, [
      ".env is not read without --allow-read; add --allow-read to use it",
      "config.json is not read without --allow-read; add --allow-read to use it",
    ]);
    assert.throws(
      () =>
        loadSettings({
          roles: ["agent"],
          env: {},
          cwd,
          canRead: () => false,
          configPath: "c.json",
        }),
      { message: "cannot read c.json without --allow-read (given by --config)" },
    );
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("settings that bound each other are refused together, naming both", async (t) => {
  const cwd = tempDir({ "config.json": '{"polling_backoff_max_secs": 10}' });
  await t.step("a first back-off above the largest", () => {
    assert.throws(
      () => loadSettings({ roles: ["agent"], env: {}, cwd, flags: { pollingBackoffSecs: "100" } }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(
          error.message,
          "POLLING_BACKOFF_SECS (100, from flag --polling-backoff-secs) must not be above " +
            "POLLING_BACKOFF_MAX_SECS (10, from config.json): lower POLLING_BACKOFF_SECS or raise " +
            "POLLING_BACKOFF_MAX_SECS",
        );
        return true;
      },
    );
  });
  await t.step("a default deadline above the largest, against the default largest", () => {
    assert.throws(
      () => loadSettings({ roles: ["exec"], env: { COMMAND_TIMEOUT_SECS: "5000" }, cwd }),
      /^ConfigError: COMMAND_TIMEOUT_SECS \(5000, from the environment\) must not be above COMMAND_TIMEOUT_MAX_SECS \(3600, from the default\)/,
    );
  });
  await t.step("equal values are fine", () => {
    const { settings } = loadSettings({
      roles: ["agent"],
      env: { COMMAND_TIMEOUT_SECS: "60", COMMAND_TIMEOUT_MAX_SECS: "60" },
      cwd,
      flags: { pollingBackoffSecs: "10" },
    });
    assert.equal(settings.commandTimeoutSecs, 60);
    assert.equal(settings.pollingBackoffSecs, 10);
  });
  await t.step("the dashboard alone does not read the largest deadline", () => {
    const { settings } = loadSettings({
      roles: ["server"],
      env: { COMMAND_TIMEOUT_SECS: "5000" },
      cwd,
    });
    assert.equal(settings.commandTimeoutSecs, 5000);
  });
});

Deno.test(".env and config.json: a byte order mark is skipped, a line not read as it looks is refused", async (t) => {
  await t.step("a BOM before the first line of .env", () => {
    assert.deepEqual(parseEnvFile("\uFEFFCOMMAND_TIMEOUT_SECS=1\nB=2\n", ".env"), {
      COMMAND_TIMEOUT_SECS: "1",
      B: "2",
    });
  });
  await t.step("a BOM before config.json", () => {
    const cwd = tempDir({ "config.json": '\uFEFF{"command_timeout_secs": 7}' });
    const loaded = loadSettings({ roles: ["exec"], env: {}, cwd });
    assert.equal(loaded.settings.commandTimeoutSecs, 7);
  });
  await t.step("spaces, tabs and export as the parser reads them", () => {
    assert.deepEqual(parseEnvFile("  A=1\n\tB = 2\nexport C=3\n  export  D=4\n", ".env"), {
      A: "1",
      B: "2",
      C: "3",
      D: "4",
    });
  });
  for (
    const [text, message] of [
      [
        "A=1\n\u00A0COMMAND_TIMEOUT_SECS=1\n",
        /^b\.env line 2 must be NAME=value, got .*COMMAND_TIMEOUT_SECS=…" \(the rest is not shown\) \(it holds U\+00A0;/,
      ],
      [
        "export\tCOMMAND_TIMEOUT_SECS=1\n",
        /^b\.env line 1 must be NAME=value, got "export\\tCOMMAND_TIMEOUT_SECS=…" \(the rest is not shown\) \(it holds a tab;/,
      ],
      ["\uFEFF\uFEFFA=1\n", /^b\.env line 1 must be NAME=value.*U\+FEFF/],
      // Classic Mac OS line endings: one line, said to be "NAME=value" when it looked like one.
      [
        "DASHBOARD_URL=http://127.0.0.1:5000\rAGENT_ID=web-1\r",
        /^b\.env line 1 holds a carriage return \(\\r\) that no line feed follows, which ends no line here; save the file with LF \(or CRLF\) line endings$/,
      ],
    ] as const
  ) {
    await t.step(`refused: ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseEnvFile(text, "b.env"), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("a setting's value in .env that the parser would cut short is refused, naming the line", async (t) => {
  const cut = [
    // An unquoted # right after other characters starts a comment: the token would be "abcdefghij".
    [
      "STATUS_ADMIN_TOKEN=abcdefghij#klmnopqrstuvwxyz\n",
      '.env line 1 sets STATUS_ADMIN_TOKEN to a value with a # right after other characters, where a comment starts: what follows it would not be read; quote the value ("...") to keep the #, or put a space before it to begin a comment',
    ],
    [
      "AGENT_ID=a\nCOMMAND_ENV=A=1,B=x#y\n",
      '.env line 2 sets COMMAND_ENV to a value with a # right after other characters, where a comment starts: what follows it would not be read; quote the value ("...") to keep the #, or put a space before it to begin a comment',
    ],
    // A quoted value ends at its closing quote: "-1" would be dropped.
    [
      'AGENT_ID="web"-1\n',
      '.env line 1 sets AGENT_ID to a value with more after its closing ", which would not be read; put the whole value inside the quotes',
    ],
    [
      "AGENT_ID='web' 1  \n",
      ".env line 1 sets AGENT_ID to a value with more after its closing ', which would not be read; put the whole value inside the quotes",
    ],
  ];
  for (const [text, message] of cut) {
    await t.step(`refused: ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => loadSettings({ roles: ["agent", "server"], env: {}, cwd: tempDir({ ".env": text }) }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.message, message);
          // A secret's value is not shown.
          assert.ok(!error.message.includes("klmno"));
          return true;
        },
      );
    });
  }
  await t.step("only the settings read are held to it (status stop reads PID_FILE alone)", () => {
    const cwd = tempDir({
      ".env": "AGENT_TOKEN=abcdefghij#klmnopqrstuvwxyz\nPID_FILE=/run/a.pid\n",
    });
    const { settings } = loadSettings({ roles: ["agent"], only: ["pidFile"], env: {}, cwd });
    assert.equal(settings.pidFile, "/run/a.pid");
  });
  await t.step(
    "comments after a space or a closing quote, and a quoted #, are read as meant",
    () => {
      const cwd = tempDir({
        ".env": [
          "AGENT_ID=web-1 # the id",
          'DEPLOYMENT_HASH="prod"  # the deployment',
          "AGENT_TOKEN='abcdefghij#klmnopqrstuvwxyz'",
          'AGENT_LABELS="zone=eu"#a comment',
          "POLLING_TIMEOUT_SECS=10\t# seconds",
          // Other programs' variables are read as the parser reads them, without a word.
          "OTHER_PROGRAM_COLOUR=#fff",
          "OTHER_PROGRAM_URL=http://x/#y",
          "",
        ].join("\n"),
      });
      const { settings } = loadSettings({ roles: ["agent"], env: {}, cwd });
      assert.equal(settings.agentId, "web-1");
      assert.equal(settings.deploymentHash, "prod");
      assert.equal(settings.agentToken, "abcdefghij#klmnopqrstuvwxyz");
      assert.deepEqual(settings.agentLabels, { zone: "eu" });
      assert.equal(settings.pollingTimeoutSecs, 10);
    },
  );
});

Deno.test("settings grouped under a key of their own in config.json are warned about, not left silently", () => {
  const cwd = tempDir({
    "config.json": JSON.stringify({
      agent_id: "web-1",
      agent: { polling_timeout_secs: 10, deployment_hash: "prod", colour: "blue" },
      dashboard: { port: 6000 },
      // Not settings inside: an unknown key as any other.
      extras: { colour: "blue" },
      // The Status Panel's own keys are left alone, whatever they hold.
      reqdata: { port: 1 },
    }),
  });
  const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
  assert.equal(loaded.settings.pollingTimeoutSecs, 30);
  assert.deepEqual(loaded.warnings, [
    'config.json key "agent" holds "polling_timeout_secs", "deployment_hash", which are not read ' +
    "there: settings are read from the top level of config.json only; move them out of " +
    '"agent"',
    'config.json key "dashboard" holds "port", which is not read there: settings are read from ' +
    'the top level of config.json only; move it out of "dashboard"',
  ]);
  // Said once: not again as an unknown key with a "did you mean".
  assert.deepEqual(loaded.unknownKeys, [{ key: "extras" }]);
});

Deno.test("unknown config.json keys cost little however long or many they are", async (t) => {
  const { nearest, editDistance } = await import("../../src/config/suggest.ts");
  await t.step("the edit distance is unchanged", () => {
    assert.equal(editDistance("lst", "list"), 1);
    assert.equal(editDistance("enqeue", "enqueue"), 1);
    assert.equal(editDistance("ab", "ba"), 1);
    assert.equal(editDistance("", "abc"), 3);
    assert.equal(editDistance("kitten", "sitting"), 3);
  });
  await t.step("a key of two million characters is ruled out by its length", () => {
    // (It took 15 s when every candidate's edit distance was computed; no clock is read here.)
    assert.equal(nearest("x".repeat(2_000_000), ["polling_timeout_secs", "port"]), undefined);
  });
  await t.step("many unknown keys: suggestions for the first few only", () => {
    const keys: Record<string, number> = { polling_timout_secs: 3 };
    for (let i = 0; i < 50_000; i++) keys[`polling_timeout_secs_${i}`] = 1;
    const loaded = loadSettings({
      roles: ["agent"],
      env: {},
      cwd: tempDir({ "config.json": JSON.stringify(keys) }),
    });
    assert.equal(loaded.unknownKeys.length, 50_001);
    assert.deepEqual(loaded.unknownKeys[0], {
      key: "polling_timout_secs",
      suggestion: "polling_timeout_secs",
    });
    assert.equal(loaded.unknownKeys.filter((k) => k.suggestion !== undefined).length, 10);
  });
});

Deno.test("errors say the range of a duration, and why labels were refused", async (t) => {
  await t.step("a duration beyond a year", () => {
    assert.throws(
      () =>
        loadSettings({
          roles: ["agent"],
          env: { POLLING_TIMEOUT_SECS: "99999999999" },
          cwd: tempDir(),
        }),
      {
        message: "POLLING_TIMEOUT_SECS from the environment must be a whole number of seconds " +
          'from 1 to 31536000 (a year), got "99999999999"',
      },
    );
  });
  await t.step("a label key given twice", () => {
    assert.throws(
      () => loadSettings({ roles: ["agent"], env: { AGENT_LABELS: "a=b,a=c" }, cwd: tempDir() }),
      {
        message: "AGENT_LABELS from the environment must be key=value pairs separated by commas " +
          '(keys: 1–63 of A-Za-z0-9._/-), got "a=b,a=c": label a is given twice',
      },
    );
  });
});

Deno.test("an empty value in .env names the file, the line and the setting, and the ways out", async (t) => {
  // As a line of examples/.env.example uncommented as it is: "AGENT_TOKEN from .env must be a
  // token ..., got a value of 0 characters", naming no line and neither way out.
  const cases: Array<[string, string, string]> = [
    [
      "a token, left unset without the line",
      "# settings\nAGENT_ID=web-1\nAGENT_TOKEN=\n",
      ".env line 3 sets AGENT_TOKEN to an empty value, and it must be a token of 16 to 1024 " +
      "printable ASCII characters, without spaces: give it a value or remove the line to leave " +
      "it unset",
    ],
    [
      "a number with a default, quoted empty, on the last of two lines",
      'POLLING_TIMEOUT_SECS=30\nexport POLLING_TIMEOUT_SECS=""\n',
      ".env line 2 sets POLLING_TIMEOUT_SECS to an empty value, and it must be a whole number " +
      "of seconds from 1 to 31536000 (a year): give it a value or remove the line to use the " +
      "default",
    ],
  ];
  for (const [name, text, message] of cases) {
    await t.step(name, () => {
      const cwd = tempDir({ ".env": text });
      try {
        assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), {
          name: "ConfigError",
          message,
        });
      } finally {
        Deno.removeSync(cwd, { recursive: true });
      }
    });
  }
  await t.step("a list setting's empty value is an empty list", () => {
    const cwd = tempDir({ ".env": "COMMAND_ENV=\n" });
    try {
      const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
      assert.deepEqual(loaded.settings.commandEnv, []);
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
});

Deno.test("a setting on two lines of .env is warned about, naming the line read", () => {
  // As after appending `status agents add`'s two lines to a .env that already had them.
  const cwd = tempDir({
    ".env": "AGENT_ID=old\nOTHER=1\nOTHER=2\nAGENT_ID=web-1\nexport AGENT_ID=web-2\n",
  });
  try {
    const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
    assert.equal(loaded.settings.agentId, "web-2");
    assert.deepEqual(loaded.warnings, [
      ".env sets AGENT_ID on lines 1, 4, 5; the last one (line 5) is read",
    ]);
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a settings file that holds a token and other users may read is warned about", async (t) => {
  const dir = tempDir({
    ".env": "AGENT_TOKEN=" + "t".repeat(43) + "\n",
    "config.json": JSON.stringify({ status_admin_token: "a".repeat(43), agent_id: "web-1" }),
  });
  try {
    await t.step("readable by others: one warning per file, naming the secrets", () => {
      Deno.chmodSync(`${dir}/.env`, 0o644);
      Deno.chmodSync(`${dir}/config.json`, 0o640);
      const loaded = loadSettings({ roles: ["agent"], cwd: dir, env: {} });
      assert.deepEqual(loaded.warnings, [
        ".env holds AGENT_TOKEN and users other than its owner may read it (mode 0644); make " +
        "it readable by its owner only: chmod 600 .env",
        "config.json holds STATUS_ADMIN_TOKEN and users other than its owner may read it " +
        "(mode 0640); make it readable by its owner only: chmod 600 config.json",
      ]);
    });
    await t.step("its owner's only, or no secret in it: no warning", () => {
      Deno.chmodSync(`${dir}/.env`, 0o600);
      Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify({ agent_id: "web-1" }));
      Deno.chmodSync(`${dir}/config.json`, 0o644);
      assert.deepEqual(loadSettings({ roles: ["agent"], cwd: dir, env: {} }).warnings, []);
    });
    await t.step("DB holding a PostgreSQL password, as DATABASE_URL would", () => {
      // The same URL as DATABASE_URL was warned about; as DB it went without a word.
      Deno.writeTextFileSync(`${dir}/.env`, "DB=postgres://status:secret@db:5432/status\n");
      Deno.chmodSync(`${dir}/.env`, 0o644);
      Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify({ db: "./status.db" }));
      assert.deepEqual(loadSettings({ roles: ["server"], cwd: dir, env: {} }).warnings, [
        ".env holds DB (with a database password) and users other than its owner may read it " +
        "(mode 0644); make it readable by its owner only: chmod 600 .env",
      ]);
      // A file path, or a URL without a password, is no secret.
      Deno.writeTextFileSync(`${dir}/.env`, "DB=postgres://status@db:5432/status\n");
      assert.deepEqual(loadSettings({ roles: ["server"], cwd: dir, env: {} }).warnings, []);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("RESULT_RETENTION_DAYS is whole days from 0 (keep everything) to 3650", async (t) => {
  const load = (env: Record<string, string>, files: Record<string, string> = {}) =>
    loadSettings({ roles: ["server"], env, cwd: tempDir(files) }).settings.resultRetentionDays;
  await t.step("0 by default: nothing is deleted", () => {
    assert.equal(load({}), 0);
  });
  await t.step("from the environment, a flag and config.json", () => {
    assert.equal(load({ RESULT_RETENTION_DAYS: "90" }), 90);
    assert.equal(load({ RESULT_RETENTION_DAYS: "3650" }), 3650);
    assert.equal(
      loadSettings({
        roles: ["server"],
        env: {},
        cwd: tempDir(),
        flags: { resultRetentionDays: "30" },
      }).settings.resultRetentionDays,
      30,
    );
    assert.equal(load({}, { "config.json": '{"result_retention_days": 7}' }), 7);
  });
  await t.step("anything else is refused, naming the range", () => {
    for (const bad of ["-1", "3651", "1.5", "30d", ""]) {
      assert.throws(() => load({ RESULT_RETENTION_DAYS: bad }), {
        message: "RESULT_RETENTION_DAYS from the environment must be a whole number of days " +
          `from 0 (keep everything) to 3650, got "${bad}"`,
      }, bad);
    }
  });
});

Deno.test("a .env name near a setting's is warned about with the setting meant; others are not", () => {
  const cwd = tempDir({
    ".env": [
      "POLLING_TIMEOUT=10", // the setting is POLLING_TIMEOUT_SECS: it would stay 30
      "DASHBORD_URL=http://127.0.0.1:9",
      "agent_id=web-1",
      "NODE_ENV=production", // another program's: not a near miss
      "AGENT_ID=web-2",
    ].join("\n") + "\n",
  });
  try {
    const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
    assert.equal(loaded.settings.pollingTimeoutSecs, 30);
    assert.deepEqual(loaded.warnings, [
      ".env sets POLLING_TIMEOUT, which is not a setting of status; it is ignored (did you mean " +
      "POLLING_TIMEOUT_SECS?)",
      ".env sets DASHBORD_URL, which is not a setting of status; it is ignored (did you mean " +
      "DASHBOARD_URL?)",
      ".env sets agent_id, which is not a setting of status; it is ignored (did you mean " +
      "AGENT_ID?)",
    ]);
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("an environment variable near a setting's is warned about; other programs' are not", () => {
  const cwd = tempDir();
  try {
    const loaded = loadSettings({
      roles: ["agent"],
      env: {
        DASHBORD_URL: "http://127.0.0.1:9", // the setting would stay http://localhost:5000
        AGENT_TOKN: "0123456789abcdef0123", // and the agent would run unsigned
        POLLING_TIMEOUT_SEC: "10",
        // Names are read in capitals only: the setting would keep its default.
        dashboard_url: "http://127.0.0.1:9",
        AGENT_ID: "web-1",
        // What other programs set: none is a typo of a setting.
        COMMAND_MODE: "unix2003", // every macOS process (3 edits from COMMAND_CWD)
        PGPORT: "5432", // PostgreSQL's (2 edits from PORT: too short to tell)
        PGDATABASE: "status",
        SSH_AGENT_PID: "1",
        SSH_AUTH_SOCK: "/tmp/x",
        DENO_DIR: "/tmp/deno",
        LOGNAME: "ops",
        HOSTNAME: "web-1",
        LS_COLORS: "",
        NODE_ENV: "production",
        XDG_RUNTIME_DIR: "/run/user/0",
        http_proxy: "http://proxy:3128",
        no_proxy: "localhost",
      },
      cwd,
    });
    assert.equal(loaded.settings.dashboardUrl, "http://localhost:5000");
    assert.deepEqual(loaded.warnings, [
      "the environment sets DASHBORD_URL, which is not a setting of status; it is ignored (did " +
      "you mean DASHBOARD_URL?)",
      "the environment sets AGENT_TOKN, which is not a setting of status; it is ignored (did you " +
      "mean AGENT_TOKEN?)",
      "the environment sets POLLING_TIMEOUT_SEC, which is not a setting of status; it is ignored " +
      "(did you mean POLLING_TIMEOUT_SECS?)",
      "the environment sets dashboard_url, which is not a setting of status; it is ignored (did " +
      "you mean DASHBOARD_URL?)",
    ]);
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a COMMAND_ENV refused is shown with its names only: its values are commands' credentials", async (t) => {
  // "DB_PASSWORD=ab,cd" was refused quoting it whole: the password, from a file of mode 0600,
  // copied to the terminal and the journal.
  const cases: Array<[string, Parameters<typeof loadSettings>[0], string]> = [
    [
      "a value holding a comma, from the environment",
      { roles: ["exec"], env: { COMMAND_ENV: "TZ=UTC,DB_PASSWORD=se,cret" }, cwd: tempDir() },
      'COMMAND_ENV from the environment must be a comma-separated list of NAME=value, got "TZ=…,DB_PASSWORD=…,(4 characters without NAME=)" (values not shown): item 3 is not NAME=value (a value holding a comma is cut there: the items are separated by commas)',
    ],
    [
      "an item without a name, from config.json",
      {
        roles: ["exec"],
        env: {},
        cwd: tempDir({ "config.json": '{"command_env": ["API_KEY=k3y", "s3cret"]}' }),
      },
      'COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got "API_KEY=…,(6 characters without NAME=)" (values not shown): item 2 is not NAME=value',
    ],
    [
      // The executor refused it at start without naming the setting or its source.
      "an agent secret among the items, from the environment",
      { roles: ["exec"], env: { COMMAND_ENV: "TZ=UTC,agent_token=s3cret" }, cwd: tempDir() },
      'COMMAND_ENV from the environment must be a comma-separated list of NAME=value, got "TZ=…,agent_token=…" (values not shown): item 2 sets agent_token, an agent secret, which is never given to commands',
    ],
    [
      // It went to every command: a library one command left in /tmp ran inside every later one.
      "a variable the dynamic loader reads, from config.json",
      {
        roles: ["exec"],
        env: {},
        cwd: tempDir({ "config.json": '{"command_env": ["TZ=UTC", "LD_PRELOAD=/tmp/s3cret.so"]}' }),
      },
      'COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got "TZ=…,LD_PRELOAD=…" (values not shown): item 2 sets LD_PRELOAD, which is never given to commands: every program\'s dynamic loader (or C library) reads it and loads code from where it names, which the allowlist never sees (a library a command left under an allowed prefix would run in every later command); set it in a wrapper script that ALLOWED_PROGRAMS names by absolute path',
    ],
    [
      // It went to every command: a file one command left in /tmp ran first in every bash script.
      "a variable bash loads code from, from the environment",
      { roles: ["exec"], env: { COMMAND_ENV: "TZ=UTC,BASH_ENV=/tmp/s3cret.sh" }, cwd: tempDir() },
      'COMMAND_ENV from the environment must be a comma-separated list of NAME=value, got "TZ=…,BASH_ENV=…" (values not shown): item 2 sets BASH_ENV, which is never given to commands: bash runs the file it names before every script (a wrapper script\'s too), which the allowlist never sees (a file a command left under an allowed prefix would run in every later command that starts bash); set it in a wrapper script that ALLOWED_PROGRAMS names by absolute path',
    ],
    [
      "a variable python loads code from, from config.json",
      {
        roles: ["exec"],
        env: {},
        cwd: tempDir({ "config.json": '{"command_env": ["PYTHONPATH=/tmp/s3cret"]}' }),
      },
      'COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got "PYTHONPATH=…" (values not shown): item 1 sets PYTHONPATH, which is never given to commands: python looks for its modules first in the directories it names, which the allowlist never sees (a file a command left under an allowed prefix would run in every later command that starts python); set it in a wrapper script that ALLOWED_PROGRAMS names by absolute path',
    ],
    [
      // The executor refused it at start as 'Extra environment variable "DB_PASSWORD" must be a
      // string without NUL', naming neither the setting nor where it came from.
      "a value holding a NUL character, from config.json",
      {
        roles: ["exec"],
        env: {},
        cwd: tempDir({
          "config.json": '{"command_env": ["TZ=UTC", "DB_PASSWORD=s3\\u0000cret"]}',
        }),
      },
      'COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got "TZ=…,DB_PASSWORD=…" (values not shown): item 2 sets DB_PASSWORD to a value holding a NUL character, which no environment string can hold',
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => loadSettings(options), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.message, message);
        assert.doesNotMatch(error.message, /\bcret|s3cret|k3y|UTC/);
        return true;
      });
    });
  }
});

Deno.test("a COMMAND_ENV that takes more than a program may start with is a ConfigError naming it", () => {
  // Seventeen items of 131 000 bytes in config.json loaded, and every command failed with
  // "Argument list too long" (Linux bounds arguments and environment together, 2 MiB).
  const items = Array.from({ length: 17 }, (_, i) => `V${i}=`.padEnd(131000, "x"));
  const cwd = tempDir({ "config.json": JSON.stringify({ command_env: items }) });
  assert.throws(() => loadSettings({ roles: ["exec"], env: {}, cwd }), (error: Error) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(
      error.message,
      "COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got " +
        `"${items.map((_, i) => `V${i}=…`).join(",")}" (values not shown): its items take ` +
        `${17 * (131000 + 9)} bytes together (each as NAME=value in UTF-8, with its NUL and ` +
        `pointer), more than the ${MAX_EXTRA_ENV_BYTES} a command's environment may take beside ` +
        "its arguments, PATH, HOME and LANG: Linux starts no program whose arguments and " +
        "environment take more than 2 MiB (under the usual 8 MiB stack limit), and every command " +
        "would fail",
    );
    return true;
  });
  // One item alone too long was refused only as the executor started, naming neither the
  // setting nor where it came from.
  const long = ["TZ=UTC", "BIG=".padEnd(131072, "é")];
  assert.throws(
    () =>
      loadSettings({
        roles: ["exec"],
        env: {},
        cwd: tempDir({ "config.json": JSON.stringify({ command_env: long }) }),
      }),
    {
      name: "ConfigError",
      message: "COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got " +
        '"TZ=…,BIG=…" (values not shown): item 2 sets BIG, which is 262140 bytes long as ' +
        "NAME=value (UTF-8), more than the 131071 a program may be started with",
    },
  );
  // A name given twice counts once, as the later item wins.
  const twice = Array.from({ length: 17 }, () => `V=${"x".repeat(131000 - 2)}`);
  loadSettings({
    roles: ["exec"],
    env: {},
    cwd: tempDir({ "config.json": JSON.stringify({ command_env: twice }) }),
  });
});

Deno.test("a list setting given as something else in config.json is a ConfigError naming it", async (t) => {
  for (
    const [json, message] of [
      [
        { command_env: { A: "1" } },
        "COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got a JSON object, not a list (values not shown)",
      ],
      [
        { allowed_path_prefixes: ["/tmp", 5] },
        "ALLOWED_PATH_PREFIXES from config.json must be a comma-separated list of absolute " +
        'paths, got ["/tmp",5]',
      ],
      [
        { allowed_path_prefixes: true },
        "ALLOWED_PATH_PREFIXES from config.json must be a comma-separated list of absolute " +
        "paths, got true",
      ],
    ] as const
  ) {
    await t.step(JSON.stringify(json), () => {
      const cwd = tempDir({ "config.json": JSON.stringify(json) });
      try {
        assert.throws(() => loadSettings({ roles: ["exec"], env: {}, cwd }), (error: Error) => {
          assert.ok(error instanceof ConfigError, `${error.name}: ${error.message}`);
          assert.equal(error.message, message);
          return true;
        });
      } finally {
        Deno.removeSync(cwd, { recursive: true });
      }
    });
  }
  await t.step("lists as arrays and as strings still load", () => {
    const cwd = tempDir({
      "config.json": JSON.stringify({ command_env: ["A=1"], allowed_path_prefixes: "/srv, /tmp" }),
    });
    try {
      const { settings } = loadSettings({ roles: ["exec"], env: {}, cwd });
      assert.deepEqual(settings.commandEnv, ["A=1"]);
      assert.deepEqual(settings.allowedPathPrefixes, ["/srv", "/tmp"]);
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
});

Deno.test("a token that no Authorization header could carry is refused at start", async (t) => {
  const cwd = tempDir();
  try {
    for (
      const [env, role] of [["STATUS_ADMIN_TOKEN", "server"], ["AGENT_TOKEN", "agent"]] as const
    ) {
      for (
        const [what, value] of [
          ["a space inside", "abcdefgh ijklmnopq"],
          ["a tab inside", "abcdefgh\tijklmnopq"],
          ["a character beyond ASCII", "abcdefghijklmnopé"],
        ]
      ) {
        await t.step(`${env}: ${what}`, () => {
          assert.throws(
            () => loadSettings({ roles: [role], env: { AGENT_ID: "web-1", [env]: value }, cwd }),
            (error: Error) => {
              assert.ok(error instanceof ConfigError);
              assert.match(
                error.message,
                new RegExp(`^${env} from the environment must be a token`),
              );
              assert.match(error.message, /printable ASCII characters, without spaces/);
              assert.ok(!error.message.includes(value), "the secret is not shown");
              return true;
            },
          );
        });
      }
      await t.step(`${env}: base64 and spaces around it are fine`, () => {
        const token = " 3NUJA5Th8plyEShk+/MjPkU6rNlO0kFh= ";
        const { settings } = loadSettings({
          roles: [role],
          env: { AGENT_ID: "web-1", [env]: token },
          cwd,
        });
        const loaded = env === "AGENT_TOKEN" ? settings.agentToken : settings.statusAdminToken;
        assert.equal(loaded, token.trim());
      });
    }
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a setting repeated in config.json is warned about; the last one is read", async (t) => {
  await t.step("each repeated setting once, with its count", () => {
    const cwd = tempDir({
      "config.json": "\uFEFF" + [
        '{"agent_id": "web-1", "nested": {"agent_id": "x", "list": [{"agent_id": 1}]},',
        '"note": "\\"agent_id\\": not a key", "domain": "a", "domain": "b",',
        '"agent_id" : "web-2", "polling_timeout_secs": 5, "agent\\u005fid": "web-3",',
        '"polling_timeout_secs": 6}',
      ].join("\n"),
    });
    try {
      const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
      assert.equal(loaded.settings.agentId, "web-3");
      assert.equal(loaded.settings.pollingTimeoutSecs, 6);
      assert.deepEqual(loaded.warnings, [
        'config.json sets "agent_id" 3 times; the last one is read',
        'config.json sets "polling_timeout_secs" 2 times; the last one is read',
        // Not repeated: inside another key, where it is not read (said once).
        'config.json key "nested" holds "agent_id", which is not read there: settings are read ' +
        'from the top level of config.json only; move it out of "nested"',
      ]);
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
  await t.step("a string of megabytes with escapes is no trouble", () => {
    const long = JSON.stringify({ domain: 'a\\"'.repeat(3_000_000), agent_id: "web-1" });
    const cwd = tempDir({ "config.json": long });
    try {
      const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
      assert.equal(loaded.settings.agentId, "web-1");
      assert.deepEqual(loaded.warnings, []);
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
});

Deno.test("a settings file that never ends or is huge is refused, not read until memory runs out", async (t) => {
  for (const option of ["configPath", "envFilePath"] as const) {
    await t.step(`${option} /dev/zero`, () => {
      assert.throws(
        () => loadSettings({ roles: ["operator"], env: {}, [option]: "/dev/zero" }),
        (error) =>
          error instanceof ConfigError &&
          error.message === "/dev/zero is larger than 16 MiB; is it a settings file?",
      );
    });
  }
  await t.step("a regular file of 17 MiB", () => {
    const cwd = tempDir({ "config.json": `{"domain": "${"x".repeat(17 * 1024 * 1024)}"}` });
    try {
      assert.throws(
        () => loadSettings({ roles: ["operator"], env: {}, cwd }),
        /config\.json is larger than 16 MiB/,
      );
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  });
  await t.step("an empty one, as /dev/null, still reads as empty", () => {
    const loaded = loadSettings({ roles: ["operator"], env: {}, envFilePath: "/dev/null" });
    assert.equal(loaded.settings.dashboardUrl, "http://localhost:5000");
  });
});

Deno.test("LOG_FORMAT is read in any case, as LOG_LEVEL is", () => {
  const loaded = loadSettings({
    roles: ["log"],
    env: { LOG_FORMAT: " JSON ", LOG_LEVEL: "DEBUG" },
    cwd: "/nonexistent-dir",
  });
  assert.equal(loaded.settings.logFormat, "json");
  assert.equal(loaded.settings.logLevel, "debug");
  assert.throws(
    () => loadSettings({ roles: ["log"], env: { LOG_FORMAT: "xml" }, cwd: "/nonexistent-dir" }),
    /LOG_FORMAT from the environment must be one of "text", "json", got "xml"/,
  );
});

Deno.test("labels in config.json, as an object or an array, are held to the rules of AGENT_LABELS", async (t) => {
  const labelsOf = (json: unknown) => {
    const cwd = tempDir({ "config.json": JSON.stringify({ agent_labels: json }) });
    try {
      return loadSettings({ roles: ["agent"], env: {}, cwd }).settings.agentLabels;
    } finally {
      Deno.removeSync(cwd, { recursive: true });
    }
  };
  const must = "AGENT_LABELS from config.json must be key=value pairs separated by commas " +
    "(keys: 1–63 of A-Za-z0-9._/-), got ";
  await t.step("good ones load", () => {
    assert.deepEqual(labelsOf({ role: "web", zone: "eu" }), { role: "web", zone: "eu" });
    assert.deepEqual(labelsOf(["role=web", "zone=eu"]), { role: "web", zone: "eu" });
    assert.deepEqual(labelsOf("role=web,zone=eu"), { role: "web", zone: "eu" });
    assert.deepEqual(labelsOf({}), {});
  });
  await t.step("a key or value the rules refuse", () => {
    assert.throws(() => labelsOf({ "bad key!": "v" }), {
      message: `${must}{"bad key!":"v"}: label key "bad key!" must be 1–63 characters of ` +
        "A-Z a-z 0-9 . _ / - (starting with a letter or digit)",
    });
    assert.throws(() => labelsOf({ k: "v v" }), {
      message: `${must}{"k":"v v"}: label value "v v" of k must be 0–128 characters of ` +
        "A-Z a-z 0-9 . _ : / @ -",
    });
    assert.throws(() => labelsOf(["a=b", "a=c"]), {
      message: `${must}["a=b","a=c"]: label a is given twice`,
    });
  });
  await t.step("a comma does not make two labels of one", () => {
    assert.throws(() => labelsOf({ role: "web,zone=eu" }), {
      message: `${must}{"role":"web,zone=eu"}: label "role" holds a comma in its key or value; ` +
        "give each label as a key of its own",
    });
  });
  await t.step("what is no labels at all", () => {
    for (const json of [{ k: 5 }, [5], 5]) {
      assert.throws(() => labelsOf(json), { message: `${must}${JSON.stringify(json)}` });
    }
  });
});

Deno.test("a settings file saved as UTF-16 is named as such, not quoted as noise", async (t) => {
  const utf16 = (text: string, bigEndian = false) => {
    const bytes = new Uint8Array(2 + text.length * 2);
    bytes.set(bigEndian ? [0xfe, 0xff] : [0xff, 0xfe]);
    for (let i = 0; i < text.length; i++) {
      bytes[2 + i * 2 + (bigEndian ? 1 : 0)] = text.charCodeAt(i);
    }
    return bytes;
  };
  const files = [
    ["config.json", utf16('{"dashboard_url": "http://127.0.0.1:9"}')],
    [".env", utf16("DASHBOARD_URL=http://127.0.0.1:9\n", true)],
    [".env", new TextEncoder().encode("DASHBOARD_URL=http://127.0.0.1:9\n\0\n")],
  ] as const;
  for (const [name, bytes] of files) {
    await t.step(`${name} starting ${[...bytes.slice(0, 2)].map((b) => b.toString(16))}`, () => {
      const cwd = tempDir();
      try {
        Deno.writeFileSync(`${cwd}/${name}`, bytes);
        assert.throws(() => loadSettings({ roles: ["operator"], env: {}, cwd }), {
          message: `${name} is not UTF-8 text (it holds a UTF-16 byte order mark or NUL bytes, ` +
            "as a file saved as UTF-16 does): save it as UTF-8",
        });
      } finally {
        Deno.removeSync(cwd, { recursive: true });
      }
    });
  }
});

Deno.test("BIND takes an address alone: a URL or a port in it is refused, an IPv6 one's brackets dropped", async (t) => {
  const bind = (value: string) =>
    loadSettings({ roles: ["server"], env: { BIND: value }, cwd: tempDir() }).settings.bind;
  await t.step("addresses and host names, IPv6 with or without brackets", () => {
    for (const address of ["0.0.0.0", "127.0.0.1", "localhost", "::", "::1", "fe80::1%eth0"]) {
      assert.equal(bind(address), address);
    }
    assert.equal(bind("[::1]"), "::1");
    assert.equal(bind(" [::] "), "::");
  });
  const refused: Array<[string, string]> = [
    [
      "0.0.0.0:5000",
      'it holds a port; give the address alone ("0.0.0.0") and the port with PORT (--port)',
    ],
    [
      "[::1]:5000",
      'it holds a port; give the address alone ("::1") and the port with PORT (--port)',
    ],
    [
      ":5000",
      "it is a port; give it with PORT (--port), and an address here (or none for 127.0.0.1)",
    ],
    [
      "http://127.0.0.1:5000/",
      'it is a URL; give only its address ("127.0.0.1"), and its port with PORT (--port)',
    ],
    ["127.0.0.1 ::1", "it holds a space; give one address"],
  ];
  for (const [value, why] of refused) {
    await t.step(`refused: ${value}`, () => {
      assert.throws(() => bind(value), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(
          error.message,
          `BIND from the environment must be an IP address or host name, got ${
            JSON.stringify(value)
          }: ${why}`,
        );
        return true;
      });
    });
  }
});

Deno.test("METRICS_BIND and METRICS_PORT given as a URL are refused, saying what to give", () => {
  for (
    const [roles, name] of [[["server"], "METRICS_BIND"], [["agent"], "METRICS_PORT"]] as const
  ) {
    assert.throws(
      () =>
        loadSettings({
          roles,
          env: { [name]: "http://127.0.0.1:9100", AGENT_ID: "a" },
          cwd: tempDir(),
        }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(
          error.message,
          `${name} from the environment must be PORT or HOST:PORT with a port from 0 to 65535, ` +
            'got "http://127.0.0.1:9100": it is a URL; give HOST:PORT ("127.0.0.1:9100") or PORT ' +
            "alone",
        );
        return true;
      },
    );
  }
});

Deno.test("a path holding a $VARIABLE, which nothing expands in these files, is refused", async (t) => {
  // "state_dir": "$HOME/status" made a folder named "$HOME" in the working directory.
  for (
    const [files, name, value] of [
      [{ "config.json": '{"state_dir": "$HOME/status"}' }, "STATE_DIR", "$HOME/status"],
      [{ ".env": "PID_FILE=/run/${USER}.pid\n" }, "PID_FILE", "/run/${USER}.pid"],
    ] as const
  ) {
    await t.step(value, () => {
      const cwd = tempDir(files);
      assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        const variable = value.includes("{") ? "${USER}" : "$HOME";
        const source = name === "STATE_DIR" ? "config.json" : ".env";
        const what = name === "STATE_DIR" ? "a directory path" : "a file path";
        assert.equal(
          error.message,
          `${name} from ${source} must be ${what}, got ${JSON.stringify(value)}: ${variable} is ` +
            "not expanded here (only a shell expands it, and not in .env, config.json or single " +
            'quotes); give the path in full, e.g. "/home/you/..."',
        );
        return true;
      });
    });
  }
  await t.step("a $ that starts no name, and a postgres:// URL's password, are taken", () => {
    const { settings } = loadSettings({
      roles: ["agent", "server"],
      env: { STATE_DIR: "/srv/cost$", DB: "postgres://u:pa$word@db/status" },
      cwd: tempDir(),
    });
    assert.equal(settings.stateDir, "/srv/cost$");
    assert.equal(settings.db, "postgres://u:pa$word@db/status");
  });
});

Deno.test("config.json may give an on/off setting as 1 or 0, as its error says", async (t) => {
  await t.step("1 and 0 are read", () => {
    const cwd = tempDir({
      "config.json": JSON.stringify({ live_output: 0, daemon: 1, wait_require_signature: 1 }),
    });
    const { settings } = loadSettings({ roles: ["agent", "server"], env: {}, cwd });
    assert.equal(settings.liveOutput, false);
    assert.equal(settings.daemon, true);
    assert.equal(settings.waitRequireSignature, true);
  });
  for (const value of [2, -1, 0.5, "2"]) {
    await t.step(`${JSON.stringify(value)} is refused`, () => {
      const cwd = tempDir({ "config.json": JSON.stringify({ live_output: value }) });
      assert.throws(() => loadSettings({ roles: ["agent"], env: {}, cwd }), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(
          error.message,
          `LIVE_OUTPUT from config.json must be true or false (or yes/no, on/off, 1/0), got ${
            JSON.stringify(value)
          }`,
        );
        return true;
      });
    });
  }
});

Deno.test("config.json may give COMMAND_USER's uid as a JSON number", () => {
  const read = (user: unknown) =>
    loadSettings({
      roles: ["agent"],
      env: { DASHBOARD_URL: "http://127.0.0.1:5000", AGENT_ID: "a1" },
      cwd: tempDir({ "config.json": JSON.stringify({ command_user: user }) }),
    });
  assert.equal(read(1001).settings.commandUser, "1001");
  assert.equal(read("1001:1002").settings.commandUser, "1001:1002");
  for (const bad of [-1, 1.5, true, { uid: 1 }]) {
    assert.throws(() => read(bad), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /COMMAND_USER/);
      return true;
    });
  }
});

Deno.test("a null in config.json is refused, naming the setting, not read as unset", async (t) => {
  // It was passed over without a word: "agent_token": null left the agent in dev mode, and
  // "polling_timeout_secs": null kept the default.
  const cases: Array<[string, string]> = [
    [
      "polling_timeout_secs",
      "POLLING_TIMEOUT_SECS from site.json must be a whole number of seconds from 1 to 31536000 " +
      '(a year), got null; remove "polling_timeout_secs" from site.json to use the default',
    ],
    [
      "agent_token",
      "AGENT_TOKEN from site.json must be a token of 16 to 1024 printable ASCII characters, " +
      'without spaces, got null; remove "agent_token" from site.json to leave it unset',
    ],
    [
      "live_output",
      "LIVE_OUTPUT from site.json must be true or false (or yes/no, on/off, 1/0), got null; " +
      'remove "live_output" from site.json to use the default',
    ],
  ];
  for (const [key, message] of cases) {
    await t.step(key, () => {
      const cwd = tempDir({ "site.json": JSON.stringify({ [key]: null }) });
      assert.throws(
        () => loadSettings({ roles: ["agent"], env: {}, cwd, configPath: `${cwd}/site.json` }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.message, message.replaceAll("site.json", `${cwd}/site.json`));
          return true;
        },
      );
    });
  }
  await t.step("a setting a layer above sets is read from there, as any bad value below it", () => {
    const cwd = tempDir({ "config.json": '{"polling_timeout_secs": null}' });
    const loaded = loadSettings({ roles: ["agent"], env: { POLLING_TIMEOUT_SECS: "20" }, cwd });
    assert.equal(loaded.settings.pollingTimeoutSecs, 20);
  });
  await t.step("null under a key that is not a setting is still ignored", () => {
    const cwd = tempDir({ "config.json": '{"domain": null, "agent_id": "web-1"}' });
    const loaded = loadSettings({ roles: ["agent"], env: {}, cwd });
    assert.equal(loaded.settings.agentId, "web-1");
  });
});

Deno.test("an on/off setting reads the same words from every source, and refuses an empty value", async (t) => {
  await t.step("yes/no, on/off, 1/0, true/false in any case, from the environment and .env", () => {
    const words: Array<[string, boolean]> = [
      ["yes", true],
      ["NO", false],
      ["On", true],
      ["off", false],
      ["1", true],
      ["0", false],
      ["TRUE", true],
      ["False", false],
    ];
    for (const [text, value] of words) {
      const env = loadSettings({
        roles: ["agent"],
        env: { LIVE_OUTPUT: text },
        cwd: "/nonexistent",
      });
      assert.equal(env.settings.liveOutput, value);
      const cwd = tempDir({ ".env": `LIVE_OUTPUT=${text}\n` });
      assert.equal(loadSettings({ roles: ["agent"], env: {}, cwd }).settings.liveOutput, value);
    }
  });
  await t.step("JSON booleans and the same words as strings in config.json", () => {
    const values: Array<[boolean | string, boolean]> = [
      [false, false],
      [true, true],
      ["off", false],
      ["YES", true],
    ];
    for (const [json, value] of values) {
      const cwd = tempDir({ "config.json": JSON.stringify({ live_output: json }) });
      assert.equal(loadSettings({ roles: ["agent"], env: {}, cwd }).settings.liveOutput, value);
    }
  });
  // `LIVE_OUTPUT=` turned live output (on by default) off without a word, where an empty value
  // of any other setting is refused.
  for (
    const [name, load] of [
      [
        "the environment",
        () => loadSettings({ roles: ["agent"], env: { LIVE_OUTPUT: "" }, cwd: "/nonexistent" }),
      ],
      [
        ".env",
        () =>
          loadSettings({ roles: ["agent"], env: {}, cwd: tempDir({ ".env": "LIVE_OUTPUT=\n" }) }),
      ],
      [
        "config.json",
        () =>
          loadSettings({
            roles: ["agent"],
            env: {},
            cwd: tempDir({ "config.json": '{"live_output": " "}' }),
          }),
      ],
    ] as const
  ) {
    await t.step(`an empty value from ${name} is refused`, () => {
      assert.throws(load, (error: Error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(
          error.message,
          name === ".env"
            ? ".env line 1 sets LIVE_OUTPUT to an empty value, and it must be true or false (or " +
              "yes/no, on/off, 1/0): give it a value or remove the line to use the default"
            : `LIVE_OUTPUT from ${name} must be true or false (or yes/no, on/off, 1/0), got ` +
              `"${name === "config.json" ? " " : ""}"`,
        );
        return true;
      });
    });
  }
});

Deno.test("a number is read whole and decimal from every source, or refused", async (t) => {
  const read = (layer: "flag" | "env" | ".env" | "json", value: string) => {
    const base = { roles: ["agent"] as const, env: {}, cwd: "/nonexistent" };
    const options = layer === "flag"
      ? { ...base, flags: { pollingTimeoutSecs: value } }
      : layer === "env"
      ? { ...base, env: { POLLING_TIMEOUT_SECS: value } }
      : layer === ".env"
      ? { ...base, cwd: tempDir({ ".env": `POLLING_TIMEOUT_SECS=${value}\n` }) }
      : { ...base, cwd: tempDir({ "config.json": `{"polling_timeout_secs": ${value}}` }) };
    return loadSettings({ ...options, roles: ["agent"] }).settings.pollingTimeoutSecs;
  };
  await t.step("leading zeros are decimal, spaces around are trimmed", () => {
    for (const layer of ["flag", "env", ".env"] as const) {
      assert.equal(read(layer, "030"), 30);
      assert.equal(read(layer, " 45"), 45);
    }
    assert.equal(read("json", '"030"'), 30);
  });
  await t.step("a JSON number is read as its value", () => {
    assert.equal(read("json", "1e3"), 1000);
    assert.equal(read("json", "30.0"), 30);
  });
  for (const value of ["30s", "1e3", "0x1e", "1.5", "+30", "-5", "99999999999999999999", "3 0"]) {
    await t.step(`${JSON.stringify(value)} is refused from every source`, () => {
      for (const layer of ["flag", "env", ".env", "json"] as const) {
        const given = layer === "json" ? JSON.stringify(value) : value;
        assert.throws(() => read(layer, given), ConfigError, `${layer}: ${value}`);
      }
    });
  }
  for (const value of ["1.5", "-5", "1e400", "true", "[30]"]) {
    await t.step(`JSON ${value} is refused`, () => {
      assert.throws(() => read("json", value), ConfigError);
    });
  }
});

Deno.test("a setting that is not set is said to go in the files given with --env-file and --config", () => {
  const dir = tempDir({ "agent.env": "# none yet\n", "agent.json": "{}" });
  const loaded = loadSettings({
    roles: ["agent"],
    env: {},
    envFilePath: `${dir}/agent.env`,
    configPath: `${dir}/agent.json`,
  });
  assert.equal(
    missingSettingError(loaded, "agentId", "agent").message,
    "AGENT_ID is not set: give it with --agent-id <id>, the AGENT_ID environment variable (or " +
      `${dir}/agent.env), or "agent_id" in ${dir}/agent.json`,
  );
  const byDefault = loadSettings({ roles: ["agent"], env: {}, cwd: "/nonexistent" });
  assert.match(
    missingSettingError(byDefault, "agentId", "agent").message,
    /\(or \.env\), or "agent_id" in config\.json$/,
  );
});

Deno.test("settings a command never takes are told where they are set, not checked", () => {
  const cwd = tempDir({ ".env": "DB=~/status.db\n" });
  const loaded = loadSettings({
    roles: ["agent", "server"],
    env: { DATABASE_URL: "mysql2://app:secret@db/app", BIND: "http://0.0.0.0:80" },
    cwd,
    unread: ["bind", "db", "databaseUrl", "tlsCert"],
  });
  assert.deepEqual(loaded.unread, {
    bind: "the environment",
    db: ".env",
    databaseUrl: "the environment",
  });
  assert.equal(loaded.settings.db, "./status.db", "left at its default");
  assert.equal(loaded.sources.db, "default");
  assert.equal(loaded.settings.databaseUrl, undefined);
  assert.throws(
    () => loadSettings({ roles: ["server"], env: { BIND: "http://0.0.0.0:80" }, cwd }),
    /^ConfigError: BIND from the environment must be/,
    "read, it is checked",
  );
});

Deno.test("COMMAND_MAX_PROCESSES is a whole number from 0 (or unlimited) to 4194304", async (t) => {
  const load = (env: Record<string, string>, files: Record<string, string> = {}) =>
    loadSettings({ roles: ["agent"], env, cwd: tempDir(files) }).settings.commandMaxProcesses;
  await t.step("4096 by default", () => {
    assert.equal(load({}), 4096);
  });
  await t.step(
    "from the environment, a flag, .env and config.json; 0 and unlimited turn it off",
    () => {
      assert.equal(load({ COMMAND_MAX_PROCESSES: "64" }), 64);
      assert.equal(load({ COMMAND_MAX_PROCESSES: "4194304" }), 4194304);
      assert.equal(load({ COMMAND_MAX_PROCESSES: "0" }), 0);
      assert.equal(load({ COMMAND_MAX_PROCESSES: " Unlimited " }), 0);
      assert.equal(
        loadSettings({
          roles: ["agent"],
          env: {},
          cwd: tempDir(),
          flags: { commandMaxProcesses: "unlimited" },
        }).settings.commandMaxProcesses,
        0,
      );
      assert.equal(load({}, { ".env": "COMMAND_MAX_PROCESSES=300\n" }), 300);
      assert.equal(load({}, { "config.json": '{"command_max_processes": 200}' }), 200);
      assert.equal(load({}, { "config.json": '{"command_max_processes": "unlimited"}' }), 0);
    },
  );
  const rule = "must be a whole number from 0 to 4194304, or unlimited (the same as 0), got";
  await t.step("anything else is refused, naming the setting, its source and the range", () => {
    for (const bad of ["-1", "4194305", "1.5", "1e3", "many", "max", "99999999999999999999"]) {
      assert.throws(() => load({ COMMAND_MAX_PROCESSES: bad }), {
        name: "ConfigError",
        message: `COMMAND_MAX_PROCESSES from the environment ${rule} "${bad}"`,
      }, bad);
    }
    assert.throws(() => load({}, { "config.json": '{"command_max_processes": -5}' }), {
      name: "ConfigError",
      message: `COMMAND_MAX_PROCESSES from config.json ${rule} -5`,
    });
    assert.throws(() => load({}, { "config.json": '{"command_max_processes": 2.5}' }), {
      name: "ConfigError",
      message: `COMMAND_MAX_PROCESSES from config.json ${rule} 2.5`,
    });
  });
  await t.step("an empty value in .env names its line", () => {
    assert.throws(() => load({}, { ".env": "COMMAND_MAX_PROCESSES=\n" }), {
      name: "ConfigError",
      message: ".env line 1 sets COMMAND_MAX_PROCESSES to an empty value, and it " +
        rule.replace(/, got$/, "") + ": give it a value or remove the line to use the default",
    });
  });
});

Deno.test("COMMAND_MAX_MEMORY is a size from 1M to 1024T, or 0 or unlimited", async (t) => {
  // A command that allocated without end took the server's memory (the OOM killer then picked
  // the agent or the dashboard as well as it).
  const load = (env: Record<string, string>, files: Record<string, string> = {}) =>
    loadSettings({ roles: ["agent"], env, cwd: tempDir(files) }).settings.commandMaxMemory;
  const G = 1024 ** 3;
  const M = 1024 ** 2;
  await t.step("2G by default", () => {
    assert.equal(load({}), 2 * G);
  });
  await t.step("bytes or K, M, G, T (powers of 1024) from every source; 0 turns it off", () => {
    assert.equal(load({ COMMAND_MAX_MEMORY: "512M" }), 512 * M);
    assert.equal(load({ COMMAND_MAX_MEMORY: " 2g " }), 2 * G);
    assert.equal(load({ COMMAND_MAX_MEMORY: "1.5G" }), 1536 * M);
    assert.equal(load({ COMMAND_MAX_MEMORY: "2GiB" }), 2 * G);
    assert.equal(load({ COMMAND_MAX_MEMORY: "64MB" }), 64 * M);
    assert.equal(load({ COMMAND_MAX_MEMORY: "1048576" }), M);
    assert.equal(load({ COMMAND_MAX_MEMORY: "1024T" }), 1024 ** 5);
    assert.equal(load({ COMMAND_MAX_MEMORY: "0" }), 0);
    assert.equal(load({ COMMAND_MAX_MEMORY: "Unlimited" }), 0);
    assert.equal(load({ COMMAND_MAX_MEMORY: "infinity" }), 0);
    assert.equal(
      loadSettings({
        roles: ["agent"],
        env: {},
        cwd: tempDir(),
        flags: { commandMaxMemory: "256M" },
      }).settings.commandMaxMemory,
      256 * M,
    );
    assert.equal(load({}, { ".env": "COMMAND_MAX_MEMORY=300M\n" }), 300 * M);
    assert.equal(load({}, { "config.json": '{"command_max_memory": "1G"}' }), G);
    assert.equal(load({}, { "config.json": '{"command_max_memory": 134217728}' }), 128 * M);
    assert.equal(load({}, { "config.json": '{"command_max_memory": 0}' }), 0);
  });
  const rule = "must be a size from 1M to 1024T: bytes, or a number with K, M, G or T (powers " +
    "of 1024: 512M, 2G), or 0 or unlimited (no limit), got";
  await t.step("anything else is refused, naming the setting, its source and the rule", () => {
    for (
      const bad of [
        "512",
        "1K",
        "-1G",
        "2X",
        "1.5",
        "1e9",
        "2 G B",
        "1025T",
        "max",
        "lots",
        "99999999999999999999",
      ]
    ) {
      assert.throws(() => load({ COMMAND_MAX_MEMORY: bad }), {
        name: "ConfigError",
        message: `COMMAND_MAX_MEMORY from the environment ${rule} "${bad}"`,
      }, bad);
    }
    assert.throws(() => load({}, { ".env": "COMMAND_MAX_MEMORY=12Q\n" }), {
      name: "ConfigError",
      message: `COMMAND_MAX_MEMORY from .env ${rule} "12Q"`,
    });
    for (const bad of ["-5", "2.5", "1000", "true", '"2 gigs"']) {
      assert.throws(() => load({}, { "config.json": `{"command_max_memory": ${bad}}` }), {
        name: "ConfigError",
        message: `COMMAND_MAX_MEMORY from config.json ${rule} ${bad}`,
      }, bad);
    }
    assert.throws(
      () =>
        loadSettings({
          roles: ["agent"],
          env: {},
          cwd: tempDir(),
          flags: { commandMaxMemory: "10 tons" },
        }),
      {
        name: "ConfigError",
        message: `COMMAND_MAX_MEMORY from flag --command-max-memory ${rule} "10 tons"`,
      },
    );
  });
  await t.step("an empty value in .env names its line", () => {
    assert.throws(() => load({}, { ".env": "COMMAND_MAX_MEMORY=\n" }), {
      name: "ConfigError",
      message: ".env line 1 sets COMMAND_MAX_MEMORY to an empty value, and it " +
        rule.replace(/, got$/, "") + ": give it a value or remove the line to use the default",
    });
  });
});
