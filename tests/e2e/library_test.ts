import assert from "node:assert/strict";
import { tempDir } from "./helpers.ts";
import { ROOT } from "../_cli.ts";

/** The first code block of a language after a heading of the README. */
function readmeBlock(readme: string, heading: string, lang: string): string {
  const section = readme.slice(readme.indexOf(`## ${heading}`));
  const match = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(section);
  assert.ok(match, `a ${lang} block under "## ${heading}"`);
  return match[1];
}

Deno.test("the README's library example works as written from a project outside the repository", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  await using project = tempDir("status-consumer-");
  // The project's deno.json exactly as the README gives it, pointing at this checkout.
  const config = JSON.parse(readmeBlock(readme, "As a library", "json"));
  assert.deepEqual(config.links, ["../status"], "the README's example path");
  config.links = [ROOT];
  await Deno.writeTextFile(`${project.path}/deno.json`, JSON.stringify(config));
  await Deno.writeTextFile(`${project.path}/main.ts`, readmeBlock(readme, "As a library", "ts"));
  const run = await new Deno.Command(Deno.execPath(), {
    // The permissions the README says the example needs.
    args: ["run", "--allow-net", "--allow-run", "main.ts"],
    cwd: project.path,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(run.stdout);
  const stderr = new TextDecoder().decode(run.stderr);
  assert.equal(run.code, 0, stderr);
  assert.match(stdout, /^success 0 \S+/);
  assert.match(stdout, /^hi$/m);
  assert.match(stdout, /^succeeded$/m, "the run's status");
  assert.doesNotMatch(stderr, /legacy|not a dependency|warning/i);
  const files = [...Deno.readDirSync(project.path)].map((e) => e.name).sort();
  assert.deepEqual(
    files.filter((f) => f !== "deno.lock" && f !== "node_modules"),
    ["deno.json", "main.ts"],
    "the library wrote nothing in the project (no .status-state, no status.db)",
  );
});

Deno.test("examples/library.ts is the README's library example and runs as its header says", async () => {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  const example = await Deno.readTextFile(`${ROOT}/examples/library.ts`);
  // The same code after the import (which names `../mod.ts` instead of the package).
  const afterImport = (text: string) => text.slice(text.indexOf(";\n", text.indexOf("import")));
  assert.match(example, /\} from "\.\.\/mod\.ts";/);
  assert.equal(
    afterImport(example),
    afterImport(readmeBlock(readme, "As a library", "ts")),
    "the example and the README's block say the same",
  );
  await using dir = tempDir("status-example-");
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-run", `${ROOT}/examples/library.ts`],
    cwd: dir.path,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(run.stderr);
  assert.equal(run.code, 0, stderr);
  const stdout = new TextDecoder().decode(run.stdout);
  assert.match(stdout, /^success 0 \S+/);
  assert.match(stdout, /^hi$/m);
  assert.match(stdout, /^succeeded$/m, "the run's status");
  assert.deepEqual([...Deno.readDirSync(dir.path)], [], "it wrote nothing where it ran");
});
