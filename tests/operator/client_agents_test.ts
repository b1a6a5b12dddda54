/**
 * The operator client's agent administration (`addAgent`, `rotateAgentToken`, `removeAgent`)
 * against an in-process dashboard, and against answers that are not what the protocol says.
 */
import assert from "node:assert/strict";
import { OperatorClient, OperatorError } from "../../src/operator/mod.ts";
import { startServer } from "../../src/server/mod.ts";
import { openSqliteStore } from "../../src/store/mod.ts";

const ADMIN = "admin-token-0123456789abcdef";

/** A dashboard outside dev mode on an in-memory store the test reads. */
async function dashboard() {
  const store = openSqliteStore(":memory:");
  const server = await startServer({
    availableDescriptors: "plenty",
    store,
    port: 0,
    adminToken: ADMIN,
  });
  return {
    server,
    store,
    client: new OperatorClient({ dashboardUrl: server.url, adminToken: ADMIN }),
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await store.close();
    },
  };
}

/** The error `promise` rejects with, which must be an OperatorError. */
async function failure(promise: Promise<unknown>): Promise<OperatorError> {
  const error = await promise.then(() => assert.fail("no error"), (e) => e);
  assert.ok(error instanceof OperatorError, String(error));
  return error;
}

Deno.test("OperatorClient adds an agent with a token, rotates the token and removes the agent", async () => {
  await using d = await dashboard();
  const added = await d.client.addAgent("web-1");
  assert.equal(added.id, "web-1");
  assert.match(added.token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(added.scopes, ["commands:wait", "commands:report", "commands:enqueue"]);
  const stored = await d.store.getAgent("web-1");
  assert.equal(stored?.token, added.token);

  const reader = await d.client.addAgent("reader", { scopes: ["commands:wait"] });
  assert.deepEqual(reader.scopes, ["commands:wait"]);
  assert.deepEqual((await d.store.getAgent("reader"))?.scopes, ["commands:wait"]);

  const rotated = await d.client.rotateAgentToken("web-1");
  assert.equal(rotated.id, "web-1");
  assert.notEqual(rotated.token, added.token);
  assert.equal((await d.store.getAgent("web-1"))?.token, rotated.token);

  for (const id of ["c1", "c2"]) await d.client.enqueue({ agentId: "web-1", name: "echo", id });
  assert.deepEqual(await d.client.removeAgent("web-1"), { id: "web-1", commandsEnded: 2 });
  assert.equal(await d.store.getAgent("web-1"), null);
  assert.equal((await d.client.getCommand("c1")).status, "cancelled");
});

Deno.test("OperatorClient's agent calls fail as status agents does", async (t) => {
  await using d = await dashboard();
  await d.client.addAgent("web-1");

  await t.step("a duplicate add is a conflict that says how to get a new token", async () => {
    const error = await failure(d.client.addAgent("web-1"));
    assert.equal(error.kind, "conflict");
    assert.equal(error.status, 409);
    assert.equal(
      error.message,
      'agent web-1 already exists; print a new token with "status agents rotate web-1"',
    );
  });

  await t.step("an unknown agent is not_found, for a rotation and a removal", async () => {
    const rotate = await failure(d.client.rotateAgentToken("web-9"));
    assert.equal(rotate.kind, "not_found");
    assert.equal(rotate.status, 404);
    assert.equal(
      rotate.message,
      'agent web-9 does not exist; add it with "status agents add web-9"',
    );
    const remove = await failure(d.client.removeAgent("web-9"));
    assert.equal(remove.kind, "not_found");
    assert.equal(remove.status, 404);
    assert.equal(remove.message, "agent web-9 does not exist");
  });

  await t.step("without the admin token each is refused as auth, and nothing changes", async () => {
    const anonymous = new OperatorClient({ dashboardUrl: d.server.url });
    const token = (await d.store.getAgent("web-1"))?.token;
    for (
      const call of [
        () => anonymous.addAgent("web-2"),
        () => anonymous.rotateAgentToken("web-1"),
        () => anonymous.removeAgent("web-1"),
      ]
    ) {
      const error = await failure(call());
      assert.equal(error.kind, "auth");
      assert.equal(error.status, 401);
      assert.match(error.message, /no admin token is set .*set STATUS_ADMIN_TOKEN/);
    }
    assert.equal(await d.store.getAgent("web-2"), null);
    assert.equal((await d.store.getAgent("web-1"))?.token, token);
  });
});

Deno.test("OperatorClient's agent calls refuse an id or scopes that are not ones, sending nothing", async (t) => {
  let sent = 0;
  const client = new OperatorClient({
    dashboardUrl: "http://dashboard.test",
    fetch: () => {
      sent++;
      return Promise.resolve(Response.json({ id: "x", token: "t".repeat(43) }));
    },
  });
  const rule = "1–128 characters of A-Z a-z 0-9 . _ : -, not only dots";
  // ".." would reach another route (/api/v1/agents/.. is /api/v1/), "a/b" none.
  for (const [id, shown] of [["..", '".."'], ["a/b", '"a/b"'], ["", '""'], [42, "42"]] as const) {
    await t.step(`id ${shown}`, async () => {
      for (
        const call of [
          () => client.addAgent(id as string),
          () => client.rotateAgentToken(id as string),
          () => client.removeAgent(id as string),
        ]
      ) {
        await assert.rejects(call, {
          name: "TypeError",
          message: `agent id must be ${rule}, got ${shown}`,
        });
      }
    });
  }
  for (
    const [scopes, shown] of [
      [[], "[]"],
      [["commands:run"], '["commands:run"]'],
      ["commands:wait", '"commands:wait"'],
    ] as const
  ) {
    await t.step(`scopes ${shown}`, async () => {
      await assert.rejects(() => client.addAgent("web-1", { scopes: scopes as never }), {
        name: "TypeError",
        message: "scopes must be a non-empty array of commands:wait, commands:report, " +
          `commands:enqueue, got ${shown}`,
      });
    });
  }
  await assert.rejects(() => client.addAgent("web-1", null as never), {
    name: "TypeError",
    message: "addAgent's options must be an object, got null",
  });
  assert.equal(sent, 0);
});

Deno.test("OperatorClient's agent calls never return a token or a removal the answer does not hold", async (t) => {
  /** A client whose dashboard answers every request `200` with `body`. */
  const answering = (body: unknown) =>
    new OperatorClient({
      dashboardUrl: "http://dashboard.test",
      fetch: () => Promise.resolve(Response.json(body)),
    });
  for (const body of [{ hello: 1 }, { token: 5 }, { token: "short" }, [1, 2]]) {
    await t.step(`add and rotate answered ${JSON.stringify(body)}`, async () => {
      const add = await failure(answering(body).addAgent("web-1"));
      assert.equal(add.kind, "invalid_answer");
      assert.equal(
        add.message,
        "the dashboard at http://dashboard.test answered the agent add without a token an agent " +
          'could use (the agent may have been added: print a new token with "status agents ' +
          'rotate web-1"); is http://dashboard.test a status dashboard?',
      );
      const rotate = await failure(answering(body).rotateAgentToken("web-1"));
      assert.equal(rotate.kind, "invalid_answer");
      assert.match(rotate.message, /the old token may no longer work: rotate again/);
    });
  }
  await t.step("a removal answered without removed: true is not taken for one", async () => {
    for (const body of [{ hello: 1 }, { removed: false, commands_ended: 0 }, [1]]) {
      const error = await failure(answering(body).removeAgent("web-1"));
      assert.equal(error.kind, "invalid_answer");
      assert.equal(
        error.message,
        'the dashboard at http://dashboard.test answered the agent removal without "removed": ' +
          "true, so whether agent web-1 was removed is not known; is http://dashboard.test a " +
          "status dashboard?",
      );
    }
  });
  await t.step("a dashboard that does not say how many commands ended", async () => {
    const removed = await answering({ removed: true, id: "web-1" }).removeAgent("web-1");
    assert.deepEqual(removed, { id: "web-1", commandsEnded: null });
  });
  await t.step("a token without scopes is still the token", async () => {
    const token = "t".repeat(43);
    const added = await answering({ id: "web-1", token }).addAgent("web-1");
    assert.deepEqual(added, { id: "web-1", token });
  });
});

Deno.test("OperatorClient.listAgents gives the fleet view's fields, typed: state, scopes, token, running", async () => {
  await using d = await dashboard();
  await d.client.addAgent("web-1", { scopes: ["commands:wait", "commands:report"] });
  const [agent, ...rest] = await d.client.listAgents();
  assert.equal(rest.length, 0);
  assert.equal(agent.id, "web-1");
  assert.equal(agent.state, "offline");
  assert.equal(agent.waiting, false);
  assert.equal(agent.queued, 0);
  assert.deepEqual(agent.scopes, ["commands:wait", "commands:report"]);
  assert.equal(agent.has_token, true);
  assert.deepEqual(agent.labels, {});
  assert.equal(agent.running, null);
  assert.equal(typeof agent.created_at, "string");
});

Deno.test("OperatorClient.listAgents refuses an agent whose listed fields have the wrong types", async () => {
  const wrong = [{ id: "a", labels: ["x"] }, { id: "a", running: "cmd-1" }, { id: "a", state: 3 }];
  for (const agent of wrong) {
    await using server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      () => Response.json({ agents: [agent] }),
    );
    const client = new OperatorClient({ dashboardUrl: `http://127.0.0.1:${server.addr.port}` });
    const error = await failure(client.listAgents());
    assert.equal(error.kind, "invalid_answer", JSON.stringify(agent));
  }
});
