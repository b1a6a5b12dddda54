/**
 * The console's pages in process (`app.request`, a fake clock): login, sessions, CSRF, headers,
 * escaping, error pages, the list's filter and paging, dev mode.
 */
import assert from "node:assert/strict";
import { closeLogging, setupLogging } from "../../src/log/mod.ts";
import {
  ADMIN_TOKEN,
  json,
  makeDashboard,
  reportBody,
  type TestDashboard,
} from "../server/_helpers.ts";
import { toBase64 } from "../../src/protocol/mod.ts";
import { StoreError } from "../../src/store/mod.ts";
import {
  AGENT_CHOICES,
  AGENTS_PAGE_SIZE,
  CONTENT_SECURITY_POLICY,
  LOGIN_ATTEMPTS_PER_MINUTE,
  PAGE_SIZE,
} from "../../src/server/web/routes.tsx";

/** A browser in miniature: keeps cookies, follows nothing. */
class Browser {
  readonly cookies = new Map<string, string>();
  constructor(
    readonly t: TestDashboard,
    readonly origin = "http://localhost",
    /** The browser's address, as the HTTP server would give it. */
    readonly remote?: string,
  ) {}

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) {
      headers.set("Cookie", [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; "));
    }
    const request = new Request(`${this.origin}${path}`, { ...init, headers });
    const response = await this.t.dashboard.app.fetch(
      request,
      this.remote === undefined
        ? undefined
        : { remoteAddr: { transport: "tcp", hostname: this.remote, port: 50_000 } },
    );
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const index = pair.indexOf("=");
      const name = pair.slice(0, index);
      const value = pair.slice(index + 1);
      if (/Max-Age=0/.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }

  get(path: string, headers: HeadersInit = {}): Promise<Response> {
    return this.request(path, { headers });
  }

  post(path: string, form: Record<string, string>, headers: HeadersInit = {}) {
    return this.request(path, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams(form).toString(),
    });
  }

  /** The hidden CSRF field of a page. */
  static csrfOf(html: string): string {
    const match = /name="csrf" value="([^"]*)"/.exec(html);
    assert.ok(match, "the page has a CSRF field");
    return match[1];
  }

  async login(token = ADMIN_TOKEN): Promise<Response> {
    const form = await (await this.get("/login")).text();
    return this.post("/login", { csrf: Browser.csrfOf(form), token, next: "/" });
  }
}

function assertSecureHeaders(response: Response, what: string): void {
  assert.equal(response.headers.get("Content-Security-Policy"), CONTENT_SECURITY_POLICY, what);
  assert.equal(response.headers.get("X-Content-Type-Options"), "nosniff", what);
  assert.equal(response.headers.get("X-Frame-Options"), "DENY", what);
}

async function enqueue(t: TestDashboard, id: string, name: string, agent = "a1") {
  const response = await t.admin("POST", "/api/v1/agent/commands/enqueue", {
    id,
    name,
    agent_id: agent,
    params: {},
  });
  assert.equal(response.status, 202, await response.text());
}

/** Delivers, acks and reports a1's next command with the given result fields. */
async function finish(t: TestDashboard, id: string, result: Record<string, unknown> = {}) {
  const wait = await t.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  assert.equal(wait.status, 200, await wait.clone().text());
  const { attempt } = await wait.json();
  const ack = await t.agent({
    path: "/api/v1/agent/commands/ack",
    body: { command_id: id, attempt },
  });
  assert.equal(ack.status, 200);
  await ack.body?.cancel();
  const body = reportBody(id, { attempt });
  Object.assign(body.result as Record<string, unknown>, result);
  const report = await t.agent({ path: "/api/v1/agent/commands/report", body });
  assert.equal(report.status, 200, await report.clone().text());
  await report.body?.cancel();
}

Deno.test("console: every page needs a session outside dev mode", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  for (const path of ["/", "/commands?agent=a1", "/commands/x", "/enqueue"]) {
    const response = await browser.get(path);
    assert.equal(response.status, 303, path);
    const location = new URL(response.headers.get("Location")!, "http://localhost");
    assert.equal(location.pathname, "/login");
    assert.equal(location.searchParams.get("next"), path);
    assertSecureHeaders(response, path);
  }
  const post = await browser.post("/enqueue", { agent: "a1", name: "echo hi" });
  assert.equal(post.status, 303);
  assert.match(post.headers.get("Location")!, /^\/login\?/);
  const list = await (await t.admin("GET", "/api/v1/commands")).json();
  assert.deepEqual(list.commands, [], "nothing was enqueued");
  const login = await browser.get("/login");
  const html = await login.text();
  assert.doesNotMatch(html, /dev mode/);
  assertSecureHeaders(login, "/login");
});

Deno.test("console login: wrong token, missing form token, a form from another site, then the right token", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  const csrf = Browser.csrfOf(await (await browser.get("/login")).text());

  const wrong = await browser.post("/login", { csrf, token: "wrong-token", next: "/" });
  assert.equal(wrong.status, 401);
  assert.match(await wrong.text(), /not the dashboard&#39;s admin token|not the dashboard's admin/);
  assert.equal(browser.cookies.has("status_session"), false);

  const noCsrf = await new Browser(t).post("/login", { token: ADMIN_TOKEN, next: "/" });
  assert.equal(noCsrf.status, 403);
  assert.match(await noCsrf.text(), /login form expired or came from another page/);

  const fresh = Browser.csrfOf(await (await browser.get("/login")).text());
  const foreign = await browser.post("/login", { csrf: fresh, token: ADMIN_TOKEN, next: "/" }, {
    "Sec-Fetch-Site": "cross-site",
  });
  assert.equal(foreign.status, 403);

  const again = Browser.csrfOf(await (await browser.get("/login")).text());
  const ok = await browser.post("/login", {
    csrf: again,
    token: ADMIN_TOKEN,
    next: "//evil.example/x",
  });
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.get("Location"), "/", "never a redirect to another site");
  const cookie = ok.headers.getSetCookie().find((c) => c.startsWith("status_session="))!;
  assert.match(cookie, /; HttpOnly/);
  assert.match(cookie, /; SameSite=Strict/);
  assert.match(cookie, /; Max-Age=43200/);
  assert.doesNotMatch(cookie, /Secure/, "plain HTTP");
  assert.equal(browser.cookies.has("status_login_csrf"), false, "the login token is spent");
  const home = await browser.get("/");
  assert.equal(home.status, 200);
  assert.match(await home.text(), /<h1>Agents<\/h1>/);
});

Deno.test("console login: a login form in another tab, or a page's refresh that landed on the login, does not refuse the form being filled", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  const first = Browser.csrfOf(await (await browser.get("/login?next=%2Fruns")).text());
  // Another tab's login form, and another page's refresh led to the login by its ended session.
  await (await browser.get("/login?next=%2Fcommands")).body?.cancel();
  const refreshed = await browser.get("/");
  assert.equal(refreshed.status, 303);
  await (await browser.get(refreshed.headers.get("Location")!)).body?.cancel();
  const wrong = await browser.post("/login", { csrf: first, token: "wrong-token", next: "/runs" });
  assert.equal(wrong.status, 401, "checked as a token, not refused as a form");
  const ok = await browser.post("/login", { csrf: first, token: ADMIN_TOKEN, next: "/runs" });
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.get("Location"), "/runs");
  assert.equal(browser.cookies.has("status_login_csrf"), false, "the login token is spent");
  // A login form's token is the cookie's while it lasts; a cookie that is no token is replaced.
  const next = new Browser(t);
  next.cookies.set("status_login_csrf", first);
  assert.equal(Browser.csrfOf(await (await next.get("/login")).text()), first);
  const other = new Browser(t);
  other.cookies.set("status_login_csrf", "not a token");
  assert.notEqual(Browser.csrfOf(await (await other.get("/login")).text()), "not a token");
});

Deno.test("console forms: a body cut short is 400 with a message and never logged as an error", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard();
    // Logged in: the forms of the pages read their body too.
    const browser = new Browser(t);
    assert.equal((await browser.login()).status, 303);
    for (const path of ["/login", "/logout", "/enqueue"]) {
      // As `node:http` hands over a body whose client went away after its first bytes.
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("token=a"));
          controller.error(new Error("aborted"));
        },
      });
      const answer = await browser.request(path, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body,
      });
      assert.equal(answer.status, 400, path);
      assert.match((await answer.json()).error, /request body could not be read to its end/);
    }
  } finally {
    closeLogging();
  }
  const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
  assert.deepEqual(errors, []);
});

Deno.test("console login: attempts from one address are limited", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  const attempt = async (token: string) => {
    const csrf = Browser.csrfOf(await (await browser.get("/login")).text());
    return await browser.post("/login", { csrf, token, next: "/" });
  };
  for (let i = 0; i < LOGIN_ATTEMPTS_PER_MINUTE; i++) {
    const wrong = await attempt(`guess-${i}`);
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
  }
  const limited = await attempt(ADMIN_TOKEN);
  assert.equal(limited.status, 429, "even the right token waits");
  assert.match(await limited.text(), /Too many login attempts from this address/);
  assert.ok(Number(limited.headers.get("Retry-After")) >= 1);
  assert.equal(browser.cookies.has("status_session"), false);
  t.clock.advance(60_000);
  assert.equal((await attempt(ADMIN_TOKEN)).status, 303);
});

