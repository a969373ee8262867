import type { EventOf, VmTombstone } from "../contracts/index.js";
import { digestsOf } from "./vm-projection.js";
import { emptyVm, type Vm } from "./vm.js";

/**
 * A VM whose events may be purged: destroyed (or never more than rejected), nothing in flight,
 * and its last event older than the retention window.
 */
export function isForgettable(vm: Vm, now: Date, retentionMs: number): boolean {
  if (vm.pending !== null || vm.version === 0) return false;
  if (vm.state !== "destroyed" && vm.state !== null) return false;
  const last = vm.updatedAt === null ? 0 : Date.parse(vm.updatedAt);
  return now.getTime() - last >= retentionMs;
}

/** What is kept of a forgettable VM: every command it saw, as digests. */
export function tombstoneOf(vm: Vm, now: Date): VmTombstone {
  return {
    version: 1,
    vmId: vm.vmId,
    host: vm.host,
    destroyedAt: vm.updatedAt ?? now.toISOString(),
    compactedAt: now.toISOString(),
    lastEventSeq: vm.version,
    seen: digestsOf(vm).sort(),
  };
}

/**
 * A VM known only by its tombstone: destroyed, no event on its subject any more (version 0), and
 * what its commands were. A command for it decides on this, never on an empty VM.
 */
export function vmFromTombstone(t: VmTombstone): Vm {
  return {
    ...emptyVm(t.vmId, t.host),
    state: "destroyed",
    seenDigests: new Set(t.seen),
    updatedAt: t.destroyedAt,
  };
}

/** The event that puts the tombstone back on the subject of a VM used again. */
export function tombstonedEvent(t: VmTombstone, at: Date): EventOf<"vm.tombstoned"> {
  return {
    type: "vm.tombstoned",
    version: 1,
    eventId: `${t.vmId}:tombstone:${t.lastEventSeq}`,
    vmId: t.vmId,
    host: t.host,
    at: at.toISOString(),
    causationId: null,
    correlationId: null,
    state: "destroyed",
    destroyedAt: t.destroyedAt,
    lastEventSeq: t.lastEventSeq,
    seen: t.seen,
  };
}
