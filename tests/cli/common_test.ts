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