Deno.test("console login under TLS sets a Secure cookie, also behind a TLS proxy", async () => {
  await using t = await makeDashboard();
  const direct = await new Browser(t, "https://localhost").login();
  assert.equal(direct.status, 303);
  const cookie = direct.headers.getSetCookie().find((c) => c.startsWith("status_session="))!;
  assert.match(cookie, /; Secure$/);

  // A proxy that ends TLS forwards plain HTTP and says so; forms from its pages are accepted.
  const proxied = new Browser(t);
  const form = await (await proxied.get("/login")).text();
  const response = await proxied.post("/login", {
    csrf: Browser.csrfOf(form),
    token: ADMIN_TOKEN,
    next: "/enqueue",
  }, {
    "X-Forwarded-Proto": "https",
    Origin: "https://status.example",
    "Sec-Fetch-Site": "same-origin",
  });
  assert.equal(response.status, 303);
  assert.match(
    response.headers.getSetCookie().find((c) => c.startsWith("status_session="))!,
    /; Secure$/,
  );
});

Deno.test("console: an expired session gets the login page saying so", async () => {
  await using t = await makeDashboard({ consoleSessionTtlSecs: 600 });
  const browser = new Browser(t);
  await browser.login();
  assert.equal((await browser.get("/commands")).status, 200);
  assert.equal((await browser.get("/api/v1/commands")).status, 200);
  t.clock.advance(601_000);
  const page = await browser.get("/commands");
  assert.equal(page.status, 303);
  const location = page.headers.get("Location")!;
  assert.match(location, /^\/login\?/);
  assert.match(location, /expired=1/);
  const login = await browser.get(location);
  assert.match(await login.text(), /Your session has expired\. Log in again/);
  assert.equal((await browser.get("/api/v1/commands")).status, 401, "nor the API");
});

Deno.test("console: a form sent after its session expired loses nothing: after the login it is back, filled", async () => {
  await using t = await makeDashboard({ consoleSessionTtlSecs: 600 });
  const browser = new Browser(t);
  await browser.login();
  const csrf = Browser.csrfOf(await (await browser.get("/enqueue")).text());
  t.clock.advance(601_000);
  const sent = await browser.post("/enqueue", {
    csrf,
    agent: "a2",
    name: "du -sh /tmp & more",
    timeout: "9",
    priority: "high",
  });
  assert.equal(sent.status, 303);
  const location = new URL(sent.headers.get("Location")!, "http://localhost");
  assert.equal(location.pathname, "/login");
  const next = location.searchParams.get("next")!;
  assert.equal(
    next,
    "/enqueue?agent=a2&name=du+-sh+%2Ftmp+%26+more&timeout=9&priority=high",
  );
  const listed = await (await t.admin("GET", "/api/v1/commands")).json();
  assert.equal(listed.commands.length, 0, "nothing was enqueued");
  // Logging in from that page leads back to the form, filled with what was typed.
  const loginPage = await (await browser.get(`${location.pathname}${location.search}`)).text();
  const loggedIn = await browser.post("/login", {
    csrf: Browser.csrfOf(loginPage),
    token: ADMIN_TOKEN,
    next,
  });
  assert.equal(loggedIn.headers.get("Location"), next);
  const form = await (await browser.get(next)).text();
  assert.match(form, /<option value="a2" selected>/);
  assert.match(form, /value="du -sh \/tmp &amp; more"/);
  assert.match(form, /id="enqueue-timeout"[^>]* value="9"/);
  assert.match(form, /<option value="high" selected>/);
  // The start-a-run form likewise; a cancel leads back to its page.
  const runCsrf = Browser.csrfOf(await (await browser.get("/runs/new")).text());
  t.clock.advance(601_000);
  const run = await browser.post("/runs/new", { csrf: runCsrf, name: "uptime", labels: "a=b" });
  const runNext = new URL(run.headers.get("Location")!, "http://localhost").searchParams.get(
    "next",
  );
  assert.equal(runNext, "/runs/new?name=uptime&labels=a%3Db");
  const cancel = await browser.post("/commands/c-1/cancel", { csrf: runCsrf });
  const cancelNext = new URL(cancel.headers.get("Location")!, "http://localhost").searchParams
    .get("next");
  assert.equal(cancelNext, "/commands/c-1");
});

Deno.test("console: a form with a command line of the longest, sent after its session expired, is back filled after the login", async () => {
  await using t = await makeDashboard({ consoleSessionTtlSecs: 600 });
  const browser = new Browser(t);
  await browser.login();
  const csrf = Browser.csrfOf(await (await browser.get("/enqueue")).text());
  t.clock.advance(601_000);
  const name = "tar -czf /tmp/a.tgz /var/log/x ".repeat(200).slice(0, 4096);
  const sent = await browser.post("/enqueue", { csrf, agent: "a2", name });
  const location = new URL(sent.headers.get("Location")!, "http://localhost");
  assert.equal(location.pathname, "/login");
  assert.ok(location.href.length < 16 * 1024, `the login's address is ${location.href.length}`);
  const next = location.searchParams.get("next")!;
  const loginPage = await (await browser.get(`${location.pathname}${location.search}`)).text();
  const loggedIn = await browser.post("/login", {
    csrf: Browser.csrfOf(loginPage),
    token: ADMIN_TOKEN,
    next,
  });
  assert.equal(loggedIn.headers.get("Location"), next);
  const form = await (await browser.get(next)).text();
  assert.ok(form.includes(`value="${name}"`), "the command line is back");
});

Deno.test('console command page: "Enqueue again" opens the form filled with the command', async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const response = await t.admin("POST", "/api/v1/agent/commands/enqueue", {
    id: "c1",
    name: "echo a&b",
    agent_id: "a2",
    params: { timeout_secs: 30, priority: "low" },
  });
  assert.equal(response.status, 202);
  const page = await (await browser.get("/commands/c1")).text();
  assert.match(
    page,
    /<a href="\/enqueue\?agent=a2&amp;name=echo\+a%26b&amp;timeout=30&amp;priority=low">Enqueue again…<\/a>/,
  );
  // A command with parameters the form does not take has no such link (they would be lost).
  const other = await t.admin("POST", "/api/v1/agent/commands/enqueue", {
    id: "c2",
    name: "echo hi",
    agent_id: "a2",
    params: { ttl_secs: 60 },
  });
  assert.equal(other.status, 202);
  assert.doesNotMatch(await (await browser.get("/commands/c2")).text(), /Enqueue again/);
});

Deno.test("console session cookie: reads the operator API, never changes it", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c1", "sleep 5");
  const read = await browser.get("/api/v1/commands/c1");
  assert.equal(read.status, 200);
  assert.equal((await read.json()).id, "c1");
  const cancel = await browser.request("/api/v1/commands/c1/cancel", { method: "POST" });
  assert.equal(cancel.status, 401);
  await cancel.body?.cancel();
  const forged = await new Browser(t).request("/api/v1/commands/c1", {
    headers: { Cookie: "status_session=v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAA.x" },
  });
  assert.equal(forged.status, 401);
  await forged.body?.cancel();
  assert.equal((await (await t.admin("GET", "/api/v1/commands/c1")).json()).status, "queued");
});

