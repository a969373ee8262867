/**
 * What a move keeps outside the events: its record in `<prefix>-moves` (rewritten by
 * compare-and-set after every step), and the exported disk as an image of the object store
 * (recorded here from the chunks the source's worker sent: workers never write objects).
 */
import { hostname, userInfo } from "node:os";
import {
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Base64UrlPaddedCodec } from "@nats-io/obj";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import {
  IMAGE_DIGEST_METADATA,
  MoveRecord,
  imageObject,
  type ExportedDisk,
  type Names,
} from "../contracts/index.js";
import { exportChunkPrefix } from "../domain/index.js";
import { openImageBucket } from "../event-store/image-bucket.js";
import { VmqError } from "../lib/errors.js";
import { failpoint } from "../lib/failpoints.js";

const isConflict = (e: unknown): boolean => e instanceof JetStreamApiError && e.code === 10071;

export const moveRunBy = (): string => `${userInfo().username}@${hostname()} pid ${process.pid}`;

/** The moves bucket, or a coded error saying who creates it. */
export async function openMoves(nc: NatsConnection, names: Names): Promise<KV> {
  try {
    return await new Kvm(nc).open(names.movesBucket);
  } catch (e) {
    throw new VmqError(
      "nats::not-provisioned",
      `the moves bucket ${names.movesBucket} cannot be opened: ${(e as Error).message}`,
      { hint: "Start a worker of this version (it creates the bucket), or run vmq check." },
    );
  }
}

/** One VM's move record and its revision; every change is a compare-and-set. */
export class MoveLog {
  private constructor(
    private readonly kv: KV,
    public record: MoveRecord,
    private revision: number,
    private readonly told?: (r: MoveRecord) => void | Promise<void>,
  ) {}

  /** The VM's record as stored (undefined: none, or unreadable), with its revision. */
  static async read(
    kv: KV,
    vmId: string,
  ): Promise<{ record?: MoveRecord; revision: number } | undefined> {
    const e = await kv.get(vmId);
    if (!e || e.operation !== "PUT") return e ? { revision: e.revision } : undefined;
    const r = MoveRecord.safeParse(e.json());
    return { ...(r.success ? { record: r.data } : {}), revision: e.revision };
  }

  /** Records a new move: create, or replace a final record (CAS); a race is move::in-progress. */
  static async begin(
    kv: KV,
    record: MoveRecord,
    previousRevision: number | undefined,
    told?: (r: MoveRecord) => void | Promise<void>,
  ): Promise<MoveLog> {
    const body = JSON.stringify(MoveRecord.parse(record));
    try {
      const revision =
        previousRevision === undefined
          ? await kv.create(record.vmId, body)
          : await kv.update(record.vmId, body, previousRevision);
      await told?.(record);
      return new MoveLog(kv, record, revision, told);
    } catch (e) {
      if (!isConflict(e)) throw e;
      throw new VmqError(
        "move::in-progress",
        `another move of VM ${record.vmId} began at the same time`,
      );
    }
  }

  static resume(
    kv: KV,
    record: MoveRecord,
    revision: number,
    told?: (r: MoveRecord) => void | Promise<void>,
  ): MoveLog {
    return new MoveLog(kv, record, revision, told);
  }

  /** The next step (and what it found), or move::conflict when someone else changed it. */
  async set(change: Partial<MoveRecord>): Promise<MoveRecord> {
    const next = MoveRecord.parse({
      ...this.record,
      ...change,
      updatedAt: new Date().toISOString(),
    });
    try {
      this.revision = await this.kv.update(next.vmId, JSON.stringify(next), this.revision);
    } catch (e) {
      if (!isConflict(e)) throw e;
      throw new VmqError(
        "move::conflict",
        `the record of move ${next.id} of VM ${next.vmId} changed under this process`,
      );
    }
    this.record = next;
    await this.told?.(next);
    failpoint("move-step");
    return next;
  }
}

/**
 * Makes the chunks an export sent into the image `<name>@sha256:<hex>`: its metadata record, as
 * the object store writes one (rollup of the name's subject), with vmq's digest metadata. The
 * bytes are checked where they are used: the target verifies the digest before it prepares.
 */
export async function recordExportedImage(
  nc: NatsConnection,
  names: Names,
  name: string,
  disk: ExportedDisk,
): Promise<string> {
  const object = imageObject(name, disk.digest);
  // The same bytes exported before (the VM unchanged since its last move) are that object
  // already: it stays, and this export's chunks go rather than be left behind under it.
  const existing = await (await openImageBucket(nc, names)).info(object);
  if (existing && !existing.deleted && existing.nuid !== disk.nuid) {
    const stream = `OBJ_${names.imagesBucket}`;
    await (
      await jetstreamManager(nc)
    ).streams.purge(stream, {
      filter: `$O.${names.imagesBucket}.C.${disk.nuid}`,
    });
    return object;
  }
  const hex = disk.digest.slice("sha256:".length);
  const info = {
    name: object,
    description: "",
    options: { max_chunk_size: 512 * 1024 },
    metadata: { [IMAGE_DIGEST_METADATA]: disk.digest },
    bucket: names.imagesBucket,
    nuid: disk.nuid,
    size: disk.size,
    chunks: disk.chunks,
    mtime: new Date().toISOString(),
    digest: `SHA-256=${Base64UrlPaddedCodec.encode(Buffer.from(hex, "hex"))}`,
    deleted: false,
  };
  const h = natsHeaders();
  h.set("Nats-Rollup", "sub");
  const subject = `$O.${names.imagesBucket}.M.${Base64UrlPaddedCodec.encode(object)}`;
  await jetstream(nc).publish(subject, JSON.stringify(info), { headers: h });
  return object;
}

/**
 * Removes the chunks that runs of this export which did not finish left in the images stream
 * (their subject token starts with the export's prefix; `keep` is the one that finished).
 */
export async function sweepExportChunks(
  nc: NatsConnection,
  names: Names,
  exportCommandId: string,
  keep?: string,
): Promise<number> {
  const jsm: JetStreamManager = await jetstreamManager(nc);
  const stream = `OBJ_${names.imagesBucket}`;
  const prefix = `$O.${names.imagesBucket}.C.${exportChunkPrefix(exportCommandId)}`;
  const info = await jsm.streams.info(stream, {
    subjects_filter: `$O.${names.imagesBucket}.C.*`,
  });
  let swept = 0;
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    if (!subject.startsWith(prefix) || (keep && subject.endsWith(`.${keep}`))) continue;
    await jsm.streams.purge(stream, { filter: subject });
    swept++;
  }
  return swept;
}
