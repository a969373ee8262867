import type { VmState } from "../../../contracts/index.js";

/**
 * QEMU's RunState (query-status `status`) as a vmq VmState, every value spelled out. Anything
 * not listed, including RunStates of newer QEMUs, is `unknown`: never `running` by default.
 */
export const RUN_STATE_MAP: Readonly<Record<string, VmState>> = {
  running: "running",
  // paused: stopped by `stop` (our suspend, or someone else's); suspended: the guest's own S3.
  paused: "suspended",
  suspended: "suspended",
  // Only while the process is still exiting (we do not run with -no-shutdown).
  shutdown: "stopped",
  // The guest cannot continue on its own: it needs a stop/start or destroy.
  "guest-panicked": "failed",
  "internal-error": "failed",
  "io-error": "failed",
  // The guest watchdog fired and QEMU paused it: the guest is hung.
  watchdog: "failed",
  // Transitional or tooling states vmq never enters itself: we cannot say what they mean.
  debug: "unknown",
  inmigrate: "unknown",
  postmigrate: "unknown",
  prelaunch: "unknown",
  "finish-migrate": "unknown",
  "restore-vm": "unknown",
  "save-vm": "unknown",
  colo: "unknown",
};

export function mapRunState(status: unknown): VmState {
  if (typeof status !== "string") return "unknown";
  return Object.hasOwn(RUN_STATE_MAP, status) ? RUN_STATE_MAP[status]! : "unknown";
}