Deno.test("console session cookie: reads the operator API only for the console's own pages, never for another site's", async (t) => {
  await using d = await makeDashboard();
  const browser = new Browser(d);
  await browser.login();
  await enqueue(d, "c1", "sleep 5");
  // A page of a sibling site (another name under the same parent domain is the same "site"): the
  // browser sends the SameSite=Strict cookie with its requests too. Old behaviour: they read the
  // API with the operator's session, and could hold its event streams (and its address's budget).
  for (const site of ["same-site", "cross-site"]) {
    await t.step(site, async () => {
      for (const path of ["/api/v1/commands/c1", "/api/v1/commands/c1/events", "/api/v1/agents"]) {
        const response = await browser.get(path, { "Sec-Fetch-Site": site });
        assert.equal(response.status, 403, `${site} ${path}`);
        assert.match(String((await json(response)).error), /console's own pages/);
      }
      assert.equal(d.dashboard.streams.open, 0);
    });
  }
  await t.step("its own pages, a typed address and an older browser read it", async () => {
    const own: Record<string, string>[] = [
      { "Sec-Fetch-Site": "same-origin" },
      { "Sec-Fetch-Site": "none" },
      {},
    ];
    for (const headers of own) {
      const response = await browser.get("/api/v1/commands/c1", headers);
      assert.equal(response.status, 200, JSON.stringify(headers));
      await response.body?.cancel();
    }
  });
  await t.step("the admin token is judged alone, wherever the request comes from", async () => {
    const response = await browser.get("/api/v1/commands/c1", {
      "Sec-Fetch-Site": "cross-site",
      Authorization: `Bearer ${ADMIN_TOKEN}`,
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });
});

Deno.test("console: a cookie of the same name set for a longer path or the parent domain locks nobody out", async () => {
  await using t = await makeDashboard();
  // Another site under the parent domain (or a page over plain HTTP) set these; the browser sends
  // them before the dashboard's own.
  const planted = "status_session=v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAA.x";
  const plantedLogin = "status_login_csrf=planted";
  const form = await t.dashboard.app.request("/login");
  const loginCookie = form.headers.getSetCookie()[0].split(";")[0];
  const login = await t.dashboard.app.request("/login", {
    method: "POST",
    headers: {
      "Content-Type": "application/x-www-form-urlencoded",
      Cookie: `${plantedLogin}; ${loginCookie}`,
    },
    body: new URLSearchParams({
      csrf: loginCookie.slice(loginCookie.indexOf("=") + 1),
      token: ADMIN_TOKEN,
      next: "/commands",
    }).toString(),
  });
  assert.equal(login.status, 303, "the login form's own cookie counts");
  assert.equal(login.headers.get("Location"), "/commands");
  const session = login.headers.getSetCookie().find((line) => line.startsWith("status_session="))!
    .split(";")[0];
  const cookie = `${planted}; ${session}`;
  const page = await t.dashboard.app.request("/commands", { headers: { Cookie: cookie } });
  assert.equal(page.status, 200, "the page is shown, not the login form again");
  await page.body?.cancel();
  const api = await t.dashboard.app.request("/api/v1/commands", { headers: { Cookie: cookie } });
  assert.equal(api.status, 200, "the API reads with the valid session");
  await api.body?.cancel();
  const alone = await t.dashboard.app.request("/commands", { headers: { Cookie: planted } });
  assert.equal(alone.status, 303, "the planted cookie alone is no session");
  await alone.body?.cancel();
});

Deno.test("console forms: refused without the session's CSRF token, accepted with it", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c1", "sleep 5");
  const page = await (await browser.get("/commands/c1")).text();
  const csrf = Browser.csrfOf(page);
  assert.match(page, /Cancel command/);

  const forms: Record<string, string>[] = [{}, { csrf: "" }, { csrf: "x".repeat(43) }];
  for (const form of forms) {
    const refused = await browser.post("/commands/c1/cancel", form);
    assert.equal(refused.status, 403, JSON.stringify(form));
    const text = await refused.text();
    assert.match(text, /security token is missing/);
    assertSecureHeaders(refused, "refused form");
  }
  const foreign = await browser.post("/commands/c1/cancel", { csrf }, {
    "Sec-Fetch-Site": "cross-site",
  });
  assert.equal(foreign.status, 403);
  await foreign.body?.cancel();
  for (const form of [{ agent: "a1", name: "echo forged" }]) {
    const refused = await browser.post("/enqueue", form);
    assert.equal(refused.status, 403);
    await refused.body?.cancel();
  }
  assert.equal((await (await t.admin("GET", "/api/v1/commands/c1")).json()).status, "queued");
  assert.equal((await (await t.admin("GET", "/api/v1/commands")).json()).commands.length, 1);

  const cancelled = await browser.post("/commands/c1/cancel", { csrf });
  assert.equal(cancelled.status, 303);
  assert.equal(cancelled.headers.get("Location"), "/commands/c1?done=cancelled");
  assert.equal((await (await t.admin("GET", "/api/v1/commands/c1")).json()).status, "cancelled");
  const after = await (await browser.get("/commands/c1?done=cancelled")).text();
  assert.match(after, /Cancelled before it was delivered/);
  assert.doesNotMatch(after, /Cancel command/);
});

Deno.test("console forms: a form larger than 64 KiB is 413 saying so, not refused as a forgery", async (t) => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "debug", write: (line) => lines.push(line) });
  try {
    await using d = await makeDashboard({ runSweepMs: 0 });
    const browser = new Browser(d);
    await browser.login();
    await enqueue(d, "c1", "sleep 5");
    const csrf = Browser.csrfOf(await (await browser.get("/commands/c1")).text());
    // The session's own token, and a field that makes the form 70 KB.
    const big = { csrf, agent: "a1", name: `echo ${"x".repeat(70_000)}` };
    for (const path of ["/enqueue", "/runs/new", "/commands/c1/cancel", "/runs/r1/cancel"]) {
      await t.step(path, async () => {
        const response = await browser.post(path, big);
        assert.equal(response.status, 413);
        assertSecureHeaders(response, path);
        const text = await response.text();
        assert.match(text, /<title>Form too large/);
        assert.match(text, /larger than the 64 KiB the console reads[^<]*Nothing was changed/);
        assert.doesNotMatch(text, /security token/);
      });
    }
    await t.step("/logout", async () => {
      const response = await browser.post("/logout", big);
      assert.equal(response.status, 413);
      await response.body?.cancel();
      assert.equal((await browser.get("/")).status, 200, "the session goes on");
    });
    await t.step("/login", async () => {
      const stranger = new Browser(d);
      const form = await (await stranger.get("/login")).text();
      const response = await stranger.post("/login", {
        csrf: Browser.csrfOf(form),
        token: ADMIN_TOKEN,
        next: `/${"x".repeat(70_000)}`,
      });
      assert.equal(response.status, 413);
      const text = await response.text();
      assert.match(text, /larger than the 64 KiB the console reads/);
      assert.doesNotMatch(text, /expired or came from another page/);
      assert.equal(stranger.cookies.has("status_session"), false, "no session was opened");
    });
    const command = await (await d.admin("GET", "/api/v1/commands/c1")).json();
    assert.equal(command.status, "queued", "nothing was cancelled");
    assert.equal((await d.store.listCommands({ limit: 10 })).length, 1, "nothing was enqueued");
    assert.equal((await d.store.listRuns({ limit: 10 })).length, 0, "nothing was started");
  } finally {
    closeLogging();
  }
  const refusals = lines.filter((line) => /console (form|login) refused/.test(line));
  assert.equal(refusals.length, 6, refusals.join("\n"));
  for (const line of refusals) {
    assert.match(line, /form larger than 64 KiB/);
    assert.doesNotMatch(line, /CSRF/);
  }
});

Deno.test("console enqueue: validation messages keep the values; success shows the command", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const form = await (await browser.get("/enqueue")).text();
  const csrf = Browser.csrfOf(form);
  assert.match(form, /<label for="enqueue-agent">Agent<\/label>/);
  assert.match(form, /<option value="a1"/);
  assert.match(form, /<option value="a2"/);

  const badTimeout = await browser.post("/enqueue", {
    csrf,
    agent: "a1",
    name: "sleep 1",
    timeout: "1.5",
  });
  assert.equal(badTimeout.status, 400);
  const badText = await badTimeout.text();
  assert.match(
    badText,
    /Timeout must be a whole number of seconds from 1 to 86400, got &quot;1.5&quot;/,
  );
  assert.match(badText, /value="sleep 1"/);

  const unknown = await browser.post("/enqueue", { csrf, agent: "nobody", name: "echo hi" });
  assert.equal(unknown.status, 404);
  assert.match(await unknown.text(), /agent nobody is not registered/);
  const empty = await browser.post("/enqueue", { csrf, agent: "a1", name: "  " });
  assert.equal(empty.status, 400);
  assert.match(await empty.text(), /Enter a command line/);

  const badPriority = await browser.post("/enqueue", {
    csrf,
    agent: "a1",
    name: "sleep 1",
    priority: "asap",
  });
  assert.equal(badPriority.status, 400);
  assert.match(await badPriority.text(), /Priority must be one of critical, high, normal, low/);

  const ok = await browser.post("/enqueue", {
    csrf,
    agent: "a2",
    name: "sleep 2",
    timeout: "9",
    priority: "high",
  });
  assert.equal(ok.status, 303);
  const id = decodeURIComponent(ok.headers.get("Location")!.replace("/commands/", ""));
  const command = await (await t.admin("GET", `/api/v1/commands/${id}`)).json();
  assert.equal(command.agent_id, "a2");
  assert.equal(command.name, "sleep 2");
  assert.deepEqual(command.params, { timeout_secs: 9, priority: "high" });
  assert.equal(command.priority, "high");
  const page = await (await browser.get(`/commands/${encodeURIComponent(id)}`)).text();
  assert.match(page, /<span class="status idle">queued<\/span>/);
  assert.match(page, /data-final="false"/);
  assert.match(page, /Timeout<\/dt><dd>9 s<\/dd>/);
  assert.match(page, /Priority<\/dt><dd>high<\/dd>/);
});

Deno.test("console enqueue: a refused timeout or priority of tens of KB is named cut, not echoed whole", async (t) => {
  await using d = await makeDashboard();
  const browser = new Browser(d);
  await browser.login();
  const csrf = Browser.csrfOf(await (await browser.get("/enqueue")).text());
  // Each U+202E is 9 bytes of the form's body (%E2%80%AE): 5,000 of them are 45 KB.
  const cases: Array<[string, string, RegExp]> = [
    ["timeout", "9".repeat(50_000), /Timeout must be a whole number[^<]*/],
    ["priority", "\u202e".repeat(5_000), /Priority must be one of[^<]*/],
  ];
  for (const [field, value, message] of cases) {
    await t.step(field, async () => {
      const response = await browser.post("/enqueue", {
        csrf,
        agent: "a1",
        name: "echo hi",
        [field]: value,
      });
      assert.equal(response.status, 400);
      const said = message.exec(await response.text())?.[0] ?? "";
      assert.ok(said.endsWith(`… (${value.length} characters)&quot;.`), said.slice(-100));
      assert.ok(said.length < 1500, `the message has ${said.length} characters`);
      assert.doesNotMatch(said, /\u202e/, "its bidirectional controls show as escapes");
    });
  }
  assert.equal((await d.store.listCommands({ limit: 10 })).length, 0, "nothing was enqueued");
});

