import { z } from "zod";
import { ExportedDisk } from "./events.js";
import { HostId, VmId } from "./ids.js";
import { ImageRef } from "./images.js";
import { VmState } from "./vm.js";

/**
 * A cold move (`vmq move`), one record per VM in the `<prefix>-moves` bucket, keyed by vmId:
 * the saga's progress, rewritten by compare-and-set after every step, so a rerun resumes where
 * the last one stopped and two moves of one VM cannot run at once.
 */
export const MOVE_STEPS = [
  /** Recorded: where from, where to, and whether the VM ran. */
  "planned",
  /** The source VM is stopped (or was not running). */
  "stopped",
  /** The source's worker sent the disk: `disk` says where its bytes are. */
  "exported",
  /** The bytes are an image of the object store: `image`. */
  "registered",
  /** The target prepared the VM from that image. */
  "prepared",
  /** The target runs it (only when the source ran it). */
  "started",
  /** The source's copy is destroyed, the exported image removed. Final. */
  "done",
  /** A step failed before the target ran the VM: being put back as it was (`error`). */
  "compensating",
  /** Put back: the source's VM as it was, no copy on the target. Final. */
  "failed",
] as const;
export const MoveStep = z.enum(MOVE_STEPS);
export type MoveStep = z.infer<typeof MoveStep>;

export const MoveRecord = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/, "must be 16 hex digits"),
  vmId: VmId,
  from: HostId,
  to: HostId,
  was: VmState.describe("The source VM's state when the move began."),
  step: MoveStep,
  at: z.iso.datetime({ offset: true }).describe("When the move began."),
  by: z.string().max(256).describe("Who ran it (user@machine pid N)."),
  updatedAt: z.iso.datetime({ offset: true }),
  disk: ExportedDisk.optional(),
  image: ImageRef.optional().describe("The exported disk as an image: move-<vm>@sha256:<hex>."),
  error: z.string().max(2048).optional().describe("Why it is compensating or failed."),
  completedAt: z.iso.datetime({ offset: true }).optional(),
});
export type MoveRecord = z.infer<typeof MoveRecord>;

export const FINAL_MOVE_STEPS: ReadonlySet<MoveStep> = new Set(["done", "failed"]);

/** The commandIds of a move: the same on every rerun, so a re-publish is a duplicate. */
export const moveCommandId = (
  moveId: string,
  step: "stop" | "export" | "prepare" | "start" | "destroy" | "undo-destroy" | "undo-start",
): string => `move-${moveId}-${step}`;
