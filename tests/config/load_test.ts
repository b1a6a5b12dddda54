import assert from "node:assert/strict";
import { loadSettings, parseEnvFile } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";

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
      'ALLOWED_PATH_PREFIXES from the environment must be a comma-separated list of absolute paths, got "/tmp,relative"',
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
  await t.step("config.json with what JSON does not allow says what and where", () => {
    const cases: [string, string][] = [
      ["", "config.json is empty; write {} in it for no settings, or remove it"],
      [" \r\n", "config.json is empty; write {} in it for no settings, or remove it"],
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
      message: '.env line 2 must be NAME=value, got "this is not a setting"',
    });
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
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
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
        /^b\.env line 2 must be NAME=value, got .*COMMAND_TIMEOUT_SECS=1" \(it holds U\+00A0;/,
      ],
      [
        "export\tCOMMAND_TIMEOUT_SECS=1\n",
        /^b\.env line 1 must be NAME=value, got "export\\tCOMMAND_TIMEOUT_SECS=1" \(it holds a tab;/,
      ],
      ["\uFEFF\uFEFFA=1\n", /^b\.env line 1 must be NAME=value.*U\+FEFF/],
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
    ]);
  } finally {
    Deno.removeSync(cwd, { recursive: true });
  }
});

Deno.test("a list setting given as something else in config.json is a ConfigError naming it", async (t) => {
  for (
    const [json, message] of [
      [
        { command_env: { A: "1" } },
        'COMMAND_ENV from config.json must be a comma-separated list of NAME=value, got {"A":"1"}',
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
