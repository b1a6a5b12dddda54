/**
 * The exit code a command chose, handed to `main.ts` (library code never exits).
 *
 * @module
 */

let pendingExitCode: number | undefined;

/** Records the exit code the process should end with. */
export function setExitCode(code: number): void {
  pendingExitCode = code;
}

/** Returns the recorded exit code and clears it. */
export function takeExitCode(): number | undefined {
  const code = pendingExitCode;
  pendingExitCode = undefined;
  return code;
}
