/** The pure VM model: decide and evolve, free of I/O. */
export { emptyVm, hasSeen, type Vm } from "./vm.js";
export { commandDigest } from "./command-digest.js";
export { isForgettable, tombstoneOf, vmFromTombstone, tombstonedEvent } from "./vm-tombstones.js";
export { TRANSITIONS, isAllowed, targetState, isLive } from "./vm-state.js";
export {
  decide,
  rejected,
  succeeded,
  failed,
  observed,
  rejectInvalid,
  deadlineFor,
  eventIdFor,
  DEFAULT_BUDGETS,
  type Decision,
  type DecideContext,
  type CommandResult,
} from "./vm-decider.js";
export {
  stopDeadline,
  stopPlan,
  STOP_ESCALATION,
  STOP_ESCALATION_MS,
  type StopPlan,
  type StopTiming,
} from "./stop-schedule.js";
export { evolve, replayVm, toView, withoutUserData, notLive, digestsOf } from "./vm-projection.js";
export { moveToCheck, refusal, type HostFacts } from "./vm-refusals.js";
export { observedChange, driftAfterFailure, type Observation } from "./vm-observations.js";
export {
  reconcile,
  interruptedPrepareState,
  type BackendReport,
  type Reconciliation,
} from "./vm-reconciliation.js";
export type { Rejection, RejectionCode, Failure } from "./errors.js";
export { exportChunkPrefix, moveImageName } from "./move-names.js";
