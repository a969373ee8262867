import { z } from "zod";
import { HostId } from "./ids.js";
import { BackendTag, Capabilities, XKeyPublic } from "./vm.js";

export const WorkerState = z.enum(["starting", "running", "draining", "stopped", "failed"]);
export type WorkerState = z.infer<typeof WorkerState>;

/** The `vmq-hosts` record a worker heartbeats; a host that stops beating disappears (bucket TTL). */
export const HostRecord = z.object({
  host: HostId,
  version: z.string(),
  state: WorkerState,
  backends: z.array(BackendTag),
  defaultBackend: BackendTag,
  capabilities: z.partialRecord(BackendTag, Capabilities),
  accelerator: z.enum(["kvm", "tcg"]).optional(),
  labels: z.record(z.string(), z.string()).default({}),
  startedAt: z.iso.datetime({ offset: true }),
  heartbeatAt: z.iso.datetime({ offset: true }),
  vmCount: z.int().min(0),
  inFlight: z.int().min(0),
  concurrency: z.int().min(1).optional(),
  userDataKey: XKeyPublic.optional().describe(
    "The host's curve public key: seal cloud-init user-data to it (absent: a worker older than sealing).",
  ),
});
export type HostRecord = z.infer<typeof HostRecord>;
