/**
 * Sends an exported disk into the images object store's chunk subjects
 * (`$O.<prefix>-images.C.<token>`), hashing it on the way. It writes chunks only, never an
 * object's metadata: a worker cannot make or change what any image name resolves to. The move
 * that asked for the export records the object once the outcome says where the bytes are and
 * what they hash to (src/client/move.ts; docs/security.md).
 */
import { createHash, randomBytes } from "node:crypto";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import type { ExportedDisk } from "../../contracts/index.js";
import { exportChunkPrefix } from "../../domain/index.js";
import type { DiskExport } from "../../hypervisor/index.js";
import { VmqError } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import type { Logger } from "../../observability/logger.js";

/** The same chunk size as a push (under the server's 1 MiB max_payload). */
export const EXPORT_CHUNK_BYTES = 512 * 1024;
/** Chunks published before their PubAcks are awaited. */
const WINDOW = 8;
const PROGRESS_EVERY_MS = 5_000;

export interface DiskSink {
  send(
    vmId: string,
    commandId: string,
    disk: DiskExport,
    signal: AbortSignal,
  ): Promise<ExportedDisk>;
}

export class JetStreamDiskSink implements DiskSink {
  constructor(
    private readonly js: JetStreamClient,
    private readonly bucket: string,
    private readonly log: Logger,
  ) {}

  async send(
    vmId: string,
    commandId: string,
    disk: DiskExport,
    signal: AbortSignal,
  ): Promise<ExportedDisk> {
    // A fresh token per run: a rerun after a crash never appends to the chunks a dead run left.
    const nuid = `${exportChunkPrefix(commandId)}${randomBytes(4).toString("hex")}`;
    const subject = `$O.${this.bucket}.C.${nuid}`;
    const hash = createHash("sha256");
    const pending: Promise<PubAck>[] = [];
    let chunks = 0;
    let size = 0;
    let said = Date.now();
    const began = Date.now();
    this.log.info({ vmId, bytes: disk.size, format: disk.format, nuid }, "exporting disk");
    const publish = async (chunk: Uint8Array): Promise<void> => {
      signal.throwIfAborted();
      hash.update(chunk);
      pending.push(this.js.publish(subject, chunk, { timeout: 30_000 }));
      chunks++;
      const before = size;
      size += chunk.length;
      if (before * 2 < disk.size && size * 2 >= disk.size) failpoint("mid-disk-export");
      if (pending.length >= WINDOW) await pending.shift();
      if (Date.now() - said >= PROGRESS_EVERY_MS) {
        said = Date.now();
        this.log.info({ vmId, bytes: size, of: disk.size }, "exporting disk");
      }
    };
    try {
      for await (const chunk of rechunk(disk.bytes(), EXPORT_CHUNK_BYTES)) await publish(chunk);
      await Promise.all(pending.splice(0));
    } catch (e) {
      await Promise.allSettled(pending);
      if (signal.aborted) throw e;
      throw new VmqError(
        "move::export-failed",
        `the disk of VM ${vmId} could not be sent: ${String(e)}`,
        {
          cause: e,
        },
      );
    }
    if (size !== disk.size)
      throw new VmqError(
        "move::export-failed",
        `the disk of VM ${vmId} was ${disk.size} bytes when the export began and ${size} when it ended`,
      );
    const seconds = (Date.now() - began) / 1000;
    this.log.info({ vmId, bytes: size, chunks, seconds }, "disk exported");
    return { nuid, chunks, size, digest: `sha256:${hash.digest("hex")}`, format: disk.format };
  }
}

/** Cuts a byte stream into pieces of exactly `size` bytes (the last one shorter). */
export async function* rechunk(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size);
  let used = 0;
  for await (const piece of source) {
    let at = 0;
    while (at < piece.length) {
      const n = Math.min(size - used, piece.length - at);
      buf.set(piece.subarray(at, at + n), used);
      used += n;
      at += n;
      if (used === size) {
        yield buf;
        buf = new Uint8Array(size);
        used = 0;
      }
    }
  }
  if (used > 0) yield buf.subarray(0, used);
}
