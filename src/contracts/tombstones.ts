import { z } from "zod";
import { HostId, VmId } from "./ids.js";

/** 8 bytes of a commandId's hash, as 16 lower-case hex digits (see domain/command-digest.ts). */
export const CommandDigest = z.string().regex(/^[0-9a-f]{16}$/, "16 lower-case hex digits");

/**
 * What is left of a destroyed VM once its retention window is over and its events are purged:
 * enough to refuse a second effect of any command it ever saw. Kept in the `<prefix>-tombstones`
 * KV bucket under `<host>.<vmId>`.
 */
export const VmTombstone = z.object({
  version: z.literal(1),
  vmId: VmId,
  host: HostId,
  destroyedAt: z.iso.datetime({ offset: true }).describe("When the VM was destroyed."),
  compactedAt: z.iso.datetime({ offset: true }).describe("When its events were purged."),
  lastEventSeq: z.int().min(0).describe("The stream sequence of its last event, now purged."),
  seen: z
    .array(CommandDigest)
    .describe("The digests of every commandId the VM ever had an outcome for."),
});
export type VmTombstone = z.infer<typeof VmTombstone>;
