import type { CommandType, VmState } from "../contracts/index.js";

/** Where each command may start from (null: the VM has no history yet) and where it leads. */
export const TRANSITIONS: Record<CommandType, { from: readonly (VmState | null)[]; to: VmState }> =
  {
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
  };

export const isAllowed = (type: CommandType, state: VmState | null): boolean =>
  TRANSITIONS[type].from.includes(state);

export const targetState = (type: CommandType): VmState => TRANSITIONS[type].to;

/** States a VM sits in while nothing is in flight; `unknown` is never treated as dead. */
export const isLive = (s: VmState | null): boolean => s === "running" || s === "suspended";
