import pMap from "p-map";
import { isForgettable, tombstoneOf } from "../../domain/index.js";
import type { EventStore } from "../../event-store/event-store.js";
import { isPermissionViolation } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import type { Logger } from "../../observability/logger.js";
import type { Lanes } from "../consumer/lanes.js";
import type { Clock, Tombstones } from "../ports.js";
import type { Service } from "../service-stack.js";
import type { WorkerStats } from "../stats.js";
import type { VmStreams } from "../state/vm-streams.js";

/** Compactions under way at once in a sweep. */
const SWEEP_CONCURRENCY = 16;

export interface CompactorDeps {
  host: string;
  streams: VmStreams;
  store: Pick<EventStore, "purgeVm">;
  tombstones: Tombstones;
  /** Removes the VM's record from the fleet view (when it is still this host's). */
  dropView: (vmId: string) => Promise<void>;
  lanes: Lanes;
  clock: Clock;
  log: Logger;
  stats: WorkerStats;
  /** How long a destroyed VM keeps its events (0: for ever, no compaction). */
  retentionMs: number;
  /** How often the sweep looks (0: never). */
  intervalMs: number;
  running: () => boolean;
}

/**
 * Bounds what a long-lived host keeps: a destroyed VM past the retention window is reduced to
 * its tombstone (every commandId it saw, as digests), its view record dropped, its events purged
 * from the stream and the VM forgotten by this worker. Each step may be repeated: a crash in
 * between is finished by the next sweep (the tombstone is written first, the VM forgotten last).
 * A VM with a command in its lane is left for the next sweep; one compacted in its lane is
 * looked up by its tombstone when a command comes for it.
 */
export class Compactor implements Service {
  readonly name = "compactor";
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<number> | undefined;
  #refusedOnce = false;

  constructor(private readonly deps: CompactorDeps) {}

  start(): Promise<void> {
    const { retentionMs, intervalMs } = this.deps;
    if (retentionMs > 0 && intervalMs > 0) {
      this.#timer = setInterval(() => void this.sweep(), intervalMs);
      this.#timer.unref();
    }
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#pass;
  }

  /** One pass over the host's VMs (several at once, each in its lane); how many were compacted. */
  sweep(): Promise<number> {
    this.#pass ??= this.#sweep().finally(() => (this.#pass = undefined));
    return this.#pass;
  }

  async #sweep(): Promise<number> {
    const { streams, lanes, clock, retentionMs } = this.deps;
    const due = streams
      .all()
      .filter((vm) => isForgettable(vm, clock.now(), retentionMs))
      .map((vm) => vm.vmId);
    let n = 0;
    // Several VMs at once (each in its lane): one compaction is a few round trips, and one
    // at a time fell behind a host destroying a few hundred VMs a second.
    await pMap(
      due,
      async (vmId) => {
        if (!this.deps.running() || lanes.busy(vmId)) return; // a drain: add no more work
        const done = await lanes
          .run(vmId, () => this.#compact(vmId))
          .catch((e: unknown) => {
            this.deps.log.warn({ err: e, vmId }, "compaction failed; the next sweep retries");
            return false;
          });
        if (done) n++;
      },
      { concurrency: SWEEP_CONCURRENCY },
    );
    return n;
  }

  /**
   * Purges the VM's events. Without the right to (see `vmq permissions --compaction`) the
   * events stay and the VM is forgotten all the same: its tombstone is written, and a command
   * for it reloads its history. Any other failure is tried again by the next sweep.
   */
  async #purge(vmId: string, through: number): Promise<number> {
    try {
      const seqs = this.deps.streams.eventSeqs(vmId);
      return await this.deps.store.purgeVm(this.deps.host, vmId, through, seqs);
    } catch (e) {
      if (!isPermissionViolation(e)) throw e;
      this.deps.stats.purgeRefused++;
      if (!this.#refusedOnce)
        this.deps.log.warn(
          { err: e },
          "no right to purge the events stream: compacted VMs are forgotten, but their events stay until purged (grant it with vmq permissions --compaction)",
        );
      this.#refusedOnce = true;
      return 0;
    }
  }

  async #compact(vmId: string): Promise<boolean> {
    const { streams, clock, retentionMs, stats } = this.deps;
    const vm = streams.get(vmId);
    // Checked again in the lane: a command may have come since the sweep looked.
    if (!streams.has(vmId) || !isForgettable(vm, clock.now(), retentionMs)) return false;
    const spent = stats.compactionMs;
    let t = performance.now();
    await this.deps.tombstones.put(tombstoneOf(vm, clock.now()));
    failpoint("after-tombstone");
    spent.tombstone += performance.now() - t;
    t = performance.now();
    await this.deps.dropView(vmId);
    spent.view += performance.now() - t;
    t = performance.now();
    const purged = await this.#purge(vmId, vm.version);
    failpoint("after-purge");
    spent.purge += performance.now() - t;
    streams.forget(vmId);
    stats.compacted++;
    stats.purgedEvents += purged;
    this.deps.log.debug({ vmId, purged }, "destroyed VM compacted to its tombstone");
    return true;
  }
}
