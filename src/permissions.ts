/**
 * Asking which permissions the program was granted, for code that adapts to them (metrics sources,
 * the daemon's flags, the state directory).
 *
 * @module
 */

/**
 * Whether a permission is granted, without ever prompting or throwing.
 *
 * @param descriptor The permission.
 * @returns `true` when granted.
 */
export function isGranted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}
