/** Building blocks for running vmq's real Worker in-process on a Noop backend. */
import { mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { WorkerConfigInput } from "../../src/config/config.js";
import type { Hypervisor } from "../../src/hypervisor/index.js";
import type { Logger } from "../../src/observability/logger.js";
import type { Worker as WorkerType } from "../../src/worker/worker.js";
import {
  FaultyBackend,
  HypervisorRouter,
  NoopBackend,
  Worker,
  createLogger,
  ensureConsumer,
  ensureTopology,
  silentLogger,
} from "./built.js";
import type { Names } from "./common.js";

/** Every bench worker's data dir lives under one temporary folder, removed when the run ends. */
const BENCH_TMP = mkdtempSync(join(tmpdir(), "vmq-bench-"));
process.on("exit", () => rmSync(BENCH_TMP, { recursive: true, force: true }));

/** The worker's consumer settings at their defaults (so a later start changes nothing). */
export const CONSUMER_DEFAULTS = { ackWaitMs: 30_000, maxDeliver: 10, maxAckPending: 2048 };

/** Creates the worker's topology and the host's durable ahead of time (to preload commands). */
export async function provisionVmq(
  nc: NatsConnection,
  names: Names,
  hosts: string[],
): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureTopology(nc, jsm, names, {});
  for (const h of hosts) await ensureConsumer(jsm, names, h, CONSUMER_DEFAULTS);
}

/** info is what `vmq worker` logs by default; debug adds a `command done` line per command. */
export type LogMode = "silent" | "info-devnull" | "debug-devnull";

export function benchLogger(mode: LogMode): Logger {
  if (mode === "silent") return silentLogger();
  return createLogger({
    level: mode === "debug-devnull" ? "debug" : "info",
    destination: openSync("/dev/null", "w"),
  });
}

export function makeWorker(
  opts: {
    url: string;
    prefix: string;
    host: string;
    concurrency: number;
    latencyMs?: number;
    log?: LogMode;
    backend?: Hypervisor;
  } & Partial<WorkerConfigInput>,
): { worker: WorkerType; noop: Hypervisor } {
  const { url, latencyMs, log, backend, ...rest } = opts;
  const noop = backend ?? new FaultyBackend(new NoopBackend(), { latencyMs: latencyMs ?? 0 });
  const worker = new Worker(
    {
      nats: url,
      dataDir: mkdtempSync(join(BENCH_TMP, "worker-")),
      reconcileIntervalMs: 0,
      snapshots: "off",
      ...rest,
    },
    { router: new HypervisorRouter([noop]), logger: benchLogger(log ?? "info-devnull") },
  );
  return { worker, noop };
}