Deno.test("console enqueue: a form sent twice (a double click) enqueues one command", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const form = await (await browser.get("/enqueue")).text();
  const csrf = Browser.csrfOf(form);
  const id = /name="id" value="([^"]+)"/.exec(form)?.[1];
  assert.ok(id, "the form carries the id of the command it enqueues");
  const fields = { csrf, id, agent: "a1", name: "sleep 1" };
  const [first, second] = await Promise.all([
    browser.post("/enqueue", fields),
    browser.post("/enqueue", fields),
  ]);
  assert.equal(first.status, 303);
  assert.equal(second.status, 303);
  assert.equal(first.headers.get("Location"), `/commands/${id}`);
  assert.equal(second.headers.get("Location"), `/commands/${id}`);
  const listed = await (await t.admin("GET", "/api/v1/commands?agent_id=a1")).json();
  assert.deepEqual(listed.commands.map((c: { id: string }) => c.id), [id], "one command");
  // The same form sent again with other values: refused with a sentence, and a new id to send.
  const edited = await browser.post("/enqueue", { ...fields, name: "sleep 2" });
  assert.equal(edited.status, 409);
  const page = await edited.text();
  assert.match(page, /Not enqueued: this form was sent before with other values/);
  assert.match(page, /value="sleep 2"/);
  const again = /name="id" value="([^"]+)"/.exec(page)?.[1];
  assert.ok(again && again !== id, "a new id");
  const after = await (await t.admin("GET", "/api/v1/commands?agent_id=a1")).json();
  assert.equal(after.commands.length, 1);
});

Deno.test("console without JavaScript: pages that follow what they show say that a reload is needed", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c-live", "echo one");
  await enqueue(t, "c-done", "echo two");
  await finish(t, "c-live");
  await enqueue(t, "c-open", "echo three");
  const note =
    /<noscript><p class="notice info" id="noscript-note">JavaScript is off, so this page does not update itself: reload it/;
  assert.match(await (await browser.get("/")).text(), note, "the agents page");
  assert.match(await (await browser.get("/commands/c-done")).text(), note, "a queued command");
  assert.doesNotMatch(
    await (await browser.get("/commands/c-live")).text(),
    /noscript/,
    "an ended command does not change",
  );
  assert.match(await (await browser.get("/runs")).text(), note, "the runs page");
});

Deno.test("console: a filter or an enqueue naming an agent that is not registered says so, never another agent", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c1", "echo one");
  // The list of an agent removed since (or typed): the filter names it, not "All agents".
  const list = await (await browser.get("/commands?agent=gone-1")).text();
  assert.match(list, /<option value="gone-1" selected>gone-1 \(not registered\)<\/option>/);
  assert.doesNotMatch(list, /<option value="" selected/);
  // A page past the end of the list (its cursor the oldest command's) says so, not that nothing
  // matches.
  const seq = (await t.store.getCommand("c1"))!.seq;
  const past = await (await browser.get(`/commands?before=${seq}`)).text();
  assert.match(past, /No older command matches\./);
  assert.match(past, /<a href="\/commands">Go to the first page<\/a>/);
  assert.doesNotMatch(past, /No command matches/);
  // An old link to a page number (the list was paged by number) shows the first page.
  const old = await (await browser.get("/commands?page=3")).text();
  assert.match(old, /<span class="sub">c1<\/span>/);
  // The enqueue form asked for such an agent chooses none in its place.
  const form = await browser.get("/enqueue?agent=gone-1");
  assert.equal(form.status, 200);
  const text = await form.text();
  assert.match(text, /Agent gone-1 is not registered: choose another\./);
  assert.match(text, /<option value="" selected>Choose an agent<\/option>/);
  assert.doesNotMatch(text, /<option value="a1" selected/);
  const known = await (await browser.get("/enqueue?agent=a2")).text();
  assert.match(known, /<option value="a2" selected>/);
  assert.doesNotMatch(known, /Choose an agent|not registered/);
});

Deno.test("console: a queued command's page says why it waits when its agent is offline or never connected", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "q1", "echo one", "a2");
  const page = await (await browser.get("/commands/q1")).text();
  assert.match(
    page,
    /Agent a2 has never connected: the command waits in its queue until the agent connects; it expires at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC if still queued then\./,
  );
  // An agent that is online (it just asked for work) can take it: nothing to say.
  await enqueue(t, "q2", "echo two");
  await enqueue(t, "q3", "echo three");
  await finish(t, "q2");
  assert.doesNotMatch(await (await browser.get("/commands/q3")).text(), /waits in its queue/);
  // Seen long ago: offline, and when it was last seen.
  t.clock.advance(600_000);
  assert.match(
    await (await browser.get("/commands/q3")).text(),
    /Agent a1 is offline \(last seen 10 min ago\): the command waits in its queue until the agent connects/,
  );
  // Once delivered, the page says nothing more about the agent.
  assert.doesNotMatch(await (await browser.get("/commands/q2")).text(), /waits in its queue/);
});

Deno.test("console: in a fleet larger than a list, the commands filter, the enqueue form and a queued command's page read their own agents, not the fleet", async (t) => {
  await using d = await makeDashboard();
  // a1, a2 and 2.5 lists more: b0249 is past the first AGENT_CHOICES by far.
  const count = AGENT_CHOICES * 2 + AGENT_CHOICES / 2;
  for (let i = 0; i < count; i++) {
    await d.store.ensureAgent(`b${String(i).padStart(4, "0")}`, d.clock.now());
  }
  // How many agents each listing read, and the agents read alone (set before the dashboard first
  // calls them).
  const read: number[] = [];
  const looked: string[] = [];
  const listAgents = d.store.listAgents.bind(d.store);
  const getAgent = d.store.getAgent.bind(d.store);
  d.store.listAgents = async (...args) => {
    const agents = await listAgents(...args);
    read.push(agents.length);
    return agents;
  };
  d.store.getAgent = (id) => {
    looked.push(id);
    return getAgent(id);
  };
  const browser = new Browser(d);
  await browser.login();
  await enqueue(d, "q1", "echo one", "b0249");
  const reset = () => {
    read.length = 0;
    looked.length = 0;
  };
  // Old behaviour: every agent (252) was read for each page, a <select> of all of them shown.
  const choices = (text: string, id: string) =>
    [...(new RegExp(`<datalist id="${id}">(.*?)</datalist>`, "s").exec(text)?.[1] ?? "")
      .matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);

  await t.step("the commands filter takes a typed agent, the first ones suggested", async () => {
    reset();
    const text = await (await browser.get("/commands?agent=b0249")).text();
    assert.deepEqual(read, [AGENT_CHOICES + 1]);
    assert.doesNotMatch(text, /<select id="filter-agent"/);
    assert.match(
      text,
      /<input id="filter-agent" name="agent" type="text" list="filter-agent-choices"[^>]* value="b0249"/,
    );
    const suggested = choices(text, "filter-agent-choices");
    assert.deepEqual([suggested.length, suggested[0], suggested.at(-1)], [
      AGENT_CHOICES,
      "a1",
      "b0097",
    ]);
    assert.doesNotMatch(text, /not registered/);
    assert.match(text, /<span class="sub">q1<\/span>/);
    reset();
    const gone = await (await browser.get("/commands?agent=gone-1")).text();
    assert.match(gone, /gone-1 is not registered\. Empty: all agents\./);
    assert.deepEqual(read, [AGENT_CHOICES + 1]);
    assert.deepEqual(looked, ["gone-1"]);
  });

  await t.step("the enqueue form takes a typed agent; one past the list is no error", async () => {
    reset();
    const text = await (await browser.get("/enqueue?agent=b0249")).text();
    assert.deepEqual(read, [AGENT_CHOICES + 1]);
    assert.match(text, /<input id="enqueue-agent" name="agent" type="text"[^>]* value="b0249"/);
    assert.equal(choices(text, "enqueue-agent-choices").length, AGENT_CHOICES);
    assert.doesNotMatch(text, /not registered/);
    const gone = await (await browser.get("/enqueue?agent=gone-1")).text();
    assert.match(gone, /Agent gone-1 is not registered: choose another\./);
    // Sent with an agent past the list: enqueued.
    const csrf = Browser.csrfOf(text);
    const sent = await browser.post("/enqueue", { csrf, agent: "b0248", name: "echo two" });
    assert.equal(sent.status, 303);
    assert.equal((await d.store.listCommands({ agentId: "b0248", limit: 2 })).length, 1);
  });

  await t.step("a queued command's page reads its own agent alone", async () => {
    reset();
    const text = await (await browser.get("/commands/q1")).text();
    assert.deepEqual(read, []);
    assert.deepEqual(looked, ["b0249"]);
    assert.match(text, /Agent b0249 has never connected: the command waits in its queue/);
  });
});

Deno.test("console cancel sent twice (a double click): the second says the command is cancelled, not that it ended first", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c1", "sleep 60");
  await enqueue(t, "c2", "sleep 60");
  await finish(t, "c1");
  const csrf = Browser.csrfOf(await (await browser.get("/commands/c2")).text());
  const first = await browser.post("/commands/c2/cancel", { csrf });
  assert.equal(first.headers.get("Location"), "/commands/c2?done=cancelled");
  const second = await browser.post("/commands/c2/cancel", { csrf });
  assert.equal(second.headers.get("Location"), "/commands/c2?done=already");
  assert.match(await (await browser.get("/commands/c2?done=already")).text(), /It is cancelled\./);
  // A command that ended by itself still says so.
  const ended = await browser.post("/commands/c1/cancel", { csrf });
  assert.equal(ended.headers.get("Location"), "/commands/c1?done=final");
});

