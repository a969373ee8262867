/**
 * The images object store as both sides read it: open the bucket, resolve a reference to the
 * one object that holds its bytes. Writing (push, tag, rm) is the SDK's (src/client/images).
 */
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
  return { ref, name: parsed.name, digest, size: info.size, object };
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
