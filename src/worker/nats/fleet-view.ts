import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { viewRecordAt, type VmView } from "../../contracts/index.js";
import type { FleetView } from "../ports.js";

/**
 * The record that speaks for `vmId` across hosts: one direct get of `$KV.<bucket>.*.<vmId>` (the
 * server answers the newest message under a wildcard), then the v1 key (vmId alone) of a view
 * not migrated yet. When the newest says destroyed (or was dropped), another host may hold the
 * VM now (a move destroys the source last, an evacuation drops the dead host's record): each
 * host's latest record is read, and a live one wins. Deleted and forged records count as none.
 */
export async function newestView(
  jsm: JetStreamManager,
  bucket: string,
  vmId: string,
): Promise<VmView | undefined> {
  const newest = await lastRecord(jsm, bucket, `*.${vmId}`);
  if (newest.found && newest.view?.state !== "destroyed" && newest.view) return newest.view;
  if (newest.found) return (await liveElsewhere(jsm, bucket, vmId)) ?? newest.view;
  return (await lastRecord(jsm, bucket, vmId)).view;
}

async function lastRecord(
  jsm: JetStreamManager,
  bucket: string,
  key: string,
): Promise<{ found: boolean; view?: VmView | undefined }> {
  const m = await jsm.direct.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
  if (!m) return { found: false };
  const op = m.header?.get("KV-Operation");
  if (op === "DEL" || op === "PURGE") return { found: true };
  const at = m.subject.slice(`$KV.${bucket}.`.length);
  try {
    return { found: true, view: viewRecordAt(at, m.json()) };
  } catch {
    return { found: true };
  }
}

/** A live record of `vmId` under any host (each host's latest), if one exists. */
async function liveElsewhere(
  jsm: JetStreamManager,
  bucket: string,
  vmId: string,
): Promise<VmView | undefined> {
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}*.${vmId}` });
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const r = await lastRecord(jsm, bucket, subject.slice(prefix.length));
    if (r.view && r.view.state !== "destroyed") return r.view;
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
