import assert from "node:assert/strict";
import { MAX_SHOWN_CHARS, shortForm } from "../../src/protocol/mod.ts";

Deno.test("shortForm shows a short value whole and cuts a long one, saying how long it was", () => {
  assert.equal(shortForm("cmd-001"), "cmd-001");
  assert.equal(shortForm("x".repeat(MAX_SHOWN_CHARS)), "x".repeat(MAX_SHOWN_CHARS));
  assert.equal(
    shortForm("x".repeat(MAX_SHOWN_CHARS + 1)),
    `${"x".repeat(MAX_SHOWN_CHARS)}… (${MAX_SHOWN_CHARS + 1} characters)`,
  );
  assert.equal(shortForm("abcdef", 3), "abc… (6 characters)");
});

Deno.test("shortForm never cuts a character in two", () => {
  // "😀" is two UTF-16 units: a cut after its first would leave half of it.
  assert.equal(shortForm("ab😀cd", 3), "ab… (6 characters)");
  assert.equal(shortForm("ab😀cd", 4), "ab😀… (6 characters)");
});
