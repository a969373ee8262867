/**
 * Throughput (pre-loaded commands, time until every outcome is recorded) and latency (one
 * command at a time per lane, publish -> outcome event seen) of the baseline and of vmq.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { NatsServer } from "../../test/helpers/nats-server.js";
import { BaselineWorker, provisionBaseline } from "./baseline.js";
import {
  benchPrefix,
  commandBody,
  countOutcomes,
  dropStreams,
  namesFor,
  planCommands,
  publishCommands,
  waitFor,
  type Names,
} from "./common.js";
import { parseNanoTime, round, summarize, type LatencySummary } from "./stats.js";
import { makeWorker, provisionVmq, type LogMode } from "./vmq.js";

export interface ThroughputResult {
  system: "baseline" | "vmq";
  concurrency: number;
  log?: LogMode;
  vms: number;
  commands: number;
  /** Commands per second over the span from the first stored event to the last stored event. */
  cmdPerSec: number;
  spanMs: number;
  /** Wall time from starting the consumer (baseline) / worker.start() (vmq) to the last outcome. */
  wallMs: number;
  wallCmdPerSec: number;
  errors: number;
  outcomes?: Record<string, number>;
  /** Writes to the `<prefix>-vms` view bucket per command (an extra JetStream publish each). */
  viewWritesPerCommand?: number;
}

const HOST = "h1";

/** First and last event timestamps of the events stream, in ms. */
async function eventSpan(
  nc: NatsConnection,
  names: Names,
): Promise<{ spanMs: number; msgs: number }> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(names.eventsStream);
  return {
    spanMs: parseNanoTime(info.state.last_ts) - parseNanoTime(info.state.first_ts),
    msgs: info.state.messages,
  };
}

const batchFor = (c: number): number => Math.min(2048, Math.max(64, c * 8)); // the worker's

/** Commands per second over the events' own time span, and over the wall clock. */
function rates(commands: number, spanMs: number, wallMs: number) {
  return {
    commands,
    cmdPerSec: round((commands / spanMs) * 1000),
    spanMs: round(spanMs),
    wallMs: round(wallMs),
    wallCmdPerSec: round((commands / wallMs) * 1000),
  };
}

export async function baselineThroughput(
  server: NatsServer,
  nc: NatsConnection,
  c: number,
  vms: number,
  perVm: number,
): Promise<ThroughputResult> {
  const names = namesFor(benchPrefix(`base${c}`));
  await provisionBaseline(nc, names, HOST, 2048);
  const cmds = planCommands(names, HOST, vms, perVm);
  await publishCommands(jetstream(nc), cmds);
  const wnc = await server.connect();
  const w = new BaselineWorker(wnc, names, HOST, c);
  const t0 = performance.now();
  await w.start(batchFor(c));
  await waitFor(() => w.acked + w.errors >= cmds.length, 600_000, "baseline acks");
  const wallMs = performance.now() - t0;
  await w.stop();
  await wnc.close();
  const { spanMs } = await eventSpan(nc, names);
  await dropStreams(nc, names);
  return {
    system: "baseline",
    concurrency: c,
    vms,
    ...rates(cmds.length, spanMs, wallMs),
    errors: w.errors,
  };
}

export async function vmqThroughput(
  server: NatsServer,
  nc: NatsConnection,
  c: number,
  vms: number,
  perVm: number,
  log: LogMode = "info-devnull",
): Promise<ThroughputResult> {
  const names = namesFor(benchPrefix(`vmq${c}`));
  await provisionVmq(nc, names, [HOST]);
  const cmds = planCommands(names, HOST, vms, perVm);
  await publishCommands(jetstream(nc), cmds);
  const { worker } = makeWorker({
    url: server.url,
    prefix: names.prefix,
    host: HOST,
    concurrency: c,
    log,
  });
  const t0 = performance.now();
  await worker.start();
  await waitFor(() => worker.stats.total() >= cmds.length, 600_000, "vmq outcomes");
  const wallMs = performance.now() - t0;
  await worker.drain();
  const { spanMs } = await eventSpan(nc, names);
  const kv = await (await jetstreamManager(nc)).streams.info(`KV_${names.vmsBucket}`);
  await dropStreams(nc, names);
  return {
    system: "vmq",
    viewWritesPerCommand: round(kv.state.last_seq / cmds.length, 2),
    concurrency: c,
    log,
    vms,
    ...rates(cmds.length, spanMs, wallMs),
    errors: worker.stats.total() - worker.stats.total("succeeded"),
    outcomes: Object.fromEntries(worker.stats.commands),
  };
}

