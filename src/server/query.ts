/**
 * Query parameters of the operator's list routes that look like a mistyped filter.
 *
 * @module
 */
import { nearest } from "../config/suggest.ts";
import { shortForm, visibleText } from "../protocol/mod.ts";
import { HttpError } from "./http_error.ts";

/**
 * The `400` of a query parameter the route cannot take, with its field in `details`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { queryError } from "./query.ts";
 *
 * const error = queryError("limit", "must be a whole number from 1 to 1000");
 * assert.equal(error.status, 400);
 * assert.equal(error.message, 'query "limit": must be a whole number from 1 to 1000');
 * ```
 *
 * @param field The parameter.
 * @param message What it must be.
 * @returns The error to throw.
 */
export function queryError(field: string, message: string): HttpError {
  // The field is a client's parameter name: shown as the error's sentence shows it.
  const shown = visibleText(field);
  return new HttpError(400, `query "${shown}": ${message}`, {
    details: [{ field: shown, message }],
  });
}

/**
 * Refuses a query parameter the route does not read but that is near one it does (`agent` or
 * `agentId` for `agent_id`): ignored, it left the list unfiltered, which reads as the filtered
 * one. Refuses one it reads given more than once too (`agent_id=a1&agent_id=a2`): only the first
 * was read, which reads as a list of both. Other parameters (a cache-buster, say) are ignored as
 * before.
 *
 * @param url The request's URL, or its query's parameters.
 * @param known The parameters the route reads.
 * @param what What the route answers, as its errors name it.
 * @default {"list"}
 * @throws {HttpError} `400` naming the parameter and the one meant, or the one given twice.
 */
export function refuseMistypedQuery(
  url: string | URLSearchParams,
  known: readonly string[],
  what: string = "list",
): void {
  const params = typeof url === "string" ? new URL(url).searchParams : url;
  for (const name of new Set(params.keys())) {
    if (known.includes(name)) {
      const count = params.getAll(name).length;
      if (count === 1) continue;
      throw queryError(shortForm(name), `is given ${count} times; a ${what} takes one value of it`);
    }
    const meant = nearest(name, known);
    if (meant === undefined) continue;
    throw queryError(
      shortForm(name),
      `is not a parameter of this ${what} (did you mean "${meant}"?); the ` +
        (known.length === 1 ? `parameter is ${known[0]}` : `parameters are ${known.join(", ")}`),
    );
  }
}
