import assert from "node:assert/strict";
import { curlGlobExpansions, MAX_CURL_GLOB_EXPANSIONS } from "../../src/exec/curl_glob.ts";

Deno.test("curlGlobExpansions expands sets and ranges as curl does", async (t) => {
  await t.step("sets, ranges and their products", () => {
    assert.deepEqual(curlGlobExpansions("a{b,c}d")?.urls, ["abd", "acd"]);
    assert.deepEqual(curlGlobExpansions("{a,}x")?.urls, ["ax", "x"]);
    assert.deepEqual(curlGlobExpansions("[a-c]")?.urls, ["a", "b", "c"]);
    assert.deepEqual(curlGlobExpansions("[1-5:2]")?.urls, ["1", "3", "5"]);
    assert.deepEqual(curlGlobExpansions("[08-10]")?.urls, ["08", "09", "10"]);
    assert.deepEqual(curlGlobExpansions("{a,b}[1-2]")?.urls, ["a1", "a2", "b1", "b2"]);
    // As curl 7 reads it, and as curl 8 does (a named glob).
    assert.deepEqual(curlGlobExpansions("{<name>x,y}")?.urls, ["<name>x", "y", "x", "y"]);
  });
  await t.step("what stays as written", () => {
    assert.deepEqual(curlGlobExpansions("plain")?.urls, ["plain"]);
    assert.deepEqual(curlGlobExpansions("http://[::1]:80/[]")?.urls, ["http://[::1]:80/[]"]);
    assert.deepEqual(curlGlobExpansions("\\{a,b\\}")?.urls, ["{a,b}"]);
    assert.deepEqual(curlGlobExpansions("{a\\,b}")?.urls, ["a,b"]);
  });
  await t.step("how many globs: the #1, #2, ... of -o", () => {
    assert.equal(curlGlobExpansions("{a,b}x[1-2]{c}")?.globs, 3);
    assert.equal(curlGlobExpansions("\\{a\\}[]")?.globs, 0);
  });
  await t.step("what cannot be expanded", () => {
    for (const arg of ["{a", "a}", "]", "{a,{b}}", "{a,[1-2]}", "{}", "[1-a]", "[5-1]", "[x]"]) {
      assert.equal(curlGlobExpansions(arg), undefined, arg);
    }
    assert.equal(curlGlobExpansions(`[1-${MAX_CURL_GLOB_EXPANSIONS + 1}]`), undefined);
    assert.equal(curlGlobExpansions("{a,b}".repeat(9)), undefined);
    assert.equal(curlGlobExpansions("{a,b}".repeat(8))?.urls.length, 256);
  });
});
