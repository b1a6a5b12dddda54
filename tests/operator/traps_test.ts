import assert from "node:assert/strict";
import { until } from "../_until.ts";
import { runAgent } from "../../src/agent/mod.ts";
import { closeLogging } from "../../src/log/mod.ts";
import { EXIT_WAIT_TIMEOUT, OperatorClient } from "../../src/operator/mod.ts";
import { type RunningServer, startServer } from "../../src/server/mod.ts";
import { run } from "../cli/_run.ts";
import { cliCommand, PERMS } from "../_cli.ts";

const ADMIN = "admin-token-for-traps-0123456789";

/** Runs the real CLI (operator permissions) and returns its exact standard output bytes. */
async function cliBytes(args: string[]) {
  const output = await cliCommand(args, { perms: PERMS.operator }).output();
  return {
    code: output.code,
    stdout: output.stdout,
    stderr: new TextDecoder().decode(output.stderr),
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** A dev-mode dashboard and, when asked, an agent `a1` allowed to run the given programs. */
async function withDashboard(
  fn: (server: RunningServer) => Promise<void>,
  agent?: { programs: string[] },
) {
  const stateDir = await Deno.makeTempDir({ prefix: "status-traps-" });
  const server = await startServer({ availableDescriptors: "plenty", db: ":memory:", port: 0 });
  const stop = new AbortController();
  const running = agent &&
    runAgent({
      dashboardUrl: server.url,
      agentId: "a1",
      stateDir,
      heartbeat: false,
      exec: { allowedPrograms: agent.programs, cgroups: false }, // beside other test threads
    }, stop.signal);
  try {
    if (agent) await until(() => server.dashboard.hub.isWaiting("a1"), "the agent waits", 30_000);
    await fn(server);
  } finally {
    stop.abort();
    await running;
    await server.shutdown();
    closeLogging();
    await Deno.remove(stateDir, { recursive: true });
  }
}

Deno.test("enqueue --wait for an agent that never connected warns, and --wait-timeout ends it", async () => {
  await withDashboard(async (server) => {
    const out = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "nobody",
      "--wait-timeout",
      "1",
      "--dashboard-url",
      server.url,
    ]);
    assert.equal(out.code, EXIT_WAIT_TIMEOUT, out.stderr.join("\n"));
    assert.match(
      out.stderr[0],
      /^warning: agent nobody has never connected to this dashboard; the command waits in the queue until it does \(it expires at /,
    );
    assert.match(
      out.stderr.at(-1)!,
      /^status: \S+ is still queued after 1 s \(--wait-timeout\); stopped waiting, the command goes on/,
    );
    assert.deepEqual(out.stdout, []);
  });
});

Deno.test("enqueue --ttl: a command nobody takes ends expired, reported like any final status", async () => {
  await withDashboard(async (server) => {
    const out = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "nobody",
      "--ttl",
      "1",
      "--wait",
      "--dashboard-url",
      server.url,
    ]);
    assert.equal(out.code, 1, out.stderr.join("\n"));
    assert.match(
      out.stderr.at(-1)!,
      / expired: no agent took it within its queue expiry of 1 s \(agent nobody\); it never ran \(\d+\.\d s\)$/,
    );
  });
});

Deno.test("enqueue outside dev mode for an unknown agent says which agent", async () => {
  const server = await startServer({
    availableDescriptors: "plenty",
    db: ":memory:",
    port: 0,
    adminToken: ADMIN,
  });
  try {
    const out = await run([
      "enqueue",
      "echo hi",
      "--agent",
      "web-typo",
      "--dashboard-url",
      server.url,
      "--status-admin-token",
      ADMIN,
    ]);
    assert.equal(out.code, 1);
    assert.match(
      out.stderr.join("\n"),
      /the dashboard refused the enqueue for agent web-typo: agent web-typo is not registered; add it with "status agents add web-typo"/,
    );
  } finally {
    await server.shutdown();
    closeLogging();
  }
});

