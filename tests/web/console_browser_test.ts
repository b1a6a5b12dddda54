/**
 * The web console in a real browser (Debian's chromium through playwright-core) against a real
 * `status serve` outside dev mode and real `status agent` processes.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startAgent, tempDir, waitForListenUrl } from "../e2e/helpers.ts";
import { PERMS, runCli, spawnCli } from "../_cli.ts";
import { browserTest, eventually, launchChromium, screenshotDir } from "./_browser.ts";

const AGENT = "web-agent";
/** An agent that is registered but started only later in the test. */
const LATE = "late-agent";

async function addAgent(db: string, id: string, cwd: string): Promise<string> {
  const added = await runCli(["agents", "add", id, "--db", db], {
    perms: PERMS.agentsOnDisk,
    cwd,
  });
  assert.equal(added.code, 0, added.stderr);
  const token = /^AGENT_TOKEN=(\S+)$/m.exec(added.stdout)?.[1];
  assert.ok(token, added.stdout);
  return token;
}

/** The status word the command page shows now. */
function statusOf(page: Page): Promise<string> {
  return page.locator("#command-detail .headline .status").innerText();
}

/** Marks the page's window, to prove later that the page was not loaded again. */
async function markWindow(page: Page): Promise<void> {
  await page.evaluate(() => {
    (globalThis as unknown as { consoleTestMark: boolean }).consoleTestMark = true;
  });
}

function stillMarked(page: Page): Promise<boolean> {
  return page.evaluate(() =>
    (globalThis as unknown as { consoleTestMark?: boolean }).consoleTestMark === true
  );
}

async function enqueueFromForm(page: Page, url: string, agent: string, line: string) {
  await page.goto(`${url}/enqueue`);
  await page.getByLabel("Agent", { exact: true }).selectOption(agent);
  await page.getByLabel("Command line").fill(line);
  // Submitted from the keyboard.
  await page.getByLabel("Command line").press("Enter");
  await page.waitForURL(/\/commands\/[^/?]+$/);
  return decodeURIComponent(new URL(page.url()).pathname.split("/").pop()!);
}

const NAME = "web console in chromium: login, agents, enqueue, live updates, cancel, CSRF, XSS";

browserTest(NAME, import.meta.filename!, consoleTest);

