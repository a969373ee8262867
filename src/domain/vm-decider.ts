import {
  CommandId,
  hintFor,
  type Command,
  type EventOf,
  type StopHow,
  type VmEvent,
  type VmHandle,
  type VmState,
  type VmSpec,
  type ObservationSource,
  type ExportedDisk,
} from "../contracts/index.js";
import type { Failure, Rejection } from "./errors.js";
import { stopDeadline } from "./stop-schedule.js";
import { hasSeen, keepImage, type Vm } from "./vm.js";
import { isAllowed, targetState, TRANSITIONS } from "./vm-state.js";

/** What the decider needs from the outside world, passed in so it stays pure. */
export interface DecideContext {
  now: Date;
  /** Time budget per command type when the command gives none (ms). */
  budgets?: Partial<Record<Command["type"], number>>;
  /** A stop's or destroy's room for one worker crash (the consumer's ack_wait; stop-schedule.ts). */
  stopCrashAllowanceMs?: number | undefined;
}

export const DEFAULT_BUDGETS: Record<Command["type"], number> = {
  "vm.prepare": 10 * 60_000,
  "vm.start": 5 * 60_000,
  "vm.suspend": 60_000,
  "vm.resume": 60_000,
  "vm.stop": 0, // the command's timeoutMs plus escalation: stopDeadline (stop-schedule.ts)
  "vm.destroy": 0,
  // Flattening and sending a disk of many GiB: minutes, not seconds.
  "vm.export-disk": 60 * 60_000,
};

export type Decision =
  /** The commandId already has an outcome: no second effect, no second outcome. */
  | { kind: "duplicate" }
  /** The command's intent is recorded but it has no outcome yet: run it again. */
  | { kind: "resume"; deadline: string }
  | { kind: "reject"; event: EventOf<"vm.command-rejected">; rejection: Rejection }
  | { kind: "accept"; event: EventOf<"vm.command-accepted"> };

export const eventIdFor = (vmId: string, commandId: string, what: "accepted" | "outcome"): string =>
  `${vmId}:${commandId}:${what}`;

const base = (
  vm: Vm,
  c: Pick<Command, "commandId" | "correlationId">,
  at: Date,
  state: VmState | null,
) => ({
  version: 1 as const,
  vmId: vm.vmId,
  host: vm.host,
  at: at.toISOString(),
  causationId: c.commandId,
  correlationId: c.correlationId ?? null,
  state: state ?? "destroyed",
});

export function deadlineFor(command: Command, ctx: DecideContext): Date {
  const now = ctx.now.getTime();
  if (command.type === "vm.stop" || command.type === "vm.destroy")
    return new Date(stopDeadline(now, command.timeoutMs, ctx.stopCrashAllowanceMs));
  return new Date(now + (ctx.budgets?.[command.type] ?? DEFAULT_BUDGETS[command.type]));
}

/** decide(command, vm) -> intent event | rejection | nothing new. */
export function decide(command: Command, vm: Vm, ctx: DecideContext): Decision {
  if (hasSeen(vm, command.commandId)) return { kind: "duplicate" };
  // An evacuated VM runs nothing here again, not even an intent a dead worker left behind.
  if (!vm.evacuated && vm.pending?.commandId === command.commandId)
    return { kind: "resume", deadline: vm.pending.deadline };

  const rejection = expired(command, ctx.now) ?? check(command, vm);
  if (rejection) return { kind: "reject", rejection, event: rejected(vm, command, rejection, ctx) };
  const state = command.type === "vm.prepare" ? "preparing" : vm.state;
  return {
    kind: "accept",
    event: {
      type: "vm.command-accepted",
      ...base(vm, command, ctx.now, state),
      eventId: eventIdFor(vm.vmId, command.commandId, "accepted"),
      command,
      deadline: deadlineFor(command, ctx).toISOString(),
    },
  };
}

/** The rejection event of a command (its outcome: no intent was recorded). */
export function rejected(
  vm: Vm,
  command: Command,
  rejection: Rejection,
  ctx: DecideContext,
): EventOf<"vm.command-rejected"> {
  return {
    type: "vm.command-rejected",
    ...base(vm, command, ctx.now, vm.state),
    eventId: eventIdFor(vm.vmId, command.commandId, "outcome"),
    commandId: command.commandId,
    code: rejection.code,
    message: rejection.message,
    ...optionalHint(rejection.code),
  };
}

/** A command the scheduler gave up on (its notAfter passed before it could start) does nothing. */
function expired(command: Command, now: Date): Rejection | undefined {
  if (command.notAfter === undefined || Date.parse(command.notAfter) >= now.getTime())
    return undefined;
  return {
    code: "command::expired",
    message: `${command.type} ${command.commandId} expired at ${command.notAfter}, before it could start`,
  };
}

