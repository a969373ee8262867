/**
 * Images: how fast a host gets a base image from the object store, against copying the same
 * bytes on the same disk. One random file is pushed with the SDK's ImageStore; then, per
 * repetition, the worker's own ImageCache (from the build) fetches it into a fresh cache dir
 * (chunks streamed to a temporary file, SHA-256 checked, fsync, rename), and the same file is
 * copied twice: `fs.copyFile` (what `cp` does) and a streamed read/write, both with an fsync so
 * all three end with the bytes on disk.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm, stat, copyFile } from "node:fs/promises";
import { createReadStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import {
  ImageCache,
  ImageStats,
  ImageStore,
  imageChunks,
  openImageBucket,
  silentLogger,
} from "./built.js";
import { benchPrefix, namesFor } from "./common.js";
import { round } from "./stats.js";
import { provisionVmq } from "./vmq.js";

const MiB = 2 ** 20;

export interface ImageRun {
  fetchMs: number;
  copyFileMs: number;
  streamCopyMs: number;
}

export interface ImagesResult {
  bytes: number;
  pushMs: number;
  runs: ImageRun[];
  /** Medians over the repetitions. */
  fetchMiBs: number;
  copyFileMiBs: number;
  streamCopyMiBs: number;
  /** Median fetch time / median copyFile time (the goal: at most 2). */
  ratio: number;
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const rate = (bytes: number, ms: number): number => round(bytes / MiB / (ms / 1000), 1);

async function fsyncFile(path: string): Promise<void> {
  const f = await open(path, "r+");
  await f.sync();
  await f.close();
}

async function streamCopy(from: string, to: string): Promise<void> {
  const out = await open(to, "wx", 0o600);
  try {
    for await (const chunk of createReadStream(from, { highWaterMark: MiB }))
      await out.write(chunk as Buffer);
    await out.sync();
  } finally {
    await out.close();
  }
}

export async function imagesBench(
  _server: NatsServer,
  nc: NatsConnection,
  bytes: number,
  reps: number,
): Promise<ImagesResult> {
  const prefix = benchPrefix("img");
  await provisionVmq(nc, namesFor(prefix), []);
  const dir = await mkdtemp(join(tmpdir(), "vmq-bench-images-"));
  try {
    const source = join(dir, "base.img");
    const f = await open(source, "w");
    for (let left = bytes; left > 0; left -= 8 * MiB)
      await f.write(randomBytes(Math.min(8 * MiB, left)));
    await f.sync();
    await f.close();

    const store = new ImageStore(nc, { prefix });
    const pushStart = performance.now();
    const info = await store.push(source, { name: "bench", tag: "v1" });
    const pushMs = performance.now() - pushStart;
    if (info.size !== bytes) throw new Error(`pushed ${info.size} bytes, not ${bytes}`);

    const runs: ImageRun[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const cacheDir = join(dir, `cache-${rep}`);
      const cache = new ImageCache({
        dir: cacheDir,
        maxBytes: 0,
        bucket: () => openImageBucket(nc, namesFor(prefix)),
        chunks: (r) => imageChunks(nc, namesFor(prefix), r),
        inUse: () => [],
        log: silentLogger(),
        stats: new ImageStats(),
      });
      await cache.start();
      const t0 = performance.now();
      const got = await cache.ensure("bench:v1", `vm-${rep}`);
      const fetchMs = performance.now() - t0;
      if ((await stat(got.path)).size !== bytes) throw new Error("the fetched image is short");

      const c1 = join(dir, `copy-${rep}`);
      const t1 = performance.now();
      await copyFile(source, c1);
      await fsyncFile(c1);
      const copyFileMs = performance.now() - t1;

      const c2 = join(dir, `stream-${rep}`);
      const t2 = performance.now();
      await streamCopy(source, c2);
      const streamCopyMs = performance.now() - t2;

      runs.push({
        fetchMs: round(fetchMs, 1),
        copyFileMs: round(copyFileMs, 1),
        streamCopyMs: round(streamCopyMs, 1),
      });
      // Each repetition starts from an empty cache and no copies (the disk holds one at a time).
      await Promise.all([cacheDir, c1, c2].map((p) => rm(p, { recursive: true, force: true })));
    }
    const fetch = median(runs.map((r) => r.fetchMs));
    const cp = median(runs.map((r) => r.copyFileMs));
    const streamed = median(runs.map((r) => r.streamCopyMs));
    return {
      bytes,
      pushMs: round(pushMs, 1),
      runs,
      fetchMiBs: rate(bytes, fetch),
      copyFileMiBs: rate(bytes, cp),
      streamCopyMiBs: rate(bytes, streamed),
      ratio: round(fetch / cp, 2),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The goals-table row: fetch within 2x of a plain copy. */
export function imagesGoal(r: ImagesResult) {
  return {
    goal: `image fetch (${round(r.bytes / MiB, 0)} MiB) vs a plain file copy`,
    target: "within 2x of the copy's time",
    measured: `${r.ratio}x (fetch ${r.fetchMiBs} MiB/s, copyFile ${r.copyFileMiBs} MiB/s; median of ${r.runs.length})`,
    met: r.ratio <= 2,
  };
}

/** The section's Markdown. */
export function imagesMarkdown(r: ImagesResult): string {
  const mb = round(r.bytes / MiB, 0);
  const rows = r.runs
    .map(
      (x, i) =>
        `| ${i + 1} | ${x.fetchMs} (${rate(r.bytes, x.fetchMs)} MiB/s) | ${x.copyFileMs} (${rate(r.bytes, x.copyFileMs)} MiB/s) | ${x.streamCopyMs} (${rate(r.bytes, x.streamCopyMs)} MiB/s) | ${round(x.fetchMs / x.copyFileMs, 2)}x |`,
    )
    .join("\n");
  return [
    "## Images: fetch from the object store vs a file copy",
    "",
    `One ${mb} MiB file of random bytes, pushed once with the SDK's \`ImageStore\` (${r.pushMs} ms, ${rate(r.bytes, r.pushMs)} MiB/s). Each repetition: the worker's \`ImageCache\` fetches \`bench:v1\` into an empty cache (streamed from nats-server on loopback to a temporary file, SHA-256 checked, fsync, rename); then the same file is copied on the same disk with \`fs.copyFile\` + fsync and with a streamed read/write + fsync. The source file and the server's store are both likely in the page cache, so this compares the paths' CPU and write costs, not disks.`,
    "",
    "| repetition | fetch ms | copyFile ms | streamed copy ms | fetch / copyFile |",
    "|---|---|---|---|---|",
    rows,
    "",
    `Medians: fetch ${r.fetchMiBs} MiB/s, copyFile ${r.copyFileMiBs} MiB/s, streamed copy ${r.streamCopyMiBs} MiB/s; **fetch / copyFile ${r.ratio}x** (goal ≤ 2x).`,
    "",
  ].join("\n");
}
