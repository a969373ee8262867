import type { NatsConnection } from "@nats-io/transport-node";
import type { ViewWriter } from "../state/view-projector.js";

/**
 * Writes `vmq-vms` records as plain publishes to the bucket's subject (what a KV put publishes),
 * in order on the worker's connection, and flushes once per batch instead of awaiting a PubAck
 * per record. The view is a projection: a write lost while NATS is away is rewritten by the
 * VM's next change and by every worker start, which rewrites the whole view.
 */
export function viewWriter(nc: NatsConnection, bucket: string): ViewWriter {
  const prefix = `$KV.${bucket}.`;
  return {
    write: (vmId, json) => nc.publish(prefix + vmId, json),
    flush: () => nc.flush(),
  };
}
