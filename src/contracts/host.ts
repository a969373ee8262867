import { z } from "zod";
import { HostId } from "./ids.js";
import { BackendTag, Capabilities, VmState, XKeyPublic } from "./vm.js";
import { VmId } from "./ids.js";

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
/** The holder of a lease taken by an evacuation: `evacuation:<id>`, never a worker's id. */
export const EVACUATION_HOLDER_PREFIX = "evacuation:";

/** One VM of an evacuation, and how far it got (the record is rewritten by CAS after each step). */
export const EvacuatedVm = z.object({
  vmId: VmId,
  was: VmState.describe("Its state on the dead host, from the view."),
  step: z
    .enum(["listed", "placed", "prepared", "done", "skipped", "failed"])
    .describe(
      "listed: nothing done yet; placed: target chosen (used again by a rerun); prepared: prepared there; done: prepared (and started if it was running); skipped: already live elsewhere; failed: see `error` (a rerun tries again).",
    ),
  target: HostId.optional(),
  lost: z
    .array(z.string().max(256))
    .default([])
    .describe("What did not move with it (disk state, sealed user-data, ...), said loudly."),
  error: z.string().max(1024).optional(),
});
export type EvacuatedVm = z.infer<typeof EvacuatedVm>;

/** Set on a dead host's lease by `vmq evacuate`: the host is fenced and its VMs re-created elsewhere. */
export const Evacuation = z.object({
  id: z.string().min(1).max(64),
  at: z.iso.datetime({ offset: true }).describe("When the evacuation fenced the host."),
  by: z.string().max(256).describe("Who ran it (user@machine, pid)."),
  completedAt: z.iso
    .datetime({ offset: true })
    .optional()
    .describe("Set once every VM is done, skipped or failed; the host's worker waits for it."),
  vms: z.array(EvacuatedVm),
});
export type Evacuation = z.infer<typeof Evacuation>;

export const HostLease = z.object({
  host: HostId,
  holder: z.string().min(1).max(128).describe("The holding worker process (instance id)."),
  token: z.int().min(0).describe("The KV revision that took the lease (0 until known)."),
  ttlMs: z.int().min(1).describe("The holder renews well inside this; a standby waits it out."),
  acquiredAt: z.iso.datetime({ offset: true }),
  renewedAt: z.iso.datetime({ offset: true }),
  evacuation: Evacuation.optional().describe(
    "The host was declared dead and evacuated (holder evacuation:<id>). A worker of the host that comes back takes the lease back only once completedAt is set, keeps this field until it has removed its stale copies of these VMs, then drops it.",
  ),
});
export type HostLease = z.infer<typeof HostLease>;
