/**
 * The images object store as both sides read it: open the bucket, resolve a reference to the
 * one object that holds its bytes. Writing (push, tag, rm) is the SDK's (src/client/images).
 */
import { randomUUID } from "node:crypto";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Objm, type ObjectInfo, type ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  IMAGE_DIGEST_METADATA,
  imageObject,
  parseImageRef,
  tagObject,
} from "../contracts/images.js";
import type { Names } from "../contracts/subjects.js";
import { VmqError } from "../lib/errors.js";

/** A reference resolved to its stored object. */
export interface ResolvedImage {
  ref: string;
  name: string;
  /** `sha256:<hex>` */
  digest: string;
  size: number;
  /** The object holding the bytes (`<name>@sha256:<hex>`). */
  object: string;
  /** Its chunks: their subject token and how many (what a reader fetches). */
  nuid: string;
  chunks: number;
}

export async function openImageBucket(nc: NatsConnection, names: Names): Promise<ObjectStore> {
  try {
    return await new Objm(nc).open(names.imagesBucket);
  } catch (e) {
    throw new VmqError(
      "image::store-unavailable",
      `the images bucket ${names.imagesBucket} cannot be opened: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

export const invalidRef = (ref: string): VmqError =>
  new VmqError("image::invalid-ref", `${JSON.stringify(ref)} is not an image reference`);

const notFound = (ref: string): VmqError =>
  new VmqError("image::not-found", `image ${ref} is not in the object store`, {
    hint: "vmq image ls lists the pushed images; push it with vmq image push.",
  });

/**
 * `name:tag` follows the tag's link; `name@sha256:<hex>` names the object itself. The object's
 * name is the digest's authority: metadata that says otherwise is a mismatch, not a choice.
 */
export async function resolveImage(os: ObjectStore, ref: string): Promise<ResolvedImage> {
  const parsed = parseImageRef(ref);
  if (!parsed) throw invalidRef(ref);
  let object: string;
  if (parsed.digest !== undefined) object = imageObject(parsed.name, parsed.digest);
  else {
    const tag = await os.info(tagObject(parsed.name, parsed.tag));
    const target = tag && !tag.deleted ? tag.options?.link?.name : undefined;
    if (!target) throw notFound(ref);
    object = target;
  }
  const info = await os.info(object);
  if (!info || info.deleted) throw notFound(ref);
  const digest = object.slice(object.indexOf("@") + 1);
  checkRecordedDigest(info, digest);
  return {
    ref,
    name: parsed.name,
    digest,
    size: info.size,
    object,
    nuid: info.nuid,
    chunks: info.chunks,
  };
}

function checkRecordedDigest(info: ObjectInfo, digest: string): void {
  const recorded = info.metadata?.[IMAGE_DIGEST_METADATA];
  if (recorded !== digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw new VmqError(
      "image::digest-mismatch",
      `image object ${info.name} records digest ${recorded ?? "(none)"}, its name says ${digest}`,
    );
  }
}

const CHUNK_BATCH = 64;

/**
 * The chunks of a resolved image, in order, through an ephemeral pull consumer of its own
 * (filtered on the object's chunk subject, no acks, deleted after), fetched 64 at a time. The
 * object store's own reader (an ordered push consumer with flow control) moved about 65 MiB/s
 * here, this about 300 (docs/benchmark.md, Images). It yields the bytes unchecked: the caller
 * hashes them against the digest, so a short, long or altered object is caught there.
 */
export async function* imageChunks(
  nc: NatsConnection,
  names: Names,
  r: Pick<ResolvedImage, "nuid" | "chunks">,
): AsyncGenerator<Uint8Array> {
  const stream = `OBJ_${names.imagesBucket}`;
  const jsm = await jetstreamManager(nc);
  const name = `img-${randomUUID().slice(0, 18)}`;
  await jsm.consumers.add(stream, {
    name,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `$O.${names.imagesBucket}.C.${r.nuid}`,
    mem_storage: true,
    inactive_threshold: 30_000 * 1_000_000, // gone on its own if this process dies mid-read
  });
  try {
    const consumer = await jetstream(nc).consumers.get(stream, name);
    for (let got = 0; got < r.chunks;) {
      const batch = await consumer.fetch({
        max_messages: Math.min(CHUNK_BATCH, r.chunks - got),
        expires: 10_000,
      });
      const before = got;
      for await (const m of batch) {
        got++;
        yield m.data;
      }
      if (got === before) throw new Error(`the image's chunks stopped at ${got} of ${r.chunks}`);
    }
  } finally {
    await jsm.consumers.delete(stream, name).catch(() => undefined);
  }
}
