import type { VmState } from "../../../contracts/index.js";
import type { InstanceState } from "./propolis-api.js";

/** States in which the VMM exists and has not begun to halt. */
export const ACTIVE: ReadonlySet<InstanceState> = new Set([
  "Starting",
  "Running",
  "Rebooting",
  "Migrating",
]);
export const HALTING: ReadonlySet<InstanceState> = new Set(["Stopping", "Stopped", "Destroyed"]);

/**
 * Every Propolis state, explicitly. Stopping reads as running: the VM is not stopped until
 * Propolis proves it (a stop that never completes must not look done).
 */
export function mapInstanceState(s: InstanceState): VmState {
  switch (s) {
    case "Creating":
    case "Starting":
      return "prepared";
    case "Running":
    case "Rebooting":
    case "Stopping":
      return "running";
    case "Stopped":
    case "Destroyed":
      return "stopped";
    case "Failed":
    case "Repairing":
      return "failed";
    case "Migrating":
      return "unknown";
    default:
      return "unknown";
  }
}
