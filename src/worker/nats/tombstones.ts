import type { KV } from "@nats-io/kv";
import { VmTombstone } from "../../contracts/index.js";
import type { Tombstones } from "../ports.js";

/** The host's tombstones in the `<prefix>-tombstones` bucket, keyed `<host>.<vmId>`. */
export function kvTombstones(kv: KV, host: string): Tombstones {
  return {
    get: async (vmId) => {
      const e = await kv.get(`${host}.${vmId}`);
      if (!e || e.operation !== "PUT") return undefined;
      const t = VmTombstone.safeParse(e.json());
      return t.success ? t.data : undefined;
    },
    put: async (t) => {
      await kv.put(`${t.host}.${t.vmId}`, JSON.stringify(t));
    },
  };
}

/** Tombstones in memory (unit tests). */
export function memoryTombstones(): Tombstones & { all: Map<string, VmTombstone> } {
  const all = new Map<string, VmTombstone>();
  return {
    all,
    get: (vmId) => Promise.resolve(all.get(vmId)),
    put: (t) => {
      all.set(t.vmId, structuredClone(t));
      return Promise.resolve();
    },
  };
}