async function consoleTest(t: Deno.TestContext): Promise<void> {
  await using dir = tempDir("status-web-");
  const db = `${dir.path}/status.db`;
  const admin = `admin-${crypto.randomUUID()}`;
  // A dashboard that decides when an agent is offline (OFFLINE_AFTER_SECS) is told to do it
  // quickly; one that does not reads no such variable.
  await using serve = spawnCli(
    ["serve", "--db", db, "--port", "0", "--log-format", "json", "--status-admin-token", admin],
    { perms: PERMS.serve, cwd: dir.path, env: { OFFLINE_AFTER_SECS: "3" } },
  );
  const url = await waitForListenUrl(serve);
  // Agents added next to the running dashboard (which created the database) are seen at once.
  const token = await addAgent(db, AGENT, dir.path);
  const lateToken = await addAgent(db, LATE, dir.path);
  await using agent = startAgent({
    url,
    agentId: AGENT,
    stateDir: `${dir.path}/agent-state`,
    cwd: dir.path,
    args: ["--agent-token", token],
  });
  const browser = await launchChromium();
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const dialogs: string[] = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    const shots = screenshotDir(dir.path);
    await agent.stderr.waitFor("long-poll: polling loop started", { timeoutMs: 30_000 });

    await t.step("a page without a session redirects to the login form", async () => {
      const response = await page.goto(`${url}/commands`);
      assert.equal(response?.status(), 200);
      assert.equal(new URL(page.url()).pathname, "/login");
      assert.equal(new URL(page.url()).searchParams.get("next"), "/commands");
      assert.equal(await page.getByRole("heading", { level: 1 }).innerText(), "Log in");
    });

    await t.step("a wrong token is refused with a message", async () => {
      await page.getByLabel("Admin token").fill("not-the-admin-token");
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith("/login") && r.request().method() === "POST"),
        page.getByRole("button", { name: "Log in" }).click(),
      ]);
      assert.equal(response.status(), 401);
      assert.match(await page.getByRole("alert").innerText(), /not the dashboard's admin token/);
      assert.deepEqual(
        (await context.cookies()).filter((c) => c.name === "status_session"),
        [],
      );
    });

    await t.step(
      "log in with the admin token (keyboard): an HttpOnly, strict session",
      async () => {
        await page.getByLabel("Admin token").fill(admin);
        await page.getByLabel("Admin token").press("Enter");
        await page.waitForURL(`${url}/commands`);
        assert.equal(await page.getByRole("heading", { level: 1 }).innerText(), "Commands");
        const cookie = (await context.cookies()).find((c) => c.name === "status_session");
        assert.ok(cookie, "a session cookie");
        assert.equal(cookie.httpOnly, true);
        assert.equal(cookie.sameSite, "Strict");
        assert.equal(cookie.secure, false, "not Secure over plain HTTP");
        assert.ok(cookie.expires > Date.now() / 1000, "with an expiry");
        assert.ok(cookie.expires < Date.now() / 1000 + 13 * 3600);
      },
    );

    await t.step("the agent list shows the agent online", async () => {
      await page.goto(`${url}/`);
      const state = page.locator(`tr[data-agent="${AGENT}"] .state`);
      assert.match(await state.innerText(), /online/);
      assert.equal(
        await page.locator(`tr[data-agent="${LATE}"] .state`).getAttribute("data-state"),
        "offline",
      );
      await page.screenshot({ path: `${shots}/agents.png` });
      assert.ok(Deno.statSync(`${shots}/agents.png`).size > 1000);
    });

    let helloId = "";
    await t.step("enqueue echo hello from the form: success and hello, no reload", async () => {
      const id = helloId = await enqueueFromForm(page, url, AGENT, "echo hello");
      await markWindow(page);
      await eventually(
        "the command page shows success",
        async () => (await statusOf(page)) === "success",
      );
      assert.equal(await page.locator("pre#stdout").textContent(), "hello\n");
      assert.ok(await stillMarked(page), "the page was not reloaded");
      assert.equal(await page.locator("#cancel-button").count(), 0, "no Cancel once final");
      await page.screenshot({ path: `${shots}/command.png`, fullPage: true });
      assert.ok(Deno.statSync(`${shots}/command.png`).size > 1000);
      const api = await page.request.get(`${url}/api/v1/commands/${id}`);
      assert.equal(api.status(), 200, "the session cookie reads the operator API");
      assert.equal((await api.json()).status, "success");
    });

    await t.step("enqueue sleep 30, see it running, press Cancel: cancelled", async () => {
      await enqueueFromForm(page, url, AGENT, "sleep 30");
      await eventually(
        "the command page shows running",
        async () => (await statusOf(page)) === "running",
        20_000,
      );
      const pressed = Date.now();
      await page.locator("#cancel-button").focus();
      await page.keyboard.press("Enter");
      await page.waitForURL(/done=(requested|cancelled)/);
      await markWindow(page);
      await eventually(
        "the command page shows cancelled",
        async () => (await statusOf(page)) === "cancelled",
        10_000,
      );
      assert.ok(Date.now() - pressed < 10_000);
      assert.ok(await stillMarked(page), "cancelled appeared without a reload");
      assert.equal(await page.locator("#cancel-button").count(), 0);
    });

    await t.step("a form POST without the CSRF token is refused; nothing changes", async () => {
      const before = await (await page.request.get(`${url}/api/v1/commands?limit=1000`)).json();
      const missing = await page.request.post(`${url}/enqueue`, {
        form: { agent: AGENT, name: "echo forged" },
        maxRedirects: 0,
      });
      assert.equal(missing.status(), 403);
      assert.match(await missing.text(), /security token is missing/);
      const wrong = await page.request.post(`${url}/enqueue`, {
        form: { agent: AGENT, name: "echo forged", csrf: "x".repeat(43) },
        maxRedirects: 0,
      });
      assert.equal(wrong.status(), 403);
      // The session reads the API but never changes anything through it.
      const apiPost = await page.request.post(`${url}/api/v1/agent/commands/enqueue`, {
        data: { agent_id: AGENT, name: "echo forged" },
      });
      assert.equal(apiPost.status(), 401);
      // A page of another site posts a form to the console, with the browser's session cookie.
      await using attacker = Deno.serve(
        { port: 0, hostname: "127.0.0.1", onListen() {} },
        () =>
          new Response(
            `<form method="post" action="${url}/enqueue">` +
              `<input name="agent" value="${AGENT}"><input name="name" value="echo forged">` +
              `<input name="csrf" value="guess"><button>Win a prize</button></form>`,
            { headers: { "Content-Type": "text/html" } },
          ),
      );
      await page.goto(`http://127.0.0.1:${attacker.addr.port}/`);
      const [attack] = await Promise.all([
        page.waitForResponse((r) => r.url() === `${url}/enqueue`),
        page.getByRole("button", { name: "Win a prize" }).click(),
      ]);
      assert.equal(attack.status(), 403);
      assert.match(await page.getByRole("alert").innerText(), /This form was refused/);
      const after = await (await page.request.get(`${url}/api/v1/commands?limit=1000`)).json();
      assert.equal(after.commands.length, before.commands.length);
    });

    await t.step("output with <script> is shown as text, runs nothing, live", async () => {
      const line = `echo '<script>alert(1)</script>' '<img src=x onerror=alert(2)>'`;
      await enqueueFromForm(page, url, LATE, line);
      assert.equal(await statusOf(page), "queued", "its agent is not running yet");
      await markWindow(page);
      await using late = startAgent({
        url,
        agentId: LATE,
        stateDir: `${dir.path}/late-state`,
        cwd: dir.path,
        args: ["--agent-token", lateToken],
      });
      await eventually(
        "the command page shows success",
        async () => (await statusOf(page)) === "success",
        30_000,
      );
      assert.ok(await stillMarked(page), "updated without a reload");
      assert.equal(
        await page.locator("pre#stdout").textContent(),
        "<script>alert(1)</script> <img src=x onerror=alert(2)>\n",
      );
      assert.equal(await page.locator(".cmdline").innerText(), line);
      assert.equal(await page.locator("main script, main img").count(), 0);
      assert.deepEqual(dialogs, []);
      late.kill("SIGTERM");
      await late.exited();
    });

    await t.step("an unknown command id gets a page that says so", async () => {
      const response = await page.goto(`${url}/commands/no-such-command`);
      assert.equal(response?.status(), 404);
      assert.match(await page.getByRole("alert").innerText(), /no-such-command does not exist/);
      assert.doesNotMatch(await page.content(), /\bat .*\.ts:\d+/);
    });

    await t.step(
      "keyboard: the skip link comes first and leads to the content; every field is labelled",
      async () => {
        await page.goto(`${url}/enqueue`);
        const focusedText = () =>
          page.evaluate("document.activeElement && document.activeElement.textContent") as Promise<
            string
          >;
        await page.keyboard.press("Tab");
        assert.equal(await focusedText(), "Skip to content");
        await page.keyboard.press("Enter");
        assert.equal(await page.evaluate("document.activeElement.id"), "main");
        // Every field of the form has a label that names it.
        for (
          const label of ["Agent", "Command line", "Timeout in seconds (optional)", "Priority"]
        ) {
          assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, label);
        }
      },
    );

    await t.step("a long agent id and command line wrap: the tables fit the screen", async () => {
      // An id without a break (as long as ids go) and a long command line for its agent.
      const longAgent = `fleet-${"g".repeat(100)}`;
      await addAgent(db, longAgent, dir.path);
      const enqueued = await page.request.post(`${url}/api/v1/agent/commands/enqueue`, {
        headers: { Authorization: `Bearer ${admin}` },
        data: { agent_id: longAgent, name: `echo ${"verylongword".repeat(40)}` },
      });
      assert.equal(enqueued.status(), 202);
      for (const path of ["/", "/commands"]) {
        await page.goto(`${url}${path}`);
        const width = await page.evaluate("document.documentElement.scrollWidth") as number;
        assert.ok(width <= 1440, `${path} is ${width} px wide at 1440 px`);
      }
    });

    await t.step("readable at 375 px: nothing wider than the screen", async () => {
      await page.setViewportSize({ width: 375, height: 800 });
      for (const path of ["/", "/commands", "/enqueue", `/commands/${helloId}`]) {
        await page.goto(`${url}${path}`);
        const width = await page.evaluate("document.documentElement.scrollWidth") as number;
        assert.ok(width <= 375, `${path} is ${width} px wide at 375 px`);
      }
      await page.screenshot({ path: `${shots}/command-375.png`, fullPage: true });
      await page.setViewportSize({ width: 1440, height: 900 });
    });

    await t.step("the agent list shows the agent offline after the agent stops", async () => {
      agent.kill("SIGTERM");
      await agent.exited();
      await page.goto(`${url}/`);
      await eventually("the agent is offline", async () => {
        await page.reload();
        return (await page.locator(`tr[data-agent="${AGENT}"] .state`).getAttribute(
          "data-state",
        )) === "offline";
      }, 20_000);
    });

    await t.step("log out: the session ends", async () => {
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(/\/login\?out=1$/);
      assert.match(await page.getByRole("status").innerText(), /logged out/);
      await page.goto(`${url}/`);
      assert.equal(new URL(page.url()).pathname, "/login");
      const api = await page.request.get(`${url}/api/v1/commands`);
      assert.equal(api.status(), 401);
    });
    await context.close();
  } finally {
    await browser.close();
  }
}
