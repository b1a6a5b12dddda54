import assert from "node:assert/strict";
import { MAX_ARG_LENGTH, MAX_ARGS, parseCommandLine } from "../../src/exec/mod.ts";

function argv(line: string): string[] {
  const parsed = parseCommandLine(line);
  assert.ok(parsed.ok, `expected ${JSON.stringify(line)} to parse, got ${JSON.stringify(parsed)}`);
  return parsed.value;
}

const COMMENT =
  `comment "#" is not allowed (a word that begins with "#" is one; quote it to pass it)`;

function reason(line: string): string {
  const parsed = parseCommandLine(line);
  assert.ok(!parsed.ok, `expected ${JSON.stringify(line)} to be refused`);
  return parsed.reason;
}

Deno.test("parser splits with shell-like quoting and expands nothing", async (t) => {
  const cases: Array<[string, string[]]> = [
    ["echo hello", ["echo", "hello"]],
    ["  echo   a\tb  ", ["echo", "a", "b"]],
    [`echo "hello world" 'single quoted'`, ["echo", "hello world", "single quoted"]],
    [`echo 'a;b' "c|d" 'e > f' "g&&h"`, ["echo", "a;b", "c|d", "e > f", "g&&h"]],
    [`echo '*' "?" '[x]'`, ["echo", "*", "?", "[x]"]],
    ["echo a\\ b", ["echo", "a b"]],
    ["echo \\*", ["echo", "*"]],
    [`echo ""`, ["echo", ""]],
    [`echo "say \\"hi\\""`, ["echo", `say "hi"`]],
    ["ls -la /tmp", ["ls", "-la", "/tmp"]],
    ["echo ~ {a,b} !", ["echo", "~", "{a,b}", "!"]],
    ["tar --file=/tmp/x.tar -c /tmp/y", ["tar", "--file=/tmp/x.tar", "-c", "/tmp/y"]],
    ["echo FOO=1", ["echo", "FOO=1"]],
    ["echo héllo ✓", ["echo", "héllo", "✓"]],
    // A "#" inside a word is no comment to a shell: shell-quote cut "a#b" into "a" and a comment.
    ["echo a#b /tmp/#x x#", ["echo", "a#b", "/tmp/#x", "x#"]],
    [`echo "a"#b 'c'#d a\\ #b a\\#b "#" \\#e`, ["echo", "a#b", "c#d", "a #b", "a#b", "#", "#e"]],
    ["echo http://h/p#frag --x=#y ''#z", ["echo", "http://h/p#frag", "--x=#y", "#z"]],
    [`ls "/tmp/my\u00a0file" 'a\u3000b' x\u200by`, [
      "ls",
      "/tmp/my\u00a0file",
      "a\u3000b",
      "x\u200by",
    ]],
  ];
  for (const [line, expected] of cases) {
    await t.step(line, () => assert.deepEqual(argv(line), expected));
  }
});

