/**
 * The command executor (docs/protocol.md §5): whatever the dashboard sends, run only what the
 * policy allows, never through a shell, never past the deadline, never leaving a process behind,
 * and with bounded output.
 *
 * - {@link parseCommandLine} splits a command line into an argv, refusing shell syntax;
 * - {@link checkPolicy} applies the allowlist and the path prefixes;
 * - {@link runCommand} does both, then runs the program and returns an {@link ExecResult};
 * - {@link toReportFields} turns a result into the fields of a report;
 * - {@link Sandbox} decides who a command runs as, where, and how all its processes are stopped.
 *
 * @example Run a command under the default policy
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultPolicy, runCommand, toReportFields } from "./mod.ts";
 *
 * const result = await runCommand("echo 'hello world'", {
 *   policy: defaultPolicy(),
 *   timeoutSecs: 10,
 * });
 * assert.equal(result.status, "success");
 * assert.equal(result.stdout, "hello world\n");
 * assert.equal(toReportFields(result).result?.exit_code, 0);
 *
 * const refused = await runCommand("rm -rf /tmp", { policy: defaultPolicy() });
 * assert.equal(refused.status, "rejected");
 * ```
 *
 * @module
 */
export {
  type Checked,
  MAX_ARG_LENGTH,
  MAX_ARGS,
  MAX_COMMAND_LINE_LENGTH,
  parseCommandLine,
} from "./parse.ts";
export {
  type AcceptedCommand,
  checkPolicy,
  type CheckPolicyOptions,
  createPolicy,
  DEFAULT_ALLOWED_PATH_PREFIXES,
  DEFAULT_ALLOWED_PROGRAMS,
  defaultPolicy,
  type ExecPolicy,
  isUnderPrefix,
  normalizePath,
  PolicyChecker,
  type PolicyInput,
  type ProgramRef,
  resolveProgram,
} from "./policy.ts";
export { captureStream, OutputCapture, type OutputCaptureOptions } from "./capture.ts";
export {
  buildChildEnv,
  DEFAULT_CHILD_PATH,
  envFromAssignments,
  type EnvReader,
  validateExtraEnv,
} from "./env.ts";
export {
  agentUid,
  Cell,
  cgroup2Mount,
  type CgroupHome,
  type CommandUser,
  type KillMode,
  type LeftoverOutcome,
  ownCgroupPath,
  type ProcessRecord,
  resolveUser,
  Sandbox,
  type SandboxOptions,
  type SignalRoute,
} from "./sandbox.ts";
export {
  type CommandOptions,
  CommandRunner,
  DEADLINE_PHASES,
  type DeadlineWarning,
  effectiveTimeoutSecs,
  type ExecResult,
  type ExecStatus,
  type ExitRecord,
  type ReportFields,
  runCommand,
  type RunnerOptions,
  type RunOptions,
  type StartFailure,
  toReportFields,
} from "./runner.ts";
export { type OnOutput, tapOutput } from "./tap.ts";
