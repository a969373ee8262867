import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { viewRecordAt, type VmView } from "../../contracts/index.js";
import type { FleetView } from "../ports.js";

/**
 * The newest record of `vmId` across hosts: one direct get of `$KV.<bucket>.*.<vmId>` (the
 * server answers the newest message under a wildcard), then the v1 key (vmId alone) of a view
 * not migrated yet. Deleted and forged records count as none.
 */
export async function newestView(
  jsm: JetStreamManager,
  bucket: string,
  vmId: string,
): Promise<VmView | undefined> {
  for (const key of [`*.${vmId}`, vmId]) {
    const m = await jsm.direct.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
    if (!m) continue;
    const op = m.header?.get("KV-Operation");
    if (op === "DEL" || op === "PURGE") return undefined;
    const at = m.subject.slice(`$KV.${bucket}.`.length);
    let value: unknown;
    try {
      value = m.json();
    } catch {
      continue;
    }
    return viewRecordAt(at, value);
  }
  return undefined;
}

/** The `vmq-vms` bucket as the pipeline reads it; `refresh` rewrites a record through the projector. */
export function kvFleetView(
  jsm: JetStreamManager,
  bucket: string,
  host: string,
  refresh: (vmId: string) => void,
): FleetView {
  return {
    refresh,
    ownerElsewhere: async (vmId) => {
      try {
        const view = await newestView(jsm, bucket, vmId);
        if (view && view.host !== host && view.state !== "destroyed") return view.host;
      } catch {
        /* the view is advisory; the event stream decides for this host */
      }
      return undefined;
    },
  };
}

/** Drops the VM's record from the view: its host-keyed record is only ever this host's. */
export async function dropOwnRecord(vms: KV, key: string): Promise<void> {
  const entry = await vms.get(key);
  if (entry?.operation === "PUT") await vms.purge(key);
}
