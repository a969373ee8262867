import type { JetStreamManager } from "@nats-io/jetstream";
import pMap from "p-map";

const PARALLEL = 32;

/**
 * The latest value of every key of a KV bucket, with plain requests only: the stream's subject
 * list (paged by the server), then the last message of each subject. Not `kv.keys()` nor any
 * ordered consumer: in a bucket rewritten every few hundred milliseconds (host heartbeats, the
 * view) those were seen to wait for ever under load; a request always ends, by its timeout.
 */
export async function latestValues(
  jsm: JetStreamManager,
  bucket: string,
  keys = ">",
): Promise<{ key: string; data: Uint8Array }[]> {
  const stream = `KV_${bucket}`;
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(stream, { subjects_filter: `${prefix}${keys}` });
  const subjects = Object.keys(info.state.subjects ?? {});
  const found = await pMap(
    subjects,
    async (s) => {
      // Gone since the listing (a host record's TTL ran out): simply not there any more.
      const m = await jsm.streams.getMessage(stream, { last_by_subj: s }).catch(() => null);
      const op = m?.header?.get("KV-Operation");
      return m && op !== "DEL" && op !== "PURGE"
        ? { key: s.slice(prefix.length), data: m.data }
        : undefined;
    },
    { concurrency: PARALLEL },
  );
  return found.filter((f) => f !== undefined);
}
