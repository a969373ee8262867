/**
 * The SDK's image store: push a file (streamed, SHA-256 computed on the way), list, inspect,
 * tag and remove images in the `<prefix>-images` object store. See docs/wire-contract.md.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ObjectInfo, ObjectStore } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  IMAGE_DIGEST_METADATA,
  ImageName,
  ImageTag,
  imageObject,
  parseImageRef,
  tagObject,
  uploadObject,
  type ImageInfo,
} from "../../contracts/images.js";
import { names as namesFor, type Names } from "../../contracts/subjects.js";
import {
  invalidRef,
  openImageBucket,
  resolveImage,
  type ResolvedImage,
} from "../../event-store/image-bucket.js";
import { VmqError } from "../../lib/errors.js";

/** Chunks of 512 KiB: fewer messages than the library's 128 KiB, under the 1 MiB max_payload. */
const CHUNK_BYTES = 512 * 1024;

export interface PushOptions {
  name: string;
  tag: string;
  /** Called with the bytes sent so far (for a progress line). */
  onProgress?: (sent: number, total: number | undefined) => void;
}

export interface RemoveOptions {
  /** The VMs whose base is this digest (imageUsers): an image they use is not removed. */
  usedBy?: (digest: string) => Promise<string[]>;
}

export class ImageStore {
  readonly names: Names;
  #os: ObjectStore | undefined;

  constructor(
    readonly nc: NatsConnection,
    opts: { prefix?: string } = {},
  ) {
    this.names = namesFor(opts.prefix);
  }

  async #bucket(): Promise<ObjectStore> {
    return (this.#os ??= await openImageBucket(this.nc, this.names));
  }

  /** Streams `file` into the store as `name@sha256:<hex>` and points `name:tag` at it. */
  async push(file: string, opts: PushOptions): Promise<ImageInfo> {
    const total = (await stat(file)).size;
    return this.pushStream(createReadStream(file, { highWaterMark: CHUNK_BYTES }), {
      ...opts,
      total,
    });
  }

  async pushStream(
    source: AsyncIterable<Uint8Array>,
    opts: PushOptions & { total?: number },
  ): Promise<ImageInfo> {
    const name = checked(ImageName, opts.name, "image name");
    const tag = checked(ImageTag, opts.tag, "image tag");
    const os = await this.#bucket();
    const hash = createHash("sha256");
    let sent = 0;
    // The digest is computed from the very bytes handed to the store, as they pass.
    async function* hashed(): AsyncGenerator<Uint8Array> {
      for await (const chunk of source) {
        hash.update(chunk);
        sent += chunk.length;
        opts.onProgress?.(sent, opts.total);
        yield chunk;
      }
    }
    const upload = uploadObject(name, randomUUID());
    const stream = Readable.toWeb(Readable.from(hashed())) as ReadableStream<Uint8Array>;
    await os.put({ name: upload, options: { max_chunk_size: CHUNK_BYTES } }, stream);
    const digest = `sha256:${hash.digest("hex")}`;
    const object = imageObject(name, digest);
    const existing = await os.info(object);
    if (existing && !existing.deleted) {
      await os.delete(upload); // the same bytes are already stored under this name
    } else {
      await os.update(upload, { name: object, metadata: { [IMAGE_DIGEST_METADATA]: digest } });
    }
    await this.#link(os, name, tag, object);
    return this.inspect(object);
  }

  /** Every stored image (one row per name and digest) with its tags. */
  async list(): Promise<ImageInfo[]> {
    const os = await this.#bucket();
    const all = (await os.list()).filter((o) => !o.deleted);
    const tags = new Map<string, string[]>();
    for (const o of all) {
      const target = o.options?.link?.name;
      const p = parseImageRef(o.name);
      if (target && p?.tag !== undefined) tags.set(target, [...(tags.get(target) ?? []), p.tag]);
    }
    return all
      .filter((o) => !o.options?.link && parseImageRef(o.name)?.digest !== undefined)
      .map((o) => infoOf(o, tags.get(o.name) ?? []))
      .sort((a, b) => a.name.localeCompare(b.name) || b.pushedAt.localeCompare(a.pushedAt));
  }

  /** One image by `name:tag` or `name@sha256:<hex>`. */
  async inspect(ref: string): Promise<ImageInfo> {
    const r = await this.resolve(ref);
    const found = (await this.list()).find((i) => i.name === r.name && i.digest === r.digest);
    if (!found) throw new VmqError("image::not-found", `image ${ref} is not in the object store`);
    return found;
  }

  resolve(ref: string): Promise<ResolvedImage> {
    return this.#bucket().then((os) => resolveImage(os, ref));
  }

  /** Points `name:<newTag>` at the image `ref` names (a tag moves if it existed). */
  async tag(ref: string, newTag: string): Promise<ImageInfo> {
    const tag = checked(ImageTag, newTag, "image tag");
    const r = await this.resolve(ref);
    await this.#link(await this.#bucket(), r.name, tag, r.object);
    return this.inspect(r.object);
  }

  /**
   * `name:tag` removes the tag, and the image once no tag is left on it; `name@sha256:<hex>`
   * removes the image and every tag on it. Returns the objects removed. With `usedBy`, an image
   * that would go while VMs use it is kept and `image::in-use` names them (nothing removed).
   */
  async remove(ref: string, opts: RemoveOptions = {}): Promise<string[]> {
    const p = parseImageRef(ref);
    if (!p) throw invalidRef(ref);
    const os = await this.#bucket();
    const r = await resolveImage(os, ref).catch(async (e: unknown) => {
      // A tag whose image is gone (or tampered) can still be removed.
      if (p.tag !== undefined && (await os.info(ref))) return undefined;
      throw e;
    });
    const info = r ? await this.inspect(r.object).catch(() => undefined) : undefined;
    const goes =
      r !== undefined &&
      (p.digest !== undefined || (info?.tags.every((t) => t === p.tag) ?? false));
    if (goes && opts.usedBy) {
      const vms = await opts.usedBy(r.digest);
      if (vms.length)
        throw new VmqError(
          "image::in-use",
          `image ${r.object} is the base of ${vms.length} VM(s) not destroyed: ${vms.slice(0, 5).join(", ")}${vms.length > 5 ? ", ..." : ""}`,
        );
    }
    const removed: string[] = [];
    if (p.tag !== undefined) {
      await os.delete(tagObject(p.name, p.tag));
      removed.push(ref);
    }
    if (!goes) return removed;
    for (const t of (info?.tags ?? []).filter((t) => t !== p.tag)) {
      await os.delete(tagObject(p.name, t));
      removed.push(tagObject(p.name, t));
    }
    await os.delete(r.object);
    removed.push(r.object);
    return removed;
  }

  async #link(os: ObjectStore, name: string, tag: string, object: string): Promise<void> {
    const target = await os.info(object);
    if (!target) throw new VmqError("image::not-found", `image object ${object} vanished`);
    const t = tagObject(name, tag);
    const old = await os.info(t);
    if (old && !old.deleted) await os.delete(t);
    await os.link(t, target);
  }
}

function infoOf(o: ObjectInfo, tags: string[]): ImageInfo {
  const at = o.name.indexOf("@");
  return {
    name: o.name.slice(0, at),
    digest: o.name.slice(at + 1),
    size: o.size,
    tags: tags.sort(),
    pushedAt: o.mtime,
  };
}

function checked(schema: typeof ImageName, value: string, what: string): string {
  if (!schema.safeParse(value).success)
    throw new VmqError("image::invalid-ref", `${JSON.stringify(value)} is not a valid ${what}`);
  return value;
}
