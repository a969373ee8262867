import type { JetStreamManager } from "@nats-io/jetstream";
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

/**
 * How many subjects nats-server 2.9 matches against a wildcard in about the time it takes to
 * answer one literal read (measured here: a wildcard read costs about 0.14 ms per 1,000 subjects
 * in the stream, a literal one stays near its round trip whatever the stream's size).
 */
const LITERAL_READ_IN_SUBJECTS = 200;
/** How long the fleet's shape (its hosts, the view's size) is trusted before it is read again. */
const SHAPE_TTL_MS = 30_000;

interface Shape {
  hosts: string[];
  viewSubjects: number;
  at: number;
}

/**
 * The `vmq-vms` bucket as the pipeline reads it; `refresh` rewrites a record through the
 * projector. A prepare's `vm::exists` check reads the vmId under each other host's key when that
 * costs the server less than one wildcard read, which nats-server 2.9 answers by matching every
 * subject of the bucket (every VM of the fleet): on a host with few peers, each prepare then
 * costs the same whatever the fleet's size. The hosts are those with a lease or a host record.
 */
export function kvFleetView(
  jsm: JetStreamManager,
  names: { vmsBucket: string; leasesBucket: string; hostsBucket: string },
  host: string,
  refresh: (vmId: string) => void,
  /** Tests choose a way: 0 reads every host's key, Infinity the wildcard. */
  literalReadInSubjects = LITERAL_READ_IN_SUBJECTS,
): FleetView {
  const bucket = names.vmsBucket;
  let shape: Promise<Shape> | undefined;
  const current = async (): Promise<Shape> => {
    const reading = (shape ??= readShape(jsm, names));
    // A failed read is not kept: the next prepare tries again (this one uses the wildcard).
    const s = await reading.catch((e: unknown) => {
      if (shape === reading) shape = undefined;
      throw e;
    });
    if (Date.now() - s.at > SHAPE_TTL_MS) shape = undefined; // the next prepare reads it again
    return s;
  };
  const byHost = async (others: string[], vmId: string): Promise<string | undefined> => {
    const records = await Promise.all([
      ...others.map((h) => lastRecord(jsm, bucket, `${h}.${vmId}`)),
      lastRecord(jsm, bucket, vmId), // a v1 key
    ]);
    return records.find((r) => r.view && r.view.host !== host && r.view.state !== "destroyed")?.view
      ?.host;
  };
  return {
    refresh,
    ownerElsewhere: async (vmId) => {
      try {
        const s = Number.isFinite(literalReadInSubjects)
          ? await current().catch(() => undefined)
          : undefined;
        const others = s?.hosts.filter((h) => h !== host);
        if (s && others && others.length * literalReadInSubjects <= s.viewSubjects)
          return await byHost(others, vmId);
        const view = await newestView(jsm, bucket, vmId);
        if (view && view.host !== host && view.state !== "destroyed") return view.host;
      } catch {
        /* the view is advisory; the event stream decides for this host */
      }
      return undefined;
    },
  };
}

/** The hosts (keys of the leases and hosts buckets) and how many subjects the view holds. */
async function readShape(
  jsm: JetStreamManager,
  names: { vmsBucket: string; leasesBucket: string; hostsBucket: string },
): Promise<Shape> {
  const keysOf = async (bucket: string) => {
    const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `$KV.${bucket}.>` });
    return Object.keys(info.state.subjects ?? {}).map((s) => s.split(".")[2] ?? "");
  };
  const [leases, hosts, view] = await Promise.all([
    keysOf(names.leasesBucket),
    keysOf(names.hostsBucket),
    jsm.streams.info(`KV_${names.vmsBucket}`),
  ]);
  const all = new Set([...leases, ...hosts].filter((h) => h !== ""));
  return { hosts: [...all], viewSubjects: view.state.num_subjects ?? 0, at: Date.now() };
}
