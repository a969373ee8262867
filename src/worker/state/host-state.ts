import type { Logger } from "../../observability/logger.js";
import type { Service } from "../service-stack.js";
import type { WorkerStats } from "../stats.js";
import type { Snapshotter } from "./snapshotter.js";
import type { ViewProjector } from "./view-projector.js";
import type { VmStreams } from "./vm-streams.js";

/**
 * The host's VMs at start-up and shutdown: rebuilt from the last snapshot and the events after
 * it (or the whole history), the view rewritten once the worker runs, snapshots taken while idle and
 * once more after a clean drain.
 */
export class HostState implements Service {
  readonly name = "host state";

  constructor(
    private readonly deps: {
      streams: VmStreams;
      view: ViewProjector;
      /** Undefined when snapshots are off. */
      snapshotter: Snapshotter | undefined;
      snapshotIntervalMs: number;
      /** Whether stopping now should write a last snapshot (after a clean drain). */
      snapshotOnStop: () => boolean;
      stats: WorkerStats;
      log: Logger;
    },
  ) {
    deps.streams.onChange((vmId, change) => {
      if (change === "appended" || change === "reloaded") deps.view.markDirty(vmId);
    });
  }

  async start(stopping: AbortSignal): Promise<void> {
    const { streams, snapshotter, stats, log } = this.deps;
    const began = performance.now();
    const from = await snapshotter?.load();
    // The replay checks the stop between events (and throws its reason).
    const replay = await streams.replayAll(from, stopping);
    stats.replayMs = performance.now() - began;
    stats.replayedEvents = replay.count;
    stats.replayFrom = from ? "snapshot" : "full";
    log.info(
      {
        events: replay.count,
        vms: streams.size,
        fromSnapshot: from?.seq ?? null,
        ms: Math.round(stats.replayMs),
      },
      "replayed the host's event stream",
    );
    snapshotter?.replayed(from !== undefined, replay.count);
    snapshotter?.every(this.deps.snapshotIntervalMs);
  }

  /**
   * A worker that died may not have written its last view updates: every record is rewritten,
   * once the worker runs (called last in start-up). Sooner, 10,000 records' writes shared the
   * CPU and the connection with the reconcile and the consumer's set-up, for a view that is
   * eventually consistent anyway (docs/benchmark.md).
   */
  rewriteView(): void {
    const { streams, view } = this.deps;
    // Each record is read first and written only when it lags (a write since start knows better).
    view.expectStored(streams.ids());
    for (const id of streams.ids()) view.markDirty(id);
  }

  async stop(): Promise<void> {
    const { snapshotter, view } = this.deps;
    snapshotter?.stop();
    if (this.deps.snapshotOnStop()) await snapshotter?.snapshot();
    await view.flush();
  }
}
