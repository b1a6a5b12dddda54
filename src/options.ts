/**
 * Checks of the options objects the library's entry points take, for what the types cannot
 * catch in a caller's JavaScript, or in an object built at run time: a misspelt option name (taken
 * as no option, so its default applied without a word) and a flag that is not a boolean.
 *
 * @module
 */
import { nearest } from "./config/suggest.ts";

/**
 * Every option name of `T`, as an object a check can hold at run time: the compiler refuses one
 * that lacks a name of `T`, or has one `T` does not.
 */
export type OptionNames<T> = { readonly [K in keyof Required<T>]: true };

/**
 * Refuses a key of `options` that is not one of its options (`prot` for `port`).
 *
 * @param what Whose options they are, for the message (`startServer`).
 * @param options The options as given.
 * @param names Every option name.
 * @throws {TypeError} Naming the first unknown key, and the option it likely meant.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkOptionNames, type OptionNames } from "./options.ts";
 *
 * interface Listen {
 *   port?: number;
 *   hostname?: string;
 * }
 * const names: OptionNames<Listen> = { port: true, hostname: true };
 * checkOptionNames<Listen>("startServer", { port: 0 }, names);
 * const given: Listen = JSON.parse('{ "prot": 0 }');
 * assert.throws(() => checkOptionNames("startServer", given, names), {
 *   name: "TypeError",
 *   message: 'startServer has no option "prot" (did you mean "port"?)',
 * });
 * ```
 */
export function checkOptionNames<T extends object>(
  what: string,
  options: T,
  names: OptionNames<T>,
): void {
  for (const key of Object.keys(options)) {
    if (Object.hasOwn(names, key)) continue;
    const meant = nearest(key, Object.keys(names));
    throw new TypeError(
      `${what} has no option ${JSON.stringify(key)}${
        meant === undefined ? "" : ` (did you mean "${meant}"?)`
      }`,
    );
  }
}

/**
 * Refuses a flag that is given and not a boolean: `"false"` is truthy, and turned on what it
 * meant to turn off.
 *
 * @param name The option's name.
 * @param value Its value.
 * @throws {TypeError} When it is neither `undefined` nor a boolean.
 */
export function checkFlag(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(
      `${name} must be true or false, got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
}

/**
 * Refuses a signal that is given and not an `AbortSignal`: found only when the request or the
 * wait began, as `AbortSignal.any`'s "Argument 1, index 0 is not of type AbortSignal".
 *
 * @param name The option's name.
 * @param value Its value.
 * @throws {TypeError} When it is neither `undefined` nor an `AbortSignal`.
 */
export function checkSignal(name: string, value: unknown): void {
  if (value !== undefined && !(value instanceof AbortSignal)) {
    throw new TypeError(
      `${name} must be an AbortSignal, got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
}

/**
 * Refuses an option given as `null`, for options objects none of whose options takes it: `??`
 * took it for a missing one, so `port: null` listened on the default port without a word.
 *
 * @param options The options as given.
 * @throws {TypeError} Naming the first option that is `null`.
 */
export function checkNoNulls(options: object): void {
  for (const [key, value] of Object.entries(options)) {
    if (value === null) {
      throw new TypeError(`${key} must be left out (undefined) for its default, not null`);
    }
  }
}
