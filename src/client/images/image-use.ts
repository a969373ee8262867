/**
 * Which images the fleet still needs: the base of every VM not destroyed, and the export of
 * every move under way. `vmq image rm` keeps an image in use unless forced; `vmq image prune`
 * removes the exports of moves that no VM runs from any more.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import {
  FINAL_MOVE_STEPS,
  MoveRecord,
  parseImageRef,
  type ImageInfo,
} from "../../contracts/index.js";
import type { VmqClient } from "../vm-client.js";
import { latestValues } from "../kv-scan.js";
import { parseJson } from "../wire.js";
import { ImageStore } from "./image-store.js";

/** Every image digest in use, with who uses it (vmIds, and `move <id>` for a move under way). */
export async function imageUsers(client: VmqClient): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  const add = (digest: string | undefined, who: string) => {
    if (digest) users.set(digest, [...(users.get(digest) ?? []), who]);
  };
  for (const v of await client.list())
    if (v.state !== "destroyed") add(v.handle?.imageDigest, v.vmId);
  const jsm = await jetstreamManager(client.nc);
  const moves = await latestValues(jsm, client.names.movesBucket).catch(() => []);
  for (const { data } of moves) {
    const m = parseJson(data, MoveRecord);
    if (!m || FINAL_MOVE_STEPS.has(m.step)) continue;
    // The export's digest from the worker's report, before the move records it as an image.
    const digests = new Set([m.disk?.digest, m.image ? parseImageRef(m.image)?.digest : undefined]);
    for (const d of digests) add(d, `move ${m.id}`);
  }
  return users;
}

/** What `pruneMoveImages` found: the exports it removed (or would), and those still used. */
export interface PruneResult {
  removed: ImageInfo[];
  kept: ImageInfo[];
}

/**
 * Removes the images moves exported (`move-<vm>@sha256:...`) that no VM and no move under way
 * uses: a moved VM runs from its export until it is destroyed or moved again. Base images an
 * operator pushed are never touched. `dryRun` only says what would go.
 */
export async function pruneMoveImages(
  client: VmqClient,
  opts: { dryRun?: boolean } = {},
): Promise<PruneResult> {
  const store = new ImageStore(client.nc, { prefix: client.names.prefix });
  const exports = (await store.list()).filter((i) => i.name.startsWith("move-"));
  const users = await imageUsers(client);
  const out: PruneResult = { removed: [], kept: [] };
  for (const i of exports) {
    if (users.has(i.digest)) out.kept.push(i);
    else {
      if (!opts.dryRun) await store.remove(`${i.name}@${i.digest}`);
      out.removed.push(i);
    }
  }
  return out;
}
