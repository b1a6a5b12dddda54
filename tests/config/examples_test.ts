import assert from "node:assert/strict";
import { loadSettings, parseEnvFile, type SettingKey, SETTINGS } from "../../src/config/mod.ts";

const root = new URL("../../", import.meta.url).pathname;
const keys = Object.keys(SETTINGS) as SettingKey[];

Deno.test("examples/config.json loads without error or ignored keys", () => {
  const loaded = loadSettings({
    roles: ["agent"],
    env: {},
    cwd: "/nonexistent",
    configPath: `${root}examples/config.json`,
  });
  assert.deepEqual(loaded.ignoredKeys, []);
  assert.equal(loaded.settings.agentId, "test-agent");
});

Deno.test("examples/.env.example names every setting and parses", () => {
  const text = Deno.readTextFileSync(`${root}examples/.env.example`);
  for (const key of keys) {
    assert.match(text, new RegExp(`^# ${SETTINGS[key].env}=`, "m"), SETTINGS[key].env);
  }
  const uncommented = text.replace(/^# ([A-Z0-9_]+=)/gm, "$1");
  assert.ok(Object.keys(parseEnvFile(uncommented, ".env.example")).length >= keys.length);
});

Deno.test("the README's configuration table names every setting", () => {
  const readme = Deno.readTextFileSync(`${root}README.md`);
  for (const key of keys) {
    assert.match(readme, new RegExp(`^\\| \`${SETTINGS[key].env}\` +\\|`, "m"));
  }
});

Deno.test("examples/.env.example shows each default, or says a value is an example", () => {
  const lines = Deno.readTextFileSync(`${root}examples/.env.example`).split("\n");
  for (const key of keys) {
    const spec = SETTINGS[key];
    const at = lines.findIndex((line) => line.startsWith(`# ${spec.env}=`));
    const value = lines[at].slice(`# ${spec.env}=`.length);
    if ("default" in spec) {
      const shown = Array.isArray(spec.default) ? spec.default.join(",") : String(spec.default);
      assert.equal(value, shown, `${spec.env} shows its default`);
    } else if (value !== "") {
      assert.match(lines[at - 1], /example/i, `${spec.env}=${value} is marked as an example`);
    }
  }
});
