/**
 * The console script once the session ends under an open page (logged out in another tab, or
 * expired) in chromium: a refreshing part and a followed command stop asking the dashboard and the
 * page says the session ended, with a link to log in again, instead of looking live while frozen.
 */
import assert from "node:assert/strict";
import { browserTest, eventually, fakeConsoleServer, launchChromium } from "./_browser.ts";

const NAME = "a page whose session ended says so and stops asking the dashboard";

async function sessionEndTest(): Promise<void> {
  let ended = false;
  let requestsAfterEnd = 0;
  // The dashboard as a logged-out session finds it: pages redirect to the login form, the API
  // answers 401.
  const server = await fakeConsoleServer((path) => {
    if (!ended) return undefined;
    requestsAfterEnd++;
    if (path.startsWith("/api/")) return new Response("{}", { status: 401 });
    return new Response(null, { status: 303, headers: { Location: `/login?next=${path}` } });
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

browserTest(NAME, import.meta.filename!, sessionEndTest);
