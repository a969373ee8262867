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
  role: z
    .enum(["active", "standby"])
    .optional()
    .describe(
      "active: holds the host's lease and runs its commands; standby: waits for the lease (key <host>.standby.<instance>). Absent in records of workers before the lease.",
    ),
  userDataKey: XKeyPublic.optional().describe(
    "The host's curve public key: seal cloud-init user-data to it (absent: a worker older than sealing).",
  ),
});
export type HostRecord = z.infer<typeof HostRecord>;

/**
 * The `vmq-leases` record of a host: which worker is active. Taken with create (no record) or
 * compare-and-set on the KV revision, renewed the same way; `token` is the revision that took
 * it, so a later holder always has a higher one (the fencing token).
 */
export const HostLease = z.object({
  host: HostId,
  holder: z.string().min(1).max(128).describe("The holding worker process (instance id)."),
  token: z.int().min(0).describe("The KV revision that took the lease (0 until known)."),
  ttlMs: z.int().min(1).describe("The holder renews well inside this; a standby waits it out."),
  acquiredAt: z.iso.datetime({ offset: true }),
  renewedAt: z.iso.datetime({ offset: true }),
});
export type HostLease = z.infer<typeof HostLease>;
