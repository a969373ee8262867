import type { JetStreamManager } from "@nats-io/jetstream";
import { VmTombstone, type Names } from "../contracts/index.js";

/**
 * What is left of a VM whose events were compacted (`<prefix>-tombstones`), on `host` or on
 * whichever host compacted it last; undefined when there is none.
 */
export async function findTombstone(
  jsm: JetStreamManager,
  names: Names,
  vmId: string,
  host?: string,
): Promise<VmTombstone | undefined> {
  const bucket = names.tombstonesBucket;
  // A wildcard host asks for the newest tombstone of this vmId on any host.
  const m = await jsm.direct
    .getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${host ?? "*"}.${vmId}` })
    .catch(() => null);
  if (!m || m.data.length === 0) return undefined;
  const t = VmTombstone.safeParse(m.json());
  return t.success ? t.data : undefined;
}
