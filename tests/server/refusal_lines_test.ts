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
import { ADMIN_TOKEN, makeDashboard, P } from "./_helpers.ts";

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
