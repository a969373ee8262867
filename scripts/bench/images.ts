/**
 * Images: how fast a host gets a base image from the object store, against copying the same
 * bytes on the same disk. One random file is pushed with the SDK's ImageStore; then, per
 * repetition, the worker's own ImageCache (from the build) fetches it into a fresh cache dir
 * (chunks streamed to a temporary file, SHA-256 checked, fsync, rename), and the same file is
 * copied twice: `fs.copyFile` (what `cp` does) and a streamed read/write, both with an fsync so
 * all three end with the bytes on disk.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat, copyFile } from "node:fs/promises";
import { createReadStream } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
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
  /** CPU time of the fetch: this process (the ImageCache) and nats-server (absent: unknown). */
  fetchClientCpuMs?: number;
  fetchServerCpuMs?: number;
  /** What the fetch cannot skip, alone: SHA-256 of the bytes in memory; writing them + fsync. */
  hashMs?: number;
  writeMs?: number;
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
  /** The machine's cores: the fetch's CPU time (client + server) over them is a floor on its time. */
  cores?: number;
  /** Median over the repetitions of (fetch CPU / cores) / copyFile time: the ratio's floor here. */
  cpuFloorRatio?: number;
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

/** utime + stime of a process in ms (Linux /proc; clock ticks of 100 Hz), or undefined. */
async function cpuOf(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  // The fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (!fields) return undefined;
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

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
  server: NatsServer,
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
      const [client0, server0] = [cpuNow(), await cpuOf(server.pid)];
      const t0 = performance.now();
      const got = await cache.ensure("bench:v1", `vm-${rep}`);
      const fetchMs = performance.now() - t0;
      const [client1, server1] = [cpuNow(), await cpuOf(server.pid)];
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

      // The two parts of a fetch that no transport can skip, each alone, from memory.
      const bytesInMemory = await readFile(source);
      const t3 = performance.now();
      createHash("sha256").update(bytesInMemory).digest("hex");
      const hashMs = performance.now() - t3;
      const c3 = join(dir, `write-${rep}`);
      const t4 = performance.now();
      const w = await open(c3, "wx", 0o600);
      for (let at = 0; at < bytesInMemory.length; at += 8 * MiB)
        await w.write(bytesInMemory.subarray(at, at + 8 * MiB));
      await w.sync();
      await w.close();
      const writeMs = performance.now() - t4;
      await rm(c3, { force: true });

      runs.push({
        fetchMs: round(fetchMs, 1),
        copyFileMs: round(copyFileMs, 1),
        streamCopyMs: round(streamCopyMs, 1),
        fetchClientCpuMs: round(client1 - client0, 0),
        ...(server0 !== undefined && server1 !== undefined
          ? { fetchServerCpuMs: round(server1 - server0, 0) }
          : {}),
        hashMs: round(hashMs, 1),
        writeMs: round(writeMs, 1),
      });
      // Each repetition starts from an empty cache and no copies (the disk holds one at a time).
      await Promise.all([cacheDir, c1, c2].map((p) => rm(p, { recursive: true, force: true })));
    }
    const fetch = median(runs.map((r) => r.fetchMs));
    const cp = median(runs.map((r) => r.copyFileMs));
    const streamed = median(runs.map((r) => r.streamCopyMs));
    const cores = availableParallelism();
    const floors = runs
      .filter((x) => x.fetchClientCpuMs !== undefined && x.fetchServerCpuMs !== undefined)
      .map((x) => ((x.fetchClientCpuMs ?? 0) + (x.fetchServerCpuMs ?? 0)) / cores / x.copyFileMs);
    return {
      bytes,
      pushMs: round(pushMs, 1),
      runs,
      cores,
      ...(floors.length ? { cpuFloorRatio: round(median(floors), 2) } : {}),
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
        `| ${i + 1} | ${x.fetchMs} (${rate(r.bytes, x.fetchMs)} MiB/s) | ${x.copyFileMs} (${rate(r.bytes, x.copyFileMs)} MiB/s) | ${x.streamCopyMs} (${rate(r.bytes, x.streamCopyMs)} MiB/s) | ${round(x.fetchMs / x.copyFileMs, 2)}x | ${x.fetchClientCpuMs ?? "?"} + ${x.fetchServerCpuMs ?? "?"} | ${x.hashMs ?? "?"} | ${x.writeMs ?? "?"} |`,
    )
    .join("\n");
  return [
    "## Images: fetch from the object store vs a file copy",
    "",
    `One ${mb} MiB file of random bytes, pushed once with the SDK's \`ImageStore\` (${r.pushMs} ms, ${rate(r.bytes, r.pushMs)} MiB/s). Each repetition: the worker's \`ImageCache\` fetches \`bench:v1\` into an empty cache (streamed from nats-server on loopback to a temporary file, SHA-256 checked, fsync, rename); then the same file is copied on the same disk with \`fs.copyFile\` + fsync and with a streamed read/write + fsync. The source file and the server's store are both likely in the page cache, so this compares the paths' CPU and write costs, not disks.`,
    "",
    "| repetition | fetch ms | copyFile ms | streamed copy ms | fetch / copyFile | fetch CPU ms (this process + nats-server) | SHA-256 alone ms | write + fsync alone ms |",
    "|---|---|---|---|---|---|---|---|",
    rows,
    "",
    `Medians: fetch ${r.fetchMiBs} MiB/s, copyFile ${r.copyFileMiBs} MiB/s, streamed copy ${r.streamCopyMiBs} MiB/s; **fetch / copyFile ${r.ratio}x** (goal ≤ 2x).`,
    "",
    ...(r.cpuFloorRatio !== undefined
      ? [
          `*Fetch CPU* is the CPU time the fetch took in this process (receiving, hashing, the writes' system calls) and in nats-server (reading its store, sending), from \`process.cpuUsage()\` and \`/proc/<pid>/stat\`. Spread perfectly over this machine's ${r.cores} cores it would still take ${r.cpuFloorRatio}x the copyFile time (median over the repetitions): the fetch's floor here, whatever overlaps. The last two columns are what no transport can skip, each alone from memory: hashing the bytes, and writing them with an fsync.`,
          "",
        ]
      : []),
  ].join("\n");
}
