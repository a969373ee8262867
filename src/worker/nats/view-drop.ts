import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { isPermissionViolation } from "../../lib/errors.js";

/**
 * Drops a VM's record from the view (its host-keyed record is only ever this host's): a purge
 * marker first, which watchers see, then the marker itself. Kept, the markers of every VM a host
 * ever compacted would pile up in the bucket, and nats-server 2.9 answers the fleet-wide read of
 * `$KV.<bucket>.*.<vmId>` (each prepare's `vm::exists` check) by matching the wildcard against
 * every subject the stream holds: a long-lived host's prepares, and with them its whole
 * pipeline, slowed with the number of VMs it had ever had. Removing a marker is a filtered
 * purge of the bucket's stream, a right granted with the events' (`vmq permissions
 * --compaction`); without it the markers stay, and this says so once.
 */
export class ViewDrop {
  #markersStay = false;

  constructor(
    private readonly vms: KV,
    private readonly jsm: JetStreamManager,
    private readonly bucket: string,
    private readonly onMarkersStay: (err: unknown) => void,
  ) {}

  /** Drops `key`'s record; a marker left by an earlier drop (one interrupted) is removed too. */
  async drop(key: string): Promise<void> {
    const entry = await this.vms.get(key);
    if (!entry) return;
    if (entry.operation === "PUT") await this.vms.purge(key);
    if (this.#markersStay) return;
    try {
      // Nothing writes this key meanwhile: the compactor holds the VM's lane, and the cleanup
      // after an evacuation runs before the worker consumes commands.
      await this.jsm.streams.purge(`KV_${this.bucket}`, {
        filter: `$KV.${this.bucket}.${key}`,
        keep: 0,
      });
    } catch (e) {
      if (!isPermissionViolation(e)) throw e;
      this.#markersStay = true;
      this.onMarkersStay(e);
    }
  }
}
