import { z } from "zod";
import { CommandId, HostId, VmId } from "./ids.js";
import { VmSpec } from "./vm.js";

/** Commands are at most 64 KiB of JSON. */
export const MAX_COMMAND_BYTES = 64 * 1024;
/**
 * The commands stream's `max_msg_size`: the body's 64 KiB plus 4 KiB of headers (the server
 * counts both). A larger message is refused at publish, so it never reaches a worker or the DLQ.
 */
export const MAX_COMMAND_MESSAGE_BYTES = MAX_COMMAND_BYTES + 4 * 1024;
export const DEFAULT_STOP_TIMEOUT_MS = 30_000;
export const MAX_STOP_TIMEOUT_MS = 3_600_000;

/** A command published by an evacuation (`vmq evacuate`): the VM comes from a dead host. */
export const EvacuationOrigin = z.object({
  kind: z.literal("evacuation"),
  fromHost: HostId.describe("The dead host the VM was evacuated from."),
  evacuationId: z.string().min(1).max(64).describe("The evacuation (its lease record's id)."),
});
/** A command published by a cold move (`vmq move`): the VM goes from one live host to another. */
export const MoveOrigin = z.object({
  kind: z.literal("move"),
  fromHost: HostId.describe("The host the VM is moved from (its source)."),
  toHost: HostId.describe("The host the VM is moved to (its target)."),
  moveId: z.string().min(1).max(64).describe("The move (its record in the moves bucket)."),
});
export const CommandOrigin = z.discriminatedUnion("kind", [EvacuationOrigin, MoveOrigin]);
export type CommandOrigin = z.infer<typeof CommandOrigin>;

const envelope = {
  version: z.literal(1),
  commandId: CommandId,
  vmId: VmId,
  issuedAt: z.iso
    .datetime({ offset: true })
    .describe("When the scheduler issued the command (RFC 3339)."),
  correlationId: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe("Carried onto every event the command causes."),
  expectedVersion: z
    .int()
    .min(0)
    .optional()
    .describe(
      "The VM's lastEventSeq the scheduler saw; rejected with command::version-conflict if it moved on.",
    ),
  notAfter: z.iso
    .datetime({ offset: true })
    .optional()
    .describe(
      "The command must be accepted by then (the worker's clock), else it is rejected with command::expired and has no effect. Absent: it waits in the queue for as long as it takes.",
    ),
  origin: CommandOrigin.optional().describe(
    "Why the command exists, when not a plain scheduler's: an evacuation or a move.",
  ),
};

const timeoutMs = z
  .int()
  .min(0)
  .max(MAX_STOP_TIMEOUT_MS)
  .default(DEFAULT_STOP_TIMEOUT_MS)
  .describe("How long a graceful stop may take before escalation.");

export const StopForce = z
  .enum(["never", "after-timeout", "now"])
  .describe(
    "never: fail if the guest does not stop in time; after-timeout: escalate; now: kill at once.",
  );
export type StopForce = z.infer<typeof StopForce>;

export const PrepareCommand = z.object({
  type: z.literal("vm.prepare"),
  ...envelope,
  spec: VmSpec,
});
export const StartCommand = z.object({ type: z.literal("vm.start"), ...envelope });
export const StopCommand = z.object({
  type: z.literal("vm.stop"),
  ...envelope,
  timeoutMs,
  force: StopForce.default("after-timeout"),
});
export const SuspendCommand = z.object({ type: z.literal("vm.suspend"), ...envelope });
export const ResumeCommand = z.object({ type: z.literal("vm.resume"), ...envelope });
export const DestroyCommand = z.object({ type: z.literal("vm.destroy"), ...envelope, timeoutMs });
/**
 * Copies a stopped (or prepared, never started) VM's disk into the images object store's
 * chunks, flattened with its base image (a move's step). The VM's state does not change; its
 * outcome, vm.disk-exported, says where the bytes are and their SHA-256.
 */
export const ExportDiskCommand = z.object({ type: z.literal("vm.export-disk"), ...envelope });

export const COMMAND_SCHEMAS = {
  "vm.prepare": PrepareCommand,
  "vm.start": StartCommand,
  "vm.stop": StopCommand,
  "vm.suspend": SuspendCommand,
  "vm.resume": ResumeCommand,
  "vm.destroy": DestroyCommand,
  "vm.export-disk": ExportDiskCommand,
} as const;

export const Command = z.discriminatedUnion("type", [
  PrepareCommand,
  StartCommand,
  StopCommand,
  SuspendCommand,
  ResumeCommand,
  DestroyCommand,
  ExportDiskCommand,
]);
export type Command = z.infer<typeof Command>;
export type CommandInput = z.input<typeof Command>;
export type CommandType = Command["type"];
export const COMMAND_TYPES = Object.keys(COMMAND_SCHEMAS) as CommandType[];
export type CommandOf<T extends CommandType> = Extract<Command, { type: T }>;
