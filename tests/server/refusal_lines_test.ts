/**
 * A flood of refused requests is not a flood of audit lines (each one synced to disk under
 * `LOG_FILE`): a burst is written, then a steady rate, and what was left out is counted.
 */
import assert from "node:assert/strict";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import {
  REFUSAL_LINES_BURST,
  REFUSAL_LINES_PER_SECOND,
  RefusalLines,
} from "../../src/log/refusal_lines.ts";
import { ADMIN_TOKEN, makeDashboard, P, type TestDashboard } from "./_helpers.ts";

Deno.test("refusal lines: a burst, then a steady rate; what was left out is told once", () => {
  let now = 0;
  const clock = { now: () => now, advance: (ms: number) => now += ms };
  const lines = new RefusalLines({ perSecond: 2, burst: 3, clock });
  assert.deepEqual([lines.take(), lines.take(), lines.take()], [0, 0, 0]);
  assert.deepEqual([lines.take(), lines.take()], [null, null]);
  clock.advance(499);
  assert.equal(lines.take(), null, "not a whole line yet");
  clock.advance(1);
  assert.equal(lines.take(), 3, "the three left out are told with the next line");
  assert.equal(lines.take(), null);
  // A clock set back gives nothing; an hour refills only the burst.
  now = -10_000;
  assert.equal(lines.take(), null);
  clock.advance(3_600_000);
  assert.deepEqual([lines.take(), lines.take(), lines.take(), lines.take()], [2, 0, 0, null]);
});

Deno.test("a dashboard flooded with bad tokens writes its burst of audit lines, then counts", async () => {
  const written: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => written.push(line) });
  try {
    await using t = await makeDashboard();
    const refused = async (n: number) => {
      for (let i = 0; i < n; i++) {
        // An agent's wrong token (wrong admin tokens would soon be 429s of their own).
        const response = await t.dashboard.app.request(P.wait("default", 1), {
          headers: { Authorization: "Bearer wrong", "X-Agent-Id": "a1" },
        });
        assert.equal(response.status, 401);
        await response.body?.cancel();
      }
    };
    const audit = () =>
      written.map((line) => JSON.parse(line)).filter((r) => r.category === "status.audit");
    await refused(REFUSAL_LINES_BURST + 50);
    assert.equal(audit().length, REFUSAL_LINES_BURST);
    t.clock.advance(1000);
    await refused(1);
    const [told, line] = audit().slice(REFUSAL_LINES_BURST);
    assert.equal(
      told.message,
      `50 more refused requests were not logged (over ${REFUSAL_LINES_PER_SECOND} a second); ` +
        "the refusal metrics count them",
    );
    assert.match(line.message, /^authentication failed: /);
    // The metrics counted every refusal.
    const metrics = await t.dashboard.app.request("/metrics", {
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const total = (await metrics.text()).split("\n").filter((l) =>
      l.startsWith("status_auth_refusals_total{")
    ).reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
    assert.equal(total, REFUSAL_LINES_BURST + 51);
  } finally {
    closeLogging();
  }
});

Deno.test("a flood of refused console logins and forms writes the same burst of audit lines, then counts", async (t) => {
  const written: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => written.push(line) });
  try {
    const refusals = () =>
      written.map((line) => JSON.parse(line)).filter((r) =>
        r.category === "status.audit" && r.level === "warning"
      );
    const post = async (d: TestDashboard, path: string, body: string, cookie = "") =>
      await d.dashboard.app.request(path, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
        body,
      });
    /** The login form's cookie and token, as a browser has them. */
    const loginForm = async (d: TestDashboard) => {
      const form = await d.dashboard.app.request("/login");
      const cookie = form.headers.getSetCookie()[0].split(";")[0];
      const csrf = /name="csrf" value="([^"]+)"/.exec(await form.text())?.[1] ?? "";
      return { cookie, csrf };
    };
    type Flood = (d: TestDashboard) => Promise<() => Promise<Response>>;
    // Old behaviour: one audit line each, however fast they came, from clients that need no
    // credentials at all (the last, from a page of a sibling site the session's cookie goes to).
    const floods: Array<[string, number, Flood]> = [
      ["logins without the form's token", 403, (d) => Promise.resolve(() => post(d, "/login", ""))],
      [
        "logins of a form too large",
        413,
        (d) => Promise.resolve(() => post(d, "/login", `token=${"x".repeat(70 * 1024)}`)),
      ],
      ["wrong tokens, then logins over the limit", 429, async (d) => {
        const { cookie, csrf } = await loginForm(d);
        const form = new URLSearchParams({ csrf, token: "wrong" }).toString();
        return () => post(d, "/login", form, cookie);
      }],
      ["forms of a session without its CSRF token", 403, async (d) => {
        const { cookie, csrf } = await loginForm(d);
        const form = new URLSearchParams({ csrf, token: ADMIN_TOKEN, next: "/" }).toString();
        const done = await post(d, "/login", form, cookie);
        assert.equal(done.status, 303);
        const session = done.headers.getSetCookie()[0].split(";")[0];
        return () => post(d, "/enqueue", "agent=a1&name=ls", session);
      }],
    ];
    for (const [what, status, flood] of floods) {
      await t.step(what, async () => {
        await using d = await makeDashboard();
        const send = await flood(d);
        written.length = 0;
        for (let i = 0; i < REFUSAL_LINES_BURST + 50; i++) {
          const response = await send();
          await response.body?.cancel();
          if (i === REFUSAL_LINES_BURST + 49) assert.equal(response.status, status);
        }
        assert.equal(refusals().length, REFUSAL_LINES_BURST);
        d.clock.advance(1000);
        await (await send()).body?.cancel();
        const [told, line] = refusals().slice(REFUSAL_LINES_BURST);
        assert.match(told.message, /^50 more refused requests were not logged/);
        assert.match(line.message, /^console (login|form) (refused|failed)/);
      });
    }
  } finally {
    closeLogging();
  }
});
