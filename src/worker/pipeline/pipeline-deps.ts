import type { HypervisorRouter } from "../../hypervisor/index.js";
import type { Logger } from "../../observability/logger.js";
import type { Clock, DeadLetters, FleetView, Ids, MoveChecks } from "../ports.js";
import type { WorkerStats } from "../stats.js";
import type { VmStreams } from "../state/vm-streams.js";
import type { HostKey } from "../secrets/host-key.js";
import type { DiskSink } from "../images/disk-sink.js";
import type { OrderGate } from "./order-gate.js";

/** What the command pipeline calls on the router. */
export type CommandRouter = Pick<
  HypervisorRouter,
  | "prepare"
  | "start"
  | "stop"
  | "suspend"
  | "resume"
  | "destroy"
  | "exportDisk"
  | "state"
  | "has"
  | "tags"
  | "defaultBackend"
  | "capabilities"
>;

/** Everything the command pipeline uses, and nothing else (a unit test builds it from fakes). */
export interface PipelineDeps {
  host: string;
  streams: VmStreams;
  router: CommandRouter;
  order: OrderGate;
  deadLetters: DeadLetters;
  fleet: FleetView;
  /** Absent: a start after a move's export is refused while unsure (no bucket to ask). */
  moves?: MoveChecks;
  clock: Clock;
  ids: Ids;
  stats: WorkerStats;
  log: Logger;
  /** Fires when a drain gives up waiting: in-flight commands are abandoned, intents kept. */
  abandon: AbortSignal;
  limits: {
    maxAttempts: number;
    maxDeliver: number;
    /** Added to a stop's deadline: time for a dead worker's command to come back (ack_wait). */
    stopCrashAllowanceMs?: number;
  };
  /** Commands cancelled before they were taken (vmq cancel): rejected, never run. */
  cancels?: { has(commandId: string): boolean };
  /** Opens user-data sealed to this host, only to hand it to the backend's prepare. */
  hostKey: Pick<HostKey, "open">;
  /** Fetches a spec's object-store `image` into the host's cache (absent: such specs fail). */
  images?: ImageSource;
  /** Where vm.export-disk sends a disk (absent: such commands fail with move::export-unavailable). */
  disks?: DiskSink;
}

/** The host image cache as the pipeline uses it. */
export interface ImageSource {
  ensure(
    ref: string,
    vmId: string,
    signal?: AbortSignal,
  ): Promise<{ path: string; digest: string }>;
  unpin(vmId: string): Promise<void>;
}