Deno.test("console: a ?done= the page has no notice for shows none, never a property of every object", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c1", "echo hi");
  const run = await t.admin("POST", "/api/v1/runs", {
    id: "r1",
    name: "echo hi",
    target: { agents: ["a2"] },
  });
  assert.equal(run.status, 201, await run.text());
  for (const path of ["/commands/c1", "/runs/r1"]) {
    for (const done of ["constructor", "toString", "__proto__", "hasOwnProperty", "nope"]) {
      const response = await browser.get(`${path}?done=${done}`);
      assert.equal(response.status, 200, `${path}?done=${done}`);
      const text = await response.text();
      assert.doesNotMatch(text, /native code|\[object /, `${path}?done=${done}`);
      assert.doesNotMatch(
        text,
        /class="notice info" role="status">(?!Agent )/,
        `${path}?done=${done}`,
      );
    }
  }
  assert.match(await (await browser.get("/commands/c1?done=enqueued")).text(), />Enqueued\.</);
});

Deno.test("console: a ?done= of a link made elsewhere never says that a cancel happened when it did not", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "c1", "rm -rf /srv/data");
  const run = await t.admin("POST", "/api/v1/runs", {
    id: "r1",
    name: "rm -rf /srv/data",
    target: { agents: ["a2"] },
  });
  assert.equal(run.status, 201, await run.text());
  // Old behaviour: the page showed whatever notice its address named, so a link sent to an
  // operator said "Cancelled before it was delivered." of a command still queued, and "Cancelled:
  // nothing more starts" of a run going on.
  const cases: Array<[string, string[]]> = [
    ["/commands/c1", ["cancelled", "requested", "already", "final"]],
    ["/runs/r1", ["cancelled", "already", "final"]],
  ];
  for (const [path, dones] of cases) {
    for (const done of dones) {
      const text = await (await browser.get(`${path}?done=${done}`)).text();
      assert.doesNotMatch(
        text,
        /class="notice info" role="status">(?!Agent )/,
        `${path}?done=${done}`,
      );
      assert.doesNotMatch(text, /Cancelled|Cancel requested|is cancelled|nothing to cancel/, done);
    }
  }
  // What a form did is still said.
  const csrf = Browser.csrfOf(await (await browser.get("/commands/c1")).text());
  const cancelled = await browser.post("/commands/c1/cancel", { csrf });
  const page = await (await browser.get(cancelled.headers.get("Location")!)).text();
  assert.match(page, /Cancelled before it was delivered\./);
  const stopped = await browser.post("/runs/r1/cancel", { csrf });
  const runPage = await (await browser.get(stopped.headers.get("Location")!)).text();
  assert.match(runPage, /Cancelled: nothing more starts/);
});

Deno.test("console: stored strings are text, never markup; no inline script or style", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const evil = `echo "<script>alert(1)</script>" '"><img src=x onerror=alert(2)>'`;
  await enqueue(t, "x1", evil);
  await finish(t, "x1", { stdout: "<script>alert(3)</script>\n", stderr: "</pre><b>bold</b>" });
  for (const path of ["/commands/x1", "/commands", "/"]) {
    const html = await (await browser.get(path)).text();
    assert.doesNotMatch(html, /<script>alert/, path);
    assert.doesNotMatch(html, /<img src=x/, path);
    assert.doesNotMatch(html, /<b>bold/, path);
    // The only script element is the dashboard's own file; no inline handlers or styles.
    assert.deepEqual(html.match(/<script[^>]*>/g), ['<script src="/static/console.js" defer>']);
    assert.doesNotMatch(html, /<[^>]*\son[a-z]+=/i, path);
    assert.doesNotMatch(html, /<[^>]*\sstyle=/i, path);
  }
  const page = await (await browser.get("/commands/x1")).text();
  assert.match(page, /&lt;script&gt;alert\(3\)&lt;\/script&gt;/);
  assert.match(page, /&lt;\/pre&gt;&lt;b&gt;bold&lt;\/b&gt;/);
  assert.match(page, /echo &quot;&lt;script&gt;alert\(1\)&lt;\/script&gt;&quot;/);
});

Deno.test("console: output that was cut shows a marker where it was cut", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "big", "yes");
  await finish(t, "big", {
    stdout: "HEAD".repeat(4) + "TAIL".repeat(4),
    stdout_truncated_bytes: 123456,
  });
  const page = await (await browser.get("/commands/big")).text();
  assert.match(
    page,
    /HEADHEADHEADHEAD<span class="cut" role="note">\n\[… 123456 bytes of stdout were cut here …\]\n<\/span>TAILTAILTAILTAIL/,
  );
  assert.match(page, /123456 bytes in between were dropped/);
  assert.doesNotMatch(page, /bytes of stderr were cut/);
});

Deno.test("console: a command that ended without a result shows the output its agent sent while it ran", async () => {
  await using t = await makeDashboard({ maxAttempts: 1 });
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "died", "sleep 600");
  await enqueue(t, "quiet", "sleep 600", "a2");
  const wait = await t.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  assert.equal(wait.status, 200);
  await wait.body?.cancel();
  const ack = await t.agent({
    path: "/api/v1/agent/commands/ack",
    body: { command_id: "died", attempt: 1 },
  });
  assert.equal(ack.status, 200);
  await ack.body?.cancel();
  const data = toBase64(new TextEncoder().encode("step 1 of 3 <done>\n"));
  const chunk = await t.agent({
    path: "/api/v1/agent/commands/died/output",
    body: { attempt: 1, stream: "stdout", offset: 0, data },
  });
  assert.equal(chunk.status, 200, await chunk.clone().text());
  await chunk.body?.cancel();
  // Its agent dies: no report, and the execution lease ends with no attempt left.
  t.clock.advance(3_600_000);
  await t.dashboard.expireLeases();
  const died = await json(await t.admin("GET", "/api/v1/commands/died"));
  assert.equal(died.status, "lost");
  const page = await (await browser.get("/commands/died")).text();
  assert.match(
    page,
    /It ended without a result: this is the output its agent sent while it ran \(attempt 1\)\./,
  );
  assert.match(page, /<pre id="stdout"[^>]*>step 1 of 3 &lt;done&gt;\n<\/pre>/);
  assert.doesNotMatch(page, /No output was recorded/);
  // One that sent nothing still says so.
  await t.admin("POST", "/api/v1/commands/quiet/cancel");
  const quiet = await (await browser.get("/commands/quiet")).text();
  assert.match(quiet, /No output was recorded\./);
  assert.doesNotMatch(quiet, /It ended without a result/);
});

Deno.test("console commands list: newest first, filtered by agent and status, paged", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const total = PAGE_SIZE + 5;
  for (let i = 0; i < total; i++) {
    await enqueue(t, `c${String(i).padStart(2, "0")}`, `echo ${i}`, i % 2 === 0 ? "a1" : "a2");
    t.clock.advance(1000);
  }
  await t.admin("POST", "/api/v1/commands/c01/cancel");

  const first = await (await browser.get("/commands")).text();
  const ids = [...first.matchAll(/<span class="sub">(c\d\d)<\/span>/g)].map((m) => m[1]);
  assert.equal(ids.length, PAGE_SIZE);
  assert.equal(ids[0], `c${total - 1}`, "newest first");
  const older = first.match(/href="\/commands\?before=(\d+)" rel="next">Older</);
  assert.ok(older, "an Older link with the cursor of the page's last command");
  assert.doesNotMatch(first, /rel="first"/);
  // A command enqueued since the first page was read is not on the next page.
  await enqueue(t, "new", "echo new", "a1");

  const second = await (await browser.get(`/commands?before=${older[1]}`)).text();
  const more = [...second.matchAll(/<span class="sub">(c\d\d)<\/span>/g)].map((m) => m[1]);
  assert.deepEqual(more, ["c04", "c03", "c02", "c01", "c00"]);
  assert.match(second, /href="\/commands" rel="first">Newest</);
  assert.doesNotMatch(second, /rel="next"/);
  // The filter stays on the links of a filtered list.
  const queued = await (await browser.get("/commands?status=queued")).text();
  const queuedOlder = queued.match(
    /href="\/commands\?status=queued&amp;before=(\d+)" rel="next">Older</,
  );
  assert.ok(queuedOlder, "the Older link of queued commands keeps the status");
  const queuedSecond = await (await browser.get(`/commands?status=queued&before=${queuedOlder[1]}`))
    .text();
  assert.deepEqual(
    [...queuedSecond.matchAll(/<span class="sub">(c\d\d)<\/span>/g)].map((m) => m[1]),
    ["c05", "c04", "c03", "c02", "c00"],
    "c01 is cancelled",
  );
  assert.match(queuedSecond, /href="\/commands\?status=queued" rel="first">Newest</);

  const a2 = await (await browser.get("/commands?agent=a2")).text();
  const a2ids = [...a2.matchAll(/<span class="sub">(c\d\d)<\/span>/g)].map((m) => m[1]);
  assert.equal(a2ids.length, total / 2);
  assert.ok(a2ids.every((id) => Number(id.slice(1)) % 2 === 1));
  assert.match(a2, /<option value="a2" selected>a2<\/option>/);

  const cancelled = await (await browser.get("/commands?status=cancelled")).text();
  const cancelledIds = [...cancelled.matchAll(/<span class="sub">(c\d\d)<\/span>/g)].map((m) =>
    m[1]
  );
  assert.deepEqual(cancelledIds, ["c01"]);
  assert.match(cancelled, /<span class="status warn">cancelled<\/span>/);

  const none = await (await browser.get("/commands?status=failed&agent=a1")).text();
  assert.match(none, /No command matches/);
  // An old page= link (the list is paged by cursor now) shows the first page.
  const old = await browser.get("/commands?page=abc");
  assert.equal(old.status, 200);
  assert.match(await old.text(), /<span class="sub">new<\/span>/);
  // A cursor no page gave is refused as GET /api/v1/commands refuses it: the first page under
  // that address would read as the older commands asked for.
  for (
    const [path, back] of [
      ["/commands?before=abc", 'href="/commands">See the newest commands<'],
      ["/commands?before=%3Cb%3E", 'href="/commands">See the newest commands<'],
      [
        "/commands?status=queued&agent=a1&before=-3",
        'href="/commands?agent=a1&amp;status=queued">See the newest commands of this filter<',
      ],
    ]
  ) {
    const junk = await browser.get(path);
    assert.equal(junk.status, 400, path);
    const text = await junk.text();
    assert.match(text, /which is no place in the list: the Older link of a page gives one/, path);
    assert.ok(text.includes(back), `${path}: ${text}`);
    assert.doesNotMatch(text, /<b>|<span class="sub">c\d\d<\/span>/, path);
  }
  // An unknown status is refused as GET /api/v1/commands refuses it, not dropped from the filter
  // (which listed every command under a filter the operator thought applied).
  const bogus = await browser.get("/commands?status=succes&agent=a1");
  assert.equal(bogus.status, 400);
  const bogusText = await bogus.text();
  assert.match(bogusText, /No command can have the status succes: a status is one of queued,/);
  assert.match(bogusText, /href="\/commands\?agent=a1">See every command of a1</);
  assert.doesNotMatch(bogusText, /<span class="sub">c\d\d<\/span>/);
  // A filter given twice shows neither as if it were both: the API refuses it too.
  for (const path of ["/commands?status=queued&status=failed", "/commands?agent=a1&agent=a2"]) {
    const twice = await browser.get(path);
    assert.equal(twice.status, 400, path);
    const text = await twice.text();
    assert.match(text, /The address gives (status|agent) 2 times: this page shows one/, path);
    assert.doesNotMatch(text, /<span class="sub">c\d\d<\/span>/, path);
  }
  const twiceAfter = await browser.get("/?after=a1&after=a2");
  assert.equal(twiceAfter.status, 400);
  assert.match(await twiceAfter.text(), /The address gives after 2 times/);
});

