import assert from "node:assert/strict";
import { storeLocation, storeSetting } from "../../src/cli/common.ts";
import { loadSettings } from "../../src/config/mod.ts";
import { ConfigError } from "../../src/errors.ts";
import { redactUrl } from "../../src/store/mod.ts";
import {
  driverHosts,
  driverSocket,
  postgresUrlProblem,
  sslModeOf,
  withoutPassword,
} from "../../src/store/url.ts";
import { run } from "./_run.ts";

const URL_A = "postgres://status:pw@db:5432/status";

function location(env: Record<string, string>, flags: Record<string, unknown> = {}) {
  return storeLocation(loadSettings({ roles: ["server"], env, flags, cwd: "/nonexistent" }));
}

Deno.test("the store: --db or DB when set, else DATABASE_URL, else ./status.db", () => {
  assert.equal(location({}), "./status.db");
  assert.equal(location({ DATABASE_URL: URL_A }), URL_A);
  assert.equal(location({ DATABASE_URL: URL_A, DB: "/var/lib/s.db" }), "/var/lib/s.db");
  assert.equal(location({ DATABASE_URL: URL_A }, { db: "/tmp/x.db" }), "/tmp/x.db");
  assert.equal(location({}, { db: URL_A }), URL_A);
});

Deno.test("DB that is a bare name, as another program's DB variable is, is refused, naming its source", async (t) => {
  // DB=postgres was a SQLite file ./postgres, made without a word, in place of DATABASE_URL too.
  for (
    const [env, flags, source] of [
      [{ DB: "postgres" }, {}, "the environment"],
      [{ DB: "mysql", DATABASE_URL: URL_A }, {}, "the environment"],
      [{ DB: "1" }, {}, "the environment"],
      [{ DB: " true " }, {}, "the environment"],
      [{}, { db: "postgres" }, "flag --db"],
    ] as const
  ) {
    await t.step(`${JSON.stringify(env)} ${JSON.stringify(flags)}`, () => {
      assert.throws(() => location(env, flags), (error: Error) => {
        assert.ok(error instanceof ConfigError);
        const name = (env as { DB?: string }).DB?.trim() ?? (flags as { db?: string }).db!;
        assert.equal(
          error.message,
          `DB from ${source} is "${name}", a bare name, not a SQLite file path or a ` +
            "postgres:// URL (DB is a name other programs' settings use too); give a path " +
            `("./${name}" for a SQLite file of that name) or a postgres:// URL, or unset DB` +
            ("DATABASE_URL" in env ? " (DATABASE_URL, which is set, is used when DB is not)" : ""),
        );
        return true;
      });
    });
  }
  await t.step("a file name, a path, :memory: or a URL is taken", () => {
    for (const db of ["status.db", "./status", "/var/lib/status/db", ":memory:", URL_A]) {
      assert.equal(location({ DB: db }), db);
    }
  });
});

Deno.test("DATABASE_URL must be a postgres:// URL; its value is not repeated", () => {
  assert.throws(
    () => location({ DATABASE_URL: "mysql://u:secretpw@h/db" }),
    (error: Error) => /DATABASE_URL/.test(error.message) && !/secretpw/.test(error.message),
  );
});

Deno.test("database URLs lose their password in messages", () => {
  assert.equal(redactUrl(URL_A), "postgres://status:***@db:5432/status");
  assert.equal(redactUrl("./status.db"), "./status.db");
  assert.equal(redactUrl("postgresql://u@h/db"), "postgresql://u@h/db");
});

