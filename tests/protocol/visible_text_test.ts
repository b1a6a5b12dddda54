import assert from "node:assert/strict";
import { visibleText } from "../../src/protocol/mod.ts";

Deno.test("visibleText shows each control and bidirectional formatting character as its escape, other text as it is", () => {
  assert.equal(visibleText("1.0\u202egnp.exe"), "1.0\\u202egnp.exe");
  assert.equal(
    visibleText("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069"),
    "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069",
  );
  assert.equal(
    visibleText("a\x1b[2Jb\x07\x00\x08\x7f\x9b\u2028\u2029\r\n\tc"),
    "a\\u001b[2Jb\\u0007\\u0000\\u0008\\u007f\\u009b\\u2028\\u2029\\r\\n\tc",
  );
  assert.equal(visibleText("שלום world <b> é ✓"), "שלום world <b> é ✓");
});
