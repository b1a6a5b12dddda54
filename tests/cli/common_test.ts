import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { addSettingOptions, fileProblem, loadCommandSettings } from "../../src/cli/common.ts";
import { loadSettings, type Role } from "../../src/config/mod.ts";
import { closeLogging, type LogRecordView } from "../../src/log/mod.ts";

/**
 * The log lines a command's settings give at start-up (debug and up), as `level message`, with
 * nothing written: the filter keeps every record and lets none through.
 */
function startupLog(
  env: Record<string, string>,
  options: Record<string, unknown> = {},
  roles: readonly Role[] = ["agent"],
): string[] {
  const records: LogRecordView[] = [];
  try {
    loadCommandSettings({ env: { LOG_LEVEL: "debug", ...env } }, options, roles, {
      filter: (record) => {
        records.push(record);
        return false;
      },
    });
  } finally {
    closeLogging();
  }
  // What the filter is given is LogTape's whole record: its message holds the values put in.
  return records.map((record) =>
    `${record.level} ${(record as unknown as { message: unknown[] }).message.join("")}`
  );
}

/** The settings a command line gives, over the environment `env` and no files. */
function settingsOf(args: string[], env: Record<string, string>) {
  const command = addSettingOptions(new Command("test").exitOverride(), ["agent", "server"]);
  command.parse(args, { from: "user" });
  return loadSettings({
    roles: ["agent", "server"],
    flags: command.opts(),
    env,
    cwd: "/nonexistent",
  });
}

Deno.test("a boolean setting turned on elsewhere is turned off by its --no- flag", async (t) => {
  const on = { DAEMON: "true", WAIT_REQUIRE_SIGNATURE: "1", ACCEPT_V1_SIGNATURES: "yes" };
  await t.step("the environment's value holds without a flag", () => {
    const { settings } = settingsOf([], on);
    assert.equal(settings.daemon, true);
    assert.equal(settings.waitRequireSignature, true);
    assert.equal(settings.acceptV1Signatures, true);
  });
  await t.step("--no-daemon, --no-wait-require-signature, --no-accept-v1-signatures", () => {
    const { settings, sources } = settingsOf(
      ["--no-daemon", "--no-wait-require-signature", "--no-accept-v1-signatures"],
      on,
    );
    assert.equal(settings.daemon, false);
    assert.equal(settings.waitRequireSignature, false);
    assert.equal(settings.acceptV1Signatures, false);
    assert.equal(sources.daemon, "flag --daemon");
  });
  await t.step("the flag itself still turns it on", () => {
    const { settings } = settingsOf(["--daemon"], { DAEMON: "false" });
    assert.equal(settings.daemon, true);
  });
});

Deno.test("a log file Deno may write but not read is said to need --allow-read, not --allow-write", () => {
  // What Deno throws when opening the log file looks at it (lstat, fstat) without read access.
  const read = new Deno.errors.NotCapable(
    'Requires read access to "status.log", run again with the --allow-read flag',
  );
  assert.equal(
    fileProblem(read, "status.log"),
    "not permitted without --allow-read (it is read as well as written: --allow-read=status.log)",
  );
  const write = new Deno.errors.NotCapable(
    'Requires write access to "status.log", run again with the --allow-write flag',
  );
  assert.equal(fileProblem(write, "status.log"), "not permitted without --allow-write");
});

Deno.test("a log file that is a device is said to be one, not to need --allow-write", () => {
  // LOG_FILE=/dev/full (or /dev/stderr) under --allow-write said "not permitted without
  // --allow-write": Deno opens a device only under --allow-all, and a log file must be a regular
  // file anyway.
  const device = new Deno.errors.NotCapable(
    'Requires all access to "/dev/full", run again with the --allow-all flag',
  );
  assert.equal(
    fileProblem(device, "/dev/full"),
    "/dev/full is a device or system file, not a regular file; give the path of a file",
  );
});

Deno.test("messages about config.json keys name the file given with --config", () => {
  const dir = Deno.makeTempDirSync({ prefix: "status-common-" });
  try {
    const file = `${dir}/site.json`;
    Deno.writeTextFileSync(file, JSON.stringify({ polling_timeout: 30, colour: "blue" }));
    const lines = startupLog({}, { config: file });
    assert.ok(
      lines.includes(
        `warning ${file} key "polling_timeout" is not a setting of status; it is ignored (did ` +
          'you mean "polling_timeout_secs"?)',
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.includes(`info ${file} key "colour" is not a setting of status; it is ignored`),
      lines.join("\n"),
    );
    assert.ok(
      lines.includes(`debug ${file} keys ignored (not settings of this program)`),
      lines.join("\n"),
    );
    assert.ok(!lines.some((line) => line.includes("config.json")), lines.join("\n"));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a setting set in two sources with different values says which one is read", async (t) => {
  const dir = Deno.makeTempDirSync({ prefix: "status-common-" });
  try {
    const envFile = `${dir}/agent.env`;
    const config = `${dir}/agent.json`;
    Deno.writeTextFileSync(envFile, "AGENT_ID=from-file\nPOLLING_TIMEOUT_SECS=25\n");
    Deno.writeTextFileSync(config, JSON.stringify({ agent_id: "from-json", live_output: "yes" }));
    const files = { envFile, config };
    await t.step("the environment over .env and config.json, at info level", () => {
      const lines = startupLog({ AGENT_ID: "from-env" }, files);
      assert.ok(
        lines.includes(
          `info AGENT_ID is read from the environment, not from ${envFile} or ${config}, which ` +
            "set it to another value (the environment comes first)",
        ),
        lines.join("\n"),
      );
    });
    await t.step("the same value in both is nothing to tell", () => {
      const lines = startupLog({ POLLING_TIMEOUT_SECS: " 25", LIVE_OUTPUT: "true" }, files);
      assert.ok(!lines.some((line) => /POLLING_TIMEOUT_SECS is read/.test(line)), lines.join("\n"));
      assert.ok(!lines.some((line) => /LIVE_OUTPUT is read/.test(line)), lines.join("\n"));
    });
    await t.step("a flag over the environment, at debug level", () => {
      const lines = startupLog({ AGENT_ID: "from-env" }, { ...files, agentId: "from-flag" });
      assert.ok(
        lines.includes(
          `debug AGENT_ID is read from flag --agent-id, not from the environment or ${envFile} ` +
            `or ${config}, which set it to another value (flag --agent-id comes first)`,
        ),
        lines.join("\n"),
      );
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("at debug level every setting that is not its default is listed with its source, secrets not shown", () => {
  const token = "agent-token-0123456789abcdef";
  const lines = startupLog({
    AGENT_ID: "web-1",
    AGENT_TOKEN: token,
    COMMAND_ENV: "DB_PASSWORD=hunter2,MODE=x",
    DASHBOARD_URL: "http://127.0.0.1:5000",
  }, { pollingTimeoutSecs: "40" });
  const settings = lines.filter((line) => line.startsWith("debug setting "));
  assert.deepEqual(settings, [
    "debug setting DASHBOARD_URL is http://127.0.0.1:5000, from the environment",
    "debug setting AGENT_ID is web-1, from the environment",
    "debug setting AGENT_TOKEN is (a secret, not shown), from the environment",
    "debug setting POLLING_TIMEOUT_SECS is 40, from flag --polling-timeout-secs",
    'debug setting COMMAND_ENV is "DB_PASSWORD=…,MODE=…" (values not shown), from the environment',
    "debug setting LOG_LEVEL is debug, from the environment",
  ]);
  assert.ok(!lines.some((line) => line.includes(token) || line.includes("hunter2")));
});