Deno.test("the operator client retries a 429 after its Retry-After", async () => {
  const slept: number[] = [];
  let calls = 0;
  const client = new OperatorClient({
    dashboardUrl: "http://dashboard.invalid",
    fetch: () => {
      calls++;
      return Promise.resolve(
        calls <= 2
          ? Response.json({ error: "rate limit exceeded; retry in 2 s" }, {
            status: 429,
            headers: { "Retry-After": "2" },
          })
          : Response.json({ queued: true, id: "c1" }, { status: 202 }),
      );
    },
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  });
  assert.equal((await client.enqueue({ agentId: "a1", name: "echo" })).id, "c1");
  assert.deepEqual(slept, [2000, 2000]);

  const refusing = new OperatorClient({
    dashboardUrl: "http://dashboard.invalid",
    fetch: () =>
      Promise.resolve(
        Response.json({ error: "rate limit exceeded; retry in 600 s" }, {
          status: 429,
          headers: { "Retry-After": "600" },
        }),
      ),
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  });
  slept.length = 0;
  await assert.rejects(() => refusing.listAgents(), /rate limit .*try again later/);
  assert.deepEqual(slept, [60_000, 60_000, 60_000], "three retries, each at most 60 s");

  // A proxy's Retry-After is an HTTP date: waited until then (at least a second), not final.
  let proxied = 0;
  const behindProxy = new OperatorClient({
    dashboardUrl: "http://dashboard.invalid",
    fetch: () =>
      Promise.resolve(
        ++proxied === 1
          ? new Response("slow down", {
            status: 429,
            headers: { "Retry-After": new Date(Date.now() + 30_000).toUTCString() },
          })
          : Response.json({ agents: [] }),
      ),
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  });
  slept.length = 0;
  await behindProxy.listAgents();
  assert.equal(slept.length, 1);
  assert.ok(slept[0] >= 29_000 && slept[0] <= 31_000, `slept ${slept[0]} ms`);

  // "Retry-After: 0" is waited as a second, as a date already past is: not asked again at once.
  const zero = new OperatorClient({
    dashboardUrl: "http://dashboard.invalid",
    fetch: () =>
      Promise.resolve(
        Response.json({ error: "slow down" }, { status: 429, headers: { "Retry-After": "0" } }),
      ),
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  });
  slept.length = 0;
  await assert.rejects(() => zero.listAgents(), /rate limit/);
  assert.deepEqual(slept, [1000, 1000, 1000]);
});

