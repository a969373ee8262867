import type { JetStreamManager } from "@nats-io/jetstream";
import pMap from "p-map";
import { currentView, viewRecordAt, type Names, type VmView } from "../contracts/index.js";
import { sleep } from "../lib/time.js";
import { latestValues } from "./kv-scan.js";
import type { OwnWrites } from "./own-writes.js";
import { foldedView, newestEventOf } from "./view-fold.js";
import { jsonOf } from "./wire.js";

/** How fresh a read must be (read-your-writes); every field has a default. */
export interface ReadOptions {
  /**
   * The events-stream sequence the VM's record must reflect (`lastEventSeq` at least). Default:
   * the newest this client saw for the VM (its own commands' outcomes); 0 reads the view as is.
   */
  atLeastSeq?: number;
  /** How long to wait for the view to catch up before folding the VM's events instead. */
  viewWaitMs?: number;
}

/** How reads were answered, for figures and tests: at once, after waiting, or by a fold. */
export interface ReadStats {
  fresh: number;
  waited: number;
  folded: number;
}

/**
 * Reads of the `vmq-vms` view that see this client's own writes. The view is written 25 ms to
 * 1 s after an outcome: a record older than the sequence asked for is re-read for a short,
 * bounded while, then the VM's events after it are folded in. A record already fresh costs
 * nothing more than the read itself.
 */
export class ViewReads {
  readonly stats: ReadStats = { fresh: 0, waited: 0, folded: 0 };

  constructor(
    private readonly manager: () => Promise<JetStreamManager>,
    private readonly names: Names,
    private readonly own: OwnWrites,
    private readonly defaultWaitMs: number,
  ) {}

  /** The view record as stored: the newest under any host, else a v1 record (vmId alone). */
  async stored(vmId: string): Promise<VmView | undefined> {
    const jsm = await this.manager();
    const bucket = this.names.vmsBucket;
    for (const key of [`*.${vmId}`, vmId]) {
      const m = await jsm.direct.getMessage(`KV_${bucket}`, {
        last_by_subj: `$KV.${bucket}.${key}`,
      });
      if (!m) continue;
      const op = m.header?.get("KV-Operation");
      const dropped = op === "DEL" || op === "PURGE";
      const newest = dropped
        ? undefined
        : viewRecordAt(m.subject.slice(`$KV.${bucket}.`.length), jsonOf(m.data));
      if (key === vmId || (newest && newest.state !== "destroyed")) return newest;
      // One host dropped its record (the VM was evacuated from it) or destroyed its copy last
      // (the VM moved away from it): another host's record may still speak for the VM, so
      // look at each host's latest.
      const records = (await latestValues(jsm, bucket, key)).map(({ key: k, data }) => ({
        key: k,
        view: viewRecordAt(k, jsonOf(data)),
      }));
      return currentView(records.filter((r): r is { key: string; view: VmView } => !!r.view));
    }
    return undefined;
  }

  async get(vmId: string, opts: ReadOptions = {}): Promise<VmView | undefined> {
    const mine = this.own.of(vmId);
    let want = opts.atLeastSeq ?? mine?.seq ?? 0;
    let host = mine?.host;
    const view = await this.stored(vmId);
    if (view && view.lastEventSeq >= want) {
      this.stats.fresh++;
      return view;
    }
    if (!view) {
      // Not in the view: perhaps too new for it (prepared by another process a moment ago), or
      // re-created on another host since this client's own write (an evacuation or a move,
      // whose target has not written its record yet): the newest event says where it lives.
      const newest = await newestEventOf(await this.manager(), this.names, vmId);
      if (!newest && want === 0) {
        this.stats.fresh++;
        return undefined;
      }
      if (newest && newest.seq > want) ({ host, seq: want } = newest);
    }
    return this.#catchUp(vmId, view, want, host, opts.viewWaitMs ?? this.defaultWaitMs);
  }

  /** A view record lags `want`: wait for it a little, then fold the VM's events. */
  async #catchUp(
    vmId: string,
    view: VmView | undefined,
    want: number,
    host: string | undefined,
    waitMs: number,
  ): Promise<VmView | undefined> {
    const until = Date.now() + waitMs;
    // Only a record that exists is worth waiting for: an absent one is folded at once.
    for (let delay = 20; view && Date.now() + delay <= until; delay = Math.min(delay * 2, 100)) {
      await sleep(delay);
      const again = await this.stored(vmId);
      if (again && again.lastEventSeq >= want) {
        this.stats.waited++;
        return again;
      }
      view = again ?? view;
    }
    const jsm = await this.manager();
    host ??= view?.host ?? (await newestEventOf(jsm, this.names, vmId))?.host;
    if (!host) return view;
    this.stats.folded++;
    const folded = await foldedView(jsm, this.names, host, vmId, view);
    // The copy on `host` ended (destroyed, or evacuated/moved away) while another host's record
    // still speaks for the VM: the VM lives there now.
    const ended = !folded || folded.state === "destroyed";
    if (ended && view && view.host !== host && view.state !== "destroyed") return view;
    return folded;
  }

  /** Every VM's current record, this client's own writes included even when the view lags. */
  async list(
    filter: { host?: string; state?: string } = {},
    opts: Pick<ReadOptions, "viewWaitMs"> = {},
  ): Promise<VmView[]> {
    const byVm = new Map<string, { key: string; view: VmView }[]>();
    for (const { key, data } of await latestValues(await this.manager(), this.names.vmsBucket)) {
      const view = viewRecordAt(key, jsonOf(data));
      if (view) byVm.set(view.vmId, [...(byVm.get(view.vmId) ?? []), { key, view }]);
    }
    const current = new Map<string, VmView | undefined>();
    for (const [vmId, records] of byVm) current.set(vmId, currentView(records));
    const lagging = [...this.own.entries()].filter(([vmId, { seq }]) => {
      const v = current.get(vmId);
      return !v || v.lastEventSeq < seq;
    });
    const waitMs = opts.viewWaitMs ?? this.defaultWaitMs;
    await pMap(
      lagging,
      async ([vmId, { host, seq }]) =>
        current.set(vmId, await this.#catchUp(vmId, current.get(vmId), seq, host, waitMs)),
      { concurrency: 16 },
    );
    const out: VmView[] = [];
    for (const v of current.values())
      if (
        v &&
        (!filter.host || v.host === filter.host) &&
        (!filter.state || v.state === filter.state)
      )
        out.push(v);
    return out.sort((a, b) => a.vmId.localeCompare(b.vmId));
  }
}
