import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import pMap from "p-map";
import { z } from "zod";
import { withoutUserData, type Vm } from "../domain/index.js";

/**
 * Snapshots of a host's VMs tied to a stream sequence S: every event of the host up to S is
 * reflected, so a restart loads them and replays only what came after S.
 *
 * Layout (format 3): the VMs are spread over a power-of-two number of chunks by a hash of the
 * vmId, one KV entry per chunk (`<host>.chunk.<i>`, a JSON array), and a manifest (`<host>`)
 * written last with the SHA-256 of every chunk. A periodic snapshot rewrites only the chunks
 * whose VMs changed. Loading is a handful of gets and one JSON.parse per chunk, checked by its
 * hash rather than a schema per VM (10,000 VMs load in well under a second). Anything
 * inconsistent, a missing or altered chunk, a count that does not match, an older format,
 * means "no snapshot": the worker replays the whole history instead.
 */
/** 3: each VM carries its eventCount (a format-2 snapshot means one full replay to count). */
const FORMAT = 3;
/** Average VMs per chunk; chunks stay far below NATS's default 1 MiB message limit. */
const VMS_PER_CHUNK = 64;
/** A chunk bigger than this (large cloud-init data, say) doubles the number of chunks. */
const MAX_CHUNK_BYTES = 512 * 1024;
const PARALLEL = 16;

const Manifest = z.object({
  format: z.literal(FORMAT),
  seq: z.int().min(0),
  count: z.int().min(0),
  chunks: z.int().min(1),
  sums: z.array(z.string()),
  takenAt: z.string(),
});
type Manifest = z.infer<typeof Manifest>;

type StoredVm = Omit<Vm, "seenCommands" | "seenDigests"> & {
  seenCommands: string[];
  seenDigests?: string[] | null;
};
const toStored = (vm: Vm): StoredVm => ({
  ...vm,
  seenCommands: [...vm.seenCommands],
  seenDigests: vm.seenDigests === null ? null : [...vm.seenDigests],
});
const fromStored = (s: StoredVm): Vm => ({
  ...s,
  // Snapshots written before destroyed VMs dropped their cloud-init data: as a replay gives them.
  ...(s.state === "destroyed" ? { spec: withoutUserData(s.spec) } : {}),
  seenCommands: new Set(s.seenCommands),
  seenDigests: s.seenDigests ? new Set(s.seenDigests) : null,
});

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

/** FNV-1a: a stable, cheap spread of vmIds over chunks. */
function chunkOf(vmId: string, chunks: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < vmId.length; i++) h = Math.imul(h ^ vmId.charCodeAt(i), 0x01000193);
  return (h >>> 0) & (chunks - 1);
}

function chunksFor(count: number, atLeast = 1): number {
  let k = Math.max(1, atLeast);
  while (k * VMS_PER_CHUNK < count) k *= 2;
  return k;
}

export class SnapshotStore {
  /** The layout last written or loaded: lets the next save rewrite only changed chunks. */
  #layout: { chunks: number; sums: string[] } | undefined;

  constructor(private readonly kv: KV) {}

  /**
   * Writes a snapshot of `all` the host's VMs at `seq`. Only the chunks holding a VM in
   * `changed` are rewritten when the layout is unchanged since the last save or load.
   */
  async save(host: string, all: Vm[], changed: Iterable<string>, seq: number): Promise<number> {
    let chunks = chunksFor(all.length, this.#layout?.chunks ?? 1);
    if (this.#layout && chunks < this.#layout.chunks / 4) chunks = chunksFor(all.length); // shrank
    for (;;) {
      const same = this.#layout?.chunks === chunks;
      const dirty = new Set<number>();
      if (same) for (const id of changed) dirty.add(chunkOf(id, chunks));
      else for (let i = 0; i < chunks; i++) dirty.add(i);
      const groups = new Map<number, StoredVm[]>([...dirty].map((i) => [i, []]));
      for (const vm of all) groups.get(chunkOf(vm.vmId, chunks))?.push(toStored(vm));
      const bodies = [...groups].map(([i, vms]) => ({ i, body: JSON.stringify(vms) }));
      if (bodies.some((b) => b.body.length > MAX_CHUNK_BYTES)) {
        chunks *= 2;
        continue;
      }
      const sums = same && this.#layout ? [...this.#layout.sums] : new Array<string>(chunks);
      this.#layout = undefined; // until the manifest is written, the next save rewrites all
      await pMap(
        bodies,
        async (b) => {
          await this.kv.put(`${host}.chunk.${b.i}`, b.body);
          sums[b.i] = sha256(b.body);
        },
        { concurrency: PARALLEL },
      );
      const manifest: Manifest = {
        format: FORMAT,
        seq,
        count: all.length,
        chunks,
        sums,
        takenAt: new Date().toISOString(),
      };
      await this.kv.put(host, JSON.stringify(manifest));
      this.#layout = { chunks, sums };
      return bodies.length;
    }
  }

  /** The host's VMs as of the manifest's sequence, or a reason why there is no usable snapshot. */
  async load(host: string): Promise<{ seq: number; vms: Vm[] } | { reason: string }> {
    const m = await this.kv.get(host).catch(() => null);
    if (!m || m.operation !== "PUT") return { reason: "no snapshot" };
    const parsed = Manifest.safeParse(safeJson(m.string()));
    if (!parsed.success) return { reason: "corrupt or older-format manifest" };
    const manifest = parsed.data;
    if (manifest.sums.length !== manifest.chunks) return { reason: "corrupt manifest" };
    const vms: Vm[] = [];
    let bad: string | undefined;
    const chunks = Array.from({ length: manifest.chunks }, (_, i) => i);
    await pMap(
      chunks,
      async (i) => {
        if (bad) return; // one bad chunk spoils the snapshot: read no more
        const e = await this.kv.get(`${host}.chunk.${i}`).catch(() => null);
        const body = e?.operation === "PUT" ? e.string() : undefined;
        if (body === undefined) bad ??= `chunk ${i} is missing`;
        else if (sha256(body) !== manifest.sums[i]) bad ??= `chunk ${i} does not match its hash`;
        else {
          const list = safeJson(body);
          if (!Array.isArray(list)) bad ??= `chunk ${i} is not a list`;
          else for (const s of list as StoredVm[]) vms.push(fromStored(s));
        }
      },
      { concurrency: PARALLEL },
    );
    if (bad) return { reason: bad };
    if (vms.length !== manifest.count)
      return { reason: `snapshot has ${vms.length} VMs, manifest says ${manifest.count}` };
    const newer = vms.find((vm) => vm.version > manifest.seq);
    if (newer) return { reason: `VM ${newer.vmId} is newer than the manifest` };
    this.#layout = { chunks: manifest.chunks, sums: manifest.sums };
    return { seq: manifest.seq, vms };
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return undefined;
  }
}
