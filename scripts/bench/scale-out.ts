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
  /** Outcomes that were not a success (should be 0: every host has VMs of its own). */
  notSucceeded: number;
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
    // vmIds are unique across the fleet (a prepare of another host's vmId is vm::exists, a
    // cheap rejection that would inflate the figure): each host gets VMs of its own.
    const plan = (tag: string, vms: number): PlannedCommand[] => {
      const perHost = hosts.map((h) => planCommands(names, h, vms, opts.perVm, `${h}-${tag}`));
      const out: PlannedCommand[] = [];
      for (let i = 0; i < (perHost[0]?.length ?? 0); i++)
        for (const p of perHost) if (p[i]) out.push(p[i] as PlannedCommand);
      return out;
    };
    const publish = (cmds: PlannedCommand[]) =>
      publishAll(
        jetstream(nc),
        cmds.map((c) => ({ subject: c.subject, data: c.data, msgID: c.commandId })),
        Math.min(512, opts.vmsPerHost * workers),
      );
    let notSucceeded = 0;
    const seen = countOutcomes(nc, `${names.prefix}.evt.>`, (e) => {
      if (e.type === "vm.command-rejected" || e.type === "vm.command-failed") notSucceeded++;
    });
    // A fresh process runs its first commands on cold code (interpreted, not yet optimised):
    // a warm-up round on VMs of their own first, so the figure is the fleet's steady state.
    const warm = plan("warm", Math.max(1, Math.floor(opts.vmsPerHost / 2)));
    await publish(warm);
    await waitFor(() => seen.count() >= warm.length, 300_000, "scale-out warm-up", 5);
    const warmSeen = seen.count();
    const all = plan("vm", opts.vmsPerHost);
    await nc.flush();
    const t0 = performance.now();
    await publish(all);
    await waitFor(() => seen.count() - warmSeen >= all.length, 300_000, "scale-out outcomes", 5);
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
      notSucceeded,
    };
  } finally {
    for (const c of children) c.send("stop");
    await Promise.all(children.map((c) => c.exit()));
  }
}
