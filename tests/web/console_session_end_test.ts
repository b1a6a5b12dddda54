/**
 * The console script once the session ends under an open page (logged out in another tab, or
 * expired) in chromium: a refreshing part and a followed command stop asking the dashboard and the
 * page says the session ended, with a link to log in again, instead of looking live while frozen.
 */
import assert from "node:assert/strict";
import {
  BROWSER_AVAILABLE,
  eventually,
  HAS_ALL_PERMISSIONS,
  launchChromium,
  runUnderAllowAll,
} from "./_browser.ts";

const NAME = "a page whose session ended says so and stops asking the dashboard";
const SCRIPT = new URL("../../src/server/web/static/console.js", import.meta.url);

async function sessionEndTest(): Promise<void> {
  const script = await Deno.readTextFile(SCRIPT);
  let ended = false;
  let requestsAfterEnd = 0;
  const page = (body: string) =>
    new Response(
      `<!doctype html><html><body><main id="main"><h1>Title</h1>${body}</main>` +
        `<script src="/static/console.js"></script></body></html>`,
      { headers: { "Content-Type": "text/html" } },
    );
  // The dashboard as a logged-out session finds it: pages redirect to the login form, the API
  // answers 401, and the command has no event stream (the page polls).
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/static/console.js") {
      return new Response(script, { headers: { "Content-Type": "text/javascript" } });
    }
    if (path === "/login") return page(`<form>login</form>`);
    if (path.endsWith("/events")) return new Response("no stream", { status: 404 });
    if (ended) {
      requestsAfterEnd++;
      if (path.startsWith("/api/")) return new Response("{}", { status: 401 });
      return new Response(null, { status: 303, headers: { Location: `/login?next=${path}` } });
    }
    if (path === "/api/v1/commands/c1") {
      return Response.json({ id: "c1", status: "running", attempt: 1 });
    }
    if (path === "/commands/c1") {
      return page(
        `<div id="command-detail" data-command-id="c1" data-status="running" ` +
          `data-final="false">running</div>`,
      );
    }
    return page(`<div id="agents" data-refresh-secs="0.2">agents</div>`);
  });
  const browser = await launchChromium();
  try {
    const origin = `http://127.0.0.1:${server.addr.port}`;
    const agents = await browser.newPage();
    await agents.goto(`${origin}/`);
    const command = await browser.newPage();
    await command.goto(`${origin}/commands/c1`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    ended = true;
    for (const [tab, path] of [[agents, "/"], [command, "/commands/c1"]] as const) {
      const notice = tab.locator("#session-ended");
      await eventually("the page says the session ended", () => notice.isVisible());
      assert.match(await notice.innerText(), /Your session has ended/);
      assert.equal(await notice.getAttribute("role"), "alert");
      assert.equal(
        await tab.locator("#session-ended a").getAttribute("href"),
        `/login?${new URLSearchParams({ next: path })}`,
      );
    }
    const seen = requestsAfterEnd;
    // Several refresh and poll intervals later: nothing more was asked.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(requestsAfterEnd, seen, "no request once the page knows the session ended");
  } finally {
    await browser.close();
    await server.shutdown();
  }
}

if (!HAS_ALL_PERMISSIONS) {
  Deno.test({
    name: `${NAME} (in a child deno test --allow-all, which playwright-core needs)`,
    ignore: !BROWSER_AVAILABLE,
  }, () => runUnderAllowAll(import.meta.filename!));
} else {
  Deno.test({
    name: NAME,
    ignore: !BROWSER_AVAILABLE,
    sanitizeOps: false,
    sanitizeResources: false,
  }, sessionEndTest);
}
