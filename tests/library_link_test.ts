/**
 * The library as the README says a project uses it: a project of its own whose `deno.json` is the
 * README's (the checkout linked with `links`), running the README's example and the dashboard's
 * console, and type-checking both. The package's own `compilerOptions` (JSX through
 * `hono/jsx`) do not apply in such a project, so each `.tsx` file must name its JSX source itself.
 */
import assert from "node:assert/strict";
import { relative } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The README's "As a library" section. */
async function librarySection(): Promise<string> {
  const readme = await Deno.readTextFile(`${ROOT}/README.md`);
  return readme.slice(readme.indexOf("## As a library"), readme.indexOf("## Development"));
}

/** The first fenced block of a language in a piece of Markdown. */
function fenced(markdown: string, language: string): string {
  const match = markdown.match(new RegExp("```" + language + "\\n([\\s\\S]*?)```"));
  assert.ok(match, `no ${language} block in the README's library section`);
  return match[1];
}

async function deno(cwd: string, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("a project linking the checkout as the README says runs and checks the library", async (t) => {
  const section = await librarySection();
  await using dir = await tempDir();
  const config = JSON.parse(fenced(section, "json"));
  config.links = [relative(dir.path, ROOT)];
  await Deno.writeTextFile(`${dir.path}/deno.json`, JSON.stringify(config, null, 2));
  await Deno.writeTextFile(`${dir.path}/example.ts`, fenced(section, "ts"));
  await Deno.writeTextFile(
    `${dir.path}/console.ts`,
    [
      'import { startServer } from "@status-panel/status";',
      'await using server = await startServer({ port: 0, db: ":memory:" });',
      'const res = await fetch(new URL("/", server.url));',
      "console.log(res.status, (await res.text()).includes('<title>Agents'));",
    ].join("\n"),
  );

  await t.step("the README's example runs with the flags it names", async () => {
    const run = await deno(dir.path, ["run", "--allow-net", "--allow-run", "example.ts"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^success 0 /);
    assert.match(run.stdout, /\nhi\n/);
  });

  await t.step("the dashboard's console renders its pages", async () => {
    const run = await deno(dir.path, ["run", "--allow-net", "console.ts"]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.trim(), "200 true");
  });

  await t.step("deno check passes on the project", async () => {
    const run = await deno(dir.path, ["check", "example.ts", "console.ts"]);
    assert.equal(run.code, 0, run.stderr.slice(0, 2000));
  });
});

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "status-library-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}
