import type { BackendTag, Command } from "../contracts/index.js";
import type { Rejection } from "./errors.js";
import type { Vm } from "./vm.js";

/** What the host knows that the decider cannot: its backends, their capabilities, the fleet view. */
export interface HostFacts {
  host: string;
  backends: readonly BackendTag[];
  /** The backend of a prepare whose spec names none. */
  defaultBackend: BackendTag;
  canSuspend: (tag: BackendTag) => boolean;
  /** For a prepare: the other live host that holds this vmId in the fleet view, if any. */
  ownerElsewhere?: string | undefined;
  /**
   * For a start the VM's move would have to allow (moveToCheck): whether that move is still
   * under way, as its record in the moves bucket says.
   */
  moveUnderWay?: boolean | undefined;
}

/**
 * The move whose record a start must be checked against: the one that exported the VM's disk
 * (Vm.movingOut), unless the start is that move's own (its undo starts the source again).
 */
export function moveToCheck(command: Command, vm: Vm): Vm["movingOut"] {
  if (command.type !== "vm.start" || !vm.movingOut) return undefined;
  const own = command.origin?.kind === "move" && command.origin.moveId === vm.movingOut.moveId;
  return own ? undefined : vm.movingOut;
}

/**
 * The refusals of a command the decider accepted, from what only the host knows. Checked
 * before the intent is recorded, so a refused command touches nothing.
 */
export function refusal(command: Command, vm: Vm, facts: HostFacts): Rejection | undefined {
  if (command.type === "vm.prepare") {
    const tag = command.spec.backend ?? facts.defaultBackend;
    if (!facts.backends.includes(tag)) {
      return {
        code: "hypervisor::backend-unavailable",
        message: `backend ${tag} is not configured on host ${facts.host} (it has ${facts.backends.join(", ")})`,
      };
    }
    // Contract: a vmId that the view holds under another (live) host is taken, except by the
    // target of a move from that very host (the move destroys the source once this one runs).
    const moving =
      command.origin?.kind === "move" && command.origin.fromHost === facts.ownerElsewhere;
    if (facts.ownerElsewhere !== undefined && !moving)
      return {
        code: "vm::exists",
        message: `VM ${command.vmId} exists on host ${facts.ownerElsewhere}`,
      };
    return undefined;
  }
  const moving = facts.moveUnderWay ? moveToCheck(command, vm) : undefined;
  if (moving)
    return {
      code: "vm::moving",
      message: `VM ${vm.vmId} is being moved to host ${moving.toHost} (move ${moving.moveId}): starting it here would run a second copy`,
    };
  const tag = vm.handle?.backend ?? vm.spec?.backend;
  if (tag && !facts.backends.includes(tag)) {
    return {
      code: "hypervisor::backend-unavailable",
      message: `VM ${vm.vmId} runs on backend ${tag}, which is not configured on host ${facts.host}`,
    };
  }
  if (
    (command.type === "vm.suspend" || command.type === "vm.resume") &&
    tag &&
    !facts.canSuspend(tag)
  ) {
    return {
      code: "hypervisor::unsupported",
      message: `backend ${tag} cannot ${command.type.slice(3)} a VM`,
    };
  }
  return undefined;
}
