/**
 * The parts of vmq the benchmark runs, loaded from the build (dist/, what `vmq worker` runs),
 * not from the sources through tsx: tsx's transform adds a helper call to every function and
 * class, which is not what users run. Types come from the sources. `npm run bench` builds first.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type * as Client from "../../src/client/index.js";
import type * as EventStoreProvision from "../../src/event-store/provision.js";
import type * as ImageBucket from "../../src/event-store/image-bucket.js";
import type * as ImageCacheModule from "../../src/worker/images/image-cache.js";
import type * as ImageStatsModule from "../../src/worker/images/image-stats.js";
import type * as Accelerator from "../../src/hypervisor/backends/qemu/accelerator.js";
import type * as CommandLine from "../../src/hypervisor/backends/qemu/qemu-command-line.js";
import type * as Qmp from "../../src/hypervisor/backends/qemu/qmp-client.js";
import type * as Hypervisor from "../../src/hypervisor/index.js";
import type * as Logger from "../../src/observability/logger.js";
import type * as WorkerModule from "../../src/worker/worker.js";

const dist = (path: string): string => {
  const url = new URL(`../../dist/${path}`, import.meta.url);
  if (!existsSync(fileURLToPath(url)))
    throw new Error(`${fileURLToPath(url)} is missing: run npm run build (npm run bench does)`);
  return url.href;
};

export const { Worker } = (await import(dist("worker/worker.js"))) as typeof WorkerModule;
export const { FaultyBackend, HypervisorRouter, NoopBackend } = (await import(
  dist("hypervisor/index.js")
)) as typeof Hypervisor;
export const { createLogger, silentLogger } = (await import(
  dist("observability/logger.js")
)) as typeof Logger;
export const { ensureConsumer, ensureTopology } = (await import(
  dist("event-store/provision.js")
)) as typeof EventStoreProvision;
export const { VmqClient, ImageStore } = (await import(dist("client/index.js"))) as typeof Client;
export const { imageChunks, openImageBucket } = (await import(
  dist("event-store/image-bucket.js")
)) as typeof ImageBucket;
export const { ImageCache } = (await import(
  dist("worker/images/image-cache.js")
)) as typeof ImageCacheModule;
export const { ImageStats } = (await import(
  dist("worker/images/image-stats.js")
)) as typeof ImageStatsModule;
export const { QmpClient } = (await import(
  dist("hypervisor/backends/qemu/qmp-client.js")
)) as typeof Qmp;
export const { buildQemuArgs } = (await import(
  dist("hypervisor/backends/qemu/qemu-command-line.js")
)) as typeof CommandLine;
export const { detectAccelerator } = (await import(
  dist("hypervisor/backends/qemu/accelerator.js")
)) as typeof Accelerator;
export type VmqClient = Client.VmqClient;
export type QmpClient = Qmp.QmpClient;
