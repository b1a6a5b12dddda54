/**
 * A proxy in front of several dashboard instances (examples/nginx.conf) sends a `GET` again to the
 * next instance when the one holding it goes away: the agent's long-poll then reaches the shared
 * store twice with one `X-Request-Id`, and the second instance answers the replay `409`. The agent
 * asks again (with a new id) instead of taking that `409` as the command's end or a second agent
 * process. Here one in-process dashboard plays both instances (the request ids are in its store,
 * as they are in the database the instances share).
 */
import assert from "node:assert/strict";
import { CANCEL_WAIT_DELAY_MS, CancelWatcher } from "../../src/agent/cancel_watch.ts";
import { DashboardClient } from "../../src/agent/client.ts";
import type { DeliveredCommand } from "../../src/protocol/mod.ts";
import { until } from "../_until.ts";
import { json, makeDashboard, P, TOKEN } from "../server/_helpers.ts";

type TestDashboard = Awaited<ReturnType<typeof makeDashboard>>;

/**
 * A `fetch` into the dashboard that, for the first request whose path ends with `resendPath`, does
 * what nginx does when the instance holding it dies: the first copy is held, then dropped, and the
 * same request is sent again.
 */
function resendingProxy(d: TestDashboard, resendPath: string, held: () => boolean) {
  let resent = false;
  const requestIds: string[] = [];
  const proxy = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    requestIds.push(request.headers.get("X-Request-Id") ?? "");
    const url = new URL(request.url);
    const path = url.pathname + url.search;
    if (!resent && url.pathname.endsWith(resendPath)) {
      resent = true;
      const died = new AbortController();
      const first = Promise.resolve(
        d.dashboard.app.request(path, { headers: request.headers, signal: died.signal }),
      );
      await until(held, "the first instance holds the request", 5000);
      died.abort();
      await first.then((r) => r.body?.cancel(), () => {});
    }
    return await d.dashboard.app.request(path, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
  };
  return { proxy: proxy as typeof fetch, requestIds };
}

/** Lets the watcher's promise chain run between clock steps. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("a cancel-wait a proxy sent again to another instance is asked again: the cancel still stops the command", async () => {
  await using d = await makeDashboard();
  const enqueued = await d.agent({ path: P.enqueue, body: { id: "c1", name: "sleep 60" } });
  assert.equal(enqueued.status, 202);
  const delivered = await d.agent({ path: P.wait() });
  const command = await json(delivered) as unknown as DeliveredCommand;
  assert.equal(command.id, "c1");
  const acked = await d.agent({ path: P.ack, body: { command_id: "c1", attempt: 1 } });
  assert.equal(acked.status, 200);
  await acked.body?.cancel();

  const { proxy, requestIds } = resendingProxy(
    d,
    "/c1/cancel-wait",
    () => d.dashboard.cancelWaiters.size === 1,
  );
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.test",
    agentId: "a1",
    agentToken: TOKEN,
    fetch: proxy,
    now: () => d.clock.now(),
  });
  const watcher = new CancelWatcher({
    client,
    clock: d.clock,
    backoff: { initialSecs: 1, maxSecs: 1 },
    pollingTimeoutSecs: 30,
  });
  const cancel = new AbortController();
  const done = new AbortController();
  const watching = watcher.watch(command, cancel, done.signal);
  d.clock.advance(CANCEL_WAIT_DELAY_MS);
  await until(() => requestIds.length === 1, "the first cancel-wait is sent", 5000);
  await settle();

  const cancelled = await d.admin("POST", "/api/v1/commands/c1/cancel");
  assert.equal(cancelled.status, 202);
  await cancelled.body?.cancel();
  // The replay 409 is backed off (under a second here), then the cancel-wait is made again.
  for (let i = 0; i < 20 && !cancel.signal.aborted; i++) {
    d.clock.advance(100);
    await settle();
  }
  assert.ok(cancel.signal.aborted, "the operator's cancel reached the running command");
  assert.equal(requestIds.length, 2);
  assert.notEqual(requestIds[0], requestIds[1], "made again with a new X-Request-Id");
  done.abort();
  await watching;
});

Deno.test("a signed wait a proxy sent again to another instance is a failure to retry, not a second agent process", async () => {
  await using d = await makeDashboard({ waitRequireSignature: true });
  const { proxy } = resendingProxy(d, "/wait/default", () => d.dashboard.hub.size === 1);
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.test",
    agentId: "a1",
    agentToken: TOKEN,
    fetch: proxy,
    now: () => d.clock.now(),
  });
  const outcome = await client.wait("default", 30, new AbortController().signal);
  assert.equal(outcome.kind, "server", JSON.stringify(outcome));
  assert.match(
    (outcome as { message: string }).message,
    /^replay detected: .*the request reached the dashboard twice: a proxy sent it again/,
  );
  // Asked again (a new X-Request-Id), the wait is held as any other.
  const enqueued = await d.agent({ path: P.enqueue, body: { id: "c1", name: "echo hi" } });
  assert.equal(enqueued.status, 202);
  const again = await client.wait("default", 30, new AbortController().signal);
  assert.equal(again.kind, "command");
});

Deno.test("an ack a proxy sent again to another instance is asked again, not read as a stale delivery", async () => {
  // The replay 409 of an ack was read as "this delivery is stale": the agent did not run the
  // command, which the first copy had acked, until its lease ran out and it was delivered again.
  await using d = await makeDashboard();
  const enqueued = await d.agent({ path: P.enqueue, body: { id: "c1", name: "echo hi" } });
  assert.equal(enqueued.status, 202);
  const delivered = await d.agent({ path: P.wait() });
  assert.equal((await json(delivered)).id, "c1");
  let resent = false;
  const proxy = async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const body = await request.text();
    const send = () =>
      d.dashboard.app.request(url.pathname + url.search, {
        method: request.method,
        headers: request.headers,
        body,
      });
    if (!resent) {
      // The first copy is taken, its answer lost on the way back; the proxy sends it again.
      resent = true;
      await (await send()).body?.cancel();
    }
    return await send();
  };
  const client = new DashboardClient({
    dashboardUrl: "http://dashboard.test",
    agentId: "a1",
    agentToken: TOKEN,
    fetch: proxy as typeof fetch,
    now: () => d.clock.now(),
  });
  const first = await client.ack("c1", 1, new AbortController().signal);
  assert.equal(first.kind, "server", JSON.stringify(first));
  assert.match((first as { message: string }).message, /^replay detected: /);
  const again = await client.ack("c1", 1, new AbortController().signal);
  assert.equal(again.kind, "acked", JSON.stringify(again));
});
