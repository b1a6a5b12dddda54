/**
 * A dashboard with the admin token and agent `a1` on a real socket, for the tests of its event
 * streams: the requests its operators and its agent send.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type RunningServer, startServer } from "../../src/server/mod.ts";
import { AGENT_SCOPES, openSqliteStore, type SqliteStore } from "../../src/store/mod.ts";
import { ADMIN_TOKEN, agentHeaders, type FakeClock, P, TOKEN } from "./_helpers.ts";

/** A dashboard with the admin token and agent `a1`, on a socket. */
export async function adminServer(
  options: { maxConnections?: number; clock?: FakeClock } = {},
): Promise<
  { server: RunningServer; store: SqliteStore; readOutputBytes(): number } & AsyncDisposable
> {
  const store = openSqliteStore(":memory:");
  const now = options.clock?.now() ?? Date.now();
  await store.addAgent({ id: "a1", token: TOKEN, scopes: AGENT_SCOPES, now });
  // The output the dashboard reads from its store, to send to its streams.
  let readOutputBytes = 0;
  const listOutput = store.listOutput.bind(store);
  store.listOutput = async (...args) => {
    const chunks = await listOutput(...args);
    for (const chunk of chunks) readOutputBytes += chunk.data.length;
    return chunks;
  };
  const server = await startServer({
    store,
    port: 0,
    adminToken: ADMIN_TOKEN,
    availableDescriptors: "plenty",
    maxConnections: options.maxConnections,
    operatorRateLimitPerMinute: 1_000_000,
    rateLimitPerMinute: 1_000_000,
    eventKeepAliveMs: options.clock ? 15_000 : 60_000,
    clock: options.clock,
    autoExpireLeases: options.clock ? false : undefined,
  });
  return {
    server,
    store,
    readOutputBytes: () => readOutputBytes,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await store.close();
    },
  };
}

/** Enqueues a command for `a1` with the admin token. */
export async function enqueue(server: RunningServer, id: string): Promise<void> {
  const answer = await fetch(`${server.url}${P.enqueue}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ id, name: "echo hi", agent_id: "a1" }),
  });
  assert.equal(answer.status, 202);
  await answer.body?.cancel();
}

/** The head of a request for a command's event stream with the admin token. */
export function streamHead(id: string): string {
  return `GET /api/v1/commands/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    `Authorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`;
}

/** Sends a signed agent request for `a1` at the clock's time. */
export async function agentCall(
  server: RunningServer,
  now: number,
  path: string,
  body?: unknown,
): Promise<Response> {
  const bodyText = body === undefined ? "" : JSON.stringify(body);
  return await fetch(`${server.url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: agentHeaders({ path, body, bodyText, now }),
    body: body === undefined ? undefined : bodyText,
  });
}
