/**
 * The console script while the dashboard cannot be reached (down, restarting, or answering 5xx)
 * in chromium: a refreshing part and a followed command say that the page shows what it last had,
 * and the note goes once the dashboard answers again.
 */
import {
  BROWSER_AVAILABLE,
  eventually,
  HAS_ALL_PERMISSIONS,
  launchChromium,
  runUnderAllowAll,
} from "./_browser.ts";

const NAME = "a page says so while the dashboard cannot be reached, and no more once it answers";
const SCRIPT = new URL("../../src/server/web/static/console.js", import.meta.url);

async function unreachableTest(): Promise<void> {
  const script = await Deno.readTextFile(SCRIPT);
  let down = false;
  const page = (body: string) =>
    new Response(
      `<!doctype html><html><body><main id="main"><h1>Title</h1>${body}</main>` +
        `<script src="/static/console.js"></script></body></html>`,
      { headers: { "Content-Type": "text/html" } },
    );
  // The command has no event stream here: its page polls.
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/static/console.js") {
      return new Response(script, { headers: { "Content-Type": "text/javascript" } });
    }
    if (path.endsWith("/events")) return new Response("no stream", { status: 404 });
    if (down) return new Response("store unavailable", { status: 503 });
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
    down = true;
    for (const tab of [agents, command]) {
      const notice = tab.locator("#dashboard-unreachable");
      await eventually("the page says the dashboard cannot be reached", () => notice.isVisible());
      if (!/The dashboard cannot be reached/.test(await notice.innerText())) {
        throw new Error(`unexpected note: ${await notice.innerText()}`);
      }
    }
    down = false;
    for (const tab of [agents, command]) {
      await eventually(
        "the note goes once the dashboard answers",
        async () => (await tab.locator("#dashboard-unreachable").count()) === 0,
      );
    }
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
  }, unreachableTest);
}
