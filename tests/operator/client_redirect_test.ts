/**
 * The operator client follows no redirect, as the agent and `status health` do not: a `3xx` is an
 * error naming where it leads, and nothing (no admin token, no enqueue turned into a `GET`) is
 * sent there.
 */
import assert from "node:assert/strict";
import { OperatorClient, OperatorError } from "../../src/operator/mod.ts";

const TOKEN = "admin-token-0123456789abcdef";

/** A server that counts the requests it gets, and one that redirects every request to it. */
function servers(status: number) {
  let reached = 0;
  const target = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    reached++;
    return Response.json({ id: "x" });
  });
  const targetUrl = `http://127.0.0.1:${target.addr.port}/elsewhere`;
  const redirecting = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response(null, { status, headers: { Location: targetUrl } }),
  );
  return {
    url: `http://127.0.0.1:${redirecting.addr.port}`,
    targetUrl,
    reached: () => reached,
    async [Symbol.asyncDispose]() {
      await redirecting.shutdown();
      await target.shutdown();
    },
  };
}

Deno.test("operator client does not follow a redirect, and says where it leads", async (t) => {
  for (const status of [301, 307]) {
    await using s = servers(status);
    const client = new OperatorClient({ dashboardUrl: s.url, adminToken: TOKEN });
    const calls: Array<[string, () => Promise<unknown>]> = [
      ["GET a command", () => client.getCommand("x")],
      ["an enqueue", () => client.enqueue({ agentId: "web-1", name: "echo hi" })],
      ["an event stream", () => client.openEvents("x")],
    ];
    for (const [what, call] of calls) {
      await t.step(`${status}: ${what}`, async () => {
        const error = await call().then(() => assert.fail("no error"), (e) => e);
        assert.ok(error instanceof OperatorError, String(error));
        assert.equal(error.kind, "request");
        assert.equal(error.status, status);
        assert.equal(
          error.message,
          `the dashboard at ${s.url} redirects (${status}) to ${JSON.stringify(s.targetUrl)}, ` +
            "which status does not follow: set DASHBOARD_URL (or --dashboard-url) to the " +
            "address it leads to",
        );
        assert.equal(s.reached(), 0, "nothing was sent where the redirect leads");
      });
    }
  }
});
