/**
 * Configuration: the settings table (one row per setting drives its flag, environment variable,
 * file key and README line) and its loader.
 *
 * @module
 */
export {
  flagOf,
  keysFor,
  reasonOf,
  type Role,
  type SettingKey,
  SETTINGS,
  type Settings,
  TILDE_NOT_EXPANDED,
} from "./settings.ts";
export { type LoadedSettings, loadSettings, missingSettingError, parseEnvFile } from "./load.ts";
export { nearest } from "./suggest.ts";
