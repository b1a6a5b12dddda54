import assert from "node:assert/strict";
import { summarizeAllocations } from "../../bench/profile_summary.ts";

const frame = (functionName: string, line = 0) => ({
  functionName,
  url: "file:///work/src/x.ts",
  lineNumber: line,
});

Deno.test("an allocation profile is summed by function, a recursive one counted once", () => {
  const profile = {
    head: {
      callFrame: { functionName: "(root)", url: "", lineNumber: -1 },
      selfSize: 0,
      children: [{
        callFrame: frame("handle", 9),
        selfSize: 100,
        children: [
          { callFrame: frame("parse", 19), selfSize: 50, children: [] },
          {
            callFrame: frame("handle", 9),
            selfSize: 10,
            children: [{ callFrame: frame("parse", 19), selfSize: 5, children: [] }],
          },
        ],
      }],
    },
  };
  const { functions, totalBytes } = summarizeAllocations(profile);
  assert.equal(totalBytes, 165);
  const byName = Object.fromEntries(functions.map((f) => [f.label, f]));
  assert.deepEqual(byName["handle (src/x.ts:10)"], {
    label: "handle (src/x.ts:10)",
    selfMs: 110,
    totalMs: 165,
  });
  assert.equal(byName["parse (src/x.ts:20)"].selfMs, 55);
  assert.equal(byName["parse (src/x.ts:20)"].totalMs, 55);
});
