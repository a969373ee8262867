import type { VmEvent, VmHandle, VmState } from "../contracts/index.js";
import { failed, observed, succeeded } from "./vm-decider.js";
import { isLive, targetState } from "./vm-state.js";
import type { Vm } from "./vm.js";

/** What the backend said about a VM when the worker (re)started or checked it. */
export interface BackendReport {
  /** Its state now; `unknown` when the backend could not be asked or could not tell. */
  state: VmState;
  /** Why it could not tell (the backend's error), for the record. */
  detail?: string | undefined;
  /** An interrupted prepare: the handle the backend recorded for it, if it finished there. */
  recovered?: VmHandle | undefined;
}

export type Reconciliation =
  /** Nothing to record. */
  | { kind: "nothing" }
  /** An interrupted command that did nothing yet, with time left: its redelivery resumes it. */
  | { kind: "leave" }
  /** An interrupted command resolved from the backend's answer (its outcome). */
  | { kind: "resolve"; event: VmEvent }
  /** The VM is not as recorded: the drift is recorded as vm.state-observed. */
  | { kind: "drift"; event: VmEvent };

/**
 * What a prepare interrupted before it had a handle left in the backend, asked by vmId: the
 * backend's own record gives the handle; something that exists without a record is failed
 * (destroy cleans up); a backend that cannot say is unknown, never failed.
 */
export function interruptedPrepareState(there: VmState, recorded: boolean): VmState {
  return there === "destroyed" || there === "unknown" || (there === "prepared" && recorded)
    ? there
    : "failed";
}

/**
 * Compares one VM's history with the backend's report. A pending intent (the worker died
 * mid-command) is resolved: the target state reached is the command's outcome (reconciled),
 * an untouched VM with time left is left to the command's redelivery (so is a stop or destroy
 * of a VM the backend cannot tell about: resuming it escalates), anything else is
 * vm.command-failed worker::interrupted (an unreachable backend gives unknown for a live VM,
 * never failed). Without a pending intent, a difference is drift.
 */
export function reconcile(
  vm: Vm,
  report: BackendReport,
  ctx: { now: Date; eventId: string },
): Reconciliation {
  const now = report.state;
  const pending = vm.pending;
  if (pending) {
    const untouched =
      pending.type === "vm.prepare" ? now === "destroyed" : now === vm.state && now !== "unknown";
    // A stop or destroy the backend cannot tell about (a wedged QEMU does not answer QMP) is
    // resumed too: its redelivery escalates, which is what the command asked for.
    const ending = pending.type === "vm.stop" || pending.type === "vm.destroy";
    const resumable = untouched || (ending && now === "unknown");
    if (resumable && Date.parse(pending.deadline) > ctx.now.getTime() + 1_000)
      return { kind: "leave" };
    const command = vm.pendingCommand;
    if (!command) return { kind: "nothing" };
    const handle = vm.handle ?? report.recovered;
    // An export that leaves the state as it was cannot be resolved from the state: its bytes
    // went with the worker, so it fails here (worker::interrupted) and is sent again.
    const target = targetState(command.type);
    if (target !== null && now === target && handle) {
      const spec =
        command.type === "vm.prepare"
          ? { ...command.spec, backend: command.spec.backend ?? handle.backend }
          : undefined;
      // The stop's step died with the worker; the contract's word for "ended without a
      // recorded graceful step" is forced (reconciled: true says why).
      const event = succeeded(
        vm,
        command,
        { handle, how: "forced", ...(spec ? { spec } : {}) },
        ctx,
        { reconciled: true },
      );
      return { kind: "resolve", event };
    }
    const state =
      now === "unknown" && vm.state !== null ? (isLive(vm.state) ? "unknown" : vm.state) : now;
    const event = {
      ...failed(
        vm,
        command,
        {
          code: "worker::interrupted",
          message: `the worker stopped during ${command.type}; the backend now reports ${now}${report.detail ? ` (${report.detail})` : ""}`,
          retryable: true,
        },
        1,
        ctx,
        { state },
      ),
      reconciled: true,
    };
    return { kind: "resolve", event };
  }
  // Without a handle the backend was not asked: there is nothing to compare (a failed prepare).
  if (!vm.handle || vm.state === now) return { kind: "nothing" };
  const event = observed(vm, now, "reconcile", ctx, report.detail ? { detail: report.detail } : {});
  return event ? { kind: "drift", event } : { kind: "nothing" };
}
