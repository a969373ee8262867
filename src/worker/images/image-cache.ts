/**
 * The host image cache: images named by a VM spec's `image` are fetched from the object store
 * into `<dir>/<sha256 hex>`, verified before use. A download is written under `.partial/` and
 * renamed into place only once its digest matches, so a file under its digest is always whole;
 * `.partial/` is emptied at start (what a crash left there was never used). Concurrent
 * prepares of one image share one download. With a cap, least recently used images that no
 * VM of this host uses are evicted to make room. Which image each VM's prepare took is also
 * kept on disk (`.pins/<vmId>`), so that a prepare a crash interrupted, resolved from the
 * backend's record, still knows its image (imageOf) and a restart does not evict it meanwhile.
 */
import { createHash, randomUUID } from "node:crypto";
import {
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  utimes,
  writeFile,
  type FileHandle,
} from "node:fs/promises";
import { join, resolve } from "node:path";
import type { ObjectStore } from "@nats-io/obj";
import { isValidId } from "../../contracts/ids.js";
import { resolveImage, type ResolvedImage } from "../../event-store/image-bucket.js";
import { isVmqError, VmqError } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import type { Logger } from "../../observability/logger.js";
import type { ImageStats } from "./image-stats.js";

/** Where a worker caches images: an image root of its QEMU backend whatever --image-roots says. */
export const imageCacheDir = (dataDir: string): string => resolve(dataDir, "images");

const CACHED = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const PROGRESS_EVERY_MS = 5_000;
const WRITE_AHEAD = 16 * 1024 * 1024;

export interface ImageCacheOptions {
  dir: string;
  /** Bytes the cache may hold (0: no cap). */
  maxBytes: number;
  bucket: () => Promise<ObjectStore>;
  /** The bytes of a resolved image, in order (imageChunks: a pull consumer of its chunks). */
  chunks: (r: ResolvedImage) => AsyncIterable<Uint8Array>;
  /** The digests (`sha256:<hex>`) this host's VMs were prepared from. */
  inUse: () => Iterable<string>;
  log: Logger;
  stats: ImageStats;
}

export interface CachedImage {
  path: string;
  digest: string;
  ref: string;
}

export class ImageCache {
  readonly #inflight = new Map<string, Promise<void>>();
  /** Images handed to a prepare whose VM is not recorded yet (or not destroyed). */
  readonly #pins = new Map<string, string>();

  constructor(private readonly o: ImageCacheOptions) {}

  get dir(): string {
    return this.o.dir;
  }

