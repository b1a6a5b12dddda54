/**
 * Every operator request carries the admin token and every agent request its agent's token as a
 * bearer token (protocol.md §1): over plain HTTP to another machine anyone on the path reads them.
 * A dashboard or an agent set up that way says so at start; on loopback, or over HTTPS, neither
 * does. A dashboard's TLS key that other users may read is said at start too.
 */
import assert from "node:assert/strict";
import { PERMS, spawnCli } from "../_cli.ts";
import { tempDir } from "../e2e/helpers.ts";

const SERVE_WARNING =
  /^the dashboard serves plain HTTP on 0\.0\.0\.0, which other machines reach: the admin token and each agent's token cross the network in clear text/;
const AGENT_WARNING =
  /^DASHBOARD_URL http:\/\/192\.0\.2\.1:9 is plain HTTP to another machine: AGENT_TOKEN crosses the network in clear text/;
const TOKEN = "a-token-of-more-than-16-characters";

Deno.test("status serve with a token on an address other machines reach over plain HTTP warns that tokens cross in clear text", async (t) => {
  for (const [bind, warned] of [["0.0.0.0", true], ["127.0.0.1", false]] as const) {
    await t.step(`--bind ${bind}`, async () => {
      await using dir = tempDir("status-plain-http-");
      await using serve = spawnCli(["serve", "--bind", bind, "--port", "0", "--db", "s.db"], {
        perms: PERMS.serve,
        cwd: dir.path,
        env: { STATUS_ADMIN_TOKEN: TOKEN, LOG_FORMAT: "json" },
      });
      await serve.stdout.waitFor(/^listening on http:\/\//);
      assert.equal(serve.logged(SERVE_WARNING), warned, serve.stderr.lines.join("\n"));
    });
  }
});

Deno.test("an agent with a token and a plain http:// DASHBOARD_URL of another machine warns that its token crosses in clear text", async (t) => {
  for (
    const [url, warned] of [
      // TEST-NET-1: nothing answers there, and nothing needs to.
      ["http://192.0.2.1:9", true],
      ["http://127.0.0.1:9", false],
      ["https://192.0.2.1:9", false],
    ] as const
  ) {
    await t.step(url, async () => {
      await using dir = tempDir("status-plain-http-");
      await using agent = spawnCli(["agent", "--state-dir", "state"], {
        perms: PERMS.agent,
        cwd: dir.path,
        env: {
          AGENT_ID: "web-1",
          AGENT_TOKEN: TOKEN,
          DASHBOARD_URL: url,
          LOG_FORMAT: "json",
          ALLOWED_PROGRAMS: "echo",
        },
      });
      // Said right after the line that starts the agent, before it polls.
      await agent.waitForLog("long-poll: polling loop started");
      assert.equal(agent.logged(AGENT_WARNING), warned, agent.stderr.lines.join("\n"));
    });
  }
});

const KEY_WARNING =
  /^TLS_KEY from flag --tls-key \(key\.pem\) is the dashboard's private key and users other than its owner may read it \(mode 0644\)/;

Deno.test("status serve warns of a TLS key that users other than its owner may read", async (t) => {
  await using dir = tempDir("status-tls-key-");
  const made = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir.path}/key.pem`,
      "-out",
      `${dir.path}/cert.pem`,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  if (!made?.success) {
    await t.step({ name: "openssl is not available", ignore: true, fn: () => {} });
    return;
  }
  for (const [mode, warned] of [[0o644, true], [0o600, false]] as const) {
    await t.step(`key.pem mode ${mode.toString(8)}`, async () => {
      Deno.chmodSync(`${dir.path}/key.pem`, mode);
      await using serve = spawnCli(
        [
          "serve",
          "--port",
          "0",
          "--db",
          ":memory:",
          "--tls-cert",
          "cert.pem",
          "--tls-key",
          "key.pem",
        ],
        {
          perms: PERMS.serve,
          cwd: dir.path,
          env: { STATUS_ADMIN_TOKEN: TOKEN, LOG_FORMAT: "json" },
        },
      );
      await serve.stdout.waitFor(/^listening on https:\/\//);
      assert.equal(serve.logged(KEY_WARNING), warned, serve.stderr.lines.join("\n"));
    });
  }
});