Deno.test("console commands list: a page far down reads one page of commands, not every one above it", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  for (let i = 0; i < PAGE_SIZE * 4; i++) {
    await enqueue(t, `c${String(i).padStart(3, "0")}`, `echo ${i}`);
  }
  await finish(t, "c000", { exit_code: 3, duration_secs: 42, stdout: "the output\n" });
  const reads: Array<{ limit: number; returned: number; withoutOutput?: boolean }> = [];
  const list = t.store.listCommands.bind(t.store);
  t.store.listCommands = async (query) => {
    const commands = await list(query);
    // Not the agents list's read of the running commands (the page's agent filter).
    if (query.status === undefined) {
      reads.push({
        limit: query.limit,
        returned: commands.length,
        withoutOutput: query.withoutOutput,
      });
    }
    return commands;
  };
  const seen: string[] = [];
  let path: string | undefined = "/commands";
  let last = "";
  for (let page = 0; path && page < 10; page++) {
    const text: string = await (await browser.get(path)).text();
    last = text;
    seen.push(...[...text.matchAll(/<span class="sub">(c\d{3})<\/span>/g)].map((m) => m[1]));
    const older = text.match(/href="(\/commands\?before=\d+)" rel="next">Older</);
    path = older?.[1];
  }
  assert.equal(seen.length, PAGE_SIZE * 4, "every command once");
  assert.equal(new Set(seen).size, seen.length);
  assert.equal(seen[0], "c099");
  assert.equal(seen.at(-1), "c000");
  // Read without its output, a command still shows how it ended.
  assert.match(
    last,
    /<span class="sub">c000<\/span>[^]*?<td data-label="Exit" class="text">3<\/td>\s*<td data-label="Duration">42\.0 s<\/td>/,
  );
  assert.doesNotMatch(last, /the output/);
  // Four pages, each read with one command more than a page (was page × 25 + 1: 26, 51, 76, 101),
  // without the output the table does not show.
  const page = { limit: PAGE_SIZE + 1, returned: PAGE_SIZE + 1, withoutOutput: true };
  assert.deepEqual(reads, [page, page, page, { ...page, returned: PAGE_SIZE }]);
});

Deno.test("console: bidirectional formatting characters an agent sends show as escapes, not reordering the text", async (t) => {
  await using d = await makeDashboard({ runSweepMs: 0 });
  const browser = new Browser(d);
  await browser.login();
  const beat = await d.agent({
    path: "/api/v1/agent/heartbeat",
    body: { version: "1.0\u202egnp.exe", deployment_hash: "prod\u2066x" },
  });
  assert.equal(beat.status, 200, await beat.text());
  await enqueue(d, "c1", "echo hi");
  const wait = await d.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  const { attempt } = await wait.json();
  await (await d.agent({ path: "/api/v1/agent/commands/ack", body: { command_id: "c1", attempt } }))
    .body?.cancel();
  const body = reportBody("c1", { attempt, status: "failed", error: "disk\u202efull" });
  Object.assign(body.result as Record<string, unknown>, {
    signal: "SIG\u202eTERM",
    stdout: "invoice\u202efdp.exe\n",
  });
  await (await d.agent({ path: "/api/v1/agent/commands/report", body })).body?.cancel();
  const run = await d.admin("POST", "/api/v1/runs", {
    id: "r1",
    name: "ls",
    target: { agents: ["a1"] },
  });
  assert.equal(run.status, 201, await run.text());
  const next = await d.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  const delivered = await next.json() as { id: string; attempt: number };
  const ack = { command_id: delivered.id, attempt: delivered.attempt };
  await (await d.agent({ path: "/api/v1/agent/commands/ack", body: ack })).body?.cancel();
  const ran = reportBody(delivered.id, { attempt: delivered.attempt });
  Object.assign(ran.result as Record<string, unknown>, { stdout: "photo\u202egnp.exe\n" });
  await (await d.agent({ path: "/api/v1/agent/commands/report", body: ran })).body?.cancel();

  const cases: Array<[string, string[]]> = [
    ["/", ["1.0\\u202egnp.exe", "prod\\u2066x"]],
    ["/commands", ["signal SIG\\u202eTERM"]],
    ["/commands/c1", [
      "signal SIG\\u202eTERM",
      "disk\\u202efull",
      "invoice\\u202efdp.exe",
      "Bidirectional overrides and isolates, which would turn the text around, are shown as",
      "escapes (<code>\\u202e</code>)",
    ]],
    ["/runs/r1", ["photo\\u202egnp.exe"]],
  ];
  for (const [path, shown] of cases) {
    await t.step(path, async () => {
      const text = await (await browser.get(path)).text();
      for (const escaped of shown) assert.ok(text.includes(escaped), `${path} shows ${escaped}`);
      assert.doesNotMatch(text, /[\u202e\u2066]/, `${path} holds no bidirectional control`);
    });
  }
});

Deno.test("console: control characters and terminal escapes in what agents and operators sent show as escapes", async (t) => {
  await using d = await makeDashboard({ runSweepMs: 0 });
  const browser = new Browser(d);
  await browser.login();
  // What the API refuses now may be in a store written before, or by another program: a page
  // shows it as it is, never obeys it.
  await d.store.recordHeartbeat("a1", {
    version: "1.0\x1b[8mhidden",
    deploymentHash: "prod\x07",
    instanceId: null,
    sample: null,
    labels: { role: "web\rzone=x" },
    now: d.clock.now(),
  });
  await d.store.enqueue({
    id: "c0",
    agentId: "a2",
    name: "echo \x1b]0;owned\x07hi",
    params: {},
    fingerprint: "f",
    now: d.clock.now(),
  });
  await enqueue(d, "c1", "echo hi");
  const wait = await d.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  const { attempt } = await wait.json();
  await (await d.agent({ path: "/api/v1/agent/commands/ack", body: { command_id: "c1", attempt } }))
    .body?.cancel();
  const body = reportBody("c1", {
    attempt,
    status: "failed",
    error: "disk\x1b[2Jfull\r\nall fine\x7f",
  });
  Object.assign(body.result as Record<string, unknown>, { signal: "SIG\x1b[1mTERM" });
  await (await d.agent({ path: "/api/v1/agent/commands/report", body })).body?.cancel();
  const run = await d.admin("POST", "/api/v1/runs", {
    id: "r1",
    name: "ls",
    target: { agents: ["a1"] },
  });
  assert.equal(run.status, 201, await run.text());
  const next = await d.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  const delivered = await next.json() as { id: string; attempt: number };
  const ack = { command_id: delivered.id, attempt: delivered.attempt };
  await (await d.agent({ path: "/api/v1/agent/commands/ack", body: ack })).body?.cancel();
  const ran = reportBody(delivered.id, {
    attempt: delivered.attempt,
    status: "failed",
    error: "no\x1b[1mthing\x07",
  });
  Object.assign(ran.result as Record<string, unknown>, { exit_code: 1, stdout: "" });
  await (await d.agent({ path: "/api/v1/agent/commands/report", body: ran })).body?.cancel();

  const cases: Array<[string, string[]]> = [
    ["/", ["1.0\\u001b[8mhidden", "prod\\u0007", "role=web\\rzone=x"]],
    ["/commands", ["signal SIG\\u001b[1mTERM", "echo \\u001b]0;owned\\u0007hi"]],
    ["/commands/c0", ["echo \\u001b]0;owned\\u0007hi"]],
    ["/commands/c1", ["signal SIG\\u001b[1mTERM", "disk\\u001b[2Jfull\\r\\nall fine\\u007f"]],
    ["/runs/r1", ["no\\u001b[1mthing\\u0007"]],
  ];
  for (const [path, shown] of cases) {
    await t.step(path, async () => {
      const text = await (await browser.get(path)).text();
      for (const escaped of shown) assert.ok(text.includes(escaped), `${path} shows ${escaped}`);
      assert.doesNotMatch(
        text,
        // deno-lint-ignore no-control-regex -- the characters it looks for
        /[\x00-\x08\x0b-\x1f\x7f-\x9f]/,
        `${path} holds no control character but newline and tab`,
      );
    });
  }
});

