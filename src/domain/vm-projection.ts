import type { VmEvent, VmView } from "../contracts/index.js";
import { emptyVm, type Vm } from "./vm.js";

/**
 * evolve(vm, event, seq) -> vm. The same fold serves the live path and replay. The event's own
 * `state` is authoritative (the writer computed it with the decider); evolve applies handles,
 * pending intents and the idempotency set.
 */
export function evolve(vm: Vm, event: VmEvent, seq: number): Vm {
  const next = { ...vm, version: seq, updatedAt: event.at };
  switch (event.type) {
    case "vm.command-accepted":
      return {
        ...next,
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
      return done(
        { ...next, state: event.state, handle: event.handle, spec: event.spec ?? vm.spec },
        event.causationId,
      );
    case "vm.started":
    case "vm.suspended":
    case "vm.resumed":
    case "vm.stopped":
      return done(
        { ...next, state: event.state, handle: event.handle ?? vm.handle },
        event.causationId,
      );
    case "vm.destroyed":
      return done({ ...next, state: event.state }, event.causationId);
    case "vm.command-rejected":
      // A rejection never changes state; a VM that only ever saw rejections stays absent.
      return done(next, event.causationId);
    case "vm.command-failed":
      return done({ ...next, state: event.state }, event.causationId);
    case "vm.state-observed":
      return { ...next, state: event.state, handle: event.handle ?? vm.handle };
  }
}

/** Records an outcome: the command leaves `pending` and joins the set of seen commands. */
function done(vm: Vm, causationId: string | null): Vm {
  if (causationId === null) return vm;
  vm.seenCommands.add(causationId);
  return vm.pending?.commandId === causationId
    ? { ...vm, pending: null, pendingCommand: null }
    : vm;
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
