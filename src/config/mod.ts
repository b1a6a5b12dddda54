/**
 * Configuration: the settings table and its loader.
 *
 * @module
 */
export * from "./settings.ts";
export * from "./load.ts";
export * from "./suggest.ts";
