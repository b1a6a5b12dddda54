import assert from "node:assert/strict";
import { FakeClock } from "../../src/server/clock.ts";
import { INSTANCE_MEMORY_MS, InstanceRegistry } from "../../src/server/instances.ts";
import type { AgentCall } from "../../src/server/auth/call.ts";
import { AGENT_INSTANCE_HEADER } from "../../src/protocol/mod.ts";

/** A wait of an agent process sending `instance` as its instance id. */
function call(instance: string): AgentCall {
  return {
    method: "GET",
    url: "http://127.0.0.1/api/v1/agent/commands/wait",
    headers: { get: (name: string) => name === AGENT_INSTANCE_HEADER ? instance : null },
    remote: "127.0.0.1",
    unsigned: true,
  } as AgentCall;
}

Deno.test("agent ids that stopped polling are forgotten, so ids that come and go do not grow memory", () => {
  const clock = new FakeClock(1_000_000);
  const registry = new InstanceRegistry(clock);
  const WAIT_MS = 30_000;
  for (let i = 0; i < 1_000; i++) registry.enter(`auto-${i}`, call(`i-${i}`), WAIT_MS).leave();
  const held = registry.enter("web-1", call("web-1-a"), WAIT_MS);
  assert.equal(registry.size, 1_001);

  // Within the memory: each is still known (a restart elsewhere is logged as a take-over).
  clock.advance(INSTANCE_MEMORY_MS);
  registry.enter("probe", call("p"), WAIT_MS).leave();
  assert.equal(registry.holder("auto-1"), "i-1");

  // At the next sweep (a memory later at most): the ids that went away are forgotten; one still
  // waiting is kept, and still refuses a second process.
  clock.advance(INSTANCE_MEMORY_MS);
  registry.enter("probe", call("p"), WAIT_MS).leave();
  assert.equal(registry.holder("auto-1"), undefined);
  assert.equal(registry.holder("web-1"), "web-1-a");
  assert.equal(registry.size, 2);
  assert.throws(() => registry.enter("web-1", call("web-1-b"), WAIT_MS), /already connected/);
  held.leave();
});

Deno.test("an agent's next process is taken once the last one stopped, whatever the wall clock did", () => {
  // Connected was "now minus the last activity is under the wait's timeout" on the wall clock: a
  // dashboard clock set back an hour (NTP, a resumed VM) made it so for that hour, and a
  // restarted agent was refused as a second process.
  class SteppedClock extends FakeClock {
    offsetMs = 0;
    override now(): number {
      return super.now() + this.offsetMs;
    }
  }
  const clock = new SteppedClock(1_000_000);
  const registry = new InstanceRegistry(clock);
  const WAIT_MS = 30_000;
  registry.enter("web-1", call("web-1-a"), WAIT_MS).leave();
  clock.offsetMs -= 3_600_000;
  // Within the wait's timeout the id is still its old process's.
  clock.advance(WAIT_MS - 1);
  assert.throws(() => registry.enter("web-1", call("web-1-b"), WAIT_MS), /already connected/);
  clock.advance(1);
  registry.enter("web-1", call("web-1-b"), WAIT_MS).leave();
  assert.equal(registry.holder("web-1"), "web-1-b");
});