export interface LatencyResult extends LatencySummary {
  system: "baseline" | "vmq";
  concurrency: number;
  warmup: number;
  /** Commands per second the closed loop reached (each lane waits for its outcome). */
  cmdPerSec: number;
  /** Repetitions pooled into this result, and each one's own p99. */
  reps?: number;
  p99ByRep?: number[];
}

/** One closed-loop run: its summary and its raw samples (to pool repetitions). */
export interface LatencyRun {
  result: LatencyResult;
  samples: number[];
}

/** Repetitions of one system at one concurrency as one result: quantiles over every sample. */
export function pooled(runs: readonly LatencyRun[]): LatencyResult {
  const first = runs[0];
  if (!first) throw new Error("no latency runs to pool");
  const s = summarize(runs.flatMap((r) => r.samples));
  const rates = runs.map((r) => r.result.cmdPerSec);
  return {
    ...first.result,
    ...roundedSummary(s),
    cmdPerSec: round(rates.reduce((a, b) => a + b, 0) / rates.length),
    reps: runs.length,
    p99ByRep: runs.map((r) => r.result.p99),
  };
}

const roundedSummary = (s: LatencySummary): LatencySummary => ({
  ...s,
  p50: round(s.p50, 2),
  p90: round(s.p90, 2),
  p99: round(s.p99, 2),
  max: round(s.max, 2),
  mean: round(s.mean, 2),
});

/**
 * `c` lanes, one VM each; every lane publishes a command (JetStream publish, PubAck awaited),
 * waits until its outcome event is seen on a core subscription to the host's event subjects,
 * then publishes the next one. Latency = publish call -> outcome seen.
 */
async function closedLoop(
  nc: NatsConnection,
  names: Names,
  c: number,
  perLane: number,
  warmup: number,
  system: "baseline" | "vmq",
): Promise<LatencyRun> {
  const js = jetstream(nc);
  const waiting = new Map<string, () => void>();
  const sub = countOutcomes(nc, names.evtFilter(HOST), (e) => {
    const done = e.causationId ? waiting.get(e.causationId) : undefined;
    if (done) {
      waiting.delete(e.causationId as string);
      done();
    }
  });
  await nc.flush();
  const samples: number[] = [];
  const lane = async (i: number): Promise<void> => {
    const vmId = `lat-${i}`;
    for (let n = 0; n < perLane + warmup; n++) {
      const commandId = randomUUID();
      const data = new TextEncoder().encode(JSON.stringify(commandBody(vmId, n, commandId)));
      const seen = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no outcome for ${commandId}`)), 30_000);
        waiting.set(commandId, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const t0 = performance.now();
      await js.publish(names.cmd(HOST, vmId), data, { msgID: commandId });
      await seen;
      if (n >= warmup) samples.push(performance.now() - t0);
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: c }, (_, i) => lane(i)));
  const elapsed = performance.now() - began;
  sub.stop();
  return {
    result: {
      system,
      concurrency: c,
      warmup,
      ...roundedSummary(summarize(samples)),
      cmdPerSec: round((c * (perLane + warmup) * 1000) / elapsed),
    },
    samples,
  };
}

export async function baselineLatency(
  server: NatsServer,
  nc: NatsConnection,
  c: number,
  perLane: number,
  warmup: number,
): Promise<LatencyRun> {
  const names = namesFor(benchPrefix(`lbase${c}`));
  await provisionBaseline(nc, names, HOST, 2048);
  const wnc = await server.connect();
  const w = new BaselineWorker(wnc, names, HOST, c);
  await w.start(batchFor(c));
  try {
    return await closedLoop(nc, names, c, perLane, warmup, "baseline");
  } finally {
    await w.stop();
    await wnc.close();
    await dropStreams(nc, names);
  }
}

export async function vmqLatency(
  server: NatsServer,
  nc: NatsConnection,
  c: number,
  perLane: number,
  warmup: number,
): Promise<LatencyRun> {
  const names = namesFor(benchPrefix(`lvmq${c}`));
  const { worker } = makeWorker({
    url: server.url,
    prefix: names.prefix,
    host: HOST,
    concurrency: c,
  });
  await worker.start();
  try {
    return await closedLoop(nc, names, c, perLane, warmup, "vmq");
  } finally {
    await worker.drain();
    await dropStreams(nc, names);
  }
}
