import type { Command, Pending, VmHandle, VmSpec, VmState } from "../contracts/index.js";
import { commandDigest } from "./command-digest.js";

/**
 * One VM as rebuilt from its event stream. `state` is null until the first event.
 * `seenCommands` holds every commandId that has an outcome (done or rejected): the
 * idempotency key for ever. It is shared between successive values and only ever grows,
 * so replaying a long history stays linear.
 */
export interface Vm {
  readonly vmId: string;
  readonly host: string;
  readonly state: VmState | null;
  readonly handle: VmHandle | null;
  readonly spec: VmSpec | null;
  readonly pending: Pending | null;
  /** The pending command as accepted (for resolving it after a crash). */
  readonly pendingCommand: Command | null;
  /** Stream sequence of the VM's last event (0: none). */
  readonly version: number;
  /**
   * How many events the VM's subject holds up to `version` (1, 2, 3...): its own version, where
   * `version` is a stream-wide sequence. A compaction restarts it at the tombstone event.
   */
  readonly eventCount: number;
  readonly seenCommands: Set<string>;
  /**
   * Digests of the commands of earlier lives compacted to a tombstone (commandDigest), or null:
   * a command is seen when its id is in seenCommands or its digest here (hasSeen).
   */
  readonly seenDigests: ReadonlySet<string> | null;
  readonly updatedAt: string | null;
  /** Set by vm.evacuated: the VM lives on another host now; every command here is rejected. */
  readonly evacuated?: { readonly id: string; readonly toHost?: string | undefined };
  /**
   * Set when a move's export of the disk is accepted (the guest is down and its disk is on its
   * way to `toHost`); cleared by the next accepted start, prepare or destroy. While it is set, a
   * start that is not the move's own is refused as long as the move is under way: it would run
   * a second copy of the VM (vm::moving).
   */
  readonly movingOut?: { readonly moveId: string; readonly toHost: string };
}

export const emptyVm = (vmId: string, host: string): Vm => ({
  vmId,
  host,
  state: null,
  handle: null,
  spec: null,
  pending: null,
  pendingCommand: null,
  version: 0,
  eventCount: 0,
  seenCommands: new Set(),
  seenDigests: null,
  updatedAt: null,
});

/** Whether the VM has an outcome for this commandId, in this life or one compacted before it. */
export const hasSeen = (vm: Vm, commandId: string): boolean =>
  vm.seenCommands.has(commandId) ||
  (vm.seenDigests !== null && vm.seenDigests.has(commandDigest(commandId)));

/**
 * A new handle from the backend, keeping the image the VM was prepared from: the worker, not the
 * backend, records `imageDigest` at the prepare, and it is the VM's image for its whole life
 * (its host's cache keeps it, `vmq image rm` refuses it).
 */
export function keepImage(prev: VmHandle | null, next: VmHandle): VmHandle {
  const digest = next.imageDigest ?? prev?.imageDigest;
  return digest === undefined || next.imageDigest === digest
    ? next
    : { ...next, imageDigest: digest };
}
