/**
 * The console script while the dashboard cannot be reached (down, restarting, or answering 5xx)
 * in chromium: a refreshing part and a followed command say that the page shows what it last had,
 * and the note goes once the dashboard answers again.
 */
import { browserTest, eventually, fakeConsoleServer, launchChromium } from "./_browser.ts";

const NAME = "a page says so while the dashboard cannot be reached, and no more once it answers";

async function unreachableTest(): Promise<void> {
  let down = false;
  const server = await fakeConsoleServer((_path) =>
    down ? new Response("store unavailable", { status: 503 }) : undefined
  );
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

browserTest(NAME, import.meta.filename!, unreachableTest);