  /**
   * Empties `.partial/` (a crash's leftovers, never used), reads the pins back and counts what
   * is cached.
   */
  async start(): Promise<void> {
    const partial = join(this.o.dir, ".partial");
    const left = await readdir(partial).catch(() => []);
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true, mode: 0o700 });
    if (left.length) this.o.log.warn({ files: left.length }, "removed unfinished image downloads");
    await mkdir(this.#pinsDir, { recursive: true, mode: 0o700 });
    for (const vmId of (await readdir(this.#pinsDir)).filter(isValidId)) {
      const digest = (await readFile(join(this.#pinsDir, vmId), "utf8").catch(() => "")).trim();
      if (DIGEST.test(digest)) this.#pins.set(vmId, digest);
    }
    this.o.stats.cachedBytes = (await this.#cached()).reduce((n, f) => n + f.size, 0);
  }

  get #pinsDir(): string {
    return join(this.o.dir, ".pins");
  }

  /** The image `vmId`'s prepare took (`sha256:<hex>`), while the VM is not destroyed. */
  imageOf(vmId: string): string | undefined {
    return this.#pins.get(vmId);
  }

  /** Drops the pins of VMs that are gone (destroyed while a crash kept their pin). */
  async keepPins(live: (vmId: string) => boolean): Promise<void> {
    for (const vmId of [...this.#pins.keys()]) if (!live(vmId)) await this.unpin(vmId);
  }

  /** The local file of `ref` for `vmId`'s prepare, fetched and verified if missing. */
  async ensure(ref: string, vmId: string, signal?: AbortSignal): Promise<CachedImage> {
    const os = await this.o.bucket();
    const r = await resolveImage(os, ref).catch((e: unknown) => {
      throw isVmqError(e) ? e : fetchFailed(ref, e);
    });
    const hex = r.digest.slice("sha256:".length);
    const path = join(this.o.dir, hex);
    this.#pins.set(vmId, r.digest); // before any eviction can run
    await writeFile(join(this.#pinsDir, vmId), r.digest, { mode: 0o600 });
    try {
      if (await isFile(path)) {
        this.o.stats.hits++;
        const now = new Date();
        await utimes(path, now, now); // the LRU order
      } else {
        this.o.stats.misses++;
        let download = this.#inflight.get(hex);
        if (!download) {
          download = this.#download(r, path).finally(() => this.#inflight.delete(hex));
          this.#inflight.set(hex, download);
        } else this.o.log.info({ vmId, ref }, "image download in progress; waiting for it");
        await untilAborted(download, signal);
      }
      return { path, digest: r.digest, ref };
    } catch (e) {
      await this.unpin(vmId);
      throw e;
    }
  }

  /** The VM is gone: its image may be evicted (once no other VM uses it). */
  async unpin(vmId: string): Promise<void> {
    this.#pins.delete(vmId);
    await rm(join(this.#pinsDir, vmId), { force: true });
  }

  async #download(r: ResolvedImage, path: string): Promise<void> {
    const { log, stats } = this.o;
    await this.#makeRoom(r.size, r.digest);
    const tmp = join(this.o.dir, ".partial", `${r.digest.slice(7)}.${randomUUID().slice(0, 8)}`);
    const began = Date.now();
    log.info({ ref: r.ref, digest: r.digest, bytes: r.size }, "fetching image");
    const file = await open(tmp, "wx", 0o600);
    let bytes = 0;
    stats.downloading++;
    try {
      const hash = createHash("sha256");
      let said = Date.now();
      try {
        const writes = new WriteBehind(file);
        for await (const chunk of this.o.chunks(r)) {
          hash.update(chunk);
          await writes.add(chunk);
          const before = bytes;
          bytes += chunk.length;
          stats.downloadingBytes += chunk.length;
          if (before * 2 < r.size && bytes * 2 >= r.size) failpoint("mid-image-fetch");
          if (Date.now() - said >= PROGRESS_EVERY_MS) {
            said = Date.now();
            log.info({ ref: r.ref, bytes, of: r.size }, "fetching image");
          }
        }
        await writes.done();
      } catch (e) {
        throw fetchFailed(r.ref, e);
      }
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== r.digest || bytes !== r.size)
        throw mismatch(r, `got ${bytes} bytes with digest ${actual}`);
      await file.sync();
      await file.close();
      await rename(tmp, path);
      const seconds = (Date.now() - began) / 1000;
      stats.fetches++;
      stats.fetchedBytes += bytes;
      stats.fetchSeconds += seconds;
      stats.cachedBytes += bytes;
      log.info({ ref: r.ref, digest: r.digest, bytes, seconds }, "image fetched and verified");
    } catch (e) {
      stats.failures++;
      await file.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw e;
    } finally {
      stats.downloading--;
      stats.downloadingBytes -= bytes;
    }
  }

  /**
   * Evicts least recently used images no VM uses until `incoming` more bytes fit the cap;
   * image::cache-full when the images in use alone leave no room.
   */
  async #makeRoom(incoming: number, digest: string): Promise<void> {
    const max = this.o.maxBytes;
    if (max <= 0) return;
    const files = await this.#cached();
    let total = files.reduce((n, f) => n + f.size, 0);
    const used = new Set([...this.o.inUse(), ...this.#pins.values(), digest]);
    for (const hex of this.#inflight.keys()) used.add(`sha256:${hex}`);
    for (const f of files.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
      if (total + incoming <= max) break;
      if (used.has(`sha256:${f.name}`)) continue;
      await rm(join(this.o.dir, f.name), { force: true });
      total -= f.size;
      this.o.stats.evicted++;
      this.o.log.info({ digest: `sha256:${f.name}`, bytes: f.size }, "evicted cached image");
    }
    this.o.stats.cachedBytes = total;
    if (total + incoming > max) {
      throw new VmqError(
        "image::cache-full",
        `image ${digest} (${incoming} bytes) does not fit the ${max}-byte image cache: ${total} bytes are images in use`,
      );
    }
  }

  async #cached(): Promise<{ name: string; size: number; mtimeMs: number }[]> {
    const names = (await readdir(this.o.dir).catch(() => [])).filter((n) => CACHED.test(n));
    const out = [];
    for (const name of names) {
      const s = await stat(join(this.o.dir, name)).catch(() => undefined);
      if (s?.isFile()) out.push({ name, size: s.size, mtimeMs: s.mtimeMs });
    }
    return out;
  }
}

/**
 * Writes a download's chunks in order while the next ones arrive: the network and the disk
 * overlap instead of taking turns. At most WRITE_AHEAD bytes wait in memory; `add` waits
 * beyond that. A failed write fails the next `add` or `done`.
 */
class WriteBehind {
  #tail: Promise<void> = Promise.resolve();
  #queued = 0;
  #failed: Error | undefined;

  constructor(private readonly file: FileHandle) {}

  async add(chunk: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    this.#queued += chunk.length;
    this.#tail = this.#tail
      .then(async () => {
        if (!this.#failed) await this.file.write(chunk);
        this.#queued -= chunk.length;
      })
      .catch((e: unknown) => {
        this.#failed ??= e instanceof Error ? e : new Error(String(e));
      });
    if (this.#queued > WRITE_AHEAD) await this.#tail;
  }

  async done(): Promise<void> {
    await this.#tail;
    if (this.#failed) throw this.#failed;
  }
}

const isFile = (p: string): Promise<boolean> =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

const mismatch = (r: ResolvedImage, what: string): VmqError =>
  new VmqError("image::digest-mismatch", `image ${r.ref} does not match ${r.digest}: ${what}`);

const fetchFailed = (ref: string, e: unknown): VmqError =>
  new VmqError("image::fetch-failed", `image ${ref} could not be fetched: ${String(e)}`, {
    cause: e,
  });

/** Waits for a shared download; this waiter's abort stops its wait, not the download. */
function untilAborted(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  return new Promise((res, rej) => {
    const onAbort = () =>
      rej(
        new VmqError("hypervisor::aborted", "the image wait was cancelled", {
          cause: signal.reason,
        }),
      );
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(res, rej).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