Deno.test("parser refuses shell syntax and names what it found", async (t) => {
  const cases: Array<[string, string]> = [
    ["echo hi; rm -rf /", `shell operator ";" is not allowed`],
    ["echo hi | cat", `shell operator "|" is not allowed`],
    ["echo hi && id", `shell operator "&&" is not allowed`],
    ["echo hi || id", `shell operator "||" is not allowed`],
    ["sleep 100 &", `shell operator "&" is not allowed`],
    ["echo (a)", `shell operator "(" is not allowed`],
    ["echo $(id)", `command substitution "$(" is not allowed`],
    ["echo `id`", "backtick is not allowed"],
    ["echo '`id`'", "backtick is not allowed"],
    ["echo $HOME", `variable expansion "$" is not allowed`],
    ["echo ${HOME}", `variable expansion "\${" is not allowed`],
    ["echo '$HOME'", `variable expansion "$" is not allowed`],
    ["ls > /tmp/x", `redirection ">" is not allowed`],
    ["ls >> /tmp/x", `redirection ">>" is not allowed`],
    ["ls < /tmp/x", `redirection "<" is not allowed`],
    ["ls 2>&1", `redirection ">&" is not allowed`],
    ["cat <(ls)", `process substitution "<(" is not allowed`],
    ["ls *.txt", `glob "*" is not allowed`],
    ["ls /tmp/?", `glob "?" is not allowed`],
    ["ls /tmp/[ab]", `glob "[" is not allowed`],
    ["echo hi\nid", "newline is not allowed"],
    // shell-quote split these into two arguments (and dropped U+FEFF), where a shell keeps them.
    [
      "ls /tmp/my\u00a0file",
      "whitespace U+00A0 outside quotes is not allowed (a shell would not split there; quote it)",
    ],
    [
      "ls /tmp/my\\\u3000file",
      "whitespace U+3000 outside quotes is not allowed (a shell would not split there; quote it)",
    ],
    [
      "echo \ufeffx",
      "whitespace U+FEFF outside quotes is not allowed (a shell would not split there; quote it)",
    ],
    // The program got U+FFFD in its place.
    [
      "ls /tmp/\ud800",
      "lone surrogate U+D800 is not allowed (the command line is not valid Unicode)",
    ],
    ["echo hi\rid", "newline is not allowed"],
    ["echo a\u0000b", "control character U+0000 is not allowed"],
    ["echo a # comment", COMMENT],
    ["echo a\t#b", COMMENT],
    ["#echo", COMMENT],
    ["echo ''#b '#' #c", COMMENT],
    // An operator ends a word, so a shell would take what follows for a comment: still refused.
    ["echo a;#b", `shell operator ";" is not allowed`],
    ["FOO=1 ls", `environment assignment "FOO=1" is not allowed`],
    ["LD_PRELOAD=/tmp/x.so ls", `environment assignment "LD_PRELOAD=/tmp/x.so" is not allowed`],
    ["echo 'unterminated", `unterminated quote ' is not allowed`],
    [`echo "unterminated`, `unterminated quote " is not allowed`],
    ["echo trailing\\", "trailing backslash is not allowed"],
    ["", "command line is empty"],
    ["   ", "command line is empty"],
  ];
  for (const [line, expected] of cases) {
    await t.step(JSON.stringify(line), () => assert.equal(reason(line), expected));
  }
});

Deno.test("parser limits arguments, their length and the line's length", async (t) => {
  await t.step("16 arguments are accepted", () => {
    assert.equal(
      argv("echo " + Array.from({ length: MAX_ARGS }, (_, i) => i).join(" ")).length,
      17,
    );
  });
  await t.step("17 arguments are refused", () => {
    const line = "echo " + Array.from({ length: 17 }, (_, i) => `a${i}`).join(" ");
    assert.equal(reason(line), "too many arguments: 17 (at most 16)");
  });
  await t.step("a 5000-character argument is refused", () => {
    assert.equal(
      reason(`echo ok ${"x".repeat(5000)}`),
      "argument 2 is 5000 characters long (at most 4096)",
    );
  });
  await t.step("a 4096-character argument is accepted when the line fits", () => {
    assert.equal(argv(`${"x".repeat(MAX_ARG_LENGTH - 5)} a`)[0].length, MAX_ARG_LENGTH - 5);
  });
  await t.step("a 5000-character program name is refused", () => {
    assert.equal(reason("x".repeat(5000)), "program name is 5000 characters long (at most 4096)");
  });
  await t.step("a line over 4096 characters is refused", () => {
    const line = "echo " + Array.from({ length: 10 }, () => "y".repeat(500)).join(" ");
    assert.equal(reason(line), `command line is ${line.length} characters long (at most 4096)`);
  });
  await t.step("a huge line is refused before it is split", () => {
    const line = "echo " + "z ".repeat(1_000_000);
    assert.equal(reason(line), `command line is ${line.length} characters long (at most 4096)`);
  });
});