Deno.test("a password written with @ / ? # : unencoded is hidden whole, never in part", async (t) => {
  await t.step("in the URL shown", () => {
    for (
      const [url, shown] of [
        // Not a URL the parser takes: the password ran on to the host's last @.
        [
          "postgres://status:p@ss:w/rd#%?x@127.0.0.1:5432/status",
          "postgres://status:***@127.0.0.1:5432/status",
        ],
        // Parsed, as host "status", port 123 and a path: no password at all to the parser.
        ["postgres://status:123/se@db:5432/status", "postgres://status:***@db:5432/status"],
        ["postgres://status:123?se@db/status", "postgres://status:***@db/status"],
        ["postgres://status:123#se@db/status", "postgres://status:***@db/status"],
        // Parsed, with the password cut at its @: host "ss" and a path.
        ["postgres://status:p@ss/se@db/status", "postgres://status:***@db/status"],
      ]
    ) {
      assert.equal(redactUrl(url), shown, url);
    }
  });
  await t.step("in a driver's message", () => {
    const url = "postgres://status:123/secret@db:5432/status";
    assert.equal(
      withoutPassword(`Invalid URL: ${url} (123/secret)`, url),
      "Invalid URL: postgres://status:***@db:5432/status (***)",
    );
  });
  await t.step("status agents list names the database without it", async () => {
    const url = "postgres://status:p@ss:w/rd#%?x@127.0.0.1:1/status";
    const out = await run(["agents", "list", "--db", url]);
    assert.equal(out.code, 2, out.stderr.join("\n"));
    assert.match(out.stderr.join("\n"), /postgres:\/\/status:\*\*\*@127\.0\.0\.1:1\/status/);
    assert.doesNotMatch([...out.stderr, ...out.stdout].join("\n"), /ss:w|rd#/);
  });
});

Deno.test("the store's setting is named as the one it came from", () => {
  const setting = (env: Record<string, string>, flags: Record<string, unknown> = {}) =>
    storeSetting(loadSettings({ roles: ["server"], env, flags, cwd: "/nonexistent" }));
  assert.equal(setting({}), "DB from the default");
  assert.equal(setting({ DATABASE_URL: URL_A }), "DATABASE_URL from the environment");
  assert.equal(setting({ DATABASE_URL: URL_A }, { db: "/tmp/x.db" }), "DB from flag --db");
});

Deno.test("a database URL the driver cannot read is told why without being quoted", () => {
  for (
    const url of [
      "postgres://u:secretpw@db:99999/status",
      "postgres://u:secretpw@[::1:5432/status",
      "postgres://u:secret%zzpw@db/status",
      "postgres://u:secretpw@db/status?sslmode=bogus",
      "postgres://u:secretpw@db/status?sslmode=",
    ]
  ) {
    const problem = postgresUrlProblem(url);
    assert.ok(problem !== null, url);
    assert.doesNotMatch(problem, /secret/, url);
  }
  assert.match(postgresUrlProblem("postgres://u:p@db/s?sslmode=bogus")!, /sslmode must be one of/);
  for (
    const url of [
      URL_A,
      "postgresql://u@h/db",
      "postgres://u:p@h1:5432,h2:5433/db",
      "postgres://u:p@db/s?sslmode=verify-full",
      "postgres://u:p%40ss@db/s?sslmode=disable",
    ]
  ) {
    assert.equal(postgresUrlProblem(url), null, url);
  }
});

Deno.test("a server timeout under 1 s in a database URL is refused; 0, 1 s and more are taken", () => {
  for (const param of ["statement_timeout=1", "Lock_Timeout=0.2s", "transaction_timeout=999ms"]) {
    assert.match(
      postgresUrlProblem(`postgres://u:p@db/s?${param}`) ?? "",
      /would make the server end status's .* after \d+ ms, failing most calls/,
      param,
    );
  }
  for (
    const param of [
      "statement_timeout=0",
      "statement_timeout=1s",
      "statement_timeout=1000",
      "lock_timeout=2min",
      // The server rounds it to 0 ms, none; a form it reads otherwise is its to judge.
      "statement_timeout=300us",
      "statement_timeout=0x10",
    ]
  ) {
    assert.equal(postgresUrlProblem(`postgres://u:p@db/s?${param}`), null, param);
  }
});

Deno.test("a password in a database URL's query is refused, and never shown", async (t) => {
  await t.step("the problem says where the password goes, without quoting it", () => {
    for (const key of ["password", "PASSWORD", "sslpassword"]) {
      const problem = postgresUrlProblem(`postgres://u@db/s?sslmode=disable&${key}=secretpw`);
      assert.match(problem ?? "", new RegExp(`given as \\?${key}=.*postgres://user:password@`));
      assert.doesNotMatch(problem!, /secretpw/);
    }
    assert.equal(postgresUrlProblem("postgres://u@db/s?application_name=password"), null);
  });
  await t.step("the URL shown hides the query's password", () => {
    assert.equal(
      redactUrl("postgres://u@db/s?password=secretpw&sslmode=disable"),
      "postgres://u@db/s?password=***&sslmode=disable",
    );
    assert.equal(
      redactUrl("postgres://u:pw@db:99999/s?sslpassword=secretpw#x"),
      "postgres://u:***@db:99999/s?sslpassword=***#x",
    );
  });
  await t.step("status serve exits 2 with one line, the password nowhere", async () => {
    const url = "postgres://status@127.0.0.1:1/status?password=secretpw";
    const out = await run(["serve", "--port", "0"], { DATABASE_URL: url });
    assert.equal(out.code, 2);
    assert.match(
      out.stderr.join("\n"),
      /DATABASE_URL from the environment: cannot open .*given as/,
    );
    assert.doesNotMatch([...out.stderr, ...out.stdout].join("\n"), /secretpw/);
  });
});

Deno.test("a URL's sslmode is read as the driver reads it: decoded, the last of a repeated key", () => {
  assert.equal(sslModeOf("postgres://u:p@db/s?sslmode=%72equire"), "require");
  assert.equal(sslModeOf("postgres://u:p@db/s?sslmode=allow&sslmode=require"), "require");
  assert.equal(sslModeOf("postgres://u:p@db/s?a=1&sslmode=disable#x"), "disable");
  assert.equal(sslModeOf("postgres://u:p@h1,h2:5433/s?sslmode=verify-full"), "verify-full");
  assert.equal(sslModeOf("postgres://u:p@db/s?xsslmode=require"), null);
  assert.equal(sslModeOf("postgres://u:p@db:99999/s?sslmode=require"), null);
  assert.equal(postgresUrlProblem("postgres://u:p@db/s?sslmode=%72equire"), null);
  assert.equal(postgresUrlProblem("postgres://u:p@db/s?sslmode=bogus&sslmode=require"), null);
  assert.match(
    postgresUrlProblem("postgres://u:p@db/s?sslmode=require&sslmode=bogus")!,
    /sslmode must be one of .*got "bogus"/,
  );
});

Deno.test("a driver's message loses the URL's password, as written and decoded", () => {
  const url = "postgres://u:se%2Fcret@db:99999/status";
  assert.equal(
    withoutPassword(`Invalid URL: '${url}' (se/cret)`, url),
    "Invalid URL: 'postgres://u:***@db:99999/status' (***)",
  );
  assert.equal(withoutPassword("no password here", "postgres://u@db/s"), "no password here");
});

Deno.test("a driver's message keeps a user name that the password equals or is part of", async (t) => {
  await t.step("equal: the URL's password part goes, the user name stays", () => {
    const url = "postgres://postgres:postgres@db/status";
    assert.equal(
      withoutPassword(`${url}: password authentication failed for user "postgres"`, url),
      'postgres://postgres:***@db/status: password authentication failed for user "postgres"',
    );
  });
  await t.step("part of the user name: only the occurrences outside it go", () => {
    const url = "postgres://postgres:post@db/status";
    assert.equal(
      withoutPassword(`user "postgres" (post, repost): postgres://postgres:post@db`, url),
      'user "postgres" (***, re***): postgres://postgres:***@db',
    );
  });
  await t.step("across the user name's end: it goes", () => {
    assert.equal(withoutPassword("user abc", "postgres://ab:bc@db/s"), "user a***");
  });
  await t.step("encoded in the URL, decoded in the message", () => {
    const url = "postgres://p%40ss:p%40ss@db/s";
    assert.equal(
      withoutPassword(`user "p@ss" at ${url}`, url),
      `user "p@ss" at postgres://p%40ss:***@db/s`,
    );
  });
  await t.step("a password never shows outside the user name", () => {
    for (const password of ["pw", "s3cret", "a:b", "x@y", "db", "stat"]) {
      const encoded = encodeURIComponent(password);
      const url = `postgres://status:${encoded}@db/s`;
      const text = `${url} ${password} x${password}x ${password}${password} ${encoded} "status"`;
      const outsideUser = withoutPassword(text, url).replaceAll("status", "");
      assert.ok(!outsideUser.includes(password), `${password}: ${outsideUser}`);
      assert.ok(!outsideUser.includes(encoded), `${password}: ${outsideUser}`);
    }
  });
});

Deno.test("IPv6 addresses in a database URL are given to the driver apart from their ports", () => {
  assert.deepEqual(driverHosts("postgres://u:p@[::1]:5433/s"), { host: ["::1"], port: [5433] });
  assert.deepEqual(driverHosts("postgres://u@[fd00::5]/s?sslmode=require"), {
    host: ["fd00::5"],
    port: [5432],
  });
  assert.deepEqual(driverHosts("postgres://u@[fd00::5]:5433,db2:5434,[fd00::6]/s"), {
    host: ["fd00::5", "db2", "fd00::6"],
    port: [5433, 5434, 5432],
  });
  assert.equal(driverHosts("postgres://u:p@db:5432/s"), null, "the driver reads the URL itself");
  assert.equal(driverHosts("postgres://u:p@h1:5432,h2:5433/s"), null);
  assert.equal(postgresUrlProblem("postgres://u:p@[::1]:5433/s"), null);
});

Deno.test("a Unix socket's directory in a database URL is given to the driver apart, as libpq reads it", () => {
  for (
    const [url, path, driverUrl] of [
      [
        "postgres:///status?host=/var/run/postgresql",
        "/var/run/postgresql/.s.PGSQL.5432",
        "postgres://localhost/status",
      ],
      [
        "postgresql://status:pw@/status?sslmode=disable&host=%2Ftmp%2F&port=5433",
        "/tmp/.s.PGSQL.5433",
        "postgresql://status:pw@localhost/status?sslmode=disable",
      ],
      [
        "postgres://status@%2Fvar%2Frun%2Fpostgresql:5434/status",
        "/var/run/postgresql/.s.PGSQL.5434",
        "postgres://status@localhost/status",
      ],
      [
        "postgres://status@%2fsock/status?port=6000&application_name=a",
        "/sock/.s.PGSQL.6000",
        "postgres://status@localhost/status?application_name=a",
      ],
      // The query's host wins over the URL's, as in libpq.
      ["postgres://u@db:5435/s?host=/run/pg", "/run/pg/.s.PGSQL.5435", "postgres://u@localhost/s"],
    ]
  ) {
    assert.deepEqual(driverSocket(url), { path, url: driverUrl }, url);
    assert.equal(postgresUrlProblem(url), null, url);
  }
  assert.equal(driverSocket("postgres://u@db/s"), null);
  assert.equal(driverSocket("postgres://u@[::1]:5433/s"), null);
});

Deno.test("a database URL's ?host= or ?port= that is not a Unix socket's is refused, saying why", () => {
  for (const url of ["postgres://u@db/s?host=db2", "postgres://u@/s?host=db2&port=5433"]) {
    assert.equal(
      postgresUrlProblem(url),
      "its ?host= is read only with a Unix socket's directory (?host=/var/run/postgresql); give " +
        "a server's host and port in the URL itself (postgres://user@host:5432/database)",
      url,
    );
  }
  assert.match(postgresUrlProblem("postgres://u@db/s?port=5433")!, /^its \?port= is read only/);
  assert.equal(
    postgresUrlProblem("postgres://u@/s?host=/a,/b"),
    "it names several Unix socket directories; status connects through one",
  );
  for (const port of ["0", "65536", "x", "5432,5433"]) {
    assert.equal(
      postgresUrlProblem(`postgres://u@/s?host=/run/pg&port=${port}`),
      `its port must be a number from 1 to 65535, got ${JSON.stringify(port)}`,
    );
  }
});

Deno.test("DATABASE_URL is not checked when DB is set, as it is not used then", () => {
  // A Rails app's DATABASE_URL=mysql2://... in the environment stopped status serve --db ./x.db.
  const foreign = "mysql2://app:secret@db/app";
  const loaded = loadSettings({
    roles: ["server"],
    env: { DATABASE_URL: foreign },
    flags: { db: "./status.db" },
    cwd: "/nonexistent",
  });
  assert.equal(storeLocation(loaded), "./status.db");
  assert.equal(loaded.settings.databaseUrl, undefined);
  assert.deepEqual(loaded.unread, { databaseUrl: "the environment" });
  assert.throws(
    () => location({ DATABASE_URL: foreign }),
    /^ConfigError: DATABASE_URL from the environment must be/,
  );
});