Deno.test("console: a value from the address that a page names shows its bidirectional controls as escapes", async (t) => {
  await using d = await makeDashboard();
  const browser = new Browser(d);
  await browser.login();
  const cases: Array<[string, number, string]> = [
    ["/commands/x%E2%80%AEtsixe-ton-seod", 404, "Command x\\u202etsixe-ton-seod does not exist"],
    ["/runs/r%E2%80%AE1", 404, "Run r\\u202e1 does not exist"],
    ["/commands?status=%E2%80%AEdeliated", 400, "the status \\u202edeliated:"],
    ["/commands?agent=%E2%80%AEa1", 400, "the id \\u202ea1:"],
    ["/?after=%E2%80%AEa1", 400, "the id \\u202ea1:"],
    ["/enqueue?agent=%E2%80%AEa1", 200, "Agent \\u202ea1 is not registered"],
  ];
  for (const [path, status, shown] of cases) {
    await t.step(path, async () => {
      const response = await browser.get(path);
      assert.equal(response.status, status);
      const text = await response.text();
      assert.ok(text.includes(shown), `${path} says ${shown}`);
      assert.doesNotMatch(text, /\u202e/, `${path} holds no bidirectional control`);
    });
  }
});

Deno.test("console agents list: a fleet larger than a page is shown a page at a time, by id", async (t) => {
  await using d = await makeDashboard();
  // How many agents each listing read, and the counts asked for (set before the dashboard first
  // calls them).
  const read: number[] = [];
  const counted: Array<string | undefined> = [];
  const listAgents = d.store.listAgents.bind(d.store);
  const countAgents = d.store.countAgents.bind(d.store);
  d.store.listAgents = async (...args) => {
    const agents = await listAgents(...args);
    read.push(agents.length);
    return agents;
  };
  d.store.countAgents = (through) => {
    counted.push(through);
    return countAgents(through);
  };
  const browser = new Browser(d);
  await browser.login();
  // a1 and a2, and 2.5 pages more (added out of order).
  const count = AGENTS_PAGE_SIZE * 2 + AGENTS_PAGE_SIZE / 2;
  for (let i = count - 1; i >= 0; i--) {
    await d.store.ensureAgent(`b${String(i).padStart(4, "0")}`, d.clock.now());
  }
  const total = count + 2;
  const rows = (text: string) => [...text.matchAll(/<tr data-agent="([^"]+)"/g)].map((m) => m[1]);

  await t.step("every agent once, by id, one page at a time", async () => {
    const seen: string[] = [];
    const ranges: string[] = [];
    let path: string | undefined = "/";
    for (let page = 0; path && page < 10; page++) {
      const text: string = await (await browser.get(path)).text();
      const shown = rows(text);
      assert.ok(shown.length <= AGENTS_PAGE_SIZE, `${path} shows ${shown.length} agents`);
      seen.push(...shown);
      ranges.push(/<span>(Agents [^<]*)<\/span>/.exec(text)?.[1] ?? "");
      path = text.match(/href="(\/\?after=[^"]+)" rel="next">Next</)?.[1]?.replaceAll("&amp;", "&");
    }
    assert.equal(seen.length, total);
    assert.deepEqual(seen, seen.toSorted());
    assert.equal(new Set(seen).size, total);
    assert.deepEqual(ranges, [
      `Agents 1–100 of ${total}`,
      `Agents 101–200 of ${total}`,
      `Agents 201–${total} of ${total}`,
    ]);
  });

  await t.step(
    "a page reads its agents (and the next one) from the store, and counts the rest",
    async () => {
      read.length = 0;
      counted.length = 0;
      const text = await (await browser.get("/?after=b0100")).text();
      assert.deepEqual([rows(text)[0], rows(text).length], ["b0101", AGENTS_PAGE_SIZE]);
      assert.match(text, new RegExp(`<span>Agents 104–203 of ${total}</span>`));
      // Old behaviour: every agent was read, then sliced: [252].
      assert.deepEqual(read, [AGENTS_PAGE_SIZE + 1]);
      assert.deepEqual(counted.toSorted(), ["b0100", undefined]);
    },
  );

  await t.step("a page after an agent that is gone starts at the next one", async () => {
    const text = await (await browser.get("/?after=b0099x")).text();
    assert.equal(rows(text)[0], "b0100");
    assert.match(text, /href="\/" rel="first">First</);
  });

  await t.step("past the end: says so, with the way back", async () => {
    const response = await browser.get("/?after=zzz");
    assert.equal(response.status, 200);
    const text = await response.text();
    assert.deepEqual(rows(text), []);
    assert.match(text, /No agent after zzz\. <a href="\/">Go to the first page<\/a>/);
  });

  await t.step("an after no agent id can be: 400, naming it", async () => {
    const response = await browser.get("/?after=%3Cb%3E");
    assert.equal(response.status, 400);
    assert.match(await response.text(), /No agent can have the id &lt;b&gt;: an id is 1–128/);
  });
});

Deno.test("console error pages: unknown command and unreachable store, never a stack trace", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const missing = await browser.get("/commands/nope%3Cb%3E");
  assert.equal(missing.status, 404);
  const missingText = await missing.text();
  assert.match(missingText, /Command nope&lt;b&gt; does not exist on this dashboard/);
  assertSecureHeaders(missing, "404 page");

  await t.store.close();
  for (const path of ["/", "/commands", "/commands/x", "/enqueue"]) {
    const response = await browser.get(path);
    assert.equal(response.status, 503, path);
    const text = await response.text();
    assert.match(text, /cannot reach its command store/, path);
    assert.doesNotMatch(text, /StoreError|is closed|\.ts:\d+|\bat [A-Za-z]/, path);
    assertSecureHeaders(response, path);
  }
});

Deno.test("console agents list: a store that cannot count the fleet is the store-unavailable page", async () => {
  await using d = await makeDashboard();
  d.store.countAgents = () => Promise.reject(new StoreError("disk I/O error"));
  const browser = new Browser(d);
  await browser.login();
  const response = await browser.get("/");
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("Retry-After"), "5");
  const text = await response.text();
  assert.match(text, /cannot reach its command store/);
  assert.doesNotMatch(text, /StoreError|disk I\/O|\.ts:\d+/);
});

Deno.test("console forms: one refused or failed for want of its store links the form again, filled with what was typed", async (t) => {
  await using d = await makeDashboard();
  const browser = new Browser(d);
  await browser.login();
  const csrf = Browser.csrfOf(await (await browser.get("/enqueue")).text());
  const typed = { agent: "a2", name: "du -sh /var & more", timeout: "9", priority: "high" };
  const filled = "/enqueue?agent=a2&name=du+-sh+%2Fvar+%26+more&timeout=9&priority=high";
  const linkOf = (html: string) =>
    /<a href="([^"]*)">Open the form again, filled<\/a>/.exec(html)?.[1]?.replaceAll("&amp;", "&");

  await t.step(
    "a form of a page open since before the login (another session's token)",
    async () => {
      const refused = await browser.post("/enqueue", { csrf: "x".repeat(43), ...typed });
      assert.equal(refused.status, 403);
      assert.equal(linkOf(await refused.text()), filled);
      const run = await browser.post("/runs/new", {
        csrf: "x".repeat(43),
        name: "uptime",
        labels: "a=b",
      });
      assert.equal(run.status, 403);
      assert.equal(linkOf(await run.text()), "/runs/new?name=uptime&labels=a%3Db");
      const cancel = await browser.post("/commands/c-1/cancel", { csrf: "x" });
      assert.equal(cancel.status, 403);
      assert.match(await cancel.text(), /<a href="\/commands\/c-1">Open its page<\/a>/);
      const form = await (await browser.get(filled)).text();
      assert.match(form, /value="du -sh \/var &amp; more"/, "the link fills the form");
    },
  );

  await t.step("a store the dashboard cannot reach", async () => {
    await d.store.close();
    const failed = await browser.post("/enqueue", { csrf, ...typed });
    assert.equal(failed.status, 503);
    const text = await failed.text();
    assert.match(text, /cannot reach its command store/);
    assert.equal(linkOf(text), filled);
    const run = await browser.post("/runs/new", { csrf, name: "uptime", labels: "a=b" });
    assert.equal(run.status, 503);
    assert.equal(linkOf(await run.text()), "/runs/new?name=uptime&labels=a%3Db");
  });
});

