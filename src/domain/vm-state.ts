import type { CommandType, VmState } from "../contracts/index.js";

/**
 * Where each command may start from (null: the VM has no history yet) and where it leads
 * (null: the state stays as it was, as after an export of the disk).
 */
export const TRANSITIONS: Record<
  CommandType,
  { from: readonly (VmState | null)[]; to: VmState | null }
> = {
  "vm.prepare": { from: [null, "destroyed"], to: "prepared" },
  "vm.start": { from: ["prepared", "stopped"], to: "running" },
  "vm.suspend": { from: ["running"], to: "suspended" },
  "vm.resume": { from: ["suspended"], to: "running" },
  "vm.stop": { from: ["running", "suspended"], to: "stopped" },
  "vm.destroy": {
    from: [
      "preparing",
      "prepared",
      "running",
      "suspended",
      "stopped",
      "failed",
      "destroyed",
      "unknown",
    ],
    to: "destroyed",
  },
  // The disk is read, never written, and only when no guest runs on it.
  "vm.export-disk": { from: ["prepared", "stopped"], to: null },
};

export const isAllowed = (type: CommandType, state: VmState | null): boolean =>
  TRANSITIONS[type].from.includes(state);

/** The state a command leads to; null when it leaves the state as it was. */
export const targetState = (type: CommandType): VmState | null => TRANSITIONS[type].to;

/** States a VM sits in while nothing is in flight; `unknown` is never treated as dead. */
export const isLive = (s: VmState | null): boolean => s === "running" || s === "suspended";
