import assert from "node:assert/strict";
import { cookieHeader, cookieOf, cookiesOf, SessionKeeper } from "../../src/server/web/session.ts";
import { FakeClock } from "../server/_helpers.ts";

const TOKEN = "admin-token-0123456789abcdef";

Deno.test("console session: issued, read back, and bound to the admin token", () => {
  const clock = new FakeClock();
  const keeper = new SessionKeeper({ adminToken: TOKEN, clock, ttlSecs: 3600 });
  const issued = keeper.issue();
  assert.equal(issued.expiresAt, Math.floor(clock.now() / 1000 + 3600) * 1000);
  const check = keeper.read(issued.value);
  assert.equal(check.state, "valid");
  assert.equal(check.state === "valid" && check.csrf, issued.csrf);

  // Another dashboard with the same admin token accepts it (restart, second instance) ...
  assert.equal(new SessionKeeper({ adminToken: TOKEN, clock }).read(issued.value).state, "valid");
  // ... one with another token does not (rotating the token ends every session).
  assert.equal(
    new SessionKeeper({ adminToken: `${TOKEN}-new`, clock }).read(issued.value).state,
    "none",
  );
  // Dev mode keys are random per process.
  const dev = new SessionKeeper({ clock });
  assert.equal(new SessionKeeper({ clock }).read(dev.issue().value).state, "none");
});

Deno.test("console session: a changed cookie is not a session", () => {
  const keeper = new SessionKeeper({ adminToken: TOKEN, clock: new FakeClock() });
  const { value } = keeper.issue();
  const [version, expires, nonce, mac] = value.split(".");
  const later = `${version}.${Number(expires) + 86_400}.${nonce}.${mac}`;
  assert.equal(keeper.read(later).state, "none", "a pushed expiry breaks the MAC");
  const flipped = `${version}.${expires}.${nonce}.${mac.slice(0, -1)}${
    mac.endsWith("A") ? "B" : "A"
  }`;
  assert.equal(keeper.read(flipped).state, "none");
  for (const junk of [undefined, "", "x", `${value}.extra`, "v1.1.2.3"]) {
    assert.equal(keeper.read(junk).state, "none", String(junk));
  }
});

Deno.test("console session: expires with the clock, and logout revokes it", () => {
  const clock = new FakeClock();
  const keeper = new SessionKeeper({ adminToken: TOKEN, clock, ttlSecs: 60 });
  const first = keeper.issue();
  clock.advance(59_000);
  assert.equal(keeper.read(first.value).state, "valid");
  clock.advance(1_000);
  assert.equal(keeper.read(first.value).state, "expired");

  const second = keeper.issue();
  const check = keeper.read(second.value);
  assert.equal(check.state, "valid");
  if (check.state === "valid") keeper.revoke(check);
  assert.equal(keeper.read(second.value).state, "expired");
  assert.equal(keeper.read(keeper.issue().value).state, "valid", "other sessions go on");
});

Deno.test("console session: the CSRF token is the session's own", () => {
  const keeper = new SessionKeeper({ adminToken: TOKEN, clock: new FakeClock() });
  const a = keeper.issue();
  const b = keeper.issue();
  assert.notEqual(a.csrf, b.csrf);
  assert.equal(keeper.checkCsrf(a, a.csrf), true);
  assert.equal(keeper.checkCsrf(a, b.csrf), false);
  assert.equal(keeper.checkCsrf(a, ""), false);
  assert.equal(keeper.checkCsrf(a, undefined), false);
});

Deno.test("console session: lifetime out of range is refused", () => {
  for (const ttlSecs of [0, 59, 1.5, 31 * 86_400]) {
    assert.throws(
      () => new SessionKeeper({ clock: new FakeClock(), ttlSecs }),
      RangeError,
      String(ttlSecs),
    );
  }
});

Deno.test("console cookies: HttpOnly, SameSite=Strict, Secure only under TLS", () => {
  assert.equal(
    cookieHeader("s", "v", { maxAgeSecs: 60, secure: false }),
    "s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict",
  );
  assert.equal(
    cookieHeader("s", "v", { maxAgeSecs: 60, secure: true }),
    "s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure",
  );
  assert.match(cookieHeader("s", "", { maxAgeSecs: 0, secure: false }), /Max-Age=0; .*Expires=/);
  assert.equal(cookieOf("a=1; status_session=xyz; b=2", "status_session"), "xyz");
  assert.equal(cookieOf("status_session_old=1", "status_session"), undefined);
  assert.equal(cookieOf(null, "status_session"), undefined);
});

Deno.test("console session: of several cookies of the name, the first valid one counts", () => {
  const clock = new FakeClock();
  const keeper = new SessionKeeper({ adminToken: TOKEN, clock, ttlSecs: 3600 });
  const old = keeper.issue();
  clock.advance(3_600_000);
  const issued = keeper.issue();
  const header = `status_session=forged; a=1; status_session=${old.value}; ` +
    `status_session=${issued.value}`;
  assert.deepEqual(cookiesOf(header, "status_session"), ["forged", old.value, issued.value]);
  const check = keeper.readAll(cookiesOf(header, "status_session"));
  assert.equal(check.state === "valid" && check.csrf, issued.csrf);
  assert.equal(keeper.readAll(["forged", old.value]).state, "expired");
  assert.equal(keeper.readAll(["forged"]).state, "none");
  assert.equal(keeper.readAll([]).state, "none");
});
