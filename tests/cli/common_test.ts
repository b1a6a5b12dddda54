import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { addSettingOptions } from "../../src/cli/common.ts";
import { loadSettings } from "../../src/config/mod.ts";

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
