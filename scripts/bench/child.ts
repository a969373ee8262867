/**
 * A vmq worker in its own process, driven by the benchmark over stdin/stdout (one JSON object
 * per line). Modes:
 *  - serve: start, print {ready}, run until "stop" on stdin, drain, print {stats}.
 *  - recovery: seed the Noop backend with the preloaded VMs, time start() (replay + reconcile),
 *    measure resident memory, drain (writing the snapshot when snapshots are on), print it all.
 *  - profile: run until `commands` outcomes are recorded (for --cpu-prof), print the window.
 *  - churn: run with a short retention window; "measure" on stdin prints resident memory after
 *    a forced GC and what the worker holds; "stop" drains (writing its snapshot).
 */
import { createInterface } from "node:readline";
import { FaultyBackend, NoopBackend } from "./built.js";
import { makeWorker } from "./vmq.js";
import { recoveryHandle } from "./recovery-data.js";
import { waitFor } from "./common.js";

export interface ChildArgs {
  mode: "serve" | "recovery" | "profile" | "churn";
  url: string;
  prefix: string;
  host: string;
  concurrency: number;
  latencyMs?: number;
  snapshots?: "on" | "off";
  vms?: number;
  commands?: number;
  retentionMs?: number;
}

const say = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

const gc = (): void => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
};

/** The worker this child runs, on the server, prefix and host its parent gave it. */
const childWorker = (
  a: ChildArgs,
  extra: Omit<Parameters<typeof makeWorker>[0], keyof Base> = {},
) =>
  makeWorker({ url: a.url, prefix: a.prefix, host: a.host, concurrency: a.concurrency, ...extra });
type Base = { url: string; prefix: string; host: string; concurrency: number };

async function serve(a: ChildArgs): Promise<void> {
  const { worker } = childWorker(a, { latencyMs: a.latencyMs ?? 0 });
  await worker.start();
  say({ ready: true, host: a.host });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) if (line.trim() === "stop") break;
  rl.close();
  await worker.drain();
  say({ done: true, host: a.host, outcomes: Object.fromEntries(worker.stats.commands) });
}

async function recovery(a: ChildArgs): Promise<void> {
  const vms = a.vms ?? 0;
  gc();
  const rss0 = process.memoryUsage().rss;
  const noop = new NoopBackend();
  for (let i = 0; i < vms; i++) noop.seed(recoveryHandle(i), "stopped");
  gc();
  const before = process.memoryUsage();
  const { worker } = childWorker(a, {
    backend: new FaultyBackend(noop),
    snapshots: a.snapshots ?? "off",
  });
  const t0 = performance.now();
  await worker.start();
  const startMs = performance.now() - t0;
  const replayMs = worker.stats.replayMs;
  gc();
  const after = process.memoryUsage();
  const registrySize = worker.registry?.size ?? 0;
  const d0 = performance.now();
  await worker.drain();
  say({
    startMs,
    steps: worker.startTimings,
    replayMs,
    replayedEvents: worker.stats.replayedEvents,
    replayFrom: worker.stats.replayFrom,
    vms: registrySize,
    observed: worker.stats.observed,
    drainMs: performance.now() - d0,
    rssBaseline: rss0,
    rssBefore: before.rss,
    rssAfter: after.rss,
    heapBefore: before.heapUsed,
    heapAfter: after.heapUsed,
    gcExposed: typeof (globalThis as { gc?: unknown }).gc === "function",
  });
}

async function profile(a: ChildArgs): Promise<void> {
  const { worker } = childWorker(a);
  const startUs = Number(process.hrtime.bigint() / 1000n);
  const t0 = performance.now();
  await worker.start();
  await waitFor(() => worker.stats.total() >= (a.commands ?? 0), 600_000, "outcomes");
  const ms = performance.now() - t0;
  const endUs = Number(process.hrtime.bigint() / 1000n);
  await worker.drain();
  say({ startUs, endUs, ms, commands: worker.stats.total() });
}

async function churn(a: ChildArgs): Promise<void> {
  const { worker } = childWorker(a, {
    snapshots: "on",
    retentionMs: a.retentionMs ?? 2_000,
    compactIntervalMs: 1_000,
  });
  await worker.start();
  say({ ready: true });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (line.trim() === "stop") break;
    if (line.trim() !== "measure") continue;
    gc();
    const m = process.memoryUsage();
    say({
      rss: m.rss,
      heapUsed: m.heapUsed,
      held: worker.registry?.size ?? 0,
      compacted: worker.stats.compacted,
      compactionMs: worker.stats.compactionMs,
      outcomes: worker.stats.total(),
    });
  }
  rl.close();
  await worker.drain();
  say({ done: true });
}

const args = JSON.parse(process.argv[2] ?? "{}") as ChildArgs;
const run = { serve, recovery, profile, churn }[args.mode];
run(args).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(
      `bench child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exit(1);
  },
);