Deno.test("binary output reaches the operator byte for byte: store, API and status result", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "status-binary-" });
  // A root agent runs commands as nobody, who must be able to run the scripts.
  await Deno.chmod(dir, 0o755);
  try {
    // A tar header starts with the file name and NUL padding; then bytes that are not UTF-8.
    const tarLike = `${dir}/tar_like.sh`;
    await Deno.writeTextFile(
      tarLike,
      "#!/bin/sh\nprintf 'etc/shadow\\000\\000\\000ustar\\000'\nprintf '\\377\\376\\000end'\n",
    );
    const nulText = `${dir}/nul_text.sh`;
    await Deno.writeTextFile(nulText, "#!/bin/sh\nprintf 'a\\000b\\000'\nprintf 'err\\000' >&2\n");
    await Deno.chmod(tarLike, 0o755);
    await Deno.chmod(nulText, 0o755);
    const binary = new Uint8Array([
      ...new TextEncoder().encode("etc/shadow\0\0\0ustar\0"),
      0xff,
      0xfe,
      0,
      ...new TextEncoder().encode("end"),
    ]);
    await withDashboard(async (server) => {
      const url = server.url;
      await t.step("not UTF-8: base64 in the API, the exact bytes from the CLI", async () => {
        // The real CLI, so that its standard output is the process's own.
        const waited = await cliBytes(
          ["enqueue", tarLike, "--agent", "a1", "--wait", "--id", "bin-1"]
            .concat(["--dashboard-url", url]),
        );
        assert.equal(waited.code, 0, waited.stderr);
        assert.deepEqual(waited.stdout, binary, "enqueue --wait writes the bytes as they are");
        const api = await (await fetch(`${url}/api/v1/commands/bin-1`)).json();
        assert.equal(api.result.stdout_encoding, "base64");
        assert.equal(api.result.stdout, btoa(String.fromCharCode(...binary)));
        assert.equal(api.result.stdout_truncated_bytes, 0);
        const raw = await cliBytes(["result", "bin-1", "--stdout", "--dashboard-url", url]);
        assert.equal(raw.code, 0, raw.stderr);
        assert.deepEqual(raw.stdout, binary);
        const inProcess = await run(["result", "bin-1", "--stdout", "--dashboard-url", url]);
        assert.deepEqual(concat(inProcess.bytes), binary);
        const shown = await run(["result", "bin-1", "--dashboard-url", url]);
        assert.ok(
          shown.stdout.some((l) =>
            l.startsWith(`--- stdout: ${binary.length} bytes that are not UTF-8 text, in base64`)
          ),
          shown.stdout.join("\n"),
        );
        assert.ok(shown.stdout.includes(btoa(String.fromCharCode(...binary))));
      });
      await t.step("UTF-8 with NUL bytes: text in the API, NUL bytes kept", async () => {
        const waited = await run(["enqueue", nulText, "--agent", "a1", "--wait", "--id", "nul-1"]
          .concat(["--dashboard-url", url]));
        assert.equal(waited.code, 0, waited.stderr.join("\n"));
        const body = await (await fetch(`${url}/api/v1/commands/nul-1`)).text();
        assert.ok(body.includes(String.raw`"stdout":"a\u0000b\u0000"`), body);
        const api = JSON.parse(body);
        assert.equal(api.result.stdout_encoding, undefined);
        assert.equal(api.result.stderr, "err\0");
        const raw = await run(["result", "nul-1", "--stdout", "--dashboard-url", url]);
        assert.deepEqual(concat(raw.bytes), new TextEncoder().encode("a\0b\0"));
      });
    }, { programs: [tarLike, nulText] });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cancel --wait of a running command follows it from running, never says queued", async () => {
  await withDashboard(async (server) => {
    const client = new OperatorClient({ dashboardUrl: server.url });
    const { id } = await client.enqueue({ agentId: "a1", name: "sleep 30" });
    await until(
      async () => (await client.getCommand(id)).status === "running",
      "the command runs",
      20_000,
      50,
    );
    const out = await run(["cancel", id, "--wait", "--dashboard-url", server.url]);
    assert.equal(out.code, 0, out.stderr.join("\n"));
    assert.deepEqual(out.stdout, [`cancel requested: the agent will stop ${id}`]);
    assert.ok(!out.stderr.some((l) => / queued /.test(l)), out.stderr.join("\n"));
    assert.match(out.stderr[0], new RegExp(`^${id} running`));
    assert.match(out.stderr.at(-1)!, new RegExp(`^${id} cancelled`));
  }, { programs: ["sleep"] });
});

Deno.test("enqueue --wait of an id that already ran does not claim it is queued", async () => {
  await withDashboard(async (server) => {
    const args = ["enqueue", "echo again", "--agent", "a1", "--id", "twice", "--wait"];
    const first = await run([...args, "--dashboard-url", server.url]);
    assert.equal(first.code, 0, first.stderr.join("\n"));
    assert.match(first.stderr[0], /^twice queued/);
    const second = await run([...args, "--dashboard-url", server.url]);
    assert.equal(second.code, 0, second.stderr.join("\n"));
    assert.deepEqual(second.stdout, ["again"]);
    assert.ok(!second.stderr.some((l) => l.includes(" queued")), second.stderr.join("\n"));
    assert.match(second.stderr[0], /^twice success, exit code 0/);
  }, { programs: ["echo"] });
});
