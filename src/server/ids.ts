/**
 * Ids in operator routes' paths, checked against their rule before the store is asked: no record
 * has an id beyond it, and some (a NUL) would be a database error on PostgreSQL, not a miss.
 *
 * @module
 */
import { shortForm } from "../protocol/mod.ts";
import { HttpError } from "./http_error.ts";

/**
 * Throws the route's `404` for an id that no record can have.
 *
 * @param what What the id names, for the message.
 * @param id The id from the path.
 * @param pattern The rule of such ids.
 * @throws {HttpError} `404` "<what> <id> does not exist" when `id` breaks the rule.
 */
export function assertPossibleId(what: "command" | "run" | "agent", id: string, pattern: RegExp) {
  if (!pattern.test(id)) throw new HttpError(404, `${what} ${shortForm(id)} does not exist`);
}
