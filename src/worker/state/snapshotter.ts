import type { Vm } from "../../domain/index.js";
import type { SnapshotStore } from "../../event-store/snapshots.js";
import type { Logger } from "../../observability/logger.js";
import type { VmStreams } from "./vm-streams.js";

/**
 * Writes snapshots of the host's VMs, tied to the highest sequence applied, rewriting only what
 * changed since the last one. Only when no lane is busy: then every event of this host up to
 * that sequence is applied.
 */
export class Snapshotter {
  /** VMs changed since the last snapshot. */
  readonly #changed = new Set<string>();
  /** The snapshot being written: one at a time. */
  #writing: Promise<boolean> | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: SnapshotStore,
    private readonly streams: VmStreams,
    private readonly log: Logger,
    /** Whether any command is running or queued. */
    private readonly busy: () => boolean,
  ) {
    streams.onChange((vmId) => this.#changed.add(vmId));
  }

  /** The last snapshot, or undefined (and why, in the log) when there is none to use. */
  async load(): Promise<{ seq: number; vms: Vm[] } | undefined> {
    this.log.debug("loading snapshot");
    const snap = await this.store.load(this.streams.host);
    if ("reason" in snap) {
      this.log.info({ reason: snap.reason }, "no usable snapshot: replaying the whole history");
      return undefined;
    }
    return snap;
  }

  /** After a replay from a snapshot that found nothing newer, the snapshot already holds it all. */
  replayed(fromSnapshot: boolean, events: number): void {
    if (fromSnapshot && events === 0) this.#changed.clear();
  }

  /** Snapshots every `ms` while idle. */
  every(ms: number): void {
    this.#timer = setInterval(() => void this.snapshot(), ms);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Writes a snapshot when something changed and nothing is running; true when it did. */
  snapshot(): Promise<boolean> {
    if (this.#writing || this.busy() || this.#changed.size === 0) return Promise.resolve(false);
    this.#writing = this.#write().finally(() => (this.#writing = undefined));
    return this.#writing;
  }

  async #write(): Promise<boolean> {
    const seq = this.streams.lastSeq;
    const changed = [...this.#changed];
    this.#changed.clear();
    try {
      const chunks = await this.store.save(this.streams.host, this.streams.all(), changed, seq);
      this.log.info(
        { seq, vms: this.streams.size, changed: changed.length, chunks },
        "snapshot written",
      );
      return true;
    } catch (e) {
      for (const id of changed) this.#changed.add(id);
      this.log.warn({ err: e }, "snapshot failed; the next one retries");
      return false;
    }
  }
}
