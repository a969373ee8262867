import type { Command, VmEvent, VmView } from "../contracts/index.js";
import { commandDigest } from "./command-digest.js";
import { emptyVm, keepImage, type Vm } from "./vm.js";

/** Every command the VM saw, in any life, as digests. */
export function digestsOf(vm: Vm): string[] {
  const out = new Set(vm.seenDigests ?? []);
  for (const id of vm.seenCommands) out.add(commandDigest(id));
  return [...out];
}

/**
 * evolve(vm, event, seq) -> vm. The same fold serves the live path and replay. The event's own
 * `state` is authoritative (the writer computed it with the decider); evolve applies handles,
 * pending intents and the idempotency set.
 */
export function evolve(vm: Vm, event: VmEvent, seq: number): Vm {
  switch (event.type) {
    case "vm.command-accepted": {
      const c = event.command;
      const prepare = c.type === "vm.prepare";
      const pending = {
        commandId: c.commandId,
        type: c.type,
        since: event.at,
        deadline: event.deadline,
      };
      const next = vmAt(vm, event, seq, {
        state: event.state,
        handle: prepare ? null : vm.handle,
        spec: prepare ? c.spec : vm.spec,
        pending,
        pendingCommand: c,
      });
      return movingAfter(next, c);
    }
    case "vm.prepared":
      return settled(vm, event, seq, event.state, event.handle, event.spec ?? vm.spec);
    case "vm.started":
    case "vm.suspended":
    case "vm.resumed":
    case "vm.stopped":
      // Histories written before the worker kept the image in every handle keep it here too.
      return settled(vm, event, seq, event.state, later(vm, event.handle), vm.spec);
    case "vm.destroyed":
      return settled(vm, event, seq, event.state, notLive(vm.handle), withoutUserData(vm.spec));
    case "vm.command-failed":
    case "vm.disk-exported":
      return settled(vm, event, seq, event.state, vm.handle, vm.spec);
    case "vm.command-rejected":
      // A rejection never changes state; a VM that only ever saw rejections stays absent.
      return settled(vm, event, seq, vm.state, vm.handle, vm.spec);
    case "vm.tombstoned":
      // A life before this one, compacted: only what it saw is kept (nothing else is used again).
      return {
        vmId: vm.vmId,
        host: vm.host,
        state: event.state,
        handle: null,
        spec: null,
        pending: null,
        pendingCommand: null,
        version: seq,
        // The events before it are purged: the subject now starts with this one.
        eventCount: 1,
        seenCommands: new Set(),
        seenDigests: new Set([...digestsOf(vm), ...event.seen]),
        updatedAt: event.at,
      };
    case "vm.evacuated": {
      const next = settled(
        vm,
        event,
        seq,
        event.state,
        notLive(vm.handle),
        withoutUserData(vm.spec),
      );
      const evacuated = { id: event.evacuationId, toHost: event.toHost };
      return { ...next, pending: null, pendingCommand: null, evacuated };
    }
    case "vm.state-observed":
      return vmAt(vm, event, seq, {
        state: event.state,
        handle: later(vm, event.handle),
        spec: vm.spec,
        pending: vm.pending,
        pendingCommand: vm.pendingCommand,
      });
  }
}

/** A move's export holds the VM (Vm.movingOut) until a start, prepare or destroy is accepted. */
function movingAfter(vm: Vm, c: Command): Vm {
  if (c.type === "vm.export-disk" && c.origin?.kind === "move")
    return { ...vm, movingOut: { moveId: c.origin.moveId, toHost: c.origin.toHost } };
  if (!vm.movingOut || !RELEASES.has(c.type)) return vm;
  const { movingOut: _, ...rest } = vm;
  return rest;
}
const RELEASES: ReadonlySet<Command["type"]> = new Set(["vm.start", "vm.prepare", "vm.destroy"]);

/**
 * An outcome: the command joins the set of seen commands (shared, only ever growing) and, if
 * it was the pending one, leaves `pending`.
 */
function settled(
  vm: Vm,
  event: VmEvent,
  seq: number,
  state: Vm["state"],
  handle: Vm["handle"],
  spec: Vm["spec"],
): Vm {
  const id = event.causationId;
  if (id !== null) vm.seenCommands.add(id);
  const clears = id !== null && vm.pending?.commandId === id;
  return vmAt(vm, event, seq, {
    state,
    handle,
    spec,
    pending: clears ? null : vm.pending,
    pendingCommand: clears ? null : vm.pendingCommand,
  });
}

const later = (vm: Vm, handle: Vm["handle"] | undefined): Vm["handle"] =>
  handle ? keepImage(vm.handle, handle) : vm.handle;

/** The VM after `event` at `seq`: one object per event, always of the same shape. */
function vmAt(
  vm: Vm,
  event: VmEvent,
  seq: number,
  c: Pick<Vm, "state" | "handle" | "spec" | "pending" | "pendingCommand">,
): Vm {
  return {
    vmId: vm.vmId,
    host: vm.host,
    state: c.state,
    handle: c.handle,
    spec: c.spec,
    pending: c.pending,
    pendingCommand: c.pendingCommand,
    version: seq,
    eventCount: vm.eventCount + 1,
    seenCommands: vm.seenCommands,
    seenDigests: vm.seenDigests,
    updatedAt: event.at,
    ...(vm.evacuated ? { evacuated: vm.evacuated } : {}),
    ...(vm.movingOut ? { movingOut: vm.movingOut } : {}),
  };
}

/**
 * A destroyed VM's handle without what only a live VM has (its pid, sockets, VNC address, SSH
 * port): the view must not show a pid that may be another process's by now. The backend, id and
 * work dir stay, so a second destroy reaches the right backend.
 */
export function notLive(handle: Vm["handle"]): Vm["handle"] {
  if (handle === null) return null;
  const {
    pid: _pid,
    vncAddr: _vnc,
    qmpSocket: _qmp,
    consoleSocket: _console,
    sshHostPort: _ssh,
    ...rest
  } = handle;
  return rest;
}

/**
 * A destroyed VM's spec without its cloud-init data (up to 32 KiB of user-data, which may hold
 * secrets). Its handle and the rest of the spec stay, so a second destroy still reaches the
 * right backend. The registry and every snapshot keep a destroyed VM for as long as the worker
 * runs, and nothing reads that data again (a new prepare brings its own).
 */
export function withoutUserData(spec: Vm["spec"]): Vm["spec"] {
  if (spec?.cloudInit === undefined) return spec;
  const { cloudInit: _dropped, ...rest } = spec;
  return rest;
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
  // An evacuated VM's record is its new host's: this host has none (its worker dropped it).
  if (vm.state === null || vm.evacuated) return undefined;
  return {
    vmId: vm.vmId,
    host: vm.host,
    state: vm.state,
    lastEventSeq: vm.version,
    eventCount: vm.eventCount,
    handle: vm.handle,
    pending: vm.pending,
    updatedAt: vm.updatedAt ?? new Date(0).toISOString(),
  };
}
