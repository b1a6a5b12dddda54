import assert from "node:assert/strict";
import { storeLocation } from "../../src/cli/common.ts";
import { loadSettings } from "../../src/config/mod.ts";
import { redactUrl } from "../../src/store/mod.ts";

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
