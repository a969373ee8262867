import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { Command, Pending, VmHandle, VmSpec, VmState } from "../contracts/index.js";
import type { Vm } from "../domain/index.js";

/**
 * Snapshots of a host's VMs tied to a stream sequence S: every event of the host up to S is
 * reflected, so a restart loads them and replays only what came after S. One KV entry per VM
 * (`<host>.<vmId>`) plus a manifest (`<host>`) written last; anything inconsistent (a missing,
 * corrupt or newer entry, a count that does not match) means "no snapshot": full replay.
 */
const VmSnapshot = z.object({
  vmId: z.string(),
  host: z.string(),
  state: VmState.nullable(),
  handle: VmHandle.nullable(),
  spec: VmSpec.nullable(),
  pending: Pending.nullable(),
  pendingCommand: Command.nullable(),
  version: z.int().min(0),
  seenCommands: z.array(z.string()),
  updatedAt: z.string().nullable(),
});
const Manifest = z.object({
  seq: z.int().min(0),
  count: z.int().min(0),
  takenAt: z.string(),
  format: z.literal(1),
});

const toSnapshot = (vm: Vm): z.infer<typeof VmSnapshot> => ({
  ...vm,
  seenCommands: [...vm.seenCommands],
});
const fromSnapshot = (s: z.infer<typeof VmSnapshot>): Vm => ({
  ...s,
  seenCommands: new Set(s.seenCommands),
});

export class SnapshotStore {
  constructor(private readonly kv: KV) {}

  /** Writes the given VMs (all of the host's, or those changed since the last save) and the manifest. */
  async save(host: string, changed: Vm[], seq: number, count: number): Promise<void> {
    const queue = [...changed];
    await Promise.all(
      Array.from({ length: Math.min(32, queue.length) }, async () => {
        for (let vm = queue.shift(); vm; vm = queue.shift())
          await this.kv.put(`${host}.${vm.vmId}`, JSON.stringify(toSnapshot(vm)));
      }),
    );
    await this.kv.put(
      host,
      JSON.stringify({ seq, count, takenAt: new Date().toISOString(), format: 1 }),
    );
  }

  /** The host's VMs as of the manifest's sequence, or a reason why there is no usable snapshot. */
  async load(host: string): Promise<{ seq: number; vms: Vm[] } | { reason: string }> {
    const m = await this.kv.get(host).catch(() => null);
    if (!m || m.operation !== "PUT") return { reason: "no snapshot" };
    let manifest: z.infer<typeof Manifest>;
    try {
      manifest = Manifest.parse(m.json());
    } catch {
      return { reason: "corrupt manifest" };
    }
    if (manifest.count === 0) return { seq: manifest.seq, vms: [] };
    const vms: Vm[] = [];
    const iter = await this.kv.watch({ key: `${host}.>`, ignoreDeletes: true });
    // Entries gone missing would leave the watch waiting for ever: bound it.
    const timer = setTimeout(() => iter.stop(), 10_000 + manifest.count);
    let bad: string | undefined;
    try {
      for await (const e of iter) {
        if (e.operation === "PUT") {
          const parsed = VmSnapshot.safeParse(safeJson(e.string()));
          if (!parsed.success) bad ??= `corrupt entry ${e.key}`;
          else if (parsed.data.version > manifest.seq)
            bad ??= `entry ${e.key} is newer than the manifest`;
          else vms.push(fromSnapshot(parsed.data));
        }
        if (e.delta === 0) break;
      }
    } finally {
      clearTimeout(timer);
      iter.stop();
    }
    if (bad) return { reason: bad };
    if (vms.length !== manifest.count)
      return { reason: `snapshot has ${vms.length} VMs, manifest says ${manifest.count}` };
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
