import { KvWatchInclude, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { viewRecordAt, type Names, type VmView } from "../contracts/index.js";

/** A change of the `vmq-vms` view: a record written, or one deleted (compaction, migration). */
export type ViewChange =
  | { kind: "put"; view: VmView }
  | { kind: "removed"; key: string; vmId: string; host: string | undefined };

/**
 * `--watch`: the view's changes as they are written, from a KV watcher (an ordered consumer on
 * the bucket's stream, pushed by the server: no polling). The watcher is opened for updates only
 * before `initial` runs, so a change made while the current state is read is not lost (it may
 * show twice). Ends without error on SIGINT/SIGTERM.
 */
export async function watchView(
  nc: NatsConnection,
  names: Names,
  key: string,
  initial: () => Promise<void>,
  onChange: (c: ViewChange) => void,
): Promise<void> {
  const kv = await new Kvm(nc).open(names.vmsBucket);
  const watcher = await kv.watch({ key, include: KvWatchInclude.UpdatesOnly });
  const stop = (): void => watcher.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await initial();
    for await (const e of watcher) {
      if (e.operation === "PUT") {
        let json: unknown;
        try {
          json = JSON.parse(e.string());
        } catch {
          continue; // not a record: readers ignore it, as the SDK does
        }
        const view = viewRecordAt(e.key, json);
        if (view) onChange({ kind: "put", view });
      } else {
        const dot = e.key.indexOf(".");
        onChange({
          kind: "removed",
          key: e.key,
          vmId: dot < 0 ? e.key : e.key.slice(dot + 1),
          host: dot < 0 ? undefined : e.key.slice(0, dot),
        });
      }
    }
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
