/**
 * Bad fields are told in the API's own words ("must be at most 86400"), not zod's ("Too big:
 * expected number to be <=86400"), wherever a body is checked: the dashboard's 400s and the agent's
 * refusal of a strange wait answer.
 */
import assert from "node:assert/strict";
import { z } from "zod";
import { describeZodError } from "../../src/protocol/mod.ts";

function said(schema: z.ZodType, value: unknown): string {
  const parsed = schema.safeParse(value);
  assert.ok(!parsed.success);
  return describeZodError(parsed.error);
}

Deno.test("common zod issues are told as what the field must be", () => {
  const cases: Array<[z.ZodType, unknown, string]> = [
    [z.object({ n: z.number().int().max(10) }), { n: 11 }, 'field "n": must be at most 10'],
    [z.object({ n: z.number().lt(10) }), { n: 10 }, 'field "n": must be less than 10'],
    [z.object({ n: z.number().min(1) }), { n: 0 }, 'field "n": must be at least 1'],
    [z.object({ n: z.number().int() }), { n: 1.5 }, 'field "n": must be a whole number'],
    [z.object({ n: z.number() }), { n: "5" }, 'field "n": must be a number, not a string'],
    [z.object({ s: z.string().min(1) }), { s: "" }, 'field "s": must be at least 1 character'],
    [z.object({ s: z.string().max(3) }), { s: "abcd" }, 'field "s": must be at most 3 characters'],
    [
      z.object({ a: z.array(z.string()).max(1) }),
      { a: ["x", "y"] },
      'field "a": must be at most 1 item',
    ],
    [
      z.object({ o: z.record(z.string(), z.string()) }),
      { o: null },
      'field "o": must be an object, not null',
    ],
    [z.object({ o: z.object({}) }), { o: [] }, 'field "o": must be an object, not an array'],
    [z.object({ e: z.enum(["a", "b"]) }), { e: "c" }, 'field "e": must be one of "a", "b"'],
    [z.object({ n: z.number() }), {}, 'field "n": is required (expected number)'],
    // JSON's 1e400 parses as Infinity: not "a Infinity".
    [
      z.object({ n: z.number() }),
      JSON.parse('{"n": 1e400}'),
      'field "n": must be a number, not Infinity',
    ],
    [z.object({ n: z.number() }), { n: NaN }, 'field "n": must be a number, not NaN'],
  ];
  for (const [schema, value, message] of cases) assert.equal(said(schema, value), message);
});
