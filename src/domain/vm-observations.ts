import type { EventOf, ObservationSource, VmHandle, VmState } from "../contracts/index.js";
import { observed } from "./vm-decider.js";
import { keepImage, type Vm } from "./vm.js";

/** A change a backend saw that no command explains (guest power-off, crash, pause from outside). */
export interface Observation {
  state: VmState;
  source: ObservationSource;
  /** The guest itself caused it: said so in the event's detail. */
  guestInitiated?: boolean | undefined;
  detail?: string | undefined;
  handle?: VmHandle | undefined;
}

/**
 * What a backend's observed change means for the VM's history: a vm.state-observed, or nothing
 * when a command of ours explains it (its outcome records the state) or the history already
 * says so.
 */
export function observedChange(
  vm: Vm,
  o: Observation,
  ctx: { now: Date; eventId: string },
): EventOf<"vm.state-observed"> | undefined {
  if (vm.pending) return undefined;
  if (vm.state === o.state) return undefined;
  const detail = [o.guestInitiated ? "guest-initiated" : undefined, o.detail]
    .filter(Boolean)
    .join(": ");
  return observed(vm, o.state, o.source, ctx, {
    ...(detail ? { detail } : {}),
    ...(o.handle ? { handle: keepImage(vm.handle, o.handle) } : {}),
  });
}

/**
 * After a command failed, what the backend reports now, when it differs from the history: the
 * failure is then recorded on the state the VM is really in. A backend that cannot say changes
 * nothing.
 */
export function driftAfterFailure(
  vm: Vm,
  now: VmState,
  why: { command: string; code: string },
  ctx: { now: Date; eventId: string },
): EventOf<"vm.state-observed"> | undefined {
  if (now === "unknown") return undefined;
  return observed(vm, now, "reconcile", ctx, {
    detail: `after ${why.command} failed with ${why.code}`,
  });
}
