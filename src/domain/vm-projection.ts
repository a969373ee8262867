import type { VmEvent, VmView } from "../contracts/index.js";
import { emptyVm, type Vm } from "./vm.js";

/**
 * evolve(vm, event, seq) -> vm. The same fold serves the live path and replay. The event's own
 * `state` is authoritative (the writer computed it with the decider); evolve applies handles,
 * pending intents and the idempotency set.
 */
export function evolve(vm: Vm, event: VmEvent, seq: number): Vm {
  // One new object per event (replay folds hundreds of thousands): `seenCommands` is shared and
  // grows in place; an outcome clears `pending` only when it answers the pending command.
  const outcome =
    event.type !== "vm.command-accepted" && event.type !== "vm.state-observed"
      ? event.causationId
      : null;
  if (outcome !== null) vm.seenCommands.add(outcome);
  const settles = outcome !== null && vm.pending?.commandId === outcome;
  const pending = settles ? null : vm.pending;
  const pendingCommand = settles ? null : vm.pendingCommand;
  switch (event.type) {
    case "vm.command-accepted":
      return {
        ...vm,
        version: seq,
        updatedAt: event.at,
        state: event.state,
        pending: {
          commandId: event.command.commandId,
          type: event.command.type,
          since: event.at,
          deadline: event.deadline,
        },
        pendingCommand: event.command,
        ...(event.command.type === "vm.prepare" ? { spec: event.command.spec, handle: null } : {}),
      };
    case "vm.prepared":
      return {
        ...vm,
        version: seq,
        updatedAt: event.at,
        state: event.state,
        handle: event.handle,
        spec: event.spec ?? vm.spec,
        pending,
        pendingCommand,
      };
    case "vm.started":
    case "vm.suspended":
    case "vm.resumed":
    case "vm.stopped":
    case "vm.state-observed":
      return {
        ...vm,
        version: seq,
        updatedAt: event.at,
        state: event.state,
        handle: event.handle ?? vm.handle,
        pending,
        pendingCommand,
      };
    case "vm.destroyed":
    case "vm.command-failed":
      return {
        ...vm,
        version: seq,
        updatedAt: event.at,
        state: event.state,
        pending,
        pendingCommand,
      };
    case "vm.command-rejected":
      // A rejection never changes state; a VM that only ever saw rejections stays absent.
      return { ...vm, version: seq, updatedAt: event.at, pending, pendingCommand };
  }
}

/** Folds a whole history. */
export function replayVm(
  vmId: string,
  host: string,
  events: Iterable<{ event: VmEvent; seq: number }>,
): Vm {
  let vm = emptyVm(vmId, host);
  for (const { event, seq } of events) vm = evolve(vm, event, seq);
  return vm;
}

/** The `vmq-vms` record of a VM; undefined while it has no lifecycle (only rejections). */
export function toView(vm: Vm): VmView | undefined {
  if (vm.state === null) return undefined;
  return {
    vmId: vm.vmId,
    host: vm.host,
    state: vm.state,
    lastEventSeq: vm.version,
    handle: vm.handle,
    pending: vm.pending,
    updatedAt: vm.updatedAt ?? new Date(0).toISOString(),
  };
}
