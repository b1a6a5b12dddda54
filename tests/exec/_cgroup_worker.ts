/**
 * A second agent on another thread of the test process: runs {@link cgroupsOfRuns} with the tag
 * and count the message gives, and answers with its findings.
 *
 * @module
 */
import { cgroupsOfRuns } from "./_cgroup_runs.ts";

const scope = self as unknown as {
  onmessage: (event: MessageEvent<{ tag: string; runs: number }>) => void;
  postMessage(message: unknown): void;
};
scope.onmessage = async (event) => {
  scope.postMessage(await cgroupsOfRuns(event.data.tag, event.data.runs));
};
