import { DeliverPolicy, type JetStreamClient } from "@nats-io/jetstream";

/**
 * The latest value of every key of a KV bucket, read as its stream's last message per subject
 * through short fetches. Not `kv.keys()`: its ordered consumer waits for a count of pending
 * entries taken up front, and in a bucket updated every few hundred milliseconds (host
 * heartbeats, the view) an entry replaced in between never arrives, so it can wait for ever.
 * Here a fetch that brings nothing more ends the scan.
 */
export async function latestValues(
  js: JetStreamClient,
  bucket: string,
): Promise<{ key: string; data: Uint8Array }[]> {
  const prefix = `$KV.${bucket}.`;
  const oc = await js.consumers.get(`KV_${bucket}`, {
    filter_subjects: `${prefix}>`,
    deliver_policy: DeliverPolicy.LastPerSubject,
  });
  const latest = new Map<string, Uint8Array | undefined>();
  try {
    if ((await oc.info(true)).num_pending === 0) return [];
    for (;;) {
      let got = 0;
      let pending = 1;
      const batch = await oc.fetch({ max_messages: 1_000, expires: 1_000 });
      for await (const m of batch) {
        got++;
        const op = m.headers?.get("KV-Operation");
        latest.set(
          m.subject.slice(prefix.length),
          op === "DEL" || op === "PURGE" ? undefined : m.data,
        );
        pending = m.info.pending;
        if (pending === 0) break;
      }
      if (pending === 0 || got === 0) break;
    }
  } finally {
    await oc.delete().catch(() => false);
  }
  return [...latest]
    .filter((e): e is [string, Uint8Array] => e[1] !== undefined)
    .map(([key, data]) => ({ key, data }));
}
