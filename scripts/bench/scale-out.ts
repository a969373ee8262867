/**
 * Scale-out: 1, 2 and 4 workers (distinct hosts, each in its own process) on one nats-server,
 * Noop latency 50 ms per call. Commands are spread evenly over the hosts and published while
 * the workers run; throughput = commands / (first publish -> last outcome seen).
 */
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import {
  benchPrefix,
  countOutcomes,
  namesFor,
  planCommands,
  publishAll,
  waitFor,
  type PlannedCommand,
} from "./common.js";
import { BenchChild } from "./spawn.js";
import { round } from "./stats.js";
import { provisionVmq } from "./vmq.js";

export interface ScaleOutResult {
  workers: number;
  concurrencyPerWorker: number;
  latencyMs: number;
  commands: number;
  ms: number;
  cmdPerSec: number;
  /** Throughput relative to one worker (filled in by the caller). */
  ratio?: number;
  /** The ideal: workers x concurrency / latency. */
  idealCmdPerSec: number;
}

export async function scaleOut(
  server: NatsServer,
  nc: NatsConnection,
  workers: number,
  opts: { concurrency: number; latencyMs: number; vmsPerHost: number; perVm: number },
): Promise<ScaleOutResult> {
  const names = namesFor(benchPrefix(`so${workers}`));
  const hosts = Array.from({ length: workers }, (_, i) => `h${i + 1}`);
  await provisionVmq(nc, names, hosts);
  const children = hosts.map((host) =>
    BenchChild.spawn({
      mode: "serve",
      url: server.url,
      prefix: names.prefix,
      host,
      concurrency: opts.concurrency,
      latencyMs: opts.latencyMs,
    }),
  );
  try {
    await Promise.all(children.map((c) => c.next<{ ready: boolean }>()));
    // Interleave the hosts' commands so every host gets work from the first publish on.
    const perHost = hosts.map((h) => planCommands(names, h, opts.vmsPerHost, opts.perVm));
    const all: PlannedCommand[] = [];
    for (let i = 0; i < (perHost[0]?.length ?? 0); i++)
      for (const p of perHost) if (p[i]) all.push(p[i] as PlannedCommand);
    const seen = countOutcomes(nc, `${names.prefix}.evt.>`);
    await nc.flush();
    const t0 = performance.now();
    await publishAll(
      jetstream(nc),
      all.map((c) => ({ subject: c.subject, data: c.data, msgID: c.commandId })),
      Math.min(512, opts.vmsPerHost * workers),
    );
    await waitFor(() => seen.count() >= all.length, 300_000, "scale-out outcomes", 5);
    const ms = performance.now() - t0;
    seen.stop();
    return {
      workers,
      concurrencyPerWorker: opts.concurrency,
      latencyMs: opts.latencyMs,
      commands: all.length,
      ms: round(ms),
      cmdPerSec: round((all.length / ms) * 1000),
      idealCmdPerSec: round((workers * opts.concurrency * 1000) / opts.latencyMs),
    };
  } finally {
    for (const c of children) c.send("stop");
    await Promise.all(children.map((c) => c.exit()));
  }
}
