/**
 * The parts of vmq the benchmark runs, loaded from the build (dist/, what `vmq worker` runs),
 * not from the sources through tsx: tsx's transform adds a helper call to every function and
 * class, which is not what users run. Types come from the sources. `npm run bench` builds first.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const dist = (path: string): string => {
  const url = new URL(`../../dist/${path}`, import.meta.url);
  if (!existsSync(fileURLToPath(url)))
    throw new Error(`${fileURLToPath(url)} is missing: run npm run build (npm run bench does)`);
  return url.href;
};

export const { Worker } = (await import(
  dist("worker/worker.js")
)) as typeof import("../../src/worker/worker.js");
export const { HypervisorRouter, NoopBackend } = (await import(
  dist("hypervisor/index.js")
)) as typeof import("../../src/hypervisor/index.js");
export const { createLogger, silentLogger } = (await import(
  dist("observability/logger.js")
)) as typeof import("../../src/observability/logger.js");
export const { ensureConsumer, ensureTopology } = (await import(
  dist("event-store/provision.js")
)) as typeof import("../../src/event-store/provision.js");
