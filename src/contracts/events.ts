import { z } from "zod";
import { CommandId, HostId, VmId } from "./ids.js";
import { Command, CommandOrigin } from "./commands.js";
import { CommandDigest } from "./tombstones.js";
import { ImageDigest } from "./images.js";
import { VmHandle, VmSpec, VmState } from "./vm.js";

const base = {
  version: z.literal(1),
  eventId: z.string().min(1).max(256).describe("Unique; also the Nats-Msg-Id header."),
  vmId: VmId,
  host: HostId,
  at: z.iso.datetime({ offset: true }),
  causationId: CommandId.nullable().describe(
    "The commandId that caused the event; null when observed.",
  ),
  correlationId: z.string().max(128).nullable().optional(),
  state: VmState.describe("The VM's state after the event."),
  reconciled: z
    .boolean()
    .optional()
    .describe(
      "Set when a restarted worker resolved an interrupted command from the backend's state.",
    ),
};

export const StopHow = z
  .enum(["acpi", "sigterm", "sigkill", "forced", "guest"])
  .describe(
    "Which step ended the VM. forced: ended at once without the guest's cooperation (force now; a Propolis Stop, always a hard halt of the VMM), or a stop resolved by a restarted worker (reconciled: true) whose step was never recorded.",
  );
export type StopHow = z.infer<typeof StopHow>;

export const ObservationSource = z.enum(["qmp", "propolis", "process", "reconcile"]);
export type ObservationSource = z.infer<typeof ObservationSource>;

export const CommandAcceptedEvent = z.object({
  type: z.literal("vm.command-accepted"),
  ...base,
  command: Command.describe("The command as received (after defaults)."),
  deadline: z.iso.datetime({ offset: true }),
});
export const PreparedEvent = z.object({
  type: z.literal("vm.prepared"),
  ...base,
  handle: VmHandle,
  spec: VmSpec.optional().describe("The spec the VM was prepared from."),
  origin: CommandOrigin.optional().describe(
    "The prepare command's origin: set when an evacuation or a move re-created the VM here.",
  ),
});
const transition = <T extends string>(type: T) =>
  z.object({
    type: z.literal(type),
    ...base,
    handle: VmHandle.optional().describe(
      "The handle after the transition (a superset of the fields that changed).",
    ),
  });
export const StartedEvent = transition("vm.started");
export const SuspendedEvent = transition("vm.suspended");
export const ResumedEvent = transition("vm.resumed");
export const StoppedEvent = transition("vm.stopped").extend({ how: StopHow });
export const DestroyedEvent = z.object({ type: z.literal("vm.destroyed"), ...base });
export const CommandRejectedEvent = z.object({
  type: z.literal("vm.command-rejected"),
  ...base,
  commandId: z
    .string()
    .max(256)
    .describe("The rejected command's id as received (may be invalid)."),
  code: z.string(),
  message: z.string(),
  hint: z.string().optional(),
});
export const CommandFailedEvent = z.object({
  type: z.literal("vm.command-failed"),
  ...base,
  commandId: CommandId,
  code: z.string(),
  message: z.string(),
  hint: z.string().optional(),
  retryable: z.boolean(),
  attempt: z.int().min(1),
});
export const StateObservedEvent = z.object({
  type: z.literal("vm.state-observed"),
  ...base,
  observed: VmState,
  previous: VmState,
  source: ObservationSource,
  detail: z.string().max(1024).optional(),
  handle: VmHandle.optional(),
});

/**
 * The first event of a VM used again after its earlier life was compacted to a tombstone: it
 * carries the tombstone onto the VM's subject, so a replay knows every command of both lives.
 */
export const TombstonedEvent = z.object({
  type: z.literal("vm.tombstoned"),
  ...base,
  destroyedAt: z.iso.datetime({ offset: true }).describe("When the earlier life was destroyed."),
  lastEventSeq: z.int().min(0).describe("The last event of the earlier life, now purged."),
  seen: z
    .array(CommandDigest)
    .describe("The digests of every commandId the earlier life had an outcome for."),
});

/**
 * The VM was evacuated to another host while this one was dead (`vmq evacuate`): the worker
 * that came back found it in its lease record, stopped and destroyed its stale copy, and from
 * now on rejects every command for it here with vm::evacuated. State: destroyed.
 */
export const EvacuatedEvent = z.object({
  type: z.literal("vm.evacuated"),
  ...base,
  evacuationId: z.string().min(1).max(64),
  toHost: HostId.optional().describe("Where the evacuation re-created it (absent: not known)."),
  stale: VmState.describe("What this host's backend said of its stale copy before it was removed."),
  detail: z.string().max(1024).optional(),
});

/**
 * Where an exported disk's bytes are: the chunks `$O.<prefix>-images.C.<nuid>` of the images
 * object store, not yet an object (the move that asked for it records one, vm-disk-export).
 */
export const ExportedDisk = z.object({
  nuid: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be a subject token")
    .describe("The chunks' subject token: $O.<prefix>-images.C.<nuid>."),
  chunks: z.int().min(0).describe("How many chunk messages hold the bytes, in order."),
  size: z.int().min(0).describe("The bytes exported."),
  digest: ImageDigest.describe("SHA-256 of the bytes, as images name it."),
  format: z
    .enum(["qcow2", "placeholder"])
    .describe(
      "qcow2: the disk flattened with its base image (QEMU); placeholder: a few bytes standing for the disk (Noop).",
    ),
});
export type ExportedDisk = z.infer<typeof ExportedDisk>;

/** The outcome of vm.export-disk: the VM's disk, whole, is in the images stream. */
export const DiskExportedEvent = z.object({
  type: z.literal("vm.disk-exported"),
  ...base,
  disk: ExportedDisk,
});

export const EVENT_SCHEMAS = {
  "vm.command-accepted": CommandAcceptedEvent,
  "vm.prepared": PreparedEvent,
  "vm.started": StartedEvent,
  "vm.suspended": SuspendedEvent,
  "vm.resumed": ResumedEvent,
  "vm.stopped": StoppedEvent,
  "vm.destroyed": DestroyedEvent,
  "vm.command-rejected": CommandRejectedEvent,
  "vm.command-failed": CommandFailedEvent,
  "vm.state-observed": StateObservedEvent,
  "vm.tombstoned": TombstonedEvent,
  "vm.evacuated": EvacuatedEvent,
  "vm.disk-exported": DiskExportedEvent,
} as const;

export const VmEvent = z.discriminatedUnion("type", [
  CommandAcceptedEvent,
  PreparedEvent,
  StartedEvent,
  SuspendedEvent,
  ResumedEvent,
  StoppedEvent,
  DestroyedEvent,
  CommandRejectedEvent,
  CommandFailedEvent,
  StateObservedEvent,
  TombstonedEvent,
  EvacuatedEvent,
  DiskExportedEvent,
]);
export type VmEvent = z.infer<typeof VmEvent>;
export type VmEventType = VmEvent["type"];
export type EventOf<T extends VmEventType> = Extract<VmEvent, { type: T }>;
export const EVENT_TYPES = Object.keys(EVENT_SCHEMAS) as VmEventType[];

/** Outcome: the first event for a commandId that is not vm.command-accepted. */
export const isOutcome = (e: VmEvent): boolean =>
  e.type !== "vm.command-accepted" && e.type !== "vm.tombstoned";