Deno.test("console: a browser over the operators' limit gets a 429 page; another address is not held up by it", async () => {
  const lines: string[] = [];
  setupLogging({ format: "json", level: "info", write: (line) => lines.push(line) });
  try {
    await using t = await makeDashboard({ operatorRateLimitPerMinute: 5 });
    const busy = new Browser(t, "http://localhost", "192.0.2.1");
    const other = new Browser(t, "http://localhost", "192.0.2.2");
    await busy.login();
    await other.login();
    let limited: Response | undefined;
    for (let i = 0; i < 10 && !limited; i++) {
      const response = await busy.get("/");
      if (response.status === 200) await response.body?.cancel();
      else limited = response;
    }
    assert.ok(limited, "the busy browser reached the limit");
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get("Retry-After")) >= 1);
    assertSecureHeaders(limited, "429 page");
    const text = await limited.text();
    assert.match(text, /Too many requests/);
    assert.match(text, /OPERATOR_RATE_LIMIT_PER_MINUTE/);

    const page = await other.get("/");
    assert.equal(page.status, 200, "the other address has its own bucket");
    await page.body?.cancel();
    const direct = await t.admin("GET", "/api/v1/agents");
    assert.equal(direct.status, 200, "so has a client of the API itself");
    await direct.body?.cancel();

    t.clock.advance(60_000);
    const later = await busy.get("/");
    assert.equal(later.status, 200);
    await later.body?.cancel();
  } finally {
    await closeLogging();
  }
  const errors = lines.filter((line) => /"level":"(ERROR|FATAL)"/i.test(line));
  assert.deepEqual(errors, [], "a full bucket is not the dashboard's error");
  assert.ok(
    lines.some((line) => /console page \/ refused/.test(line) && /192\.0\.2\.1/.test(line)),
  );
});

Deno.test("console commands list: an agent filter no agent can have is a 400 page, not a failure", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  for (const agent of ["a%00b", "..", "x".repeat(129)]) {
    const response = await browser.get(`/commands?agent=${agent}`);
    assert.equal(response.status, 400, agent);
    assertSecureHeaders(response, agent);
    const text = await response.text();
    assert.match(text, /No such agent/, agent);
    assert.match(text, /No agent can have the id/, agent);
  }
});

Deno.test("console logout: needs the CSRF token, then the session is over", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  const home = await (await browser.get("/")).text();
  assert.match(home, /Log out/);
  const cookie = browser.cookies.get("status_session")!;
  const refused = await browser.post("/logout", {});
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  // A link made elsewhere does not tell an operator still logged in that they are out (old
  // behaviour: the login page said "You are logged out." whatever the session).
  for (const query of ["out=1", "expired=1"]) {
    const told = await (await browser.get(`/login?${query}`)).text();
    assert.doesNotMatch(told, /logged out|has expired/, query);
  }
  const out = await browser.post("/logout", { csrf: Browser.csrfOf(home) });
  assert.equal(out.status, 303);
  assert.equal(out.headers.get("Location"), "/login?out=1");
  assert.equal(browser.cookies.has("status_session"), false);
  assert.match(await (await browser.get("/login?out=1")).text(), /You are logged out\./);
  // The old cookie, replayed, is no longer a session.
  const replay = await t.dashboard.app.request("/", {
    headers: { Cookie: `status_session=${cookie}` },
  });
  assert.equal(replay.status, 303);
  assert.match(replay.headers.get("Location")!, /expired=1/);
});

Deno.test("console logout ends the event streams the session opened; they send nothing more", async () => {
  await using t = await makeDashboard();
  const browser = new Browser(t);
  await browser.login();
  await enqueue(t, "s1", "sleep 5");
  const wait = await t.agent({ path: "/api/v1/agent/commands/wait/default?timeout=1" });
  assert.equal(wait.status, 200);
  await wait.body?.cancel();
  const stream = await browser.get("/api/v1/commands/s1/events");
  assert.equal(stream.status, 200);
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("event: status")) text += (await reader.read()).value;
  const home = await (await browser.get("/")).text();
  const out = await browser.post("/logout", { csrf: Browser.csrfOf(home) });
  assert.equal(out.status, 303);
  const chunk = await t.agent({
    path: "/api/v1/agent/commands/s1/output",
    body: { attempt: 1, stream: "stdout", offset: 0, data: btoa("after logout\n") },
  });
  assert.equal(chunk.status, 200);
  await chunk.body?.cancel();
  // Old behaviour: the stream went on, with this chunk and every later one, until the command
  // ended (the session's end was looked at only when a stream was opened).
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    text += next.value;
    if (text.includes("event: output")) break;
  }
  assert.doesNotMatch(text, /event: output/);
  assert.equal(t.dashboard.events.size, 0);
});

Deno.test("console in dev mode: open, says dev mode, forms still need the CSRF token", async () => {
  await using t = await makeDashboard({ devMode: true });
  const browser = new Browser(t);
  const home = await browser.get("/");
  assert.equal(home.status, 200);
  const html = await home.text();
  assert.match(html, /<span class="badge dev"[^>]*>dev mode<\/span>/);
  assert.doesNotMatch(html, /Log out/);
  assert.ok(browser.cookies.has("status_session"), "a session carries the CSRF token");
  assert.equal((await browser.get("/login")).headers.get("Location"), "/");

  const refused = await browser.post("/enqueue", { agent: "dev-1", name: "echo hi" });
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  const csrf = Browser.csrfOf(await (await browser.get("/enqueue")).text());
  const ok = await browser.post("/enqueue", { csrf, agent: "dev-1", name: "echo hi" });
  assert.equal(ok.status, 303);
  const page = await (await browser.get(ok.headers.get("Location")!)).text();
  assert.match(page, /dev mode/);
  assert.match(page, /echo hi/);
});

Deno.test("console in dev mode answers only at a loopback name (no DNS rebinding)", async () => {
  await using t = await makeDashboard({ devMode: true });
  for (const origin of ["http://127.0.0.1:5000", "http://[::1]:5000", "http://localhost"]) {
    const response = await new Browser(t, origin).get("/");
    assert.equal(response.status, 200, origin);
    await response.body?.cancel();
  }
  const rebound = new Browser(t, "http://attacker.example:5000");
  const page = await rebound.get("/enqueue");
  assert.equal(page.status, 403);
  const text = await page.text();
  assert.match(text, /answers only at a loopback address/);
  assert.doesNotMatch(text, /name="csrf"/, "no CSRF token handed out");
  assert.equal(rebound.cookies.size, 0);
});

Deno.test("console assets: served by the dashboard with their types and the same headers", async () => {
  await using t = await makeDashboard();
  for (
    const [path, type] of [
      ["/static/console.js", "text/javascript; charset=utf-8"],
      ["/static/console.css", "text/css; charset=utf-8"],
    ]
  ) {
    const response = await t.dashboard.app.request(path);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("Content-Type"), type);
    assertSecureHeaders(response, path);
    assert.ok((await response.text()).length > 500);
  }
  assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe/);
  assert.match(CONTENT_SECURITY_POLICY, /frame-ancestors 'none'/);
});

Deno.test("console: a page's path with a trailing slash redirects to the page, on this host only", async (t) => {
  await using d = await makeDashboard();
  const browser = new Browser(d);
  await browser.login();
  for (
    const [path, location] of [
      ["/commands/", "/commands"],
      ["/commands/?agent=a1&status=queued", "/commands?agent=a1&status=queued"],
      ["/commands/c1/", "/commands/c1"],
      ["/runs/", "/runs"],
      ["/runs/new/", "/runs/new"],
      ["/enqueue/", "/enqueue"],
      ["/login/?next=%2Fruns", "/login?next=%2Fruns"],
    ]
  ) {
    await t.step(path, async () => {
      for (const method of ["GET", "HEAD"]) {
        const response = await browser.request(path, { method });
        assert.equal(response.status, 308, `${method} ${path}`);
        assert.equal(response.headers.get("Location"), location, `${method} ${path}`);
        assertSecureHeaders(response, path);
        await response.body?.cancel();
      }
    });
  }
  await t.step("never to another host, never for a form or the API", async () => {
    for (
      const [method, path] of [
        ["GET", "//evil.example/"],
        ["GET", "//evil.example/commands/"],
        ["GET", "/\\evil.example/"],
        ["GET", "/commands//"],
        ["POST", "/enqueue/"],
        ["GET", "/api/v1/commands/"],
      ]
    ) {
      const response = await browser.request(path, { method });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.equal(response.headers.get("Location"), null, `${method} ${path}`);
      await response.body?.cancel();
    }
  });
});

Deno.test("console: the browser's request for /favicon.ico is answered without an error", async () => {
  await using t = await makeDashboard();
  for (const method of ["GET", "HEAD"]) {
    const response = await t.dashboard.app.request("/favicon.ico", { method });
    assert.equal(response.status, 204, method);
    assert.equal(await response.text(), "");
    assert.match(response.headers.get("Cache-Control") ?? "", /max-age=\d+/);
    assertSecureHeaders(response, "/favicon.ico");
  }
});
