/** The cap on one agent's open waits: its check, and the bookkeeping of its warnings. */
import assert from "node:assert/strict";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import {
  CAP_WARNING_AGENTS,
  CAP_WARNING_INTERVAL_MS,
  CapWarnings,
  waitCap,
} from "../../src/server/wait_cap.ts";
import { FakeClock } from "./_helpers.ts";

Deno.test("waitCap is 8 by default and refuses what is not a whole number from 1 to 1000", () => {
  assert.equal(waitCap(undefined), 8);
  assert.equal(waitCap(1), 1);
  assert.equal(waitCap(1000), 1000);
  for (const bad of [0, -3, 7.5, NaN, Infinity, 1001]) {
    assert.throws(
      () => waitCap(bad),
      new RangeError(`maxWaitsPerAgent must be a whole number from 1 to 1000, got ${bad}`),
    );
  }
});

Deno.test("cap warnings remember only the agents warned of in the last minute", async (t) => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  const warned = () => lines.map((line) => JSON.parse(line).agentId as string);
  try {
    await t.step("an agent warned of a minute ago or more is forgotten", () => {
      const clock = new FakeClock();
      const warnings = new CapWarnings("wait", clock);
      for (const agentId of ["a", "b", "c"]) warnings.evicted(agentId, 8);
      clock.advance(30_000);
      warnings.evicted("d", 8);
      warnings.evicted("a", 8); // within the minute: no line, and still remembered as at 0
      assert.equal(warnings.size, 4);
      clock.advance(CAP_WARNING_INTERVAL_MS - 30_000);
      warnings.evicted("e", 8);
      assert.equal(warnings.size, 2, "a, b and c were forgotten; d and e are remembered");
      assert.deepEqual(warned(), ["a", "b", "c", "d", "e"]);
      lines.length = 0;
    });

    await t.step("a clock set back warns again rather than staying silent", () => {
      let now = 10 * 60_000;
      const warnings = new CapWarnings("wait", { now: () => now });
      warnings.evicted("a", 8);
      now -= 5 * 60_000;
      warnings.evicted("a", 8);
      assert.deepEqual(warned(), ["a", "a"]);
      assert.equal(warnings.size, 1);
      lines.length = 0;
    });

    await t.step(
      `at most ${CAP_WARNING_AGENTS} agents are remembered, the oldest forgotten`,
      () => {
        const clock = new FakeClock();
        const warnings = new CapWarnings("cancel-wait", clock);
        for (let i = 0; i <= CAP_WARNING_AGENTS; i++) warnings.evicted(`agent-${i}`, 8);
        assert.equal(warnings.size, CAP_WARNING_AGENTS);
        lines.length = 0;
        warnings.evicted("agent-1", 8);
        assert.deepEqual(warned(), [], "agent-1 is still remembered");
        warnings.evicted("agent-0", 8);
        assert.deepEqual(warned(), ["agent-0"], "agent-0 was forgotten to make room");
        assert.equal(warnings.size, CAP_WARNING_AGENTS);
      },
    );
  } finally {
    closeLogging();
  }
});