function check(command: Command, vm: Vm): Rejection | undefined {
  // Its only copy is on another host now: running anything here would run it twice.
  if (vm.evacuated) {
    const to = vm.evacuated.toHost ? ` to host ${vm.evacuated.toHost}` : "";
    return {
      code: "vm::evacuated",
      message: `VM ${vm.vmId} was evacuated from host ${vm.host}${to} (evacuation ${vm.evacuated.id})`,
    };
  }
  if (command.expectedVersion !== undefined && command.expectedVersion !== vm.version) {
    return {
      code: "command::version-conflict",
      message: `expected VM ${vm.vmId} at version ${command.expectedVersion}, but it is at ${vm.version}`,
    };
  }
  if (command.type === "vm.prepare" && vm.state !== null && vm.state !== "destroyed") {
    return {
      code: "vm::exists",
      message: `VM ${vm.vmId} already exists (state ${vm.state}); destroy it first`,
    };
  }
  if (command.type !== "vm.prepare" && vm.state === null) {
    return {
      code: "vm::not-found",
      message: `VM ${vm.vmId} has not been prepared on host ${vm.host}`,
    };
  }
  if (vm.pending) {
    return {
      code: "command::illegal-transition",
      message: `VM ${vm.vmId} is busy with ${vm.pending.type} ${vm.pending.commandId} until ${vm.pending.deadline}`,
    };
  }
  if (!isAllowed(command.type, vm.state)) {
    const allowed = TRANSITIONS[command.type].from.map((s) => s ?? "(new)").join(", ");
    return {
      code: "command::illegal-transition",
      message: `cannot ${command.type.slice(3)} VM ${vm.vmId} in state ${vm.state ?? "(new)"}; allowed from: ${allowed}`,
    };
  }
  return undefined;
}

const optionalHint = (code: string): { hint?: string } => {
  const hint = hintFor(code);
  return hint === undefined ? {} : { hint };
};

/** What a backend call produced, as the outcome event needs it. */
export interface CommandResult {
  handle?: VmHandle;
  spec?: VmSpec;
  how?: StopHow;
  /** An export's bytes in the images stream. */
  disk?: ExportedDisk;
}

/** The outcome event of a command whose backend call succeeded. */
export function succeeded(
  vm: Vm,
  command: Command,
  result: CommandResult,
  ctx: DecideContext,
  opts: { reconciled?: boolean } = {},
): VmEvent {
  const b = {
    ...base(vm, command, ctx.now, targetState(command.type) ?? vm.state),
    eventId: eventIdFor(vm.vmId, command.commandId, "outcome"),
    ...(opts.reconciled ? { reconciled: true } : {}),
  };
  const handle = result.handle ? { handle: keepImage(vm.handle, result.handle) } : {};
  switch (command.type) {
    case "vm.prepare": {
      if (!result.handle) throw new TypeError("a prepare result needs a handle");
      return {
        type: "vm.prepared",
        ...b,
        handle: result.handle,
        spec: result.spec ?? command.spec,
        ...(command.origin ? { origin: command.origin } : {}),
      };
    }
    case "vm.start":
      return { type: "vm.started", ...b, ...handle };
    case "vm.suspend":
      return { type: "vm.suspended", ...b, ...handle };
    case "vm.resume":
      return { type: "vm.resumed", ...b, ...handle };
    case "vm.stop":
      return { type: "vm.stopped", ...b, ...handle, how: result.how ?? "forced" };
    case "vm.destroy":
      return { type: "vm.destroyed", ...b };
    case "vm.export-disk": {
      if (!result.disk) throw new TypeError("an export result needs the exported disk");
      return { type: "vm.disk-exported", ...b, disk: result.disk };
    }
  }
}

/** The outcome event of a command whose backend call failed for good. */
export function failed(
  vm: Vm,
  command: Command,
  failure: Failure,
  attempt: number,
  ctx: DecideContext,
  opts: { state?: VmState } = {},
): EventOf<"vm.command-failed"> {
  // A failed prepare leaves a VM that exists only as a failure (unknown when its backend could
  // not be reached: it may or may not have left something); anything else keeps its state
  // unless the caller observed otherwise.
  const state =
    opts.state ??
    (command.type === "vm.prepare"
      ? failure.code.endsWith("::unreachable")
        ? "unknown"
        : "failed"
      : (vm.state ?? "failed"));
  const hint = failure.hint ?? hintFor(failure.code);
  return {
    type: "vm.command-failed",
    ...base(vm, command, ctx.now, state),
    eventId: eventIdFor(vm.vmId, command.commandId, "outcome"),
    commandId: command.commandId,
    code: failure.code,
    message: failure.message,
    ...(hint === undefined ? {} : { hint }),
    retryable: failure.retryable,
    attempt,
  };
}

/** A change no command explains (guest power-off, crash, drift found when reconciling). */
export function observed(
  vm: Vm,
  observedState: VmState,
  source: ObservationSource,
  ctx: DecideContext & { eventId: string },
  extra: { detail?: string; handle?: VmHandle } = {},
): EventOf<"vm.state-observed"> | undefined {
  const previous = vm.state ?? "unknown";
  if (previous === observedState && extra.handle === undefined) return undefined;
  return {
    type: "vm.state-observed",
    version: 1,
    eventId: ctx.eventId,
    vmId: vm.vmId,
    host: vm.host,
    at: ctx.now.toISOString(),
    causationId: null,
    correlationId: null,
    state: observedState,
    observed: observedState,
    previous,
    source,
    ...extra,
  };
}

/** A command that never became valid enough to decide on: rejected, with a deterministic id. */
export function rejectInvalid(
  vm: Vm,
  info: { commandId?: string; code: string; message: string; streamSeq: number },
  ctx: DecideContext,
): EventOf<"vm.command-rejected"> {
  const commandId = info.commandId ?? "";
  const valid = CommandId.safeParse(commandId).success;
  return {
    type: "vm.command-rejected",
    version: 1,
    eventId: `${vm.vmId}:invalid:${info.streamSeq}`,
    vmId: vm.vmId,
    host: vm.host,
    at: ctx.now.toISOString(),
    causationId: valid ? commandId : null,
    correlationId: null,
    state: vm.state ?? "destroyed",
    commandId,
    code: info.code,
    message: info.message,
    ...optionalHint(info.code),
  };
}
